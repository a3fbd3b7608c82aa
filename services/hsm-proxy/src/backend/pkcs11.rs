//! `pkcs11://` — the hsm-proxy backend on a PKCS#11 token, over `hsm-pkcs11` (cryptoki).
//!
//! URL: `pkcs11:///usr/lib/softhsm/libsofthsm2.so?token=<label>[&sessions=n&id=x&site=y]`; the
//! user PIN comes from configuration (`MPOS_HSM_PKCS11_PIN`), never from the URL.
//!
//! A key's handle is its `CKA_ID` (a random UUID). Keys are generated inside the token or
//! imported from clear components with `C_CreateObject`; they are always sensitive and
//! non-extractable, and carry exactly the PKCS#11 uses this backend's operations need for their
//! TR-31 key usage and mode of use ([`token_uses`]): a key whose operations the token cannot do
//! gets no use at all (it can be stored and its KCV read, nothing else).
//!
//! Everything a general-purpose token can do inside its boundary happens there: data
//! encryption and decryption, AES-CMAC, HMAC-SHA-256, ISO 9797-1 MAC algorithm 1 (by CBC
//! encryption), KCVs, the TDES encipherment of PVV and IBM 3624 data, PIN block encipherment and
//! decipherment, and AES-128 DUKPT: the working key is derived inside the token by a chain of
//! `CKM_AES_CBC_ENCRYPT_DATA` from the BDK, used, and destroyed with its intermediate keys.
//!
//! What stays in host memory for a moment (zeroized, never logged), because PKCS#11 has no
//! mechanism that keeps it inside the token:
//! * **PIN translation and PIN verification**: the token deciphers the PIN block, the clear PIN
//!   is decoded (and re-formatted) in host memory, then enciphered by the token (translation)
//!   or turned into the PVV / IBM 3624 input that the token enciphers. PCI PIN forbids a clear
//!   PIN outside a secure cryptographic device: production PIN processing belongs on a payment
//!   HSM (`payshield://`).
//! * **Re-encryption**: decrypt by the token, the clear data in host memory, encrypt by the
//!   token.
//! * **KCV of AES keys that may encrypt but not sign** (D0, P0): the CMAC KCV of the registry
//!   (ADR 9) is computed from two token encryptions (`L = E(K, 0)`, then `E(K, K1)` with the
//!   CMAC subkey `K1` derived from `L` in host memory).
//!
//! KCVs follow the registry's convention (TDES: encrypt zeros; AES: CMAC; HMAC: HMAC-SHA-256 of
//! 16 zero bytes) except for AES keys that may neither encrypt nor sign (an AES BDK, which may
//! only derive, or an AES key of a usage the token cannot serve): no token mechanism can compute
//! a CMAC with them, so their KCV is the token's `CKA_CHECK_VALUE`, the encrypt-zeros KCV.
//!
//! What the token cannot do inside its boundary is [`HsmError::Unsupported`], never done by
//! extracting the key: TDES DUKPT, AES DUKPT other than AES-128 keys, ISO 9797-1 MAC algorithm 3,
//! TDES-CMAC (cryptoki 0.12 cannot name `CKM_DES3_CMAC`), CVV/CVV2/iCVV, EMV ARQC/ARPC,
//! TR-31 import and export, DUKPT initial key export, and replicas to other backends (a pool of
//! PKCS#11 tokens needs a shared wrapping key; not done yet). See `docs/hsm-proxy.md`.

use std::fmt;

use hsm_pkcs11::{
    CipherMode as TokenMode, Derivation, Error as TokenError, KeyKind, KeyUses, MacAlgorithm,
    Pkcs11Config, Token,
};
use paycrypto::dukpt::aes as aes_dukpt;
use paycrypto::pin::pan_field_16;
use paycrypto::pin::{Pan, Pin, PinBlockFormat, decode_pin_block, encode_pin_block};
use paycrypto::pinver;
use paycrypto::primitives::xor_in_place;
use paycrypto::tr31::KeyBlockHeader;
use paycrypto::{CryptoError, SecretBytes};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{
    Backend, CardValidation, Cipher, CipherMode, Dukpt, KeyRef, Mac, Operation, Outcome, PinData,
    PinMethod, StoredKey, Tr31Export, Working, url_id_and_site,
};
use crate::error::HsmError;
use crate::spec::{KeyAlgorithm, KeySpec};

/// The refusal of an operation a general-purpose token cannot do inside its boundary.
fn unsupported(what: &str) -> HsmError {
    HsmError::Unsupported(format!(
        "the pkcs11 backend cannot {what} inside the token; use a payment HSM (payshield://) or \
         soft://"
    ))
}

/// Token return values caused by the caller's data rather than by the token.
const CALLER_RVS: &[&str] = &[
    "DataLenRange",
    "DataInvalid",
    "EncryptedDataLenRange",
    "EncryptedDataInvalid",
    "MechanismParamInvalid",
    "KeySizeRange",
    "KeyTypeInconsistent",
];

