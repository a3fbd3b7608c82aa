//! TR-34 (ASC X9 TR 34-2019): distribution of symmetric keys with RSA, between a Key
//! Distribution Host (KDH) and a Key Receiving Device (KRD).
//!
//! Every TR-34 token is CMS (RFC 5652) in DER:
//!
//! | Token | Outer structure | Signed by | Content |
//! |-------|-----------------|-----------|---------|
//! | Random number token (RT_KRD) | `Attribute` randomNonce | — | the KRD's nonce |
//! | Credential tokens (CT_KRD, CT_KDH) | SignedData without signers | — | certificates |
//! | Key token (KT_KDH) | SignedData | KDH | EnvelopedData of the TR-34 key block |
//! | Rebind token (RBT_KDH) | SignedData | current KDH | SignedData with the new KDH certificates and the KRD's IssuerAndSerialNumber |
//! | Unbind token (UBT_KDH) | SignedData | current KDH | the KRD's IssuerAndSerialNumber |
//! | CA rebind token (RBT_CA_UNBIND) | SignedData | a CA | SignedData with the new KDH certificates and the KRD's and current KDH's IssuerAndSerialNumber |
//! | CA unbind token (UBT_CA_UNBIND) | SignedData | a CA | the KRD's and the KDH's IssuerAndSerialNumber |
//!
//! The key token's signed attributes are content type (`id-envelopedData`), the freshness
//! value — the KRD's random nonce (`pkcs-9-at-randomNonce`, two-pass) or the signing time
//! (one-pass) — the key block header (`id-data`, the 16-character TR-31 style header) and
//! the message digest. The EnvelopedData carries one `KeyTransRecipientInfo` for the KRD's
//! certificate: RSAES-OAEP with SHA-256 and MGF1-SHA-256 (TR-34-2019) or RSAES-PKCS1-v1_5
//! (TR-34-2012, accepted and producible for legacy devices), and an ephemeral AES-128 (or
//! AES-256, TDES-168) CBC content-encryption key. The key block is
//!
//! ```text
//! KeyBlock ::= SEQUENCE {
//!     version        INTEGER (1),
//!     idKDH          IssuerAndSerialNumber,   -- the signing KDH
//!     clearKey       OCTET STRING,
//!     keyBlockHeader Attribute                -- id-data, SET { OCTET STRING header }
//! }
//! ```
//!
//! Signatures are RSASSA-PKCS1-v1_5 or RSASSA-PSS with SHA-256. Every verifier checks the
//! signer's certificate chain up to the CA certificate and the signature (over the signed
//! attributes, whose message digest must match the content) **before** it decrypts or
//! interprets the content, then checks the freshness value. RSA keys shorter than 2048 bits
//! are refused. Every malformed input is a typed [`CryptoError`], never a panic.
//!
//! Tolerated deviations of the published TR-34-2019 Annex B samples, none of which touches
//! what is verified: certificates repeating an extension with identical bytes, RSAES-OAEP
//! parameters without their context tags, an inner rebind SignedData without its SEQUENCE
//! header, and signed attributes not in DER SET order (signatures always cover the bytes as
//! received, for certificates too).

use std::fmt;
use std::time::Duration;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo,
    RecipientInfos,
};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec, UtcTime};
use der::{Any, Decode, Encode, Tag, Tagged};
use rand::{CryptoRng, RngCore};
use rsa::pkcs1::{RsaOaepParams, RsaPssParams};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::AlgorithmIdentifierOwned;
use subtle::ConstantTimeEq;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::time::Time;
use zeroize::Zeroizing;

use crate::primitives::{
    AES_BLOCK, DES_BLOCK, aes_decrypt_cbc, aes_encrypt_cbc, tdes_decrypt_cbc, tdes_encrypt_cbc,
};
use crate::{CryptoError, SecretBytes};

/// The smallest RSA modulus TR-34 accepts, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Length of the key block header carried in key tokens (a TR-31 style header).
pub const KEY_BLOCK_HEADER_LEN: usize = 16;
/// Shortest random nonce accepted (TR-34 uses 8 or 16 bytes).
pub const MIN_NONCE_LEN: usize = 8;
/// Longest random nonce accepted.
pub const MAX_NONCE_LEN: usize = 32;
/// Version of the TR-34 key block structure.
pub const KEY_BLOCK_VERSION: u8 = 1;

const WHAT: &str = "TR-34 token";
const WHAT_CERT: &str = "TR-34 certificate";
const WHAT_KEY: &str = "TR-34 RSA key";
const WHAT_BLOCK: &str = "TR-34 key block";

// ---------------------------------------------------------------------------------------------
// Object identifiers
// ---------------------------------------------------------------------------------------------

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
const ID_RANDOM_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.25.3");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
const ID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const ID_P_SPECIFIED: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.9");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const AES128_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
const AES192_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22");
const AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
const DES_EDE3_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.3.7");

// ---------------------------------------------------------------------------------------------
// Algorithm choices
// ---------------------------------------------------------------------------------------------

/// How the ephemeral content-encryption key is encrypted to the KRD's RSA key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyTransport {
    /// RSAES-OAEP, SHA-256, MGF1 with SHA-256, empty label (TR-34-2019).
    RsaOaepSha256,
    /// RSAES-PKCS1-v1_5 (TR-34-2012; legacy devices only).
    RsaPkcs1v15,
}

/// The ephemeral content-encryption algorithm of the key token's EnvelopedData (CBC with a
/// random IV and PKCS #7 padding, as CMS specifies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentEncryption {
    /// AES-128-CBC (the TR-34-2019 default).
    Aes128Cbc,
    /// AES-256-CBC.
    Aes256Cbc,
    /// Three-key TDES-CBC (`des-ede3-cbc`).
    TdesCbc,
}

/// How a KDH signs its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Pkcs1v15Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    PssSha256,
}

/// The certificate role checked by [`verify_certificate_chain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertificateRole {
    /// A KDH certificate: key usage, when present, must allow digitalSignature.
    Kdh,
    /// A KRD certificate: key usage, when present, must allow keyEncipherment.
    Krd,
}

/// The freshness value a KDH puts in a key token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Two-pass: the random nonce the KRD sent in its random number token.
    RandomNonce(Vec<u8>),
    /// One-pass: the signing time, in seconds since the Unix epoch (UTCTime, so before 2050).
    SigningTime(u64),
}

/// What a KRD accepts as freshness when it opens a key token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedFreshness<'a> {
    /// The nonce this KRD sent (compared in constant time).
    RandomNonce(&'a [u8]),
    /// A signing time at most `max_skew_secs` away from `now_unix`.
    SigningTime {
        /// The KRD's clock, seconds since the Unix epoch.
        now_unix: u64,
        /// The largest accepted distance between the signing time and `now_unix`.
        max_skew_secs: u64,
    },
}

// ---------------------------------------------------------------------------------------------
// Credentials and identities
// ---------------------------------------------------------------------------------------------

/// A certificate (DER) with its RSA private key: the KDH's signing credential or the KRD's
/// decryption credential. `Debug` shows the subject only; the key is zeroized on drop.
#[derive(Clone)]
pub struct Credential {
    certificate_der: Vec<u8>,
    certificate: Certificate,
    private_key: RsaPrivateKey,
}

impl Credential {
    /// Parses a DER certificate and its private key (PKCS #8 or PKCS #1 DER) and checks that
    /// they belong together and that the modulus has at least [`MIN_RSA_BITS`].
    pub fn from_der(
        certificate_der: &[u8],
        private_key_der: &SecretBytes,
    ) -> Result<Self, CryptoError> {
        let certificate = parse_certificate(certificate_der)?;
        let private_key = RsaPrivateKey::from_pkcs8_der(private_key_der.expose())
            .or_else(|_| {
                <RsaPrivateKey as rsa::pkcs1::DecodeRsaPrivateKey>::from_pkcs1_der(
                    private_key_der.expose(),
                )
            })
            .map_err(|_| {
                CryptoError::format(WHAT_KEY, "not a PKCS #8 or PKCS #1 RSA private key")
            })?;
        check_rsa_size(&private_key.to_public_key())?;
        let public = certificate_public_key(&certificate)?;
        if public != private_key.to_public_key() {
            return Err(CryptoError::format(
                WHAT_KEY,
                "the private key does not match the certificate",
            ));
        }
        Ok(Self {
            certificate_der: certificate_der.to_vec(),
            certificate,
            private_key,
        })
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The certificate's issuer and serial number.
    pub fn identifier(&self) -> CertificateId {
        CertificateId::of(&self.certificate)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field(
                "subject",
                &self.certificate.tbs_certificate.subject.to_string(),
            )
            .field("private_key", &"***")
            .finish()
    }
}

/// A certificate's issuer and serial number (CMS `IssuerAndSerialNumber`): how TR-34 names
/// the KDH and the KRD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateId {
    /// The issuer's distinguished name, RFC 4514 text.
    pub issuer: String,
    /// The serial number, big-endian bytes as encoded.
    pub serial: Vec<u8>,
    /// The `IssuerAndSerialNumber` DER.
    pub der: Vec<u8>,
}

impl CertificateId {
    fn of(certificate: &Certificate) -> Self {
        Self::from_asn1(&issuer_and_serial(certificate))
    }

    fn from_asn1(value: &IssuerAndSerialNumber) -> Self {
        Self {
            issuer: value.issuer.to_string(),
            serial: value.serial_number.as_bytes().to_vec(),
            der: value.to_der().unwrap_or_default(),
        }
    }

    /// The issuer and serial number of a DER certificate.
    pub fn of_certificate(certificate_der: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self::of(&parse_certificate(certificate_der)?))
    }
}

