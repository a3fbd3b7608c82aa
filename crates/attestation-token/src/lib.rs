//! The SoftPOS attestation token.
//!
//! After the attestation service has verified a device's evidence (key attestation chain,
//! Play Integrity verdict) and evaluated its tenant's policy, it issues a short-lived signed
//! token; the authorization service verifies it offline on every payment. This crate is the
//! token alone: building, signing and verifying it, no I/O.
//!
//! # Format
//!
//! A JWS in compact serialization (RFC 7515), signed with ES256 (ECDSA P-256 SHA-256,
//! RFC 7518 §3.4: the 64-byte `r || s` signature), base64url without padding:
//!
//! ```text
//! BASE64URL({"alg":"ES256","typ":"mpos-attestation+jwt","kid":"..."})
//!   . BASE64URL(claims JSON) . BASE64URL(r || s)
//! ```
//!
//! The claims are [`Claims`]: `iss`, `sub` (device id), `tenant`, `verdict` (`allow` or
//! `flag`; `block` is never issued), `reasons`, `iat`, `nbf`, `exp` (Unix seconds), `jti`,
//! `policy_version`.
//!
//! # Verification
//!
//! [`TokenVerifier::verify`] checks, in order, returning the first failure as a
//! [`TokenError`]:
//!
//! 1. at most [`MAX_TOKEN_LEN`] bytes ([`TokenError::TooLarge`]); three base64url parts
//!    ([`TokenError::Malformed`]);
//! 2. the header is a JSON object whose `alg` is exactly `ES256`
//!    ([`TokenError::UnsupportedAlgorithm`]: `none`, `HS256` and everything else are refused
//!    before any key is looked up, so the public key can never be used as an HMAC secret);
//!    `typ` is exactly [`TOKEN_TYPE`] ([`TokenError::WrongType`]); the header has no member
//!    but `alg`, `typ` and `kid` (no `crit`, `jwk`, `jku`, `x5u`, `x5c`: keys never come from
//!    the token);
//! 3. `kid` names a key the verifier holds ([`TokenError::UnknownKey`]);
//! 4. the signature verifies with that key ([`TokenError::BadSignature`]);
//! 5. the claims parse ([`TokenError::Malformed`]);
//! 6. `nbf - leeway <= now` ([`TokenError::NotYetValid`]) and `now < exp + leeway`
//!    ([`TokenError::Expired`]);
//! 7. `tenant` and `sub` are the expected ones ([`TokenError::WrongTenant`],
//!    [`TokenError::WrongDevice`]);
//! 8. the verdict is `allow` or `flag` ([`TokenError::Blocked`]).
//!
//! Error messages never carry the token; a `kid` or `alg` from the token is cut to
//! [`MAX_ECHO_CHARS`] characters.
//!
//! # Keys and rotation
//!
//! [`TokenIssuer`] holds one PKCS#8 P-256 private key and its `kid`. [`TokenVerifier`] holds
//! any number of public keys by `kid` (SubjectPublicKeyInfo DER or PEM, or a SEC1 point):
//! during a rotation the verifiers hold the old and the new key, the issuers switch, and the
//! old key is removed once the longest-lived token signed with it has expired.
//!
//! # Why ring and not `jsonwebtoken`
//!
//! `jsonwebtoken` 10 and later (12.0.0 is current) need a crypto backend chosen by feature:
//! `aws_lc_rs` (pulls in aws-lc, which the workspace avoids) or `rust_crypto` (pulls in RSA,
//! P-384, Ed25519 and HMAC implementations this token never uses). 9.3.1 is ring-based but is
//! the superseded line. The token needs one algorithm and strict header rules (exact `typ`,
//! no other members, the algorithm refused before any key lookup), which are checks on the
//! raw header either way. So the crate signs and verifies with ring 0.17 (already the
//! workspace's crypto: `ECDSA_P256_SHA256_FIXED_SIGNING` / `ECDSA_P256_SHA256_FIXED`) and
//! encodes with `base64`'s URL-safe alphabet without padding; `p256` only decodes public keys
//! (SubjectPublicKeyInfo, SEC1 points, compressed or not).

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::DecodePublicKey as _;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

/// The only signature algorithm: ECDSA P-256 SHA-256 (RFC 7518 §3.4).
pub const ALGORITHM: &str = "ES256";

/// The header's `typ`: the media type `application/mpos-attestation+jwt` without the prefix.
pub const TOKEN_TYPE: &str = "mpos-attestation+jwt";