/// What a DUKPT working key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Pin,
    Mac,
    Data,
}

/// The PKCS#11 uses a key gets: exactly what this backend's operations need for its TR-31
/// key usage and mode of use, nothing for usages whose operations the token cannot do.
pub fn token_uses(spec: &KeySpec) -> KeyUses {
    let mode = spec.mode.code();
    let cipher = |mode: &str| match mode {
        "E" => KeyUses::ENCRYPT,
        "D" => KeyUses::DECRYPT,
        "B" | "N" => KeyUses::CIPHER,
        _ => KeyUses::NONE,
    };
    let mac = |mode: &str| match mode {
        "C" | "N" => KeyUses::MAC,
        "G" => KeyUses::SIGN,
        "V" => KeyUses::VERIFY,
        _ => KeyUses::NONE,
    };
    let computes = matches!(mode, "C" | "G" | "V" | "N");
    match (spec.usage.code(), spec.algorithm) {
        ("D0", algorithm) if algorithm.is_tdes() || algorithm.is_aes() => cipher(mode),
        ("P0", algorithm) if algorithm.is_tdes() || algorithm.is_aes() => cipher(mode),
        ("M6", algorithm) if algorithm.is_aes() => mac(mode),
        ("M7", KeyAlgorithm::HmacSha256) => mac(mode),
        // ISO 9797-1 algorithm 1 is computed by the token's CBC encryption.
        ("M0" | "M1", algorithm) if algorithm.is_tdes() && computes => KeyUses::ENCRYPT,
        // PVV and IBM 3624: one TDES encryption of the TSP / validation data.
        ("V1" | "V2", algorithm) if algorithm.is_tdes() && computes => KeyUses::ENCRYPT,
        ("B0", KeyAlgorithm::Aes128) if matches!(mode, "X" | "N") => KeyUses::DERIVE,
        _ => KeyUses::NONE,
    }
}

fn key_kind(algorithm: KeyAlgorithm) -> Result<KeyKind, HsmError> {
    Ok(match algorithm {
        KeyAlgorithm::Tdes2 => KeyKind::Tdes2,
        KeyAlgorithm::Tdes3 => KeyKind::Tdes3,
        KeyAlgorithm::Aes128 => KeyKind::Aes128,
        KeyAlgorithm::Aes192 => KeyKind::Aes192,
        KeyAlgorithm::Aes256 => KeyKind::Aes256,
        KeyAlgorithm::HmacSha256 => KeyKind::Hmac {
            bytes: KeyAlgorithm::HmacSha256.key_len(),
        },
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa4096
        | KeyAlgorithm::EccP256
        | KeyAlgorithm::EccP384 => {
            return Err(unsupported("hold RSA or EC key pairs (not mapped yet)"));
        }
    })
}

/// The backend URL without the proxy's own parameters (`id`, `site`), for `hsm-pkcs11`.
fn token_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            name != "id" && name != "site"
        })
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

fn working_is_aes(working: &Working<'_>) -> bool {
    match &working.dukpt {
        None => working.key.spec.algorithm.is_aes(),
        Some(Dukpt::Tdes { .. }) => false,
        Some(Dukpt::Aes { working_key, .. }) => !matches!(
            working_key,
            aes_dukpt::KeyType::Tdes2 | aes_dukpt::KeyType::Tdes3
        ),
    }
}

fn check_mac_len(algorithm: MacAlgorithm, len: usize) -> Result<(), HsmError> {
    let full = algorithm.full_len();
    if (4..=full).contains(&len) {
        return Ok(());
    }
    Err(HsmError::Crypto(CryptoError::InvalidLength {
        what: "MAC length",
        expected: match full {
            8 => "4 to 8 bytes",
            16 => "4 to 16 bytes",
            _ => "4 to 32 bytes",
        },
        actual: len,
    }))
}

fn verified(verified: bool) -> Outcome {
    Outcome::Verified {
        verified,
        arpc: Vec::new(),
    }
}

/// Keys derived for one operation (DUKPT), destroyed afterwards: by [`TempKeys::release`],
/// or by a task spawned on drop when the operation was abandoned (e.g. timed out).
struct TempKeys {
    token: Token,
    ids: Vec<String>,
}

impl TempKeys {
    fn new(token: &Token) -> Self {
        Self {
            token: token.clone(),
            ids: Vec::new(),
        }
    }

    async fn release(mut self) {
        for id in std::mem::take(&mut self.ids) {
            if let Err(error) = self.token.destroy(&id).await {
                tracing::warn!(key = %id, %error, "cannot destroy a derived dukpt key");
            }
        }
    }
}

impl Drop for TempKeys {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.ids);
        let token = self.token.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for id in ids {
                    if let Err(error) = token.destroy(&id).await {
                        tracing::warn!(key = %id, %error, "cannot destroy a derived dukpt key");
                    }
                }
            });
        }
    }
}