/// What a KRD trusts when it verifies a KDH token: the CA certificate, the KDH's certificate
/// chain (leaf first, then any intermediates, not the CA) and its own clock.
#[derive(Clone, Copy, Debug)]
pub struct KdhTrust<'a> {
    /// The CA (root) certificate, DER.
    pub ca_certificate: &'a [u8],
    /// The KDH certificate first, then its intermediates, DER.
    pub kdh_chain: &'a [&'a [u8]],
    /// The KRD's clock, seconds since the Unix epoch (certificate validity).
    pub now_unix: u64,
}

// ---------------------------------------------------------------------------------------------
// Key tokens
// ---------------------------------------------------------------------------------------------

/// What the KDH puts in a key token.
#[derive(Clone, Debug)]
pub struct KeyTokenRequest<'a> {
    /// The key to transport.
    pub key: &'a SecretBytes,
    /// The 16-character key block header (TR-31 style, e.g. `"D0000K1AD00N0000"`).
    pub header: &'a str,
    /// Nonce (two-pass) or signing time (one-pass).
    pub freshness: Freshness,
    /// RSA key transport of the content-encryption key.
    pub key_transport: KeyTransport,
    /// The ephemeral content cipher.
    pub content_encryption: ContentEncryption,
    /// The KDH's signature.
    pub signature: SignatureScheme,
}

/// A key a KRD took from a verified key token.
#[derive(Clone, Debug)]
pub struct ReceivedKey {
    /// The key block header (from the encrypted key block; the signed header attribute is
    /// checked to be identical).
    pub header: String,
    /// The key.
    pub key: SecretBytes,
    /// The KDH named in the key block.
    pub kdh: CertificateId,
    /// The freshness value that was checked.
    pub freshness: Freshness,
    /// The key transport the KDH used.
    pub key_transport: KeyTransport,
    /// The content cipher the KDH used.
    pub content_encryption: ContentEncryption,
}

/// KDH side: builds a key token (KT_KDH) carrying `request.key` for the KRD whose
/// certificate is `krd_certificate` (DER), signed with `kdh`.
///
/// The KDH must have verified the KRD's certificate chain (see [`verify_certificate_chain`]
/// and [`open_credential_token`]); this function checks only that the KRD key is RSA of at
/// least [`MIN_RSA_BITS`].
pub fn build_key_token<R: RngCore + CryptoRng>(
    rng: &mut R,
    kdh: &Credential,
    krd_certificate: &[u8],
    request: &KeyTokenRequest<'_>,
) -> Result<Vec<u8>, CryptoError> {
    check_header(request.header)?;
    if request.key.is_empty() || request.key.len() > 64 {
        return Err(CryptoError::InvalidLength {
            what: "TR-34 key",
            expected: "1 to 64 bytes",
            actual: request.key.len(),
        });
    }
    let krd = parse_certificate(krd_certificate)?;
    let krd_key = certificate_public_key(&krd)?;
    let freshness = freshness_attribute(&request.freshness)?;

    // The key block, in zeroized buffers.
    let kdh_id = issuer_and_serial(&kdh.certificate);
    let kdh_id_der = encode(&kdh_id)?;
    let header_attr = encode(&header_attribute(request.header)?)?;
    let key_block = encode_key_block(&kdh_id_der, request.key.expose(), &header_attr);

    // EnvelopedData.
    let (content_enc_alg, ciphertext, cek) =
        encrypt_content(rng, request.content_encryption, &key_block)?;
    let (key_enc_alg, encrypted_cek) =
        encrypt_cek(rng, &krd_key, request.key_transport, cek.as_slice())?;
    drop(cek);
    let recipient = RecipientInfo::Ktri(KeyTransRecipientInfo {
        version: CmsVersion::V0,
        rid: RecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(&krd)),
        key_enc_alg,
        enc_key: octets(encrypted_cek)?,
    });
    let enveloped = EnvelopedData {
        version: CmsVersion::V0,
        originator_info: None,
        recip_infos: RecipientInfos(set_of(vec![recipient])?),
        encrypted_content: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg,
            encrypted_content: Some(octets(ciphertext)?),
        },
        unprotected_attrs: None,
    };
    let enveloped_der = encode(&enveloped)?;

    let extra = vec![
        freshness,
        Attribute {
            oid: ID_DATA,
            values: set_of(vec![any_octets(request.header.as_bytes())?])?,
        },
    ];
    sign_content(
        rng,
        kdh,
        request.signature,
        ID_ENVELOPED_DATA,
        &enveloped_der,
        extra,
        std::slice::from_ref(&kdh.certificate),
    )
}

/// KRD side: verifies a key token and returns the key it carries.
///
/// Order: the KDH certificate chain is checked against the CA at `trust.now_unix`; the token's
/// signer must be that KDH; the signature over the signed attributes and the message digest
/// of the content are verified; the freshness value (nonce or signing time) is checked; only
/// then is the content-encryption key decrypted with `krd` and the key block opened. The key
/// block must name the same KDH and carry the same header as the signed attribute.
///
/// Errors: [`CryptoError::InvalidFormat`] for malformed DER or structure,
/// [`CryptoError::Unsupported`] for algorithms outside TR-34,
/// [`CryptoError::VerificationFailed`] for a bad chain, signature, digest, nonce, time,
/// recipient or decryption.
pub fn open_key_token(
    token: &[u8],
    trust: &KdhTrust<'_>,
    krd: &Credential,
    expected: ExpectedFreshness<'_>,
) -> Result<ReceivedKey, CryptoError> {
    let verified = verify_signed_token(token, trust, ID_ENVELOPED_DATA)?;
    let freshness = check_freshness(&verified.attributes, expected)?;
    let signed_header = find_attribute(&verified.attributes, ID_DATA)?
        .ok_or_else(|| CryptoError::format(WHAT, "missing key block header attribute"))?;
    let signed_header = signed_header.decode_as::<OctetString>().map_err(|_| {
        CryptoError::format(WHAT, "key block header attribute is not an OCTET STRING")
    })?;

    let enveloped = EnvelopedData::from_der(&verified.content)
        .map_err(|e| CryptoError::format(WHAT, format!("EnvelopedData: {e}")))?;
    let mut recipients = enveloped.recip_infos.0.iter();
    let recipient = match (recipients.next(), recipients.next()) {
        (Some(RecipientInfo::Ktri(ktri)), None) => ktri,
        (Some(_), None) => {
            return Err(CryptoError::Unsupported(
                "TR-34 recipient info other than key transport".into(),
            ));
        }
        _ => return Err(CryptoError::format(WHAT, "expected exactly one recipient")),
    };
    match &recipient.rid {
        RecipientIdentifier::IssuerAndSerialNumber(rid)
            if *rid == issuer_and_serial(&krd.certificate) => {}
        _ => {
            return Err(CryptoError::VerificationFailed(
                "TR-34 recipient (not this KRD)",
            ));
        }
    }
    let key_transport = key_transport_of(&recipient.key_enc_alg)?;
    let content = &enveloped.encrypted_content;
    if content.content_type != ID_DATA {
        return Err(CryptoError::format(
            WHAT,
            "encrypted content type is not id-data",
        ));
    }
    let (content_encryption, iv) = content_cipher_of(&content.content_enc_alg)?;
    let ciphertext = content
        .encrypted_content
        .as_ref()
        .ok_or_else(|| CryptoError::format(WHAT, "no encrypted content"))?;

    let cek = decrypt_cek(
        &krd.private_key,
        key_transport,
        recipient.enc_key.as_bytes(),
    )?;
    let key_block = decrypt_content(content_encryption, &cek, &iv, ciphertext.as_bytes())?;
    let block = parse_key_block(&key_block)?;

    if block.kdh_id_der != verified.signer_id_der {
        return Err(CryptoError::VerificationFailed(
            "TR-34 key block KDH identifier (not the signer)",
        ));
    }
    if block.header.as_bytes() != signed_header.as_bytes() {
        return Err(CryptoError::VerificationFailed(
            "TR-34 key block header (differs from the signed attribute)",
        ));
    }
    Ok(ReceivedKey {
        header: block.header,
        key: block.key,
        kdh: verified.signer,
        freshness,
        key_transport,
        content_encryption,
    })
}

// ---------------------------------------------------------------------------------------------
// Binding: random number and credential tokens
// ---------------------------------------------------------------------------------------------

/// KRD side: the random number token RT_KRD, the DER `Attribute` randomNonce carrying
/// `nonce` ([`MIN_NONCE_LEN`] to [`MAX_NONCE_LEN`] bytes).
pub fn build_random_token(nonce: &[u8]) -> Result<Vec<u8>, CryptoError> {
    encode(&nonce_attribute(nonce)?)
}

/// KDH side: the nonce of a random number token.
pub fn parse_random_token(token: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let attribute = Attribute::from_der(token)
        .map_err(|e| CryptoError::format(WHAT, format!("random number token: {e}")))?;
    if attribute.oid != ID_RANDOM_NONCE {
        return Err(CryptoError::format(
            WHAT,
            "random number token is not a randomNonce attribute",
        ));
    }
    let nonce = single_value(&attribute)?
        .decode_as::<OctetString>()
        .map_err(|_| CryptoError::format(WHAT, "random nonce is not an OCTET STRING"))?;
    check_nonce_len(nonce.as_bytes())?;
    Ok(nonce.as_bytes().to_vec())
}

