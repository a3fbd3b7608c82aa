//! HSM backends: where keys live and operations run. The registry knows keys by the handle
//! each backend gave them; key material never leaves a backend in the clear.
//!
//! | URL | backend |
//! |---|---|
//! | `soft://<dir>[?id=x&site=y&cache=off]` | software HSM over `paycrypto`, keys in `<dir>` as TR-31 blocks under a local master key (LMK); not for production |
//! | `pkcs11://<module path>?token=<label>[&sessions=n&id=x&site=y]` | a PKCS#11 token (`hsm-pkcs11`): keys generated or imported inside the token, non-extractable; what the token cannot do inside its boundary is `Unsupported` (see `docs/hsm-proxy.md`) |
//! | `payshield://host:port[?id=x&site=y&header=4&connections=4&timeout_ms=400]` | a payShield-compatible HSM over host commands; keys are `S` key blocks under its LMK |

pub mod asymmetric;
pub mod payshield;
pub mod pkcs11;
pub mod soft;

use std::fmt;
use std::sync::Arc;

use paycrypto::SecretBytes;
use paycrypto::pin::{Pan, PinBlockFormat};
use paycrypto::tr31::KeyBlockHeader;
use secrecy::SecretString;

use crate::error::HsmError;
use crate::spec::{KeyAlgorithm, KeySpec};

/// A key as one backend holds it: its handle and what it is.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    /// The backend's reference.
    pub handle: &'a str,
    /// The key's attributes.
    pub spec: &'a KeySpec,
}

/// A key a backend generated or imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// The backend's reference to it.
    pub handle: String,
    /// Its key check value (hex, 6 digits).
    pub kcv: String,
}

/// Which DUKPT working key of a BDK an operation uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dukpt {
    /// TDES DUKPT (ANSI X9.24-1:2009), 10-byte KSN.
    Tdes {
        /// The transaction's KSN.
        ksn: paycrypto::dukpt::tdes::Ksn,
        /// Response (host to device) instead of request variants.
        response: bool,
        /// Data keys: the bare variant instead of the one-way function.
        variant_only: bool,
    },
    /// AES DUKPT (ANSI X9.24-3-2017), 12-byte KSN.
    Aes {
        /// The transaction's KSN.
        ksn: paycrypto::dukpt::aes::Ksn,
        /// Response direction (MAC verification / data decryption usages).
        response: bool,
        /// The working key's type.
        working_key: paycrypto::dukpt::aes::KeyType,
    },
}

/// A key used by an operation: a stored key directly, or a DUKPT working key of a BDK.
#[derive(Clone, Debug)]
pub struct Working<'a> {
    /// The stored key.
    pub key: KeyRef<'a>,
    /// The DUKPT transaction, when `key` is a BDK.
    pub dukpt: Option<Dukpt>,
}

/// Cipher mode of data operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CipherMode {
    /// ECB.
    Ecb,
    /// CBC with an IV.
    Cbc,
}

/// How data is enciphered.
#[derive(Clone, Debug)]
pub struct Cipher<'a> {
    /// The key.
    pub key: Working<'a>,
    /// The mode.
    pub mode: CipherMode,
    /// The IV (CBC), of the cipher's block size.
    pub iv: Vec<u8>,
}

/// A PIN block's key and format.
#[derive(Clone, Debug)]
pub struct PinKey<'a> {
    /// The key.
    pub key: Working<'a>,
    /// The ISO 9564 format.
    pub format: PinBlockFormat,
}

/// MAC algorithms of the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mac {
    /// ISO 9797-1 algorithm 1.
    Alg1(paycrypto::mac::Padding),
    /// ISO 9797-1 algorithm 3.
    Alg3(paycrypto::mac::Padding),
    /// CMAC (TDES or AES by the key).
    Cmac,
    /// HMAC-SHA-256.
    HmacSha256,
}

/// Card validation data kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardValidation {
    /// CVV with the card's service code.
    Cvv {
        /// 3 digits.
        service_code: String,
    },
    /// CVV2 (service code 000).
    Cvv2,
    /// iCVV (service code 999).
    Icvv,
}

/// How the ARQC key is derived from the issuer master key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterKeyDerivation {
    /// EMV option A.
    OptionA,
    /// EMV option B.
    OptionB,
}

/// The ARPC asked for with an ARQC verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arpc {
    /// None.
    None,
    /// Method 1 with the authorisation response code.
    Method1([u8; 2]),
    /// Method 2 with the card status update and proprietary data.
    Method2 {
        /// Card status update.
        csu: [u8; 4],
        /// Proprietary authentication data, 0 to 8 bytes.
        proprietary: Vec<u8>,
    },
}