/// Largest accepted token, in bytes (issued tokens are a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Longest piece of a token (a `kid` or an `alg`) repeated in an error message, in characters.
pub const MAX_ECHO_CHARS: usize = 32;

/// Length of an ES256 signature: `r || s`, 32 bytes each.
const SIGNATURE_LEN: usize = 64;

/// Why a token was refused (or could not be issued).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token too large: {len} bytes, at most {max}")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a compact JWS of the expected shape (parts, base64url, JSON, claim types).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not `ES256`.
    #[error("unsupported algorithm {alg:?}: only ES256")]
    UnsupportedAlgorithm {
        /// The header's `alg` (cut to [`MAX_ECHO_CHARS`]), empty when absent or not a string.
        alg: String,
    },
    /// The header's `typ` is not [`TOKEN_TYPE`].
    #[error("wrong token type: typ must be {TOKEN_TYPE:?}")]
    WrongType,
    /// No key with the header's `kid`.
    #[error("unknown key id {kid:?}")]
    UnknownKey {
        /// The header's `kid` (cut to [`MAX_ECHO_CHARS`]).
        kid: String,
    },
    /// The signature does not verify with the key named by `kid`.
    #[error("bad signature")]
    BadSignature,
    /// `exp` (plus the leeway) has passed.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The verifier's time.
        now: u64,
    },
    /// `nbf` (minus the leeway) has not come yet.
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The verifier's time.
        now: u64,
    },
    /// The token was issued for another tenant.
    #[error("token issued for another tenant")]
    WrongTenant,
    /// The token was issued for another device.
    #[error("token issued for another device")]
    WrongDevice,
    /// The verdict is `block` (never issued; refused when seen).
    #[error("verdict is block")]
    Blocked,
    /// A key could not be decoded (not P-256, not PKCS#8 / SPKI / SEC1, wrong PEM label).
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The claims given to [`TokenIssuer::issue`] are not issuable.
    #[error("invalid claims: {0}")]
    InvalidClaims(&'static str),
    /// Signing failed (random number generator).
    #[error("signing failed")]
    Signing,
}

/// The attestation verdict carried by a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The device may take payments.
    Allow,
    /// The device may take payments; the authorization service may apply extra risk rules.
    Flag,
    /// The device may not take payments. Never issued, refused by the verifier; it exists so
    /// that a token saying `block` is reported as [`TokenError::Blocked`].
    Block,
}

/// The token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuing attestation service instance.
    pub iss: String,
    /// The device id.
    pub sub: String,
    /// The tenant id.
    pub tenant: String,
    /// The verdict: `allow` or `flag`.
    pub verdict: Verdict,
    /// Stable reason codes behind the verdict (may be empty).
    pub reasons: Vec<String>,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Not before, Unix seconds.
    pub nbf: u64,
    /// Expires at, Unix seconds (the token is valid while `now < exp`).
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
    /// Version of the tenant policy the verdict was evaluated against.
    pub policy_version: u64,
    /// The key the token is bound to (RFC 7800 `cnf`): the attested key's certificate, so
    /// that a service delivering secrets to the device (key-injection's SoftPOS key) can
    /// check that the certificate it is shown is the one attestation verified. Absent from
    /// tokens issued before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// A token's confirmation claim (RFC 7800 §3.1), by certificate thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 8705 §3.1 `x5t#S256`: the base64url (no padding) SHA-256 of the DER certificate
    /// of the key attestation leaf — the device key the attestation vouched for.
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

impl Confirmation {
    /// The confirmation of a certificate (DER).
    pub fn of_certificate(certificate_der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, certificate_der);
        Self {
            x5t_s256: URL_SAFE_NO_PAD.encode(digest.as_ref()),
        }
    }

    /// The confirmation of a certificate known by its SHA-256 in hexadecimal (as the
    /// attestation service records it); `None` unless it is 64 hexadecimal digits.
    pub fn of_sha256_hex(sha256_hex: &str) -> Option<Self> {
        let bytes = sha256_hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut digest = [0_u8; 32];
        for (index, pair) in bytes.chunks_exact(2).enumerate() {
            let text = std::str::from_utf8(pair).ok()?;
            digest[index] = u8::from_str_radix(text, 16).ok()?;
        }
        Some(Self {
            x5t_s256: URL_SAFE_NO_PAD.encode(digest),
        })
    }

    /// Whether `certificate_der` is the certificate this confirmation names.
    pub fn confirms(&self, certificate_der: &[u8]) -> bool {
        Self::of_certificate(certificate_der) == *self
    }
}

/// The header this crate writes.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// A P-256 public key (kept as the uncompressed SEC1 point ring expects).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("point", &URL_SAFE_NO_PAD.encode(&self.point))
            .finish()
    }
}