/// The credential token of a KRD (CT_KRD) or of a KDH (CT_KDH, the bind token): a CMS
/// SignedData without signers whose certificates are `chain` (leaf first, DER).
pub fn build_credential_token(chain: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
    if chain.is_empty() {
        return Err(CryptoError::format(
            WHAT,
            "a credential token needs a certificate",
        ));
    }
    let certificates = chain
        .iter()
        .map(|der| parse_certificate(der))
        .collect::<Result<Vec<_>, _>>()?;
    let signed = certificates_only(None, &certificates)?;
    content_info(ID_SIGNED_DATA, &signed)
}

/// Opens a credential token: verifies its certificates as a chain to `ca_certificate` at
/// `now_unix` for `role`, and returns the chain, leaf first (DER). The KRD calls this on the
/// KDH's bind token (CT_KDH) and keeps the chain as its [`KdhTrust::kdh_chain`]; the KDH calls
/// it on CT_KRD before it encrypts to that KRD.
pub fn open_credential_token(
    token: &[u8],
    ca_certificate: &[u8],
    now_unix: u64,
    role: CertificateRole,
) -> Result<Vec<Vec<u8>>, CryptoError> {
    let signed = parse_signed_data(token)?;
    if !signed.signer_infos.0.is_empty() {
        return Err(CryptoError::format(
            WHAT,
            "a credential token has no signers",
        ));
    }
    let certificates = certificates_of(&signed)?;
    let ca = parse_certificate(ca_certificate)?;
    let chain = order_chain(certificates, &ca)?;
    let ders = chain.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    verify_certificate_chain(&refs, ca_certificate, now_unix, role)?;
    Ok(ders)
}

// ---------------------------------------------------------------------------------------------
// Rebind and unbind
// ---------------------------------------------------------------------------------------------

/// Current KDH side: the rebind token RBT_KDH, which tells the KRD (named by its
/// certificate) to replace the bound KDH by the one whose chain is `new_kdh_chain` (leaf
/// first). Signed by the current KDH over the KRD's nonce.
pub fn build_rebind_token<R: RngCore + CryptoRng>(
    rng: &mut R,
    current_kdh: &Credential,
    krd_certificate: &[u8],
    new_kdh_chain: &[&[u8]],
    nonce: &[u8],
    signature: SignatureScheme,
) -> Result<Vec<u8>, CryptoError> {
    if new_kdh_chain.is_empty() {
        return Err(CryptoError::format(
            WHAT,
            "the rebind token needs the new KDH certificate",
        ));
    }
    let krd = parse_certificate(krd_certificate)?;
    let certificates = new_kdh_chain
        .iter()
        .map(|der| parse_certificate(der))
        .collect::<Result<Vec<_>, _>>()?;
    let inner = certificates_only(
        Some(any_octets(&encode(&issuer_and_serial(&krd))?)?),
        &certificates,
    )?;
    sign_content(
        rng,
        current_kdh,
        signature,
        ID_SIGNED_DATA,
        &encode(&inner)?,
        vec![nonce_attribute(nonce)?],
        std::slice::from_ref(&current_kdh.certificate),
    )
}

/// KRD side: verifies a rebind token signed by the currently bound KDH (`trust`), checks
/// the nonce and that it names this KRD (`krd_certificate`), then verifies the new KDH chain
/// against the same CA and returns it (leaf first, DER) to be bound.
///
/// The token must carry the new KDH's whole chain below `trust.ca_certificate`; when it
/// carries only the new KDH's certificate (as the TR-34-2019 B.11 sample does), use
/// [`open_rebind_token_with_intermediates`].
pub fn open_rebind_token(
    token: &[u8],
    trust: &KdhTrust<'_>,
    krd_certificate: &[u8],
    nonce: &[u8],
) -> Result<Vec<Vec<u8>>, CryptoError> {
    open_rebind_token_with_intermediates(token, trust, krd_certificate, nonce, &[])
}

/// KRD side: [`open_rebind_token`] for a rebind token that carries the new KDH's certificate
/// without (all of) its issuing CA certificates, such as the TR-34-2019 B.11 sample (KDH 2's
/// certificate only, issued by "CA KDH" below the root).
///
/// `new_kdh_intermediates` are CA certificates (DER, any order) the KRD already holds, for
/// example those of the bound KDH's chain (`&trust.kdh_chain[1..]`). They only complete the
/// path from the new KDH's certificate (which must come from the token) up to
/// `trust.ca_certificate`, which stays the only trust anchor: each one used is verified like
/// any certificate of the chain (issued by the next, a CA, valid at `trust.now_unix`), and
/// those not needed are ignored. Verification order is that of [`open_rebind_token`]: the
/// bound KDH's signature first, then the nonce, the KRD identifier and the new chain.
///
/// Returns the new KDH chain, leaf first, then the intermediates used (the token's and the
/// supplied ones), without the CA: what the KRD binds as its next [`KdhTrust::kdh_chain`].
pub fn open_rebind_token_with_intermediates(
    token: &[u8],
    trust: &KdhTrust<'_>,
    krd_certificate: &[u8],
    nonce: &[u8],
    new_kdh_intermediates: &[&[u8]],
) -> Result<Vec<Vec<u8>>, CryptoError> {
    let verified = verify_signed_token(token, trust, ID_SIGNED_DATA)?;
    check_freshness(&verified.attributes, ExpectedFreshness::RandomNonce(nonce))?;
    let inner = inner_signed_data(&verified.content)?;
    if inner.encap_content_info.econtent_type != ID_DATA {
        return Err(CryptoError::format(
            WHAT,
            "inner content type is not id-data",
        ));
    }
    let krd_id = econtent_octets(&inner.encap_content_info)?;
    check_krd_id(&krd_id, krd_certificate)?;
    let ca = parse_certificate(trust.ca_certificate)?;
    let mut chain = order_chain(certificates_of(&inner)?, &ca)?;
    complete_chain(&mut chain, new_kdh_intermediates, &ca)?;
    let ders = chain.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    verify_certificate_chain(
        &refs,
        trust.ca_certificate,
        trust.now_unix,
        CertificateRole::Kdh,
    )?;
    Ok(ders)
}

/// Appends to `chain` (leaf first) the certificates of `pool` (DER) that issued its last
/// certificate, then that one's issuer, and so on until the issuer is `ca` or none of `pool`
/// fits. Names only: the caller verifies the completed chain's signatures against `ca`.
fn complete_chain(
    chain: &mut Vec<Certificate>,
    pool: &[&[u8]],
    ca: &Certificate,
) -> Result<(), CryptoError> {
    let mut pool = pool
        .iter()
        .map(|der| parse_certificate(der))
        .collect::<Result<Vec<_>, _>>()?;
    pool.retain(|certificate| certificate != ca && !chain.contains(certificate));
    while let Some(last) = chain.last() {
        let issuer = &last.tbs_certificate.issuer;
        if *issuer == ca.tbs_certificate.subject {
            break;
        }
        let Some(position) = pool
            .iter()
            .position(|c| c.tbs_certificate.subject == *issuer)
        else {
            break;
        };
        chain.push(pool.swap_remove(position));
    }
    Ok(())
}

/// Current KDH side: the unbind token UBT_KDH, which tells the KRD (named by its certificate)
/// to forget its KDH. Signed by the current KDH over the KRD's nonce.
pub fn build_unbind_token<R: RngCore + CryptoRng>(
    rng: &mut R,
    current_kdh: &Credential,
    krd_certificate: &[u8],
    nonce: &[u8],
    signature: SignatureScheme,
) -> Result<Vec<u8>, CryptoError> {
    let krd = parse_certificate(krd_certificate)?;
    sign_content(
        rng,
        current_kdh,
        signature,
        ID_DATA,
        &encode(&issuer_and_serial(&krd))?,
        vec![nonce_attribute(nonce)?],
        std::slice::from_ref(&current_kdh.certificate),
    )
}

/// KRD side: verifies an unbind token signed by the currently bound KDH (`trust`), checks the
/// nonce and that it names this KRD. `Ok(())` means the KRD may unbind.
pub fn open_unbind_token(
    token: &[u8],
    trust: &KdhTrust<'_>,
    krd_certificate: &[u8],
    nonce: &[u8],
) -> Result<(), CryptoError> {
    let verified = verify_signed_token(token, trust, ID_DATA)?;
    check_freshness(&verified.attributes, ExpectedFreshness::RandomNonce(nonce))?;
    check_krd_id(&verified.content, krd_certificate)
}

// ---------------------------------------------------------------------------------------------
// CA-signed rebind and unbind (RBT_CA_UNBIND, UBT_CA_UNBIND)
// ---------------------------------------------------------------------------------------------

/// What a KRD trusts when it verifies a token signed by a CA (a "higher level authority")
/// rather than by its bound KDH: the root certificate, the signing CA's chain below it and its
/// own clock.
#[derive(Clone, Copy, Debug)]
pub struct CaTrust<'a> {
    /// The root certificate the KRD trusts for CA tokens, DER.
    pub root_certificate: &'a [u8],
    /// The signing CA's certificate first, then its intermediates below the root, DER; empty
    /// when the root itself signs.
    pub ca_chain: &'a [&'a [u8]],
    /// The KRD's clock, seconds since the Unix epoch (certificate validity).
    pub now_unix: u64,
}