/// An ARQC to verify.
#[derive(Clone, Debug)]
pub struct Arqc<'a> {
    /// The issuer master key (E0).
    pub key: KeyRef<'a>,
    /// Option A or B.
    pub derivation: MasterKeyDerivation,
    /// The session key scheme (with ATC and UN).
    pub session: paycrypto::emv::SessionKeyDerivation,
    /// Padding of the cryptogram MAC (method 1 for Visa CVN 10, else method 2).
    pub padding: paycrypto::mac::Padding,
    /// The PAN.
    pub pan: Pan,
    /// PAN sequence number (2 digits).
    pub psn: String,
    /// The data the card MACed.
    pub data: Vec<u8>,
    /// The cryptogram.
    pub arqc: [u8; 8],
    /// The response cryptogram wanted.
    pub arpc: Arpc,
}

/// How a PIN is verified.
#[derive(Clone, Debug)]
pub enum PinMethod {
    /// Visa PVV with its key index.
    VisaPvv(paycrypto::pinver::Pvki),
    /// IBM 3624 offset.
    Ibm3624 {
        /// Decimalisation table.
        table: paycrypto::pinver::DecimalizationTable,
        /// Validation data.
        validation: paycrypto::pinver::ValidationData,
        /// PIN check length (0: the PIN's length).
        check_len: usize,
    },
}

/// A PIN verification request: the PIN arrives enciphered under a PIN key.
#[derive(Clone, Debug)]
pub struct PinData<'a> {
    /// The PIN verification key (V1/V2).
    pub verification_key: KeyRef<'a>,
    /// The method.
    pub method: PinMethod,
    /// The key and format of the PIN block.
    pub encryption: PinKey<'a>,
    /// The enciphered PIN block.
    pub block: Vec<u8>,
    /// The PAN.
    pub pan: Pan,
}

/// A data-plane operation, with keys resolved and permissions checked by the caller.
#[derive(Debug)]
pub enum Operation<'a> {
    /// Encipher data.
    Encrypt {
        /// How.
        cipher: Cipher<'a>,
        /// A multiple of the block size.
        data: Vec<u8>,
    },
    /// Decipher data.
    Decrypt {
        /// How.
        cipher: Cipher<'a>,
        /// A multiple of the block size.
        data: Vec<u8>,
    },
    /// Decipher under one key and encipher under another, inside the backend.
    ReEncrypt {
        /// The incoming encipherment.
        from: Cipher<'a>,
        /// The outgoing encipherment.
        to: Cipher<'a>,
        /// The ciphertext.
        data: Vec<u8>,
    },
    /// Translate a PIN block.
    TranslatePin {
        /// The incoming key and format.
        from: PinKey<'a>,
        /// The outgoing key and format.
        to: PinKey<'a>,
        /// The enciphered PIN block.
        block: Vec<u8>,
        /// The PAN, for PAN-bound formats.
        pan: Option<Pan>,
    },
    /// Generate a MAC.
    GenerateMac {
        /// The key.
        key: Working<'a>,
        /// The algorithm.
        algorithm: Mac,
        /// The message.
        data: Vec<u8>,
        /// Bytes wanted.
        length: usize,
    },
    /// Verify a MAC.
    VerifyMac {
        /// The key.
        key: Working<'a>,
        /// The algorithm.
        algorithm: Mac,
        /// The message.
        data: Vec<u8>,
        /// The MAC to check.
        mac: Vec<u8>,
    },
    /// Generate CVV, CVV2 or iCVV.
    GenerateCardValidation {
        /// The CVK (C0).
        key: KeyRef<'a>,
        /// Which value.
        kind: CardValidation,
        /// The PAN.
        pan: Pan,
        /// YYMM.
        expiry: String,
    },
    /// Verify CVV, CVV2 or iCVV.
    VerifyCardValidation {
        /// The CVK (C0).
        key: KeyRef<'a>,
        /// Which value.
        kind: CardValidation,
        /// The PAN.
        pan: Pan,
        /// YYMM.
        expiry: String,
        /// The value to check.
        value: String,
    },
    /// Verify an ARQC and optionally compute the ARPC.
    VerifyArqc(Arqc<'a>),
    /// Compute the PVV or IBM 3624 offset of an enciphered PIN.
    GeneratePinData(PinData<'a>),
    /// Verify an enciphered PIN against a PVV or offset.
    VerifyPinData {
        /// The PIN and how.
        data: PinData<'a>,
        /// The PVV or offset on file.
        value: String,
    },
}

/// What an operation produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Bytes (ciphertext, plaintext, MAC, PIN block).
    Bytes(Vec<u8>),
    /// Digits (CVV).
    Digits(String),
    /// A verification result, and for an ARQC the ARPC.
    Verified {
        /// Whether the value verified.
        verified: bool,
        /// The ARPC, for a verified ARQC when one was asked for.
        arpc: Vec<u8>,
    },
}