impl PublicKey {
    /// From a SEC1 point (uncompressed `04 || x || y` or compressed).
    pub fn from_sec1(point: &[u8]) -> Result<Self, TokenError> {
        let key = p256::PublicKey::from_sec1_bytes(point)
            .map_err(|_| TokenError::InvalidKey("not a P-256 SEC1 point"))?;
        Ok(Self::from_p256(&key))
    }

    /// From a DER SubjectPublicKeyInfo (id-ecPublicKey, prime256v1).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, TokenError> {
        let key = p256::PublicKey::from_public_key_der(der)
            .map_err(|_| TokenError::InvalidKey("not a P-256 SubjectPublicKeyInfo"))?;
        Ok(Self::from_p256(&key))
    }

    /// From a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn from_spki_pem(pem: &str) -> Result<Self, TokenError> {
        let der = pem_der(pem, "PUBLIC KEY")?;
        Self::from_spki_der(&der)
    }

    /// The uncompressed SEC1 point, `04 || x || y` (65 bytes).
    pub fn sec1_uncompressed(&self) -> &[u8] {
        &self.point
    }

    fn from_p256(key: &p256::PublicKey) -> Self {
        Self {
            point: key.to_encoded_point(false).as_bytes().to_vec(),
        }
    }
}

fn pem_der(pem: &str, label: &str) -> Result<Vec<u8>, TokenError> {
    let (found, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
        .map_err(|_| TokenError::InvalidKey("not PEM"))?;
    if found != label {
        return Err(TokenError::InvalidKey("unexpected PEM label"));
    }
    Ok(der)
}

/// Signs tokens with one P-256 private key.
pub struct TokenIssuer {
    kid: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// From a key id and a PKCS#8 (RFC 5208/5958) DER P-256 private key; ring requires the
    /// public key inside the `ECPrivateKey`, as OpenSSL, `p256` and ring write it.
    pub fn new(kid: impl Into<String>, pkcs8_der: &[u8]) -> Result<Self, TokenError> {
        let kid = kid.into();
        if kid.is_empty() || kid.len() > 256 {
            return Err(TokenError::InvalidKey("kid must be 1 to 256 bytes"));
        }
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8_der, &rng)
            .map_err(|_| TokenError::InvalidKey("not a PKCS#8 P-256 private key"))?;
        Ok(Self { kid, key, rng })
    }

    /// From a key id and a PEM `PRIVATE KEY` (PKCS#8).
    pub fn from_pem(kid: impl Into<String>, pem: &str) -> Result<Self, TokenError> {
        let der = pem_der(pem, "PRIVATE KEY")?;
        Self::new(kid, &der)
    }

    /// The key id written into every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key verifiers need.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            point: self.key.public_key().as_ref().to_vec(),
        }
    }

    /// Signs `claims` into a compact token.
    ///
    /// Refuses a `block` verdict ([`TokenError::Blocked`]), empty `iss`, `sub`, `tenant` or
    /// `jti`, `exp <= nbf` or `nbf < iat` ([`TokenError::InvalidClaims`]), and a token that
    /// would exceed [`MAX_TOKEN_LEN`] ([`TokenError::TooLarge`]).
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        if claims.verdict == Verdict::Block {
            return Err(TokenError::Blocked);
        }
        if claims.iss.is_empty()
            || claims.sub.is_empty()
            || claims.tenant.is_empty()
            || claims.jti.is_empty()
        {
            return Err(TokenError::InvalidClaims(
                "iss, sub, tenant and jti must not be empty",
            ));
        }
        if claims.exp <= claims.nbf {
            return Err(TokenError::InvalidClaims("exp must be after nbf"));
        }
        if claims.nbf < claims.iat {
            return Err(TokenError::InvalidClaims("nbf must not be before iat"));
        }
        let header = Header {
            alg: ALGORITHM,
            typ: TOKEN_TYPE,
            kid: &self.kid,
        };
        let header = serde_json::to_vec(&header)
            .map_err(|_| TokenError::InvalidClaims("header does not serialize"))?;
        let payload = serde_json::to_vec(claims)
            .map_err(|_| TokenError::InvalidClaims("claims do not serialize"))?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self
            .key
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| TokenError::Signing)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        Ok(token)
    }
}

/// What the verifier expects of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The tenant the payment is for.
    pub tenant: &'a str,
    /// The device making the payment.
    pub device: &'a str,
    /// The verifier's time, Unix seconds.
    pub now_unix: u64,
    /// Allowed clock skew for `nbf` and `exp`, seconds.
    pub leeway_seconds: u64,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The key id that verified it.
    pub kid: String,
    /// Its claims.
    pub claims: Claims,
}