/// CA side: the CA unbind token UBT_CA_UNBIND, which tells the KRD (named by its
/// certificate) to forget the KDH (named by its certificate). The content is the KRD's
/// `IssuerAndSerialNumber` followed by the KDH's (as in TR-34-2019 B.13); the signed attributes
/// carry `freshness` (the KRD's nonce, or the signing time). Signed by `ca` (a CA certificate
/// and its key).
pub fn build_ca_unbind_token<R: RngCore + CryptoRng>(
    rng: &mut R,
    ca: &Credential,
    krd_certificate: &[u8],
    kdh_certificate: &[u8],
    freshness: &Freshness,
    signature: SignatureScheme,
) -> Result<Vec<u8>, CryptoError> {
    let content = ca_token_ids(krd_certificate, kdh_certificate)?;
    sign_content(
        rng,
        ca,
        signature,
        ID_DATA,
        &content,
        vec![freshness_attribute(freshness)?],
        std::slice::from_ref(&ca.certificate),
    )
}

/// KRD side: verifies a CA unbind token. Order: the signing CA's chain to the root at
/// `trust.now_unix` (every certificate of it a CA); the signer must be that CA; the signature
/// over the signed attributes and the message digest; the freshness value; only then the
/// content, which must name this KRD (`krd_certificate`) and the KDH it is bound to
/// (`bound_kdh_certificate`). `Ok(())` means the KRD may unbind.
///
/// Tokens without signed attributes (such as the TR-34-2019 B.13 sample) carry no freshness
/// value and are refused ([`CryptoError::InvalidFormat`]).
pub fn open_ca_unbind_token(
    token: &[u8],
    trust: &CaTrust<'_>,
    krd_certificate: &[u8],
    bound_kdh_certificate: &[u8],
    expected: ExpectedFreshness<'_>,
) -> Result<(), CryptoError> {
    let verified = verify_ca_signed_token(token, trust, ID_DATA)?;
    check_freshness(&verified.attributes, expected)?;
    check_ca_token_ids(&verified.content, krd_certificate, bound_kdh_certificate)
}

/// CA side: the CA rebind token RBT_CA_UNBIND, which tells the KRD (named by its certificate)
/// to replace its bound KDH (`current_kdh_certificate`) by the one whose chain is
/// `new_kdh_chain` (leaf first). As in TR-34-2019 B.10, the content is a SignedData without
/// signers whose content is the KRD's and the current KDH's `IssuerAndSerialNumber` and whose
/// certificates are the new KDH's; the signed attributes carry `freshness`.
pub fn build_ca_rebind_token<R: RngCore + CryptoRng>(
    rng: &mut R,
    ca: &Credential,
    krd_certificate: &[u8],
    current_kdh_certificate: &[u8],
    new_kdh_chain: &[&[u8]],
    freshness: &Freshness,
    signature: SignatureScheme,
) -> Result<Vec<u8>, CryptoError> {
    if new_kdh_chain.is_empty() {
        return Err(CryptoError::format(
            WHAT,
            "the rebind token needs the new KDH certificate",
        ));
    }
    let ids = ca_token_ids(krd_certificate, current_kdh_certificate)?;
    let certificates = new_kdh_chain
        .iter()
        .map(|der| parse_certificate(der))
        .collect::<Result<Vec<_>, _>>()?;
    let inner = certificates_only(Some(any_octets(&ids)?), &certificates)?;
    sign_content(
        rng,
        ca,
        signature,
        ID_SIGNED_DATA,
        &encode(&inner)?,
        vec![freshness_attribute(freshness)?],
        std::slice::from_ref(&ca.certificate),
    )
}

/// KRD side: verifies a CA rebind token (signature first, as [`open_ca_unbind_token`]), checks
/// that it names this KRD and its bound KDH, then verifies the new KDH chain against
/// `kdh_ca_certificate` at `trust.now_unix` and returns it (leaf first, DER) to be bound.
pub fn open_ca_rebind_token(
    token: &[u8],
    trust: &CaTrust<'_>,
    krd_certificate: &[u8],
    bound_kdh_certificate: &[u8],
    kdh_ca_certificate: &[u8],
    expected: ExpectedFreshness<'_>,
) -> Result<Vec<Vec<u8>>, CryptoError> {
    let verified = verify_ca_signed_token(token, trust, ID_SIGNED_DATA)?;
    check_freshness(&verified.attributes, expected)?;
    let inner = inner_signed_data(&verified.content)?;
    if inner.encap_content_info.econtent_type != ID_DATA {
        return Err(CryptoError::format(
            WHAT,
            "inner content type is not id-data",
        ));
    }
    let ids = econtent_octets(&inner.encap_content_info)?;
    check_ca_token_ids(&ids, krd_certificate, bound_kdh_certificate)?;
    let kdh_ca = parse_certificate(kdh_ca_certificate)?;
    let chain = order_chain(certificates_of(&inner)?, &kdh_ca)?;
    let ders = chain.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    verify_certificate_chain(
        &refs,
        kdh_ca_certificate,
        trust.now_unix,
        CertificateRole::Kdh,
    )?;
    Ok(ders)
}

/// The SignedData inside a rebind token. The TR-34-2019 Annex B samples (B.10, B.11) carry
/// only its contents octets (version, digest algorithms, ...) without the SEQUENCE tag and
/// length; both forms are read (the bytes are the signed, digested content either way).
fn inner_signed_data(content: &[u8]) -> Result<SignedData, CryptoError> {
    let parsed = if content.first() == Some(&0x02) {
        let mut wrapped = Vec::with_capacity(content.len() + 6);
        wrapped.push(0x30);
        der_length(content.len(), &mut wrapped);
        wrapped.extend_from_slice(content);
        SignedData::from_der(&wrapped)
    } else {
        SignedData::from_der(content)
    };
    parsed.map_err(|e| CryptoError::format(WHAT, format!("inner SignedData: {e}")))
}

fn verify_ca_signed_token(
    token: &[u8],
    trust: &CaTrust<'_>,
    content_type: ObjectIdentifier,
) -> Result<VerifiedToken, CryptoError> {
    let signer_der = match trust.ca_chain.first() {
        Some(first) => {
            verify_chain(
                trust.ca_chain,
                trust.root_certificate,
                trust.now_unix,
                LeafRole::Ca,
            )?;
            *first
        }
        None => {
            let root = parse_certificate(trust.root_certificate)?;
            check_validity(&root, trust.now_unix)?;
            check_issuer_constraints(&root)?;
            trust.root_certificate
        }
    };
    let signer = parse_certificate(signer_der)?;
    verify_signed_by(
        token,
        &signer,
        content_type,
        "TR-34 signer (not the trusted CA)",
    )
}

fn ca_token_ids(krd_certificate: &[u8], kdh_certificate: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut ids = encode(&issuer_and_serial(&parse_certificate(krd_certificate)?))?;
    ids.extend(encode(&issuer_and_serial(&parse_certificate(
        kdh_certificate,
    )?))?);
    Ok(ids)
}