/// A TR-31 export: the key, the wrapping key and the exported block's exportability.
#[derive(Clone, Debug)]
pub struct Tr31Export<'a> {
    /// The key to export.
    pub key: KeyRef<'a>,
    /// The KEK / KBPK.
    pub wrapping_key: KeyRef<'a>,
    /// The exported block's exportability byte.
    pub exportability: paycrypto::tr31::Exportability,
}

/// One HSM (or software HSM).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// The backend's id in the pool.
    fn id(&self) -> &str;
    /// The site the backend runs at.
    fn site(&self) -> &str;
    /// The URL scheme (`soft`, `pkcs11`, `payshield`), for metrics.
    fn kind(&self) -> &'static str;
    /// A cheap health check.
    async fn check(&self) -> Result<(), HsmError>;
    /// Generates a key inside the backend.
    async fn generate(&self, spec: &KeySpec) -> Result<StoredKey, HsmError>;
    /// Stores a key combined from clear components (initial key exchange keys only).
    async fn import_clear(&self, spec: &KeySpec, key: SecretBytes) -> Result<StoredKey, HsmError>;
    /// Unwraps a TR-31 key block under `wrapping_key` and stores the key; returns the block's
    /// header, the key's attributes (from the header and the key's length) and the stored key.
    async fn import_tr31(
        &self,
        wrapping_key: KeyRef<'_>,
        key_block: &str,
    ) -> Result<(KeyBlockHeader, KeySpec, StoredKey), HsmError>;
    /// Wraps a key as a TR-31 block under a KEK.
    async fn export_tr31(&self, export: Tr31Export<'_>) -> Result<String, HsmError>;
    /// Derives a device's DUKPT initial key from a BDK and wraps it (usage B1) under a KEK;
    /// returns the block and the initial key's KCV.
    async fn export_dukpt_initial_key(
        &self,
        bdk: KeyRef<'_>,
        wrapping_key: KeyRef<'_>,
        dukpt: &Dukpt,
    ) -> Result<(String, String), HsmError>;
    /// Derives a device's DUKPT initial key from a BDK and puts it in a TR-34 one-pass key
    /// token for the device (`krd_certificate`, DER), signed with the KDH key pair `kdh`
    /// whose certificate is `kdh_certificate` (DER); returns the token (DER) and the initial
    /// key's KCV.
    async fn export_dukpt_initial_key_tr34(
        &self,
        bdk: KeyRef<'_>,
        kdh: KeyRef<'_>,
        dukpt: &Dukpt,
        kdh_certificate: &[u8],
        krd_certificate: &[u8],
    ) -> Result<(Vec<u8>, String), HsmError> {
        let _ = (bdk, kdh, dukpt, kdh_certificate, krd_certificate);
        Err(HsmError::Unsupported(format!(
            "backend {} ({}) cannot build TR-34 key tokens",
            self.id(),
            self.kind()
        )))
    }
    /// Derives a device's DUKPT initial key from a BDK and delivers it to the device whose
    /// P-256 public key is `device_public_key` (SEC1 point): ECDH with a fresh ephemeral key
    /// pair, a one-time KBPK, a TR-31 version D block (see `paycrypto::ecdh`); returns the
    /// delivery (ephemeral public key and block) and the initial key's KCV.
    async fn export_dukpt_initial_key_ecdh(
        &self,
        bdk: KeyRef<'_>,
        dukpt: &Dukpt,
        device_public_key: &[u8],
    ) -> Result<(paycrypto::ecdh::EcdhDelivery, String), HsmError> {
        let _ = (bdk, dukpt, device_public_key);
        Err(HsmError::Unsupported(format!(
            "backend {} ({}) cannot deliver keys by ECDH",
            self.id(),
            self.kind()
        )))
    }
    /// The KCV of a stored key, computed inside the backend.
    async fn kcv(&self, key: KeyRef<'_>) -> Result<String, HsmError>;
    /// The DER SubjectPublicKeyInfo of a stored RSA or EC key pair.
    async fn public_key(&self, key: KeyRef<'_>) -> Result<Vec<u8>, HsmError>;
    /// Removes a key.
    async fn delete(&self, handle: &str) -> Result<(), HsmError>;
    /// The key in the form a backend of the same key domain (same master key) can import:
    /// never the clear key.
    async fn export_replica(&self, key: KeyRef<'_>) -> Result<String, HsmError>;
    /// Stores a key another backend of the same key domain exported.
    async fn import_replica(&self, spec: &KeySpec, replica: &str) -> Result<StoredKey, HsmError>;
    /// Runs a data-plane operation.
    async fn run(&self, operation: Operation<'_>) -> Result<Outcome, HsmError>;
}

/// The secrets backends are opened with (from configuration). `Debug` shows no secret.
#[derive(Clone, Debug, Default)]
pub struct BackendSecrets {
    /// The software backend's local master key (32 bytes).
    pub soft_lmk: Option<SecretBytes>,
    /// The user PIN of `pkcs11://` tokens.
    pub pkcs11_pin: Option<SecretString>,
}

/// Connects to the backend a URL names, with the secrets it needs.
pub async fn connect(url: &str, secrets: &BackendSecrets) -> Result<Arc<dyn Backend>, HsmError> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("pkcs11") => {
            let pin = secrets.pkcs11_pin.as_ref().ok_or_else(|| {
                HsmError::invalid(
                    "MPOS_HSM_PKCS11_PIN",
                    "pkcs11:// backends need the token's user PIN",
                )
            })?;
            Ok(Arc::new(
                pkcs11::Pkcs11Backend::open(url, pin.clone()).await?,
            ))
        }
        Some("soft") => {
            let lmk = secrets.soft_lmk.as_ref().ok_or_else(|| {
                HsmError::invalid(
                    "MPOS_HSM_SOFT_LMK",
                    "soft:// backends need a local master key",
                )
            })?;
            Ok(Arc::new(soft::SoftBackend::open(url, lmk.clone()).await?))
        }
        Some("payshield") => Ok(Arc::new(payshield::PayShieldBackend::open(url)?)),
        _ => Err(HsmError::invalid(
            "backend url",
            format!(
                "{url:?}: accepted soft://<dir>[?id=x&site=y], \
                 pkcs11://<module>?token=<label>[&id=x&site=y] and \
                 payshield://host:port[?id=x&site=y]"
            ),
        )),
    }
}

/// The value of a query parameter of a backend URL.
pub fn url_query(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((key, value)) if key == name => Some(value.to_owned()),
            _ => None,
        })
}

