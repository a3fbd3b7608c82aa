//! Key delivery to an EC (P-256) device: one-pass ECDH to a one-time key block protection
//! key, and a TR-31 / ANSI X9.143 version D (AES) key block under it.
//!
//! The sender ([`wrap_for_device`], the HSM side) generates a fresh ephemeral P-256 key pair,
//! computes the ECDH shared secret `Z` with the device's static public key, derives a one-time
//! AES-256 key block protection key (KBPK) from `Z`, and wraps the key as a version D block.
//! The device ([`unwrap_on_device`]) recomputes `Z` from its private key and the ephemeral
//! public key, derives the same KBPK, and unwraps (the block's CMAC is verified first).
//! This is the C(1e, 1s) one-pass Diffie-Hellman scheme of NIST SP 800-56A rev3 section
//! 6.2.2.2 (ephemeral unified is not needed: only the device has a static key).
//!
//! # Key derivation
//!
//! `KBPK = KDM(Z, 256, FixedInfo)`, the one-step key-derivation function of NIST SP 800-56C
//! rev2 section 4.1, option 1: `H = SHA-256`, i.e. `SHA-256(counter || Z || FixedInfo)` with
//! a 32-bit big-endian counter starting at 1 (one block for 256 bits). This is the
//! "concatenation KDF" of SP 800-56A (rev1/rev2 section 5.8.1), also used by JOSE ECDH-ES
//! (RFC 7518 section 4.6.2); the [`concat-kdf`](https://docs.rs/concat-kdf) crate computes it.
//! It was chosen over the ANSI X9.63 KDF (same hash, counter after `Z`) because SP 800-56C is
//! what X9.143 and current NIST guidance point to for key-agreement outputs, and over HKDF
//! (the two-step KDF) because one hash invocation suffices for a full-entropy 256-bit `Z`.
//!
//! `FixedInfo` is the concatenation, each field preceded by its length in bytes as a 32-bit
//! big-endian integer (the "Datalen || Data" fields of SP 800-56A rev3 section 5.8.2.1.1):
//!
//! | Field        | Content                                                            |
//! |--------------|--------------------------------------------------------------------|
//! | AlgorithmID  | the 18 ASCII bytes `TR31-D-KBPK-AES256` ([`ALGORITHM_ID`])         |
//! | PartyUInfo   | the ephemeral public key, SEC1 uncompressed point (65 bytes)       |
//! | PartyVInfo   | the device's public key, SEC1 uncompressed point (65 bytes)        |
//!
//! so `FixedInfo` is `00000012 "TR31-D-KBPK-AES256" 00000041 04‖Xe‖Ye 00000041 04‖Xd‖Yd`
//! (160 bytes). The ephemeral key makes every KBPK one-time; binding both public keys
//! prevents a block made for one device key from being opened as if made for another.
//!
//! `Z`, the KBPK and the ephemeral private key are zeroized after use.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePublicKey;
use p256::{NonZeroScalar, PublicKey, SecretKey};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::tr31::{self, KeyBlockHeader, KeyLengthMasking, Version};
use crate::{CryptoError, SecretBytes};

/// The KDF's AlgorithmID: names the derived key's use (a TR-31 version D KBPK, AES-256).
pub const ALGORITHM_ID: &[u8] = b"TR31-D-KBPK-AES256";

/// Length of a SEC1 uncompressed P-256 point (`04 ‖ X ‖ Y`).
pub const UNCOMPRESSED_POINT_LEN: usize = 65;

/// Length of the derived KBPK (AES-256).
pub const KBPK_LEN: usize = 32;

const WHAT_PUBLIC: &str = "P-256 public key";
const WHAT_PRIVATE: &str = "P-256 private key";

/// What the device receives: the ephemeral public key and the key block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcdhDelivery {
    /// The sender's ephemeral public key, SEC1 uncompressed point (65 bytes).
    pub ephemeral_public_key: Vec<u8>,
    /// The TR-31 version D key block, under the KBPK derived from the ECDH shared secret.
    pub key_block: String,
}