fn check_ca_token_ids(
    ids: &[u8],
    krd_certificate: &[u8],
    kdh_certificate: &[u8],
) -> Result<(), CryptoError> {
    let krd = expect_tlv(ids, 0x30)?;
    let kdh = expect_tlv(krd.rest, 0x30)?;
    if !kdh.rest.is_empty() {
        return Err(CryptoError::format(
            WHAT,
            "trailing bytes after the KRD and KDH identifiers",
        ));
    }
    check_krd_id(krd.whole, krd_certificate)?;
    let named = IssuerAndSerialNumber::from_der(kdh.whole)
        .map_err(|_| CryptoError::format(WHAT, "KDH identifier is not an IssuerAndSerialNumber"))?;
    if named != issuer_and_serial(&parse_certificate(kdh_certificate)?) {
        return Err(CryptoError::VerificationFailed(
            "TR-34 KDH identifier (not the bound KDH)",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// Verifies `chain` (leaf first, then intermediates; DER) up to `ca_certificate`: each
/// certificate is issued (name and RSA signature) by the next one or by the CA, every
/// certificate including the CA is valid at `now_unix`, issuers are CAs (basic constraints
/// `cA`, key usage keyCertSign when present), the leaf's key usage fits `role` when present,
/// and every key is RSA of at least [`MIN_RSA_BITS`].
///
/// Errors: [`CryptoError::VerificationFailed`] for a chain that does not verify,
/// [`CryptoError::InvalidFormat`] for malformed certificates, [`CryptoError::Unsupported`]
/// for signature algorithms other than RSA PKCS #1 v1.5 (SHA-256/384/512) or PSS (SHA-256).
pub fn verify_certificate_chain(
    chain: &[&[u8]],
    ca_certificate: &[u8],
    now_unix: u64,
    role: CertificateRole,
) -> Result<(), CryptoError> {
    verify_chain(chain, ca_certificate, now_unix, LeafRole::Party(role))
}

#[derive(Clone, Copy)]
enum LeafRole {
    Party(CertificateRole),
    /// The leaf is itself a CA that signs TR-34 tokens (RBT_CA_UNBIND, UBT_CA_UNBIND).
    Ca,
}

fn verify_chain(
    chain: &[&[u8]],
    ca_certificate: &[u8],
    now_unix: u64,
    role: LeafRole,
) -> Result<(), CryptoError> {
    let ca = parse_certificate(ca_certificate)?;
    let certificates = chain
        .iter()
        .map(|der| parse_certificate(der))
        .collect::<Result<Vec<_>, _>>()?;
    check_validity(&ca, now_unix)?;
    check_issuer_constraints(&ca)?;
    for (index, certificate) in certificates.iter().enumerate() {
        let issuer = certificates.get(index + 1).unwrap_or(&ca);
        if index > 0 {
            check_issuer_constraints(certificate)?;
        }
        if certificate.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(CryptoError::VerificationFailed(
                "TR-34 certificate chain (issuer name)",
            ));
        }
        check_validity(certificate, now_unix)?;
        let issuer_key = certificate_public_key(issuer)?;
        // The signature covers the TBSCertificate exactly as received (not a re-encoding,
        // which would differ for certificates that are not strict DER).
        let tbs = raw_tbs_certificate(chain.get(index).copied().unwrap_or_default())?;
        let kind = signature_kind(&certificate.signature_algorithm)?;
        let signature = certificate
            .signature
            .as_bytes()
            .ok_or_else(|| CryptoError::format(WHAT_CERT, "signature has unused bits"))?;
        verify_rsa(&issuer_key, kind, tbs, signature)
            .map_err(|_| CryptoError::VerificationFailed("TR-34 certificate chain (signature)"))?;
    }
    let leaf = certificates
        .first()
        .ok_or_else(|| CryptoError::format(WHAT_CERT, "empty certificate chain"))?;
    certificate_public_key(leaf)?;
    let role = match role {
        LeafRole::Party(role) => role,
        LeafRole::Ca => return check_issuer_constraints(leaf),
    };
    if let Some(usage) = certificate_extension::<KeyUsage>(leaf, "malformed key usage")? {
        let ok = match role {
            CertificateRole::Kdh => usage.digital_signature(),
            CertificateRole::Krd => usage.key_encipherment(),
        };
        if !ok {
            return Err(CryptoError::VerificationFailed(
                "TR-34 certificate key usage",
            ));
        }
    }
    Ok(())
}

fn check_issuer_constraints(certificate: &Certificate) -> Result<(), CryptoError> {
    let constraints =
        certificate_extension::<BasicConstraints>(certificate, "malformed basic constraints")?;
    if !matches!(constraints, Some(BasicConstraints { ca: true, .. })) {
        return Err(CryptoError::VerificationFailed(
            "TR-34 certificate chain (issuer is not a CA)",
        ));
    }
    if let Some(usage) = certificate_extension::<KeyUsage>(certificate, "malformed key usage")?
        && !usage.key_cert_sign()
    {
        return Err(CryptoError::VerificationFailed(
            "TR-34 certificate chain (issuer key usage)",
        ));
    }
    Ok(())
}

/// The extension `T` of a certificate, if present. RFC 5280 forbids repeating an extension;
/// some published samples (the TR-34-2019 Annex B KDH certificates) repeat basic constraints
/// and key usage with identical bytes. Identical repeats are read as one; repeats that differ
/// (in value or criticality) are refused as ambiguous.
fn certificate_extension<'a, T>(
    certificate: &'a Certificate,
    malformed: &'static str,
) -> Result<Option<T>, CryptoError>
where
    T: Decode<'a> + der::oid::AssociatedOid,
{
    let mut found = certificate
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|extension| extension.extn_id == T::OID);
    let Some(first) = found.next() else {
        return Ok(None);
    };
    if found.any(|other| other != first) {
        return Err(CryptoError::format(
            WHAT_CERT,
            format!("{malformed} (differing repeated extensions)"),
        ));
    }
    T::from_der(first.extn_value.as_bytes())
        .map(Some)
        .map_err(|_| CryptoError::format(WHAT_CERT, malformed))
}

/// The TBSCertificate of a DER certificate, as received.
fn raw_tbs_certificate(certificate_der: &[u8]) -> Result<&[u8], CryptoError> {
    let certificate = expect_tlv(certificate_der, 0x30)?;
    Ok(expect_tlv(certificate.value, 0x30)?.whole)
}

fn check_validity(certificate: &Certificate, now_unix: u64) -> Result<(), CryptoError> {
    let validity = &certificate.tbs_certificate.validity;
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    if now_unix < not_before || now_unix > not_after {
        return Err(CryptoError::VerificationFailed(
            "TR-34 certificate validity period",
        ));
    }
    Ok(())
}

/// Orders a set of certificates as leaf, intermediates, ending below `ca` (the set may also
/// contain the CA itself, which is dropped).
fn order_chain(
    certificates: Vec<Certificate>,
    ca: &Certificate,
) -> Result<Vec<Certificate>, CryptoError> {
    let mut rest: Vec<Certificate> = certificates.into_iter().filter(|c| c != ca).collect();
    if rest.is_empty() {
        return Err(CryptoError::format(
            WHAT,
            "no certificate other than the CA",
        ));
    }
    // The leaf is the one that issued none of the others.
    let leaf_index = (0..rest.len())
        .find(|&i| {
            let subject = &rest[i].tbs_certificate.subject;
            !rest
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && other.tbs_certificate.issuer == *subject)
        })
        .ok_or_else(|| CryptoError::format(WHAT, "certificates do not form a chain"))?;
    let mut chain = vec![rest.swap_remove(leaf_index)];
    while !rest.is_empty() {
        let issuer_name = chain
            .last()
            .map(|c| c.tbs_certificate.issuer.clone())
            .ok_or_else(|| CryptoError::format(WHAT, "certificates do not form a chain"))?;
        let position = rest
            .iter()
            .position(|c| c.tbs_certificate.subject == issuer_name)
            .ok_or_else(|| CryptoError::format(WHAT, "certificates do not form a chain"))?;
        chain.push(rest.swap_remove(position));
    }
    Ok(chain)
}

fn parse_certificate(der: &[u8]) -> Result<Certificate, CryptoError> {
    Certificate::from_der(der).map_err(|e| CryptoError::format(WHAT_CERT, format!("bad DER: {e}")))
}

fn certificate_public_key(certificate: &Certificate) -> Result<RsaPublicKey, CryptoError> {
    let spki = &certificate.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return Err(CryptoError::Unsupported(format!(
            "TR-34 public key algorithm {}",
            spki.algorithm.oid
        )));
    }
    let der = encode(spki)?;
    let key = RsaPublicKey::from_public_key_der(&der)
        .map_err(|_| CryptoError::format(WHAT_CERT, "malformed RSA public key"))?;
    check_rsa_size(&key)?;
    Ok(key)
}

fn check_rsa_size(key: &RsaPublicKey) -> Result<(), CryptoError> {
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(CryptoError::Unsupported(format!(
            "RSA keys of {bits} bits (TR-34 requires at least {MIN_RSA_BITS})"
        )));
    }
    Ok(())
}

fn issuer_and_serial(certificate: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: certificate.tbs_certificate.issuer.clone(),
        serial_number: certificate.tbs_certificate.serial_number.clone(),
    }
}

