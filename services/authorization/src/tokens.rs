//! SoftPOS attestation tokens as the engine's [`TokenCheck`] port, over the shared
//! [`attestation_keys::Tokens`] (the keys fetched from the attestation service, refreshed,
//! and a verifier remembering the tokens it verified).

use std::sync::Arc;

pub use attestation_keys::{KeySource, LEEWAY_SECONDS, Tokens};
use attestation_token::Verdict;

use crate::ports::{AttestationPass, TokenCheck};

/// The check, as the engine's port.
#[derive(Clone, Debug)]
pub struct TokenPort(pub Arc<Tokens>);

impl TokenCheck for TokenPort {
    fn check(
        &self,
        token: &str,
        tenant_id: &str,
        device_id: &str,
        now_unix: u64,
    ) -> Result<AttestationPass, String> {
        match self.0.verify(token, tenant_id, device_id, now_unix) {
            Ok(verified) => Ok(AttestationPass {
                token_id: verified.claims.jti,
                verdict: match verified.claims.verdict {
                    Verdict::Allow => "allow",
                    Verdict::Flag => "flag",
                    Verdict::Block => "block",
                }
                .to_owned(),
            }),
            Err(error) => Err(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use attestation_token::{Claims, PublishedKeys, TokenIssuer};

    use super::*;

    fn issuer() -> TokenIssuer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .expect("key");
        TokenIssuer::new("att-1", pkcs8.as_ref()).expect("issuer")
    }

    fn token(issuer: &TokenIssuer, device: &str, exp: u64) -> String {
        issuer
            .issue(&Claims {
                iss: "mpos:attestation".into(),
                sub: device.into(),
                tenant: "acme".into(),
                verdict: Verdict::Flag,
                reasons: vec!["PI_DUE".into()],
                iat: 1_000,
                nbf: 1_000,
                exp,
                jti: "tok-1".into(),
                policy_version: 3,
                cnf: None,
            })
            .expect("token")
    }

    #[test]
    fn a_token_passes_only_for_its_device_tenant_and_time() {
        let issuer = issuer();
        let keys = PublishedKeys::of([(issuer.kid(), &issuer.public_key())]);
        let port = TokenPort(Arc::new(
            Tokens::new(KeySource::Fixed(keys)).expect("tokens"),
        ));
        let valid = token(&issuer, "sp-1", 2_000);
        assert_eq!(
            port.check(&valid, "acme", "sp-1", 1_500),
            Ok(AttestationPass {
                token_id: "tok-1".into(),
                verdict: "flag".into()
            })
        );
        assert!(port.check(&valid, "acme", "sp-2", 1_500).is_err());
        assert!(port.check(&valid, "other", "sp-1", 1_500).is_err());
        assert!(
            port.check(&valid, "acme", "sp-1", 2_000 + LEEWAY_SECONDS)
                .is_err()
        );
        let foreign = issuer_token_of_another_key();
        let refused = port.check(&foreign, "acme", "sp-1", 1_500);
        assert!(refused.is_err(), "{refused:?}");
    }

    fn issuer_token_of_another_key() -> String {
        token(&issuer(), "sp-1", 2_000)
    }
}