/// Wraps `key` for the device whose P-256 public key is `device_public_key` (DER
/// SubjectPublicKeyInfo, or a SEC1 point, compressed or not): a fresh ephemeral key pair, ECDH,
/// the KBPK derivation of the module documentation, then a TR-31 block with `header`, which
/// must be version D (anything else is [`CryptoError::Unsupported`]). The block's padding (key
/// length masked to the algorithm's maximum) comes from `rng`.
///
/// The ephemeral key pair and the shared secret are made by `ring` (`ECDH_P256`, its key from
/// the operating system's generator): about five times faster than the pure-Rust arithmetic
/// this module uses elsewhere, and the ephemeral private key never leaves `ring`, which also
/// checks the device's point again. Because an ephemeral key cannot be chosen, the published
/// ECDH known answers are checked on [`shared_secret`] and the device side
/// ([`unwrap_on_device`]), and every wrap is proven by the device side opening it.
pub fn wrap_for_device<R: RngCore + CryptoRng>(
    rng: &mut R,
    device_public_key: &[u8],
    header: &KeyBlockHeader,
    key: &SecretBytes,
) -> Result<EcdhDelivery, CryptoError> {
    use ring::agreement;
    if header.version != Version::D {
        return Err(CryptoError::Unsupported(format!(
            "ECDH key delivery makes TR-31 version D blocks, not version {}",
            header.version.code()
        )));
    }
    let device_point = uncompressed(&parse_public_key(device_public_key)?);
    let unavailable = || CryptoError::Exhausted("the ephemeral P-256 key could not be made");
    let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, ring_random())
        .map_err(|_| unavailable())?;
    let ephemeral_point = ephemeral
        .compute_public_key()
        .map_err(|_| unavailable())?
        .as_ref()
        .to_vec();
    let device = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &device_point);
    let kbpk = agreement::agree_ephemeral(ephemeral, &device, |z| {
        derive_kbpk(&SecretBytes::from_slice(z), &ephemeral_point, &device_point)
    })
    .map_err(|_| CryptoError::format(WHAT_PUBLIC, "not a point on the P-256 curve"))??;
    let key_block = tr31::wrap(
        kbpk.expose(),
        header,
        key.expose(),
        KeyLengthMasking::AlgorithmMax,
        rng,
    )?;
    Ok(EcdhDelivery {
        ephemeral_public_key: ephemeral_point,
        key_block,
    })
}

/// `ring`'s generator (the operating system's), made once.
fn ring_random() -> &'static ring::rand::SystemRandom {
    static RANDOM: std::sync::OnceLock<ring::rand::SystemRandom> = std::sync::OnceLock::new();
    RANDOM.get_or_init(ring::rand::SystemRandom::new)
}

/// The device side: recomputes the KBPK from the device's private key
/// (`device_private_key_pkcs8_der`, a PKCS #8 DER P-256 key) and the sender's
/// `ephemeral_public_key` (a SEC1 point, or DER SubjectPublicKeyInfo), then unwraps the
/// version D `key_block` (MAC verified before the key is returned). A block made for another
/// device key, or altered, is [`CryptoError::VerificationFailed`]; malformed input is a typed
/// error, never a panic.
pub fn unwrap_on_device(
    device_private_key_pkcs8_der: &[u8],
    ephemeral_public_key: &[u8],
    key_block: &str,
) -> Result<(KeyBlockHeader, SecretBytes), CryptoError> {
    // Cheap checks first: the block's version, then the ephemeral key.
    if !key_block.starts_with('D') {
        return Err(CryptoError::format(
            "TR-31 key block",
            "ECDH key delivery uses version D blocks only",
        ));
    }
    let ephemeral = parse_public_key(ephemeral_public_key)?;
    let (device, device_public) = device_key_pair(device_private_key_pkcs8_der)?;
    let scalar = Zeroizing::new(device.to_nonzero_scalar());
    let z = agree(&scalar, &ephemeral);
    let kbpk = derive_kbpk(&z, &uncompressed(&ephemeral), &uncompressed(&device_public))?;
    tr31::unwrap(kbpk.expose(), key_block)
}

/// The device's key pair from its PKCS #8 DER private key. The public key is the one the
/// key carries (RFC 5915 `publicKey`, checked to be on the curve) or, if it carries none,
/// computed: a device makes no scalar multiplication it can avoid. A carried public key that
/// is not the private key's gives a KBPK the sender did not derive: the block's MAC then
/// fails ([`CryptoError::VerificationFailed`]).
fn device_key_pair(pkcs8_der: &[u8]) -> Result<(SecretKey, PublicKey), CryptoError> {
    let refused = || CryptoError::format(WHAT_PRIVATE, "not a PKCS #8 P-256 private key");
    let info = p256::pkcs8::PrivateKeyInfo::try_from(pkcs8_der).map_err(|_| refused())?;
    let curve = info.algorithm.parameters_oid().map_err(|_| refused())?;
    if info.algorithm.oid != p256::elliptic_curve::ALGORITHM_OID
        || curve != <p256::NistP256 as p256::elliptic_curve::pkcs8::AssociatedOid>::OID
    {
        return Err(refused());
    }
    let key = sec1::EcPrivateKey::try_from(info.private_key).map_err(|_| refused())?;
    let secret = SecretKey::from_slice(key.private_key).map_err(|_| refused())?;
    let public = match key.public_key {
        Some(point) => parse_public_key(point)?,
        None => secret.public_key(),
    };
    Ok((secret, public))
}