/// The PKCS#11 backend.
pub struct Pkcs11Backend {
    id: String,
    site: String,
    token: Token,
}

impl fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("id", &self.id)
            .field("site", &self.site)
            .field("token", &self.token.label())
            .finish()
    }
}

impl Pkcs11Backend {
    /// Opens the token of `pkcs11://<module>?token=<label>[&sessions=n&id=x&site=y]` and logs
    /// in with `user_pin`.
    pub async fn open(url: &str, user_pin: SecretString) -> Result<Self, HsmError> {
        let (_, id, site) = url_id_and_site(url, "pkcs11");
        let config = Pkcs11Config::from_url(&token_url(url), user_pin)
            .map_err(|error| HsmError::invalid("backend url", error.to_string()))?;
        let token = Token::open(config)
            .await
            .map_err(|error| HsmError::Unavailable(format!("backend {id}: {error}")))?;
        tracing::info!(backend = %id, site = %site, token = token.label(), "pkcs11 backend opened");
        Ok(Self { id, site, token })
    }

    fn error(&self, error: TokenError) -> HsmError {
        match error {
            TokenError::InvalidInput { what, reason } => HsmError::invalid(what, reason),
            TokenError::KeyUseNotPermitted { .. } | TokenError::WrongKeyKind { .. } => {
                HsmError::WrongKeyUsage(format!("backend {}: {error}", self.id))
            }
            TokenError::Unsupported(reason) => {
                unsupported(&format!("do this ({reason}) for backend {}", self.id))
            }
            TokenError::NotExportable(_) => unsupported("export a key"),
            TokenError::VerificationFailed => {
                HsmError::Crypto(CryptoError::VerificationFailed("MAC"))
            }
            TokenError::KeyNotFound(_) => {
                HsmError::Unavailable(format!("backend {} does not hold the key", self.id))
            }
            TokenError::Token { ref rv, .. } if CALLER_RVS.contains(&rv.as_str()) => {
                HsmError::invalid("data", format!("refused by the token: {error}"))
            }
            TokenError::Config(_) => HsmError::invalid("backend url", error.to_string()),
            TokenError::InvalidKeyId(_)
            | TokenError::KeyExists(_)
            | TokenError::AmbiguousKey(_)
            | TokenError::Task(_) => HsmError::Internal(format!("backend {}: {error}", self.id)),
            other => HsmError::Unavailable(format!("backend {}: {other}", self.id)),
        }
    }

    async fn encrypt(&self, key: &str, mode: TokenMode, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.token
            .encrypt(key, mode, data)
            .await
            .map_err(|error| self.error(error))
    }

    async fn decrypt(
        &self,
        key: &str,
        mode: TokenMode,
        data: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        self.token
            .decrypt(key, mode, data)
            .await
            .map_err(|error| self.error(error))
    }

    /// One `CKM_AES_CBC_ENCRYPT_DATA` step (zero IV, one block: AES-ECB of `data`) from
    /// `base` to a new AES-128 token key.
    async fn derive_step(
        &self,
        temp: &mut TempKeys,
        base: &str,
        data: [u8; 16],
        uses: KeyUses,
    ) -> Result<String, HsmError> {
        let id = format!("dukpt-{}", uuid::Uuid::new_v4().simple());
        self.token
            .derive_key(
                base,
                Derivation::AesCbcEncryptData {
                    iv: [0; 16],
                    data: data.to_vec(),
                },
                &id,
                "mpos dukpt",
                KeyKind::Aes128,
                uses,
            )
            .await
            .map_err(|error| self.error(error))?;
        temp.ids.push(id.clone());
        Ok(id)
    }