/// The verification keys as the attestation service publishes them
/// (`GET /v1/attestation/token-keys`), for the verifiers to load: `{"keys": [{"kid", "alg":
/// "ES256", "sec1": base64url of the uncompressed P-256 point}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKeys {
    /// The keys, one per `kid` (two during a rotation).
    pub keys: Vec<PublishedKey>,
}

/// One published key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    /// The key id tokens name.
    pub kid: String,
    /// Always [`ALGORITHM`].
    pub alg: String,
    /// The uncompressed SEC1 point, base64url without padding.
    pub sec1: String,
}

impl PublishedKeys {
    /// The document for these keys.
    pub fn of<'a>(keys: impl IntoIterator<Item = (&'a str, &'a PublicKey)>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|(kid, key)| PublishedKey {
                    kid: kid.to_owned(),
                    alg: ALGORITHM.to_owned(),
                    sec1: URL_SAFE_NO_PAD.encode(key.sec1_uncompressed()),
                })
                .collect(),
        }
    }

    /// A verifier holding every key of the document; a key of another algorithm or not a
    /// P-256 point refuses the whole document.
    pub fn verifier(&self) -> Result<TokenVerifier, TokenError> {
        let mut verifier = TokenVerifier::new();
        for key in &self.keys {
            if key.alg != ALGORITHM {
                return Err(TokenError::UnsupportedAlgorithm {
                    alg: key.alg.chars().take(MAX_ECHO_CHARS).collect(),
                });
            }
            let point = URL_SAFE_NO_PAD
                .decode(&key.sec1)
                .map_err(|_| TokenError::InvalidKey("sec1 is not base64url"))?;
            verifier.add_key(key.kid.clone(), PublicKey::from_sec1(&point)?);
        }
        Ok(verifier)
    }
}

/// Verifies tokens against the public keys it holds by `kid`.
#[derive(Debug, Clone, Default)]
pub struct TokenVerifier {
    keys: BTreeMap<String, PublicKey>,
}

impl TokenVerifier {
    /// A verifier with no keys (it refuses every token until keys are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key for `kid`.
    pub fn add_key(&mut self, kid: impl Into<String>, key: PublicKey) {
        self.keys.insert(kid.into(), key);
    }

    /// Adds (or replaces) the key for `kid`, builder style.
    #[must_use]
    pub fn with_key(mut self, kid: impl Into<String>, key: PublicKey) -> Self {
        self.add_key(kid, key);
        self
    }

    /// Removes the key for `kid` (end of a rotation); returns it if it was there.
    pub fn remove_key(&mut self, kid: &str) -> Option<PublicKey> {
        self.keys.remove(kid)
    }

    /// The key ids held, in order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Verifies `token` against `expected`; see the crate documentation for the checks and
    /// their order.
    pub fn verify(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<VerifiedToken, TokenError> {
        let parts = split(token)?;
        let header = decode_header(parts.header)?;
        check_algorithm(&header)?;
        match header.get("typ") {
            Some(serde_json::Value::String(typ)) if typ == TOKEN_TYPE => {}
            _ => return Err(TokenError::WrongType),
        }
        if header
            .keys()
            .any(|name| !matches!(name.as_str(), "alg" | "typ" | "kid"))
        {
            return Err(TokenError::Malformed("unexpected header member"));
        }
        let kid = match header.get("kid") {
            Some(serde_json::Value::String(kid)) => kid,
            _ => return Err(TokenError::Malformed("kid missing or not a string")),
        };
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| TokenError::UnknownKey { kid: echo(kid) })?;
        verify_signature(key, &parts)?;
        let payload = decode_part(parts.payload)?;
        let claims: Claims =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed("claims"))?;
        check_claims(&claims, expected)?;
        Ok(VerifiedToken {
            kid: kid.clone(),
            claims,
        })
    }
}

/// The checks of a token's claims against what the verifier expects, in order: `nbf`, `exp`
/// (both with the leeway), tenant, device, verdict.
fn check_claims(claims: &Claims, expected: &Expected<'_>) -> Result<(), TokenError> {
    if claims.nbf > expected.now_unix.saturating_add(expected.leeway_seconds) {
        return Err(TokenError::NotYetValid {
            nbf: claims.nbf,
            now: expected.now_unix,
        });
    }
    if expected.now_unix >= claims.exp.saturating_add(expected.leeway_seconds) {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now: expected.now_unix,
        });
    }
    if claims.tenant != expected.tenant {
        return Err(TokenError::WrongTenant);
    }
    if claims.sub != expected.device {
        return Err(TokenError::WrongDevice);
    }
    match claims.verdict {
        Verdict::Allow | Verdict::Flag => Ok(()),
        Verdict::Block => Err(TokenError::Blocked),
    }
}