/// The P-256 ECDH primitive (SP 800-56A rev3 section 5.7.1.2, cofactor 1): the x-coordinate
/// of `d · Q`, 32 bytes. `private_key` is the 32-byte big-endian scalar `d` (in `[1, n-1]`);
/// `public_key` is `Q` as a SEC1 point or DER SubjectPublicKeyInfo, checked to be on the curve.
pub fn shared_secret(private_key: &[u8], public_key: &[u8]) -> Result<SecretBytes, CryptoError> {
    if private_key.len() != 32 {
        return Err(CryptoError::InvalidLength {
            what: WHAT_PRIVATE,
            expected: "32 bytes",
            actual: private_key.len(),
        });
    }
    let secret = SecretKey::from_slice(private_key).map_err(|_| CryptoError::OutOfRange {
        what: WHAT_PRIVATE,
        reason: "not in [1, n-1]".to_owned(),
    })?;
    let public = parse_public_key(public_key)?;
    let scalar = Zeroizing::new(secret.to_nonzero_scalar());
    Ok(agree(&scalar, &public))
}

/// The one-step KDF of SP 800-56C rev2 section 4.1 with `H = SHA-256` (concatenation KDF):
/// `length` bytes from the shared secret `z` and `fixed_info`.
pub fn one_step_kdf_sha256(
    z: &[u8],
    fixed_info: &[u8],
    length: usize,
) -> Result<SecretBytes, CryptoError> {
    let mut out = Zeroizing::new(vec![0_u8; length]);
    concat_kdf::derive_key_into::<Sha256>(z, fixed_info, &mut out).map_err(|error| {
        CryptoError::OutOfRange {
            what: "one-step KDF",
            reason: error.to_string(),
        }
    })?;
    Ok(SecretBytes::from_slice(&out))
}

/// The `FixedInfo` of the KBPK derivation (see the module documentation), from the two SEC1
/// uncompressed points.
pub fn fixed_info(ephemeral_public_key: &[u8], device_public_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        12 + ALGORITHM_ID.len() + ephemeral_public_key.len() + device_public_key.len(),
    );
    for field in [ALGORITHM_ID, ephemeral_public_key, device_public_key] {
        // The fields are a constant and two 65-byte points: their lengths fit in 32 bits.
        let length = u32::try_from(field.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// The SEC1 uncompressed point (65 bytes) of a P-256 public key given as DER
/// SubjectPublicKeyInfo or as a SEC1 point (compressed or not). Anything not a P-256 key (an
/// RSA key, another curve, a point off the curve) is a typed error.
pub fn p256_public_key(encoded: &[u8]) -> Result<Vec<u8>, CryptoError> {
    Ok(uncompressed(&parse_public_key(encoded)?))
}

/// The SEC1 uncompressed point (65 bytes) of the P-256 public key in a DER X.509
/// certificate. Only the certificate's structure is read: its signature, validity and chain
/// are the caller's to verify. A certificate of any other key type is a typed error.
pub fn p256_public_key_from_certificate(certificate_der: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use der::{Decode, Encode};
    let parsed = x509_cert::Certificate::from_der(certificate_der)
        .map_err(|_| CryptoError::format("X.509 certificate", "not a DER certificate"))?;
    let spki = parsed
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| CryptoError::format("X.509 certificate", "unreadable public key"))?;
    p256_public_key(&spki)
}

/// Parses a P-256 public key: DER SubjectPublicKeyInfo (starts with a SEQUENCE tag) or a SEC1
/// point. The point is checked to be on the curve and not the identity.
fn parse_public_key(encoded: &[u8]) -> Result<PublicKey, CryptoError> {
    match encoded.first() {
        Some(0x30) => PublicKey::from_public_key_der(encoded).map_err(|_| {
            CryptoError::format(
                WHAT_PUBLIC,
                "not a SubjectPublicKeyInfo of an EC key on the P-256 curve",
            )
        }),
        Some(0x02..=0x04) => PublicKey::from_sec1_bytes(encoded)
            .map_err(|_| CryptoError::format(WHAT_PUBLIC, "not a point on the P-256 curve")),
        Some(_) => Err(CryptoError::format(
            WHAT_PUBLIC,
            "neither a SEC1 point nor a DER SubjectPublicKeyInfo",
        )),
        None => Err(CryptoError::InvalidLength {
            what: WHAT_PUBLIC,
            expected: "a SEC1 point or a DER SubjectPublicKeyInfo",
            actual: 0,
        }),
    }
}

fn agree(private: &NonZeroScalar, public: &PublicKey) -> SecretBytes {
    // `SharedSecret` zeroizes itself on drop.
    let shared = p256::ecdh::diffie_hellman(private, public.as_affine());
    SecretBytes::from_slice(shared.raw_secret_bytes())
}

fn uncompressed(public: &PublicKey) -> Vec<u8> {
    public.to_encoded_point(false).as_bytes().to_vec()
}

fn derive_kbpk(
    z: &SecretBytes,
    ephemeral_point: &[u8],
    device_point: &[u8],
) -> Result<SecretBytes, CryptoError> {
    one_step_kdf_sha256(
        z.expose(),
        &fixed_info(ephemeral_point, device_point),
        KBPK_LEN,
    )
}