    /// The token key an operation uses: the stored key, or its AES DUKPT working key derived
    /// inside the token (ANSI X9.24-3-2017 host derivation: the initial key from the BDK, one
    /// derivation step per one-bit of the counter, then the working key with `uses`).
    async fn working(
        &self,
        working: &Working<'_>,
        purpose: Purpose,
        uses: KeyUses,
    ) -> Result<(String, TempKeys), HsmError> {
        let mut temp = TempKeys::new(&self.token);
        let Some(dukpt) = &working.dukpt else {
            return Ok((working.key.handle.to_owned(), temp));
        };
        let (ksn, response, working_key) = match dukpt {
            Dukpt::Tdes { .. } => {
                return Err(unsupported("derive TDES DUKPT (ANSI X9.24-1) keys"));
            }
            Dukpt::Aes {
                ksn,
                response,
                working_key,
            } => (ksn, *response, *working_key),
        };
        if working.key.spec.algorithm != KeyAlgorithm::Aes128
            || working_key != aes_dukpt::KeyType::Aes128
        {
            return Err(unsupported(
                "derive AES DUKPT keys other than AES-128 working keys of an AES-128 BDK \
                 (longer keys need CKM_CONCATENATE_BASE_AND_KEY)",
            ));
        }
        ksn.check_transaction()?;
        let usage = match (purpose, response) {
            (Purpose::Pin, _) => aes_dukpt::KeyUsage::PinEncryption,
            (Purpose::Mac, false) => aes_dukpt::KeyUsage::MacGeneration,
            (Purpose::Mac, true) => aes_dukpt::KeyUsage::MacVerification,
            (Purpose::Data, false) => aes_dukpt::KeyUsage::DataEncrypt,
            (Purpose::Data, true) => aes_dukpt::KeyUsage::DataDecrypt,
        };
        let key_type = aes_dukpt::KeyType::Aes128;
        let initial_key_id = ksn.initial_key_id();
        let counter = ksn.counter();
        let initial = aes_dukpt::derivation_data(
            aes_dukpt::KeyUsage::KeyDerivationInitialKey,
            key_type,
            &initial_key_id,
            0,
        );
        let mut base = self
            .derive_step(&mut temp, working.key.handle, initial, KeyUses::DERIVE)
            .await?;
        let mut reached = 0_u32;
        for bit in (0..32).rev().map(|shift| 1_u32 << shift) {
            if counter & bit != 0 {
                reached |= bit;
                let data = aes_dukpt::derivation_data(
                    aes_dukpt::KeyUsage::KeyDerivation,
                    key_type,
                    &initial_key_id,
                    reached,
                );
                base = self
                    .derive_step(&mut temp, &base, data, KeyUses::DERIVE)
                    .await?;
            }
        }
        let data = aes_dukpt::derivation_data(usage, key_type, &initial_key_id, counter);
        let key = self.derive_step(&mut temp, &base, data, uses).await?;
        Ok((key, temp))
    }

    fn token_mode(cipher: &Cipher<'_>) -> Result<TokenMode, HsmError> {
        let block = if working_is_aes(&cipher.key) { 16 } else { 8 };
        match cipher.mode {
            CipherMode::Ecb => Ok(TokenMode::Ecb),
            CipherMode::Cbc if cipher.iv.is_empty() => Ok(TokenMode::Cbc(vec![0; block])),
            CipherMode::Cbc if cipher.iv.len() == block => Ok(TokenMode::Cbc(cipher.iv.clone())),
            CipherMode::Cbc => Err(HsmError::invalid(
                "iv",
                format!("must be {block} bytes for this key"),
            )),
        }
    }

    async fn encrypt_data(&self, cipher: &Cipher<'_>, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        let mode = Self::token_mode(cipher)?;
        let (key, temp) = self
            .working(&cipher.key, Purpose::Data, KeyUses::ENCRYPT)
            .await?;
        let result = self.encrypt(&key, mode, data).await;
        temp.release().await;
        result
    }

    async fn decrypt_data(
        &self,
        cipher: &Cipher<'_>,
        data: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        let mode = Self::token_mode(cipher)?;
        let (key, temp) = self
            .working(&cipher.key, Purpose::Data, KeyUses::DECRYPT)
            .await?;
        let result = self.decrypt(&key, mode, data).await;
        temp.release().await;
        result
    }

    fn mac_algorithm(key: &Working<'_>, algorithm: Mac) -> Result<MacAlgorithm, HsmError> {
        let aes = working_is_aes(key);
        match algorithm {
            Mac::Alg1(padding) if !aes && key.key.spec.algorithm != KeyAlgorithm::HmacSha256 => {
                Ok(MacAlgorithm::Iso9797Alg1(padding))
            }
            Mac::Alg1(_) => Err(unsupported(
                "compute ISO 9797-1 MAC algorithm 1 with a non-TDES key",
            )),
            Mac::Alg3(_) => Err(unsupported(
                "compute ISO 9797-1 MAC algorithm 3 (retail MAC: single-DES halves of the key)",
            )),
            Mac::Cmac if aes => Ok(MacAlgorithm::AesCmac),
            Mac::Cmac => Err(unsupported(
                "compute a TDES-CMAC (cryptoki 0.12 cannot name CKM_DES3_CMAC)",
            )),
            Mac::HmacSha256 => Ok(MacAlgorithm::HmacSha256),
        }
    }

    async fn generate_mac(
        &self,
        key: &Working<'_>,
        algorithm: Mac,
        data: &[u8],
        length: usize,
    ) -> Result<Vec<u8>, HsmError> {
        let algorithm = Self::mac_algorithm(key, algorithm)?;
        check_mac_len(algorithm, length)?;
        let uses = match algorithm {
            MacAlgorithm::Iso9797Alg1(_) => KeyUses::ENCRYPT,
            _ => KeyUses::SIGN,
        };
        let (id, temp) = self.working(key, Purpose::Mac, uses).await?;
        let result = self
            .token
            .mac(&id, algorithm, data)
            .await
            .map_err(|error| self.error(error));
        temp.release().await;
        let mut mac = result?;
        mac.truncate(length);
        Ok(mac)
    }