fn check_krd_id(id_der: &[u8], krd_certificate: &[u8]) -> Result<(), CryptoError> {
    let named = IssuerAndSerialNumber::from_der(id_der)
        .map_err(|_| CryptoError::format(WHAT, "KRD identifier is not an IssuerAndSerialNumber"))?;
    let krd = parse_certificate(krd_certificate)?;
    if named != issuer_and_serial(&krd) {
        return Err(CryptoError::VerificationFailed(
            "TR-34 KRD identifier (not this KRD)",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SignedData: build and verify
// ---------------------------------------------------------------------------------------------

fn sign_content<R: RngCore + CryptoRng>(
    rng: &mut R,
    signer: &Credential,
    scheme: SignatureScheme,
    content_type: ObjectIdentifier,
    content: &[u8],
    extra_attributes: Vec<Attribute>,
    certificates: &[Certificate],
) -> Result<Vec<u8>, CryptoError> {
    let digest = Sha256::digest(content);
    let mut attributes = vec![
        Attribute {
            oid: ID_CONTENT_TYPE,
            values: set_of(vec![Any::encode_from(&content_type).map_err(der_error)?])?,
        },
        Attribute {
            oid: ID_MESSAGE_DIGEST,
            values: set_of(vec![any_octets(&digest)?])?,
        },
    ];
    attributes.extend(extra_attributes);
    let signed_attrs: SetOfVec<Attribute> = set_of(attributes)?;
    let to_sign = encode(&signed_attrs)?;
    let hashed = Sha256::digest(&to_sign);
    let (signature_algorithm, signature) = match scheme {
        SignatureScheme::Pkcs1v15Sha256 => (
            AlgorithmIdentifierOwned {
                oid: RSA_ENCRYPTION,
                parameters: Some(Any::null()),
            },
            signer
                .private_key
                .sign(Pkcs1v15Sign::new::<Sha256>(), &hashed)
                .map_err(|_| CryptoError::format(WHAT_KEY, "RSA signing failed"))?,
        ),
        SignatureScheme::PssSha256 => (
            AlgorithmIdentifierOwned {
                oid: RSASSA_PSS,
                parameters: Some(
                    Any::encode_from(&RsaPssParams::new::<Sha256>(32)).map_err(der_error)?,
                ),
            },
            signer
                .private_key
                .sign_with_rng(rng, Pss::new_with_salt::<Sha256>(32), &hashed)
                .map_err(|_| CryptoError::format(WHAT_KEY, "RSA signing failed"))?,
        ),
    };
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(issuer_and_serial(&signer.certificate)),
        digest_alg: sha256_algorithm(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm,
        signature: octets(signature)?,
        unsigned_attrs: None,
    };
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: set_of(vec![sha256_algorithm()])?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: content_type,
            econtent: Some(any_octets(content)?),
        },
        certificates: Some(certificate_set(certificates)?),
        crls: None,
        signer_infos: SignerInfos(set_of(vec![signer_info])?),
    };
    content_info(ID_SIGNED_DATA, &signed)
}

struct VerifiedToken {
    signer: CertificateId,
    signer_id_der: Vec<u8>,
    attributes: Vec<Attribute>,
    content: Vec<u8>,
}

/// Parses a SignedData token, checks the KDH chain, the signer, the signature over the raw
/// signed attributes, the content type and the message digest. Nothing of the content is
/// interpreted before this returns.
fn verify_signed_token(
    token: &[u8],
    trust: &KdhTrust<'_>,
    content_type: ObjectIdentifier,
) -> Result<VerifiedToken, CryptoError> {
    verify_certificate_chain(
        trust.kdh_chain,
        trust.ca_certificate,
        trust.now_unix,
        CertificateRole::Kdh,
    )?;
    let kdh_der = trust
        .kdh_chain
        .first()
        .ok_or_else(|| CryptoError::format(WHAT_CERT, "empty certificate chain"))?;
    let kdh = parse_certificate(kdh_der)?;
    verify_signed_by(
        token,
        &kdh,
        content_type,
        "TR-34 signer (not the bound KDH)",
    )
}

/// Verifies a SignedData token signed by `signer` (whose certificate the caller has already
/// verified): one signer, named by `signer`'s issuer and serial number, the signature over the
/// raw signed attributes, the content type and the message digest.
fn verify_signed_by(
    token: &[u8],
    kdh: &Certificate,
    content_type: ObjectIdentifier,
    not_the_signer: &'static str,
) -> Result<VerifiedToken, CryptoError> {
    let signed = parse_signed_data(token)?;
    let raw_attrs = raw_signed_attributes(token)?;
    let kdh_key = certificate_public_key(kdh)?;

    let mut signers = signed.signer_infos.0.iter();
    let signer = match (signers.next(), signers.next()) {
        (Some(signer), None) => signer,
        _ => return Err(CryptoError::format(WHAT, "expected exactly one signer")),
    };
    let signer_id = match &signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => id,
        SignerIdentifier::SubjectKeyIdentifier(_) => {
            return Err(CryptoError::Unsupported(
                "TR-34 signer identified by subject key identifier".into(),
            ));
        }
    };
    if *signer_id != issuer_and_serial(kdh) {
        return Err(CryptoError::VerificationFailed(not_the_signer));
    }
    if signer.digest_alg.oid != ID_SHA256 {
        return Err(CryptoError::Unsupported(format!(
            "TR-34 digest algorithm {}",
            signer.digest_alg.oid
        )));
    }
    let kind = match signer.signature_algorithm.oid {
        RSA_ENCRYPTION | SHA256_WITH_RSA => SignatureKind::Pkcs1(Hash::Sha256),
        _ => signature_kind(&signer.signature_algorithm)?,
    };
    if kind.hash() != Hash::Sha256 {
        return Err(CryptoError::Unsupported(
            "TR-34 signatures with other than SHA-256".into(),
        ));
    }
    let attributes: Vec<Attribute> = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| CryptoError::format(WHAT, "no signed attributes"))?
        .iter()
        .cloned()
        .collect();

    // Signature first.
    verify_rsa(&kdh_key, kind, &raw_attrs, signer.signature.as_bytes())
        .map_err(|_| CryptoError::VerificationFailed("TR-34 signature"))?;

    let econtent_type = signed.encap_content_info.econtent_type;
    let declared = find_attribute(&attributes, ID_CONTENT_TYPE)?
        .ok_or_else(|| CryptoError::format(WHAT, "missing content type attribute"))?
        .decode_as::<ObjectIdentifier>()
        .map_err(|_| CryptoError::format(WHAT, "content type attribute is not an OID"))?;
    if declared != econtent_type {
        return Err(CryptoError::format(
            WHAT,
            "content type attribute differs from the content",
        ));
    }
    if econtent_type != content_type {
        return Err(CryptoError::format(
            WHAT,
            format!("content type {econtent_type}, expected {content_type}"),
        ));
    }
    let content = econtent_octets(&signed.encap_content_info)?;
    let digest = find_attribute(&attributes, ID_MESSAGE_DIGEST)?
        .ok_or_else(|| CryptoError::format(WHAT, "missing message digest attribute"))?
        .decode_as::<OctetString>()
        .map_err(|_| CryptoError::format(WHAT, "message digest is not an OCTET STRING"))?;
    if !bool::from(Sha256::digest(&content).as_slice().ct_eq(digest.as_bytes())) {
        return Err(CryptoError::VerificationFailed("TR-34 message digest"));
    }
    Ok(VerifiedToken {
        signer: CertificateId::from_asn1(signer_id),
        signer_id_der: encode(signer_id)?,
        attributes,
        content,
    })
}

fn parse_signed_data(token: &[u8]) -> Result<SignedData, CryptoError> {
    let info = ContentInfo::from_der(token)
        .map_err(|e| CryptoError::format(WHAT, format!("bad DER: {e}")))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(CryptoError::format(
            WHAT,
            format!("content type {}, expected id-signedData", info.content_type),
        ));
    }
    info.content
        .decode_as::<SignedData>()
        .map_err(|e| CryptoError::format(WHAT, format!("SignedData: {e}")))
}

fn certificates_of(signed: &SignedData) -> Result<Vec<Certificate>, CryptoError> {
    let set = signed
        .certificates
        .as_ref()
        .ok_or_else(|| CryptoError::format(WHAT, "no certificates"))?;
    set.0
        .iter()
        .map(|choice| match choice {
            CertificateChoices::Certificate(certificate) => Ok(certificate.clone()),
            CertificateChoices::Other(_) => Err(CryptoError::Unsupported(
                "TR-34 certificates other than X.509".into(),
            )),
        })
        .collect()
}

fn econtent_octets(info: &EncapsulatedContentInfo) -> Result<Vec<u8>, CryptoError> {
    let any = info
        .econtent
        .as_ref()
        .ok_or_else(|| CryptoError::format(WHAT, "no encapsulated content"))?;
    if any.tag() != Tag::OctetString {
        return Err(CryptoError::format(
            WHAT,
            "encapsulated content is not an OCTET STRING",
        ));
    }
    Ok(any.value().to_vec())
}

fn find_attribute(
    attributes: &[Attribute],
    oid: ObjectIdentifier,
) -> Result<Option<&Any>, CryptoError> {
    let mut found = attributes.iter().filter(|a| a.oid == oid);
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some(attribute), None) => single_value(attribute).map(Some),
        (Some(_), Some(_)) => Err(CryptoError::format(
            WHAT,
            format!("attribute {oid} appears more than once"),
        )),
    }
}

fn single_value(attribute: &Attribute) -> Result<&Any, CryptoError> {
    let mut values = attribute.values.iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value),
        _ => Err(CryptoError::format(
            WHAT,
            format!("attribute {} must have exactly one value", attribute.oid),
        )),
    }
}

fn check_freshness(
    attributes: &[Attribute],
    expected: ExpectedFreshness<'_>,
) -> Result<Freshness, CryptoError> {
    match expected {
        ExpectedFreshness::RandomNonce(nonce) => {
            let received = find_attribute(attributes, ID_RANDOM_NONCE)?
                .ok_or_else(|| CryptoError::format(WHAT, "missing random nonce attribute"))?
                .decode_as::<OctetString>()
                .map_err(|_| CryptoError::format(WHAT, "random nonce is not an OCTET STRING"))?;
            if received.as_bytes().len() != nonce.len()
                || !bool::from(received.as_bytes().ct_eq(nonce))
            {
                return Err(CryptoError::VerificationFailed("TR-34 random nonce"));
            }
            Ok(Freshness::RandomNonce(nonce.to_vec()))
        }
        ExpectedFreshness::SigningTime {
            now_unix,
            max_skew_secs,
        } => {
            let value = find_attribute(attributes, ID_SIGNING_TIME)?
                .ok_or_else(|| CryptoError::format(WHAT, "missing signing time attribute"))?;
            let time = Time::from_der(&encode(value)?)
                .map_err(|_| CryptoError::format(WHAT, "signing time is not a Time"))?
                .to_unix_duration()
                .as_secs();
            if time.abs_diff(now_unix) > max_skew_secs {
                return Err(CryptoError::VerificationFailed("TR-34 signing time"));
            }
            Ok(Freshness::SigningTime(time))
        }
    }
}

fn freshness_attribute(freshness: &Freshness) -> Result<Attribute, CryptoError> {
    match freshness {
        Freshness::RandomNonce(nonce) => nonce_attribute(nonce),
        Freshness::SigningTime(unix) => {
            let time = UtcTime::from_unix_duration(Duration::from_secs(*unix)).map_err(|_| {
                CryptoError::OutOfRange {
                    what: "TR-34 signing time",
                    reason: "must be between 1970 and 2049 (UTCTime)".into(),
                }
            })?;
            Ok(Attribute {
                oid: ID_SIGNING_TIME,
                values: set_of(vec![Any::encode_from(&time).map_err(der_error)?])?,
            })
        }
    }
}

fn nonce_attribute(nonce: &[u8]) -> Result<Attribute, CryptoError> {
    check_nonce_len(nonce)?;
    Ok(Attribute {
        oid: ID_RANDOM_NONCE,
        values: set_of(vec![any_octets(nonce)?])?,
    })
}

fn check_nonce_len(nonce: &[u8]) -> Result<(), CryptoError> {
    if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) {
        return Err(CryptoError::InvalidLength {
            what: "TR-34 random nonce",
            expected: "8 to 32 bytes",
            actual: nonce.len(),
        });
    }
    Ok(())
}

fn header_attribute(header: &str) -> Result<Attribute, CryptoError> {
    Ok(Attribute {
        oid: ID_DATA,
        values: set_of(vec![any_octets(header.as_bytes())?])?,
    })
}