/// A [`TokenVerifier`] that remembers the tokens it verified, so that a device presenting the
/// same token with every payment of its validity window pays the ECDSA verification once.
///
/// A token is remembered under the SHA-256 of its whole text, only after it passed every
/// check. A remembered token is answered without its signature being verified again, but its
/// claims are checked again against each call's [`Expected`] (validity at that time, tenant,
/// device, verdict), so it is refused from its `exp` on and for any other tenant or device. Any
/// other text — a single changed character — is another token and is verified in full. The
/// keys are fixed for the life of a `CachingVerifier`: to rotate, build a new one from the new
/// [`TokenVerifier`] (it starts empty, so a removed key's tokens are no longer accepted). At
/// most `capacity` tokens are remembered; when full, the expired ones are forgotten, and if
/// none is, all are.
#[derive(Debug)]
pub struct CachingVerifier {
    verifier: TokenVerifier,
    remembered: std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifiedToken>>,
    capacity: usize,
}

impl CachingVerifier {
    /// Remembers at most `capacity` tokens verified by `verifier`.
    pub fn new(verifier: TokenVerifier, capacity: usize) -> Self {
        Self {
            verifier,
            remembered: std::sync::Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    /// How many tokens are remembered.
    pub fn remembered(&self) -> usize {
        self.lock().len()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], VerifiedToken>> {
        self.remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`TokenVerifier::verify`], answered from memory for a token verified before.
    pub fn verify(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return self.verifier.verify(token, expected);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0_u8; 32];
        key.copy_from_slice(digest.as_ref());
        let hit = self.lock().get(&key).cloned();
        if let Some(verified) = hit {
            check_claims(&verified.claims, expected)?;
            return Ok(verified);
        }
        let verified = self.verifier.verify(token, expected)?;
        let mut remembered = self.lock();
        if remembered.len() >= self.capacity {
            let now = expected.now_unix;
            remembered.retain(|_, kept| kept.claims.exp > now);
            if remembered.len() >= self.capacity {
                remembered.clear();
            }
        }
        remembered.insert(key, verified.clone());
        Ok(verified)
    }
}

/// Verifies a compact JWS whose header's `alg` is `ES256` with `key`, and returns the decoded
/// payload. Only the structure, the size limit, the algorithm and the signature are checked —
/// no `typ`, `kid` or claims; it is the primitive under [`TokenVerifier::verify`], public so
/// that other ES256 JWS (such as RFC 7515's Appendix A.3 example) can be checked with it.
pub fn verify_es256_jws(token: &str, key: &PublicKey) -> Result<Vec<u8>, TokenError> {
    let parts = split(token)?;
    let header = decode_header(parts.header)?;
    check_algorithm(&header)?;
    verify_signature(key, &parts)?;
    decode_part(parts.payload)
}

struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signing_input: &'a str,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or(TokenError::Malformed("not three parts"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(TokenError::Malformed("not three parts"))?;
    if payload.contains('.') {
        return Err(TokenError::Malformed("not three parts"));
    }
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(TokenError::Malformed("empty part"));
    }
    Ok(Parts {
        header,
        payload,
        signing_input,
        signature,
    })
}

fn decode_part(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed("not base64url without padding"))
}

fn decode_header(part: &str) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    let bytes = decode_part(part)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("header is not a JSON object"))
}

fn check_algorithm(header: &serde_json::Map<String, serde_json::Value>) -> Result<(), TokenError> {
    match header.get("alg") {
        Some(serde_json::Value::String(alg)) if alg == ALGORITHM => Ok(()),
        Some(serde_json::Value::String(alg)) => {
            Err(TokenError::UnsupportedAlgorithm { alg: echo(alg) })
        }
        _ => Err(TokenError::UnsupportedAlgorithm { alg: String::new() }),
    }
}

fn verify_signature(key: &PublicKey, parts: &Parts<'_>) -> Result<(), TokenError> {
    let signature = decode_part(parts.signature)?;
    if signature.len() != SIGNATURE_LEN {
        return Err(TokenError::BadSignature);
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.point)
        .verify(parts.signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)
}

fn echo(value: &str) -> String {
    value.chars().take(MAX_ECHO_CHARS).collect()
}