/// Reads `id` and `site` from a backend URL's query (`?id=a&site=b`); defaults: the scheme
/// and `local`.
pub fn url_id_and_site(url: &str, scheme: &str) -> (String, String, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut id = scheme.to_owned();
    let mut site = "local".to_owned();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("id", value)) if !value.is_empty() => value.clone_into(&mut id),
            Some(("site", value)) if !value.is_empty() => value.clone_into(&mut site),
            _ => {}
        }
    }
    (path.to_owned(), id, site)
}

/// The KCV of a clear key as the registry shows it: TDES encrypt-zeros, AES CMAC, HMAC
/// the first 3 bytes of HMAC-SHA-256 over 16 zero bytes, key pairs the first 3 bytes of
/// SHA-256 over the public key (ADR 9).
pub fn kcv_of(algorithm: KeyAlgorithm, key: &SecretBytes) -> Result<String, HsmError> {
    use paycrypto::kcv;
    let value = match algorithm {
        KeyAlgorithm::Tdes2 | KeyAlgorithm::Tdes3 => kcv::tdes_kcv(key)?.to_hex(),
        KeyAlgorithm::Aes128 | KeyAlgorithm::Aes192 | KeyAlgorithm::Aes256 => {
            kcv::aes_kcv_cmac(key)?.to_hex()
        }
        KeyAlgorithm::HmacSha256 => {
            let mac = paycrypto::mac::MacAlgorithm::HmacSha256.generate(key, &[0_u8; 16], 32)?;
            hex::encode_upper(&mac[..3])
        }
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa4096
        | KeyAlgorithm::EccP256
        | KeyAlgorithm::EccP384 => {
            asymmetric::check_value(&asymmetric::public_key(algorithm, key)?)
        }
    };
    Ok(value)
}