fn check_header(header: &str) -> Result<(), CryptoError> {
    if header.len() != KEY_BLOCK_HEADER_LEN {
        return Err(CryptoError::InvalidLength {
            what: "TR-34 key block header",
            expected: "16 characters",
            actual: header.len(),
        });
    }
    if !header.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CryptoError::format(
            WHAT_BLOCK,
            "header is not printable ASCII",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Raw DER walking (for the exact signed-attribute bytes and the secret key block)
// ---------------------------------------------------------------------------------------------

struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
    whole: &'a [u8],
    rest: &'a [u8],
}

fn tlv(input: &[u8]) -> Result<Tlv<'_>, CryptoError> {
    let bad = || CryptoError::format(WHAT, "truncated or malformed DER");
    let tag = *input.first().ok_or_else(bad)?;
    if tag & 0x1F == 0x1F {
        return Err(CryptoError::format(
            WHAT,
            "multi-byte DER tags are not used by TR-34",
        ));
    }
    let first = *input.get(1).ok_or_else(bad)?;
    let (length, header_len) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 {
            return Err(bad());
        }
        let bytes = input.get(2..2 + count).ok_or_else(bad)?;
        let length = bytes
            .iter()
            .fold(0_usize, |acc, b| (acc << 8) | usize::from(*b));
        (length, 2 + count)
    };
    let end = header_len.checked_add(length).ok_or_else(bad)?;
    let value = input.get(header_len..end).ok_or_else(bad)?;
    let whole = input.get(..end).ok_or_else(bad)?;
    let rest = input.get(end..).ok_or_else(bad)?;
    Ok(Tlv {
        tag,
        value,
        whole,
        rest,
    })
}

fn expect_tlv(input: &[u8], tag: u8) -> Result<Tlv<'_>, CryptoError> {
    let item = tlv(input)?;
    if item.tag != tag {
        return Err(CryptoError::format(
            WHAT,
            format!("unexpected DER tag {:#04x}, expected {tag:#04x}", item.tag),
        ));
    }
    Ok(item)
}

/// The signed attributes of the (single) SignerInfo exactly as received, re-tagged as a SET
/// (RFC 5652 §5.4): the bytes the signature covers.
fn raw_signed_attributes(token: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let content_info = expect_tlv(token, 0x30)?;
    let oid = expect_tlv(content_info.value, 0x06)?;
    let explicit = expect_tlv(oid.rest, 0xA0)?;
    let signed_data = expect_tlv(explicit.value, 0x30)?;
    let version = expect_tlv(signed_data.value, 0x02)?;
    let digests = expect_tlv(version.rest, 0x31)?;
    let encap = expect_tlv(digests.rest, 0x30)?;
    let mut cursor = encap.rest;
    let mut item = tlv(cursor)?;
    if item.tag == 0xA0 {
        cursor = item.rest;
        item = tlv(cursor)?;
    }
    if item.tag == 0xA1 {
        cursor = item.rest;
    }
    let signer_infos = expect_tlv(cursor, 0x31)?;
    let signer_info = expect_tlv(signer_infos.value, 0x30)?;
    let version = expect_tlv(signer_info.value, 0x02)?;
    let sid = tlv(version.rest)?;
    let digest_alg = expect_tlv(sid.rest, 0x30)?;
    let attrs = expect_tlv(digest_alg.rest, 0xA0)?;
    let mut raw = attrs.whole.to_vec();
    if let Some(first) = raw.first_mut() {
        *first = 0x31;
    }
    Ok(raw)
}

fn der_length(length: usize, out: &mut Vec<u8>) {
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn encode_key_block(kdh_id_der: &[u8], key: &[u8], header_attr_der: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::with_capacity(kdh_id_der.len() + key.len() + 64));
    body.extend_from_slice(&[0x02, 0x01, KEY_BLOCK_VERSION]);
    body.extend_from_slice(kdh_id_der);
    body.push(0x04);
    der_length(key.len(), &mut body);
    body.extend_from_slice(key);
    body.extend_from_slice(header_attr_der);
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 6));
    out.push(0x30);
    der_length(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

struct KeyBlock {
    kdh_id_der: Vec<u8>,
    key: SecretBytes,
    header: String,
}

fn parse_key_block(block: &[u8]) -> Result<KeyBlock, CryptoError> {
    let outer = expect_tlv(block, 0x30)?;
    if !outer.rest.is_empty() {
        return Err(CryptoError::format(
            WHAT_BLOCK,
            "trailing bytes after the key block",
        ));
    }
    let version = expect_tlv(outer.value, 0x02)?;
    if version.value != [KEY_BLOCK_VERSION] {
        return Err(CryptoError::Unsupported(
            "TR-34 key block version other than 1".into(),
        ));
    }
    let kdh_id = expect_tlv(version.rest, 0x30)?;
    IssuerAndSerialNumber::from_der(kdh_id.whole).map_err(|_| {
        CryptoError::format(WHAT_BLOCK, "KDH identifier is not an IssuerAndSerialNumber")
    })?;
    let key = expect_tlv(kdh_id.rest, 0x04)?;
    if key.value.is_empty() {
        return Err(CryptoError::format(WHAT_BLOCK, "empty key"));
    }
    let header = expect_tlv(key.rest, 0x30)?;
    if !header.rest.is_empty() {
        return Err(CryptoError::format(
            WHAT_BLOCK,
            "trailing fields in the key block",
        ));
    }
    let attribute = Attribute::from_der(header.whole)
        .map_err(|_| CryptoError::format(WHAT_BLOCK, "key block header is not an Attribute"))?;
    if attribute.oid != ID_DATA {
        return Err(CryptoError::format(
            WHAT_BLOCK,
            "key block header attribute is not id-data",
        ));
    }
    let text = single_value(&attribute)?
        .decode_as::<OctetString>()
        .map_err(|_| CryptoError::format(WHAT_BLOCK, "key block header is not an OCTET STRING"))?;
    let header = String::from_utf8(text.as_bytes().to_vec())
        .map_err(|_| CryptoError::format(WHAT_BLOCK, "header is not ASCII"))?;
    check_header(&header)?;
    Ok(KeyBlock {
        kdh_id_der: kdh_id.whole.to_vec(),
        key: SecretBytes::from_slice(key.value),
        header,
    })
}

// ---------------------------------------------------------------------------------------------
// RSA and content encryption
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignatureKind {
    Pkcs1(Hash),
    PssSha256 { salt_len: usize },
}

impl SignatureKind {
    fn hash(self) -> Hash {
        match self {
            Self::Pkcs1(hash) => hash,
            Self::PssSha256 { .. } => Hash::Sha256,
        }
    }
}

fn signature_kind(algorithm: &AlgorithmIdentifierOwned) -> Result<SignatureKind, CryptoError> {
    match algorithm.oid {
        SHA256_WITH_RSA => Ok(SignatureKind::Pkcs1(Hash::Sha256)),
        SHA384_WITH_RSA => Ok(SignatureKind::Pkcs1(Hash::Sha384)),
        SHA512_WITH_RSA => Ok(SignatureKind::Pkcs1(Hash::Sha512)),
        RSASSA_PSS => {
            let params = algorithm
                .parameters
                .as_ref()
                .ok_or_else(|| CryptoError::format(WHAT, "RSASSA-PSS without parameters"))?;
            let der = encode(params)?;
            let params = RsaPssParams::from_der(&der)
                .map_err(|_| CryptoError::format(WHAT, "malformed RSASSA-PSS parameters"))?;
            let mgf_hash = params.mask_gen.parameters.map(|p| p.oid);
            if params.hash.oid != ID_SHA256
                || params.mask_gen.oid != ID_MGF1
                || mgf_hash != Some(ID_SHA256)
            {
                return Err(CryptoError::Unsupported(
                    "RSASSA-PSS with other than SHA-256 and MGF1-SHA-256".into(),
                ));
            }
            Ok(SignatureKind::PssSha256 {
                salt_len: usize::from(params.salt_len),
            })
        }
        other => Err(CryptoError::Unsupported(format!(
            "signature algorithm {other}"
        ))),
    }
}

fn verify_rsa(
    key: &RsaPublicKey,
    kind: SignatureKind,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    let failed = |_| CryptoError::VerificationFailed("RSA signature");
    match kind {
        SignatureKind::Pkcs1(Hash::Sha256) => key
            .verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(message),
                signature,
            )
            .map_err(failed),
        SignatureKind::Pkcs1(Hash::Sha384) => key
            .verify(
                Pkcs1v15Sign::new::<Sha384>(),
                &Sha384::digest(message),
                signature,
            )
            .map_err(failed),
        SignatureKind::Pkcs1(Hash::Sha512) => key
            .verify(
                Pkcs1v15Sign::new::<Sha512>(),
                &Sha512::digest(message),
                signature,
            )
            .map_err(failed),
        SignatureKind::PssSha256 { salt_len } => key
            .verify(
                Pss::new_with_salt::<Sha256>(salt_len),
                &Sha256::digest(message),
                signature,
            )
            .map_err(failed),
    }
}

fn encrypt_cek<R: RngCore + CryptoRng>(
    rng: &mut R,
    key: &RsaPublicKey,
    transport: KeyTransport,
    cek: &[u8],
) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), CryptoError> {
    let failed = |_| CryptoError::format(WHAT_KEY, "RSA encryption failed");
    match transport {
        KeyTransport::RsaOaepSha256 => Ok((
            AlgorithmIdentifierOwned {
                oid: RSAES_OAEP,
                parameters: Some(
                    Any::encode_from(&RsaOaepParams::new::<Sha256>()).map_err(der_error)?,
                ),
            },
            key.encrypt(rng, Oaep::new::<Sha256>(), cek)
                .map_err(failed)?,
        )),
        KeyTransport::RsaPkcs1v15 => Ok((
            AlgorithmIdentifierOwned {
                oid: RSA_ENCRYPTION,
                parameters: Some(Any::null()),
            },
            key.encrypt(rng, Pkcs1v15Encrypt, cek).map_err(failed)?,
        )),
    }
}

