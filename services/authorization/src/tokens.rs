//! SoftPOS attestation tokens, verified offline: the attestation service's public keys are
//! loaded once (in-process in `mposd`, or from its `GET /v1/attestation/token-keys`), kept in
//! a [`CachingVerifier`] so a token seen before costs a hash and a lookup, and refreshed in
//! the background (a rotation adds a `kid`; an unknown `kid` is also refetched, at most every
//! few seconds).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use attestation_token::{CachingVerifier, Expected, PublishedKeys, TokenError, Verdict};

use crate::ports::{AttestationPass, TokenCheck};

/// Tolerated clock difference with the attestation service, seconds.
pub const LEEWAY_SECONDS: u64 = 30;
/// Tokens remembered by the verifier.
const REMEMBERED: usize = 65_536;
/// The shortest time between two fetches for an unknown key id.
const REFETCH_PAUSE: Duration = Duration::from_secs(5);

/// Where the keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Given (in-process).
    Fixed(PublishedKeys),
    /// Fetched from the attestation service's `…/v1/attestation/token-keys`.
    Url(String),
}

/// The token check over the attestation service's keys.
pub struct Tokens {
    source: KeySource,
    client: reqwest::Client,
    verifier: RwLock<Arc<CachingVerifier>>,
    last_fetch: RwLock<Option<Instant>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn caching(keys: &PublishedKeys) -> Result<CachingVerifier, TokenError> {
    Ok(CachingVerifier::new(keys.verifier()?, REMEMBERED))
}

impl Tokens {
    /// A check over `source`; fixed keys are loaded now, fetched ones at [`Tokens::refresh`].
    pub fn new(source: KeySource) -> Result<Self, TokenError> {
        let verifier = match &source {
            KeySource::Fixed(keys) => caching(keys)?,
            KeySource::Url(_) => caching(&PublishedKeys { keys: Vec::new() })?,
        };
        Ok(Self {
            source,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            verifier: RwLock::new(Arc::new(verifier)),
            last_fetch: RwLock::new(None),
        })
    }

    fn current(&self) -> Arc<CachingVerifier> {
        self.verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fetches the keys again (a no-op for fixed keys).
    pub async fn refresh(&self) -> Result<(), String> {
        let KeySource::Url(url) = &self.source else {
            return Ok(());
        };
        *self
            .last_fetch
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        let keys: PublishedKeys = self
            .client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("token keys: {error}"))?
            .json()
            .await
            .map_err(|error| format!("token keys: {error}"))?;
        let verifier = caching(&keys).map_err(|error| format!("token keys: {error}"))?;
        *self
            .verifier
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(verifier);
        tracing::info!(keys = keys.keys.len(), "attestation token keys loaded");
        Ok(())
    }

    /// Whether an unknown key id may trigger a fetch now.
    fn may_refetch(&self) -> bool {
        matches!(self.source, KeySource::Url(_))
            && self
                .last_fetch
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_none_or(|at| at.elapsed() >= REFETCH_PAUSE)
    }

    /// Refreshes every `every` until `cancel` fires.
    pub async fn run(
        self: Arc<Self>,
        every: Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        loop {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "attestation token keys not refreshed");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Whether a refresh for an unknown key is worth it; spawns it.
    fn refetch_in_background(self: &Arc<Self>) {
        if self.may_refetch() {
            let tokens = self.clone();
            tokio::spawn(async move {
                if let Err(error) = tokens.refresh().await {
                    tracing::warn!(%error, "attestation token keys not refreshed");
                }
            });
        }
    }
}

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
        let expected = Expected {
            tenant: tenant_id,
            device: device_id,
            now_unix,
            leeway_seconds: LEEWAY_SECONDS,
        };
        match self.0.current().verify(token, &expected) {
            Ok(verified) => Ok(AttestationPass {
                token_id: verified.claims.jti,
                verdict: match verified.claims.verdict {
                    Verdict::Allow => "allow",
                    Verdict::Flag => "flag",
                    Verdict::Block => "block",
                }
                .to_owned(),
            }),
            Err(error) => {
                if matches!(error, TokenError::UnknownKey { .. }) {
                    self.0.refetch_in_background();
                }
                Err(error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use attestation_token::{Claims, TokenIssuer};

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