    async fn verify_mac(
        &self,
        key: &Working<'_>,
        algorithm: Mac,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool, HsmError> {
        let algorithm = Self::mac_algorithm(key, algorithm)?;
        check_mac_len(algorithm, mac.len())?;
        let uses = match algorithm {
            MacAlgorithm::Iso9797Alg1(_) => KeyUses::ENCRYPT,
            // A truncated MAC is recomputed (SIGN); a full one is checked by C_Verify.
            _ => KeyUses::MAC,
        };
        let (id, temp) = self.working(key, Purpose::Mac, uses).await?;
        let result = self.token.verify_mac(&id, algorithm, data, mac).await;
        temp.release().await;
        match result {
            Ok(()) => Ok(true),
            Err(TokenError::VerificationFailed) => Ok(false),
            Err(error) => Err(self.error(error)),
        }
    }

    fn check_pin_key(format: PinBlockFormat, aes: bool) -> Result<(), HsmError> {
        match (format, aes) {
            (PinBlockFormat::Iso4, true)
            | (PinBlockFormat::Iso0 | PinBlockFormat::Iso1 | PinBlockFormat::Iso3, false) => Ok(()),
            (PinBlockFormat::Iso4, false) => Err(HsmError::invalid(
                "format",
                "ISO 9564 format 4 needs an AES PIN key",
            )),
            _ => Err(HsmError::invalid(
                "format",
                "ISO 9564 formats 0, 1 and 3 need a TDES PIN key",
            )),
        }
    }

    /// Deciphers a PIN block with the token key `key` (DECRYPT). The clear PIN block and the
    /// PIN exist in host memory only inside this call and the caller's, zeroized on drop.
    async fn decipher_pin(
        &self,
        key: &str,
        aes: bool,
        format: PinBlockFormat,
        block: &[u8],
        pan: Option<&Pan>,
    ) -> Result<Pin, HsmError> {
        Self::check_pin_key(format, aes)?;
        if block.len() != format.block_len() {
            return Err(HsmError::Crypto(CryptoError::InvalidLength {
                what: "enciphered PIN block",
                expected: if aes { "16 bytes" } else { "8 bytes" },
                actual: block.len(),
            }));
        }
        let mut clear = self.decrypt(key, TokenMode::Ecb, block).await?;
        if format == PinBlockFormat::Iso4 {
            let pan = pan.ok_or_else(|| CryptoError::format("PIN block", "PAN missing"))?;
            let mut intermediate = Zeroizing::new(clear.expose().to_vec());
            xor_in_place(&mut intermediate, pan_field_16(pan).as_ref());
            clear = self.decrypt(key, TokenMode::Ecb, &intermediate).await?;
        }
        Ok(decode_pin_block(format, &clear, pan)?)
    }

    /// Formats `pin` in host memory and enciphers it with the token key `key` (ENCRYPT).
    async fn encipher_pin(
        &self,
        key: &str,
        aes: bool,
        format: PinBlockFormat,
        pin: &Pin,
        pan: Option<&Pan>,
    ) -> Result<Vec<u8>, HsmError> {
        Self::check_pin_key(format, aes)?;
        let clear = encode_pin_block(format, pin, pan, &mut rand::rngs::OsRng)?;
        if format != PinBlockFormat::Iso4 {
            return self.encrypt(key, TokenMode::Ecb, clear.expose()).await;
        }
        let pan = pan.ok_or_else(|| CryptoError::format("PIN block", "PAN missing"))?;
        let mut intermediate = self.encrypt(key, TokenMode::Ecb, clear.expose()).await?;
        xor_in_place(&mut intermediate, pan_field_16(pan).as_ref());
        self.encrypt(key, TokenMode::Ecb, &intermediate).await
    }

    /// The clear PIN of a PIN data request (see [`Self::decipher_pin`]).
    async fn pin_of(&self, data: &PinData<'_>) -> Result<Pin, HsmError> {
        let aes = working_is_aes(&data.encryption.key);
        let (key, temp) = self
            .working(&data.encryption.key, Purpose::Pin, KeyUses::DECRYPT)
            .await?;
        let result = self
            .decipher_pin(
                &key,
                aes,
                data.encryption.format,
                &data.block,
                Some(&data.pan),
            )
            .await;
        temp.release().await;
        result
    }

    /// TDES-ECB of one 8-byte block under the PVK, inside the token.
    async fn encipher_block(
        &self,
        pvk: KeyRef<'_>,
        block: &[u8; 8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if !pvk.spec.algorithm.is_tdes() {
            return Err(HsmError::invalid(
                "verificationKey",
                "a PIN verification key is TDES",
            ));
        }
        Ok(Zeroizing::new(
            self.encrypt(pvk.handle, TokenMode::Ecb, block).await?,
        ))
    }

    /// The Visa PVV of `pin`: the token enciphers the TSP, paycrypto decimalizes.
    async fn pvv(
        &self,
        data: &PinData<'_>,
        pvki: pinver::Pvki,
        pin: &Pin,
    ) -> Result<pinver::Pvv, HsmError> {
        let block = pinver::pvv_block(&data.pan, pvki, pin);
        let enciphered = self.encipher_block(data.verification_key, &block).await?;
        Ok(pinver::pvv_from_enciphered(&enciphered)?)
    }

    /// The IBM 3624 intermediate PIN: the token enciphers the validation data, paycrypto
    /// decimalizes.
    async fn ibm3624_intermediate(
        &self,
        data: &PinData<'_>,
        table: &pinver::DecimalizationTable,
        validation: &pinver::ValidationData,
    ) -> Result<pinver::IntermediatePin, HsmError> {
        let enciphered = self
            .encipher_block(data.verification_key, &validation.block())
            .await?;
        Ok(pinver::IntermediatePin::from_enciphered(
            &enciphered,
            table,
        )?)
    }

    async fn generate_pin_data(&self, data: &PinData<'_>) -> Result<Outcome, HsmError> {
        let pin = self.pin_of(data).await?;
        let value = match &data.method {
            PinMethod::VisaPvv(pvki) => self.pvv(data, *pvki, &pin).await?.expose(),
            PinMethod::Ibm3624 {
                table,
                validation,
                check_len,
            } => {
                let check_len = if *check_len == 0 {
                    pin.len()
                } else {
                    *check_len
                };
                self.ibm3624_intermediate(data, table, validation)
                    .await?
                    .generate_offset(&pin, check_len)?
                    .expose()
            }
        };
        Ok(Outcome::Digits(value.to_string()))
    }

    async fn verify_pin_data(&self, data: &PinData<'_>, value: &str) -> Result<bool, HsmError> {
        let pin = self.pin_of(data).await?;
        let result = match &data.method {
            PinMethod::VisaPvv(pvki) => {
                let reference = pinver::Pvv::parse(value)?;
                // Pvv compares in constant time.
                return Ok(self.pvv(data, *pvki, &pin).await? == reference);
            }
            PinMethod::Ibm3624 {
                table, validation, ..
            } => {
                let offset = pinver::PinOffset::parse(value)?;
                self.ibm3624_intermediate(data, table, validation)
                    .await?
                    .verify_offset(&pin, &offset)
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(CryptoError::VerificationFailed(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    async fn translate_pin(
        &self,
        from: &super::PinKey<'_>,
        to: &super::PinKey<'_>,
        block: &[u8],
        pan: Option<&Pan>,
    ) -> Result<Vec<u8>, HsmError> {
        let (from_key, from_temp) = self
            .working(&from.key, Purpose::Pin, KeyUses::DECRYPT)
            .await?;
        let pin = self
            .decipher_pin(
                &from_key,
                working_is_aes(&from.key),
                from.format,
                block,
                pan,
            )
            .await;
        from_temp.release().await;
        let pin = pin?;
        let (to_key, to_temp) = self
            .working(&to.key, Purpose::Pin, KeyUses::ENCRYPT)
            .await?;
        let result = self
            .encipher_pin(&to_key, working_is_aes(&to.key), to.format, &pin, pan)
            .await;
        to_temp.release().await;
        result
    }

    /// The KCV the registry shows, computed by the token (see the module docs).
    async fn registry_kcv(&self, handle: &str, spec: &KeySpec) -> Result<String, HsmError> {
        let uses = token_uses(spec);
        if spec.algorithm == KeyAlgorithm::HmacSha256 && uses.contains(KeyUses::SIGN) {
            let mac = self
                .token
                .mac(handle, MacAlgorithm::HmacSha256, &[0_u8; 16])
                .await
                .map_err(|error| self.error(error))?;
            return Ok(hex::encode_upper(mac.get(..3).unwrap_or(&mac)));
        }
        if spec.algorithm.is_aes()
            && !uses.contains(KeyUses::SIGN)
            && uses.contains(KeyUses::ENCRYPT)
        {
            // CMAC of one zero block: E(K, K1), K1 = dbl(E(K, 0)) (NIST SP 800-38B 6.1/6.2).
            let l = Zeroizing::new(self.encrypt(handle, TokenMode::Ecb, &[0_u8; 16]).await?);
            let mut k1 = Zeroizing::new([0_u8; 16]);
            let mut carry = 0_u8;
            for (out, byte) in k1.iter_mut().zip(l.iter()).rev() {
                *out = (byte << 1) | carry;
                carry = byte >> 7;
            }
            if carry == 1 {
                k1[15] ^= 0x87;
            }
            let tag = self.encrypt(handle, TokenMode::Ecb, &*k1).await?;
            return Ok(hex::encode_upper(tag.get(..3).unwrap_or(&tag)));
        }
        let check = self
            .token
            .kcv(handle)
            .await
            .map_err(|error| self.error(error))?;
        Ok(check.kcv.to_hex())
    }

    /// The KCV of a clear key by the convention [`Self::registry_kcv`] follows for `spec`.
    fn expected_kcv(spec: &KeySpec, key: &SecretBytes) -> Result<Option<String>, HsmError> {
        let uses = token_uses(spec);
        if spec.algorithm == KeyAlgorithm::HmacSha256 && !uses.contains(KeyUses::SIGN) {
            return Ok(None);
        }
        if spec.algorithm.is_aes()
            && !uses.contains(KeyUses::SIGN)
            && !uses.contains(KeyUses::ENCRYPT)
        {
            return Ok(Some(paycrypto::kcv::aes_kcv_encrypt_zeros(key)?.to_hex()));
        }
        Ok(Some(super::kcv_of(spec.algorithm, key)?))
    }

    fn new_handle() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    fn label(spec: &KeySpec) -> String {
        format!("mpos {}{}", spec.usage.code(), spec.mode.code())
    }
}

#[async_trait::async_trait]
impl Backend for Pkcs11Backend {
    fn id(&self) -> &str {
        &self.id
    }

    fn site(&self) -> &str {
        &self.site
    }

    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    async fn check(&self) -> Result<(), HsmError> {
        self.token.check().await.map_err(|error| self.error(error))
    }

    async fn generate(&self, spec: &KeySpec) -> Result<StoredKey, HsmError> {
        let handle = Self::new_handle();
        self.token
            .generate_key(
                &handle,
                &Self::label(spec),
                key_kind(spec.algorithm)?,
                token_uses(spec),
            )
            .await
            .map_err(|error| self.error(error))?;
        match self.registry_kcv(&handle, spec).await {
            Ok(kcv) => Ok(StoredKey { handle, kcv }),
            Err(error) => {
                let _ = self.token.destroy(&handle).await;
                Err(error)
            }
        }
    }

    async fn import_clear(&self, spec: &KeySpec, key: SecretBytes) -> Result<StoredKey, HsmError> {
        if key.len() != spec.algorithm.key_len() {
            return Err(HsmError::invalid(
                "components",
                format!(
                    "a {:?} key has {} bytes",
                    spec.algorithm,
                    spec.algorithm.key_len()
                ),
            ));
        }
        let expected = Self::expected_kcv(spec, &key)?;
        let handle = Self::new_handle();
        self.token
            .import_clear_key(
                &handle,
                &Self::label(spec),
                key_kind(spec.algorithm)?,
                token_uses(spec),
                &key,
            )
            .await
            .map_err(|error| self.error(error))?;
        drop(key);
        let kcv = match self.registry_kcv(&handle, spec).await {
            Ok(kcv) => kcv,
            Err(error) => {
                let _ = self.token.destroy(&handle).await;
                return Err(error);
            }
        };
        if expected.is_some_and(|expected| expected != kcv) {
            let _ = self.token.destroy(&handle).await;
            return Err(HsmError::Internal(format!(
                "backend {}: the token computed another KCV for the imported key",
                self.id
            )));
        }
        Ok(StoredKey { handle, kcv })
    }

    async fn import_tr31(
        &self,
        _wrapping_key: KeyRef<'_>,
        _key_block: &str,
    ) -> Result<(KeyBlockHeader, KeySpec, StoredKey), HsmError> {
        Err(unsupported("unwrap a TR-31 key block"))
    }

    async fn export_tr31(&self, _export: Tr31Export<'_>) -> Result<String, HsmError> {
        Err(unsupported("build a TR-31 key block"))
    }

    async fn export_dukpt_initial_key(
        &self,
        _bdk: KeyRef<'_>,
        _wrapping_key: KeyRef<'_>,
        _dukpt: &Dukpt,
    ) -> Result<(String, String), HsmError> {
        Err(unsupported("wrap a DUKPT initial key as a TR-31 key block"))
    }

    async fn public_key(&self, _key: KeyRef<'_>) -> Result<Vec<u8>, HsmError> {
        Err(unsupported("hold RSA or EC key pairs (not mapped yet)"))
    }

    async fn kcv(&self, key: KeyRef<'_>) -> Result<String, HsmError> {
        self.registry_kcv(key.handle, key.spec).await
    }

    async fn delete(&self, handle: &str) -> Result<(), HsmError> {
        match self.token.destroy(handle).await {
            Ok(()) | Err(TokenError::KeyNotFound(_)) => Ok(()),
            Err(error) => Err(self.error(error)),
        }
    }

    async fn export_replica(&self, _key: KeyRef<'_>) -> Result<String, HsmError> {
        Err(unsupported(
            "export a replica of a key (PKCS#11 tokens in a pool need a shared wrapping key; \
             not done yet)",
        ))
    }

    async fn import_replica(&self, _spec: &KeySpec, _replica: &str) -> Result<StoredKey, HsmError> {
        Err(unsupported(
            "import a replica of a key (PKCS#11 tokens in a pool need a shared wrapping key; \
             not done yet)",
        ))
    }

    async fn run(&self, operation: Operation<'_>) -> Result<Outcome, HsmError> {
        match operation {
            Operation::Encrypt { cipher, data } => {
                Ok(Outcome::Bytes(self.encrypt_data(&cipher, &data).await?))
            }
            Operation::Decrypt { cipher, data } => Ok(Outcome::Bytes(
                self.decrypt_data(&cipher, &data).await?.expose().to_vec(),
            )),
            Operation::ReEncrypt { from, to, data } => {
                // PKCS#11 has no re-encryption mechanism: the clear data passes host memory.
                let clear = self.decrypt_data(&from, &data).await?;
                Ok(Outcome::Bytes(
                    self.encrypt_data(&to, clear.expose()).await?,
                ))
            }
            Operation::TranslatePin {
                from,
                to,
                block,
                pan,
            } => Ok(Outcome::Bytes(
                self.translate_pin(&from, &to, &block, pan.as_ref()).await?,
            )),
            Operation::GenerateMac {
                key,
                algorithm,
                data,
                length,
            } => Ok(Outcome::Bytes(
                self.generate_mac(&key, algorithm, &data, length).await?,
            )),
            Operation::VerifyMac {
                key,
                algorithm,
                data,
                mac,
            } => Ok(verified(
                self.verify_mac(&key, algorithm, &data, &mac).await?,
            )),
            Operation::GenerateCardValidation { kind, .. }
            | Operation::VerifyCardValidation { kind, .. } => Err(unsupported(match kind {
                CardValidation::Cvv { .. } => {
                    "compute a CVV (decimalisation and single-DES halves)"
                }
                CardValidation::Cvv2 => "compute a CVV2 (decimalisation and single-DES halves)",
                CardValidation::Icvv => "compute an iCVV (decimalisation and single-DES halves)",
            })),
            Operation::VerifyArqc(_) => Err(unsupported(
                "derive EMV session keys and verify an ARQC (XOR derivation, retail MAC)",
            )),
            Operation::GeneratePinData(data) => self.generate_pin_data(&data).await,
            Operation::VerifyPinData { data, value } => {
                Ok(verified(self.verify_pin_data(&data, &value).await?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_drops_the_proxy_parameters() {
        assert_eq!(
            token_url("pkcs11:///usr/lib/x.so?token=t&id=a&site=b"),
            "pkcs11:///usr/lib/x.so?token=t"
        );
        assert_eq!(
            token_url("pkcs11:///usr/lib/x.so?id=a&token=t&sessions=2"),
            "pkcs11:///usr/lib/x.so?token=t&sessions=2"
        );
        assert_eq!(token_url("pkcs11:///x.so"), "pkcs11:///x.so");
    }

    /// ISO 9564-1:2017 format 4 PAN field, as in the X9.24-3-2017 supplement's "Calculation of
    /// AES PIN Block Format 4" (PAN 4111111111111111 → 44111111111111111000000000000000).
    #[test]
    fn format_4_pan_field() -> Result<(), CryptoError> {
        let pan = Pan::new("4111111111111111")?;
        assert_eq!(
            hex::encode_upper(pan_field_16(&pan).as_ref()),
            "44111111111111111000000000000000"
        );
        Ok(())
    }

    #[test]
    fn least_privilege_uses() -> Result<(), HsmError> {
        use paycrypto::tr31::{Exportability, KeyUsage, ModeOfUse};
        let spec = |algorithm, usage: &str, mode: &str| -> Result<KeySpec, HsmError> {
            KeySpec::new(
                algorithm,
                KeyUsage::from_code(usage)?,
                ModeOfUse::from_code(mode)?,
                Exportability::NonExportable,
            )
        };
        let cases = [
            (spec(KeyAlgorithm::Aes128, "D0", "E")?, KeyUses::ENCRYPT),
            (spec(KeyAlgorithm::Aes128, "D0", "B")?, KeyUses::CIPHER),
            (spec(KeyAlgorithm::Tdes2, "P0", "D")?, KeyUses::DECRYPT),
            (spec(KeyAlgorithm::Aes128, "M6", "C")?, KeyUses::MAC),
            (spec(KeyAlgorithm::Aes128, "M6", "V")?, KeyUses::VERIFY),
            (spec(KeyAlgorithm::HmacSha256, "M7", "G")?, KeyUses::SIGN),
            (spec(KeyAlgorithm::Tdes2, "M1", "C")?, KeyUses::ENCRYPT),
            (spec(KeyAlgorithm::Tdes2, "V2", "C")?, KeyUses::ENCRYPT),
            (spec(KeyAlgorithm::Aes128, "B0", "X")?, KeyUses::DERIVE),
            (spec(KeyAlgorithm::Tdes2, "B0", "X")?, KeyUses::NONE),
            (spec(KeyAlgorithm::Tdes2, "C0", "C")?, KeyUses::NONE),
            (spec(KeyAlgorithm::Tdes2, "E0", "X")?, KeyUses::NONE),
            (spec(KeyAlgorithm::Tdes2, "M3", "C")?, KeyUses::NONE),
        ];
        for (spec, uses) in cases {
            assert_eq!(token_uses(&spec), uses, "{spec:?}");
        }
        Ok(())
    }
}