fn key_transport_of(algorithm: &AlgorithmIdentifierOwned) -> Result<KeyTransport, CryptoError> {
    match algorithm.oid {
        RSA_ENCRYPTION => Ok(KeyTransport::RsaPkcs1v15),
        RSAES_OAEP => {
            let params = match &algorithm.parameters {
                None => {
                    return Err(CryptoError::Unsupported(
                        "RSAES-OAEP with SHA-1 (default parameters)".into(),
                    ));
                }
                Some(params) => encode(params)?,
            };
            let malformed = |_| CryptoError::format(WHAT, "malformed RSAES-OAEP parameters");
            let (hash, mgf, mgf_hash, p_source, empty_label) =
                if let Ok(params) = RsaOaepParams::from_der(&params) {
                    (
                        params.hash.oid,
                        params.mask_gen.oid,
                        params.mask_gen.parameters.map(|p| p.oid),
                        params.p_source.oid,
                        params.p_source.parameters.is_none_or(is_empty_octets),
                    )
                } else {
                    // The TR-34-2019 Annex B samples (B.2.2.3, B.8, B.9) encode the three
                    // AlgorithmIdentifiers without their [0] [1] [2] tags. Same values, so
                    // accepted; the checks below are the same for both forms.
                    let params = UntaggedOaepParams::from_der(&params).map_err(malformed)?;
                    let mgf_hash = params
                        .mask_gen
                        .parameters
                        .as_ref()
                        .map(|p| p.decode_as::<AlgorithmIdentifierOwned>())
                        .transpose()
                        .map_err(malformed)?
                        .map(|p| p.oid);
                    (
                        params.hash.oid,
                        params.mask_gen.oid,
                        mgf_hash,
                        params.p_source.oid,
                        params
                            .p_source
                            .parameters
                            .as_ref()
                            .is_none_or(|p| p.tag() == Tag::OctetString && p.value().is_empty()),
                    )
                };
            if hash != ID_SHA256
                || mgf != ID_MGF1
                || mgf_hash != Some(ID_SHA256)
                || p_source != ID_P_SPECIFIED
                || !empty_label
            {
                return Err(CryptoError::Unsupported(
                    "RSAES-OAEP with other than SHA-256, MGF1-SHA-256 and an empty label".into(),
                ));
            }
            Ok(KeyTransport::RsaOaepSha256)
        }
        other => Err(CryptoError::Unsupported(format!(
            "key transport algorithm {other}"
        ))),
    }
}

/// RSAES-OAEP-params without the context tags, as in the TR-34-2019 Annex B samples.
#[derive(der::Sequence)]
struct UntaggedOaepParams {
    hash: AlgorithmIdentifierOwned,
    mask_gen: AlgorithmIdentifierOwned,
    p_source: AlgorithmIdentifierOwned,
}

fn is_empty_octets(value: der::AnyRef<'_>) -> bool {
    value.tag() == Tag::OctetString && value.value().is_empty()
}

fn decrypt_cek(
    key: &RsaPrivateKey,
    transport: KeyTransport,
    encrypted: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let failed = |_| CryptoError::VerificationFailed("TR-34 key transport decryption");
    let cek = match transport {
        KeyTransport::RsaOaepSha256 => key.decrypt(Oaep::new::<Sha256>(), encrypted),
        KeyTransport::RsaPkcs1v15 => key.decrypt(Pkcs1v15Encrypt, encrypted),
    }
    .map_err(failed)?;
    Ok(Zeroizing::new(cek))
}

impl ContentEncryption {
    fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Aes128Cbc => AES128_CBC,
            Self::Aes256Cbc => AES256_CBC,
            Self::TdesCbc => DES_EDE3_CBC,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Self::Aes128Cbc => 16,
            Self::Aes256Cbc => 32,
            Self::TdesCbc => 24,
        }
    }

    fn block(self) -> usize {
        match self {
            Self::Aes128Cbc | Self::Aes256Cbc => AES_BLOCK,
            Self::TdesCbc => DES_BLOCK,
        }
    }
}

type EncryptedContent = (AlgorithmIdentifierOwned, Vec<u8>, Zeroizing<Vec<u8>>);

fn encrypt_content<R: RngCore + CryptoRng>(
    rng: &mut R,
    cipher: ContentEncryption,
    plain: &[u8],
) -> Result<EncryptedContent, CryptoError> {
    let mut cek = Zeroizing::new(vec![0_u8; cipher.key_len()]);
    rng.fill_bytes(&mut cek);
    let block = cipher.block();
    let mut iv = vec![0_u8; block];
    rng.fill_bytes(&mut iv);
    let pad = block - plain.len() % block;
    let mut padded = Zeroizing::new(plain.to_vec());
    padded.extend(std::iter::repeat_n(pad as u8, pad));
    let ciphertext = cbc(cipher, true, &cek, &iv, &padded)?;
    let algorithm = AlgorithmIdentifierOwned {
        oid: cipher.oid(),
        parameters: Some(any_octets(&iv)?),
    };
    Ok((algorithm, ciphertext, cek))
}

fn content_cipher_of(
    algorithm: &AlgorithmIdentifierOwned,
) -> Result<(ContentEncryption, Vec<u8>), CryptoError> {
    let cipher = match algorithm.oid {
        AES128_CBC => ContentEncryption::Aes128Cbc,
        AES256_CBC => ContentEncryption::Aes256Cbc,
        DES_EDE3_CBC => ContentEncryption::TdesCbc,
        AES192_CBC => {
            return Err(CryptoError::Unsupported(
                "TR-34 content encryption AES-192-CBC".into(),
            ));
        }
        other => {
            return Err(CryptoError::Unsupported(format!(
                "TR-34 content encryption algorithm {other}"
            )));
        }
    };
    let iv = algorithm
        .parameters
        .as_ref()
        .filter(|p| p.tag() == Tag::OctetString && p.value().len() == cipher.block())
        .ok_or_else(|| {
            CryptoError::format(WHAT, "content encryption IV missing or of the wrong length")
        })?;
    Ok((cipher, iv.value().to_vec()))
}

fn decrypt_content(
    cipher: ContentEncryption,
    cek: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if cek.len() != cipher.key_len() {
        return Err(CryptoError::VerificationFailed(
            "TR-34 content-encryption key length",
        ));
    }
    let mut plain = Zeroizing::new(cbc(cipher, false, cek, iv, ciphertext)?);
    let pad = usize::from(plain.last().copied().unwrap_or(0));
    let block = cipher.block();
    let len = plain.len();
    if pad == 0
        || pad > block
        || pad > len
        || !plain[len - pad..].iter().all(|b| usize::from(*b) == pad)
    {
        return Err(CryptoError::VerificationFailed("TR-34 content padding"));
    }
    plain.truncate(len - pad);
    Ok(plain)
}

fn cbc(
    cipher: ContentEncryption,
    encrypt: bool,
    key: &[u8],
    iv: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    match cipher {
        ContentEncryption::Aes128Cbc | ContentEncryption::Aes256Cbc => {
            let iv: [u8; AES_BLOCK] = iv
                .try_into()
                .map_err(|_| CryptoError::format(WHAT, "AES IV must be 16 bytes"))?;
            if encrypt {
                aes_encrypt_cbc(key, &iv, data)
            } else {
                aes_decrypt_cbc(key, &iv, data)
            }
        }
        ContentEncryption::TdesCbc => {
            let iv: [u8; DES_BLOCK] = iv
                .try_into()
                .map_err(|_| CryptoError::format(WHAT, "TDES IV must be 8 bytes"))?;
            if encrypt {
                tdes_encrypt_cbc(key, &iv, data)
            } else {
                tdes_decrypt_cbc(key, &iv, data)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DER helpers
// ---------------------------------------------------------------------------------------------

fn der_error(error: der::Error) -> CryptoError {
    CryptoError::format(WHAT, format!("DER encoding: {error}"))
}

fn encode<T: Encode>(value: &T) -> Result<Vec<u8>, CryptoError> {
    value.to_der().map_err(der_error)
}

fn octets(bytes: Vec<u8>) -> Result<OctetString, CryptoError> {
    OctetString::new(bytes).map_err(der_error)
}

fn any_octets(bytes: &[u8]) -> Result<Any, CryptoError> {
    Any::new(Tag::OctetString, bytes).map_err(der_error)
}

fn set_of<T: der::DerOrd>(items: Vec<T>) -> Result<SetOfVec<T>, CryptoError> {
    SetOfVec::try_from(items).map_err(der_error)
}

fn sha256_algorithm() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    }
}

/// A SignedData without signers carrying certificates and, optionally, `id-data` content
/// (the credential token, and the inner structure of rebind tokens).
fn certificates_only(
    content: Option<Any>,
    certificates: &[Certificate],
) -> Result<SignedData, CryptoError> {
    Ok(SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: content,
        },
        certificates: Some(certificate_set(certificates)?),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    })
}

fn certificate_set(certificates: &[Certificate]) -> Result<CertificateSet, CryptoError> {
    Ok(CertificateSet(set_of(
        certificates
            .iter()
            .cloned()
            .map(CertificateChoices::Certificate)
            .collect(),
    )?))
}

fn content_info<T: Encode>(
    content_type: ObjectIdentifier,
    content: &T,
) -> Result<Vec<u8>, CryptoError> {
    encode(&ContentInfo {
        content_type,
        content: Any::from_der(&encode(content)?).map_err(der_error)?,
    })
}
