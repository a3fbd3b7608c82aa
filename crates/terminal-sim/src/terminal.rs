//! The simulated PED: what a real terminal does on first boot and per transaction, over the
//! device-facing HTTP APIs only.
//!
//! 1. [`Terminal::activate`]: `POST {tms}/v1/devices/activate` over mTLS with the device
//!    certificate; the platform finds the terminal the certificate is bound to.
//! 2. [`Terminal::receive_key`]: polls `GET {ki}/v1/devices/{terminal_id}/keys` until its
//!    initial DUKPT key is waiting, opens it ([`Terminal::install_delivery`]: TR-34 token
//!    verified against the preloaded KDH CA, or ECDH), loads it into the DUKPT future-key
//!    registers, and confirms with the key's KCV on
//!    `POST {ki}/v1/devices/{terminal_id}/keys/{injection_id}/confirm`.
//! 3. [`Terminal::download_parameters`]: `GET {tms}/v1/devices/{terminal_id}/parameters`
//!    (protobuf), verifies the Ed25519 signature, then acknowledges the version with
//!    `POST {tms}/v1/devices/{terminal_id}/parameters/ack`.
//! 4. Per transaction, [`Terminal::encrypt_transaction`]: the card data and the PIN block
//!    under keys of ONE DUKPT transaction (one KSN), as a real PED enciphers a payment; then
//!    [`Terminal::pay`] (see [`crate::payment`]) sends it to the authorization service.
//!    [`Terminal::pin_block`] and [`Terminal::encrypt_card_data`] remain for callers that want
//!    just one of them: each uses a transaction (a counter) of its own.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use mpos_proto::hsm as hsm_pb;
use mpos_proto::key_injection as ki_pb;
use mpos_proto::terminal_management as tm_pb;
use paycrypto::dukpt::{aes as aes_dukpt, tdes as tdes_dukpt};
use paycrypto::pin::{Pan, Pin, PinBlockFormat};
use paycrypto::{SecretBytes, kcv, tr31, tr34};
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::client::device_client;
use crate::{DeviceIdentity, DeviceKeyKind, SimError, Track2};

/// The largest distance between a TR-34 token's signing time and the device's clock. A
/// token is built when key-injection derives the key and may wait for the device a while.
pub const TR34_MAX_SKEW_SECS: u64 = 3600;
/// How long each download asks key-injection to wait for the key (long poll; below the
/// client's request timeout).
pub const KEY_WAIT: Duration = Duration::from_secs(20);
/// The first wait between two polls for a key; it doubles up to [`MAX_POLL_INTERVAL`].
pub const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The longest wait between two polls for a key.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The media type of protobuf bodies.
const PROTOBUF: &str = "application/x-protobuf";

/// What a simulated terminal is and whom it trusts.
#[derive(Clone, Debug)]
pub struct TerminalConfig {
    /// The terminal id the device is bound to (checked against the platform's answer).
    pub terminal_id: String,
    /// The manufacturer-issued device identity.
    pub identity: DeviceIdentity,
    /// terminal-management's device API, e.g. `https://tms.example:8443`.
    pub tms_url: String,
    /// key-injection's device API.
    pub ki_url: String,
    /// The CA certificates (DER) the device trusts for the platform's TLS servers.
    pub server_roots: Vec<Vec<u8>>,
    /// The CA certificate (DER) the device trusts for TR-34 key distribution hosts
    /// (preloaded at manufacture).
    pub kdh_trust: Vec<u8>,
    /// The parameter-signing key (Ed25519) preloaded in the device. `None`: fetched from
    /// terminal-management's device API on the first download (trust on first use; a real
    /// device should have it preloaded).
    pub parameter_verifying_key: Option<VerifyingKey>,
}

/// The terminal as the platform answered its activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationState {
    /// The tenant owning the terminal.
    pub tenant_id: String,
    /// The terminal id.
    pub terminal_id: String,
    /// The terminal state, e.g. `TERMINAL_STATE_ACTIVE`.
    pub state: String,
    /// How it was activated, e.g. `ACTIVATION_METHOD_DEVICE_CERTIFICATE`.
    pub activation_method: String,
}

/// A DUKPT initial key the device installed (and, after [`Terminal::receive_key`],
/// confirmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledKey {
    /// The injection it came with.
    pub injection_id: String,
    /// TDES or AES-128 DUKPT.
    pub algorithm: ki_pb::DukptAlgorithm,
    /// TDES: the initial KSN (20 hex digits); AES: the initial key id (16 hex digits).
    pub initial_key_id: String,
    /// The initial key's check value as the hsm-proxy computes it (TDES: 3 bytes of the
    /// encrypted zero block; AES: 3 bytes of the CMAC of a zero block), hex.
    pub kcv: String,
}

/// A verified, installed and acknowledged parameter set.
#[derive(Clone, Debug, PartialEq)]
pub struct InstalledParameters {
    /// The version installed.
    pub version: u64,
    /// SHA-256 of the signed payload (what was acknowledged).
    pub payload_sha256: [u8; 32],
    /// The key id the set was signed with.
    pub key_id: String,
    /// The verified payload.
    pub set: tm_pb::ParameterSet,
    /// The platform's answer to the acknowledgement.
    pub status: tm_pb::ParameterVersionStatus,
}

/// A PIN block enciphered under the current DUKPT PIN key.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedPinBlock {
    /// The KSN of the transaction, hex (TDES 20, AES 24 digits).
    pub ksn: String,
    /// ISO 9564-1 format 0 (TDES DUKPT) or 4 (AES DUKPT).
    pub format: PinBlockFormat,
    /// The enciphered block (8 or 16 bytes).
    pub block: Vec<u8>,
    /// The PAN, masked.
    pub masked_pan: String,
}

impl fmt::Debug for EncryptedPinBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedPinBlock")
            .field("ksn", &self.ksn)
            .field("format", &self.format)
            .field("block", &hex::encode_upper(&self.block))
            .field("masked_pan", &self.masked_pan)
            .finish()
    }
}

impl EncryptedPinBlock {
    /// The incoming side of an hsm-proxy `TranslatePinData` for this block: the BDK `bdk`
    /// (id or alias), this block's format and KSN.
    pub fn hsm_pin_block_key(&self, bdk: &str) -> hsm_pb::PinBlockKey {
        let format = match self.format {
            PinBlockFormat::Iso4 => hsm_pb::PinBlockFormat::Iso4,
            _ => hsm_pb::PinBlockFormat::Iso0,
        };
        hsm_pb::PinBlockKey {
            key: bdk.to_owned(),
            format: format.into(),
            dukpt: Some(hsm_pb::Dukpt {
                ksn: self.ksn.clone(),
                ..hsm_pb::Dukpt::default()
            }),
        }
    }
}

/// Card data enciphered under the current DUKPT data key (P2PE).
///
/// The plaintext is the track 2 equivalent data as ASCII, padded with zero bytes to the
/// cipher's block size, enciphered in CBC mode with a zero IV under the device-to-host
/// ("request") data key: TDES DUKPT's data request variant finished with the X9.24-1:2009
/// one-way function, or AES DUKPT's AES-128 data encryption key (usage 3000). That is what
/// the hsm-proxy's `DecryptData` with the BDK, mode CBC, an empty IV and the KSN deciphers
/// (see [`EncryptedCardData::hsm_decrypt_request`]); the host strips the trailing zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedCardData {
    /// The KSN of the transaction, hex.
    pub ksn: String,
    /// The ciphertext.
    pub ciphertext: Vec<u8>,
    /// The PAN, masked.
    pub masked_pan: String,
}

impl EncryptedCardData {
    /// The hsm-proxy `DecryptData` request that deciphers this card data with the BDK `bdk`
    /// (id or alias) of `tenant_id`.
    pub fn hsm_decrypt_request(&self, tenant_id: &str, bdk: &str) -> hsm_pb::DecryptDataRequest {
        hsm_pb::DecryptDataRequest {
            tenant_id: tenant_id.to_owned(),
            encryption: Some(hsm_pb::Encryption {
                key: bdk.to_owned(),
                mode: hsm_pb::CipherMode::Cbc.into(),
                iv: Vec::new(),
                dukpt: Some(hsm_pb::Dukpt {
                    ksn: self.ksn.clone(),
                    direction: hsm_pb::DukptDirection::Request.into(),
                    ..hsm_pb::Dukpt::default()
                }),
            }),
            ciphertext: self.ciphertext.clone(),
            ..Default::default()
        }
    }
}

/// One payment's card data and PIN block, enciphered under the keys of ONE DUKPT
/// transaction: both are sent with the same KSN, as a real PED sends them.
///
/// * `encrypted_card_data`: exactly as [`EncryptedCardData`] documents (the transaction's
///   request data key, CBC, zero IV, zero padding);
/// * `encrypted_pin_block`: exactly as [`Terminal::pin_block`] makes it (ISO 9564-1 format 0
///   under the TDES DUKPT PIN variant, format 4 under the AES DUKPT AES-128 PIN key), upper
///   case hex; `None` when no PIN was entered.
///
/// `Debug` shows the KSN, the lengths and the masked PAN only.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedTransaction {
    /// The KSN of the transaction, hex (TDES 20, AES 24 digits).
    pub ksn: String,
    /// The enciphered track 2 equivalent data.
    pub encrypted_card_data: Vec<u8>,
    /// The enciphered PIN block, upper case hex (16 or 32 digits); `None` without a PIN.
    pub encrypted_pin_block: Option<String>,
    /// The PIN block format the device's DUKPT scheme uses (ISO 0 for TDES, ISO 4 for AES),
    /// also when no PIN was entered.
    pub pin_block_format: PinBlockFormat,
    /// The PAN, masked.
    pub masked_pan: String,
}

impl fmt::Debug for EncryptedTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedTransaction")
            .field("ksn", &self.ksn)
            .field("encrypted_card_data_len", &self.encrypted_card_data.len())
            .field("pin_block", &self.encrypted_pin_block.is_some())
            .field("pin_block_format", &self.pin_block_format)
            .field("masked_pan", &self.masked_pan)
            .finish()
    }
}

impl EncryptedTransaction {
    /// The card data alone (for [`EncryptedCardData::hsm_decrypt_request`]).
    pub fn card_data(&self) -> EncryptedCardData {
        EncryptedCardData {
            ksn: self.ksn.clone(),
            ciphertext: self.encrypted_card_data.clone(),
            masked_pan: self.masked_pan.clone(),
        }
    }

    /// The PIN block alone (for [`EncryptedPinBlock::hsm_pin_block_key`]), when there is one.
    pub fn pin_block(&self) -> Option<EncryptedPinBlock> {
        let block = hex::decode(self.encrypted_pin_block.as_deref()?).ok()?;
        Some(EncryptedPinBlock {
            ksn: self.ksn.clone(),
            format: self.pin_block_format,
            block,
            masked_pan: self.masked_pan.clone(),
        })
    }
}

/// The device's DUKPT future-key registers.
#[derive(Debug)]
enum DukptDevice {
    Tdes(tdes_dukpt::Device),
    Aes(aes_dukpt::Device),
}

/// The working keys of one DUKPT transaction (key bytes never printed: [`SecretBytes`]).
#[derive(Debug)]
struct TransactionKeys {
    /// The transaction's KSN, hex.
    ksn: String,
    /// ISO 0 (TDES) or ISO 4 (AES).
    pin_format: PinBlockFormat,
    /// The PIN encryption key.
    pin_key: SecretBytes,
    /// The request-direction data encryption key.
    data_key: SecretBytes,
}

impl TransactionKeys {
    fn encrypt_pin(&self, pan: &Pan, pin: &Pin) -> Result<Vec<u8>, SimError> {
        let mut rng = rand::rngs::OsRng;
        Ok(paycrypto::pin::encrypt_pin_block(
            self.pin_format,
            &self.pin_key,
            pin,
            Some(pan),
            &mut rng,
        )?)
    }

    fn encrypt_card_data(&self, track2: &Track2) -> Result<Vec<u8>, SimError> {
        let clear = track2.expose_ascii();
        let ciphertext = match self.pin_format {
            PinBlockFormat::Iso4 => paycrypto::primitives::aes_encrypt_cbc(
                self.data_key.expose(),
                &[0; 16],
                &zero_pad(&clear, 16),
            )?,
            _ => paycrypto::primitives::tdes_encrypt_cbc(
                self.data_key.expose(),
                &[0; 8],
                &zero_pad(&clear, 8),
            )?,
        };
        Ok(ciphertext)
    }
}

impl DukptDevice {
    /// Loads a 16-byte initial key: TDES (`initial_key_id` = the initial KSN, 20 hex digits,
    /// zero counter) or AES-128 (`initial_key_id` = 16 hex digits). Answers the device and the
    /// key's KCV as the hsm-proxy reports it.
    fn load(
        algorithm: ki_pb::DukptAlgorithm,
        key: &SecretBytes,
        initial_key_id: &str,
    ) -> Result<(Self, String), SimError> {
        match algorithm {
            ki_pb::DukptAlgorithm::Tdes => {
                let ksn = tdes_dukpt::Ksn::from_hex(initial_key_id)?;
                if ksn.counter() != 0 {
                    return Err(SimError::Delivery(
                        "the initial KSN has a non-zero counter".to_owned(),
                    ));
                }
                let kcv = kcv::tdes_kcv(key)?.to_hex();
                Ok((
                    Self::Tdes(tdes_dukpt::Device::load_initial_key(key, &ksn)?),
                    kcv,
                ))
            }
            ki_pb::DukptAlgorithm::Aes128 => {
                let id = aes_dukpt::InitialKeyId::from_hex(initial_key_id)?;
                let kcv = kcv::aes_kcv_cmac(key)?.to_hex();
                Ok((
                    Self::Aes(aes_dukpt::Device::load_initial_key(key, &id)?),
                    kcv,
                ))
            }
            ki_pb::DukptAlgorithm::Unspecified => {
                Err(SimError::Delivery("no DUKPT algorithm".to_owned()))
            }
        }
    }

    fn counter(&self) -> u32 {
        match self {
            Self::Tdes(device) => device.counter(),
            Self::Aes(device) => device.counter(),
        }
    }

    /// Advances the counter once and answers that transaction's PIN and data keys.
    fn next_keys(&mut self) -> Result<TransactionKeys, SimError> {
        match self {
            Self::Tdes(device) => {
                let transaction = device.next_transaction()?;
                Ok(TransactionKeys {
                    ksn: transaction.ksn().to_hex(),
                    pin_format: PinBlockFormat::Iso0,
                    pin_key: transaction.working_key(
                        tdes_dukpt::KeyUsage::PinEncryption,
                        tdes_dukpt::DataKeyDerivation::OneWay,
                    )?,
                    data_key: transaction.working_key(
                        tdes_dukpt::KeyUsage::DataRequest,
                        tdes_dukpt::DataKeyDerivation::OneWay,
                    )?,
                })
            }
            Self::Aes(device) => {
                let transaction = device.next_transaction()?;
                Ok(TransactionKeys {
                    ksn: transaction.ksn().to_hex(),
                    pin_format: PinBlockFormat::Iso4,
                    pin_key: transaction.working_key(
                        aes_dukpt::KeyUsage::PinEncryption,
                        aes_dukpt::KeyType::Aes128,
                    )?,
                    data_key: transaction.working_key(
                        aes_dukpt::KeyUsage::DataEncrypt,
                        aes_dukpt::KeyType::Aes128,
                    )?,
                })
            }
        }
    }

    /// One payment under one transaction: the card data and, with a PIN, the PIN block.
    pub(crate) fn encrypt_transaction(
        &mut self,
        track2: &Track2,
        pin: Option<&Pin>,
    ) -> Result<EncryptedTransaction, SimError> {
        let keys = self.next_keys()?;
        let encrypted_card_data = keys.encrypt_card_data(track2)?;
        let encrypted_pin_block = match pin {
            Some(pin) => Some(hex::encode_upper(keys.encrypt_pin(track2.pan(), pin)?)),
            None => None,
        };
        Ok(EncryptedTransaction {
            ksn: keys.ksn,
            encrypted_card_data,
            encrypted_pin_block,
            pin_block_format: keys.pin_format,
            masked_pan: track2.pan().masked(),
        })
    }
}

/// The DUKPT registers a simulated device (PED or SoftPOS phone) keeps, shared by the
/// payment code.
#[derive(Debug, Default)]
pub(crate) struct DukptRegisters(Option<DukptDevice>);

impl DukptRegisters {
    /// Loads an initial key (see [`DukptDevice::load`]), replacing any earlier one; answers
    /// its KCV.
    pub(crate) fn load(
        &mut self,
        algorithm: ki_pb::DukptAlgorithm,
        key: &SecretBytes,
        initial_key_id: &str,
    ) -> Result<String, SimError> {
        let (device, kcv) = DukptDevice::load(algorithm, key, initial_key_id)?;
        self.0 = Some(device);
        Ok(kcv)
    }

    /// The counter of the next transaction, once a key is loaded.
    pub(crate) fn counter(&self) -> Option<u32> {
        self.0.as_ref().map(DukptDevice::counter)
    }

    /// See [`Terminal::encrypt_transaction`].
    pub(crate) fn encrypt_transaction(
        &mut self,
        track2: &Track2,
        pin: Option<&Pin>,
    ) -> Result<EncryptedTransaction, SimError> {
        self.0
            .as_mut()
            .ok_or(SimError::NoKey)?
            .encrypt_transaction(track2, pin)
    }

    fn next_keys(&mut self) -> Result<TransactionKeys, SimError> {
        self.0.as_mut().ok_or(SimError::NoKey)?.next_keys()
    }

    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

/// What an unwrapped key block says about its key.
pub(crate) struct KeyHeader {
    usage: String,
    algorithm: char,
}

/// A simulated PIN entry device.
#[derive(Debug)]
pub struct Terminal {
    config: TerminalConfig,
    client: reqwest::Client,
    /// The parameter-signing key and, when fetched from the platform, its id.
    parameter_key: Option<(VerifyingKey, Option<String>)>,
    dukpt: DukptRegisters,
    installed_version: u64,
    /// The authorization service's device API (empty: not configured).
    auth_url: String,
}

impl Terminal {
    /// A terminal that has not booted yet. Fails when the mTLS client cannot be built.
    pub fn new(mut config: TerminalConfig) -> Result<Self, SimError> {
        if config.terminal_id.trim().is_empty() {
            return Err(SimError::InvalidInput("terminal id: empty".to_owned()));
        }
        config.tms_url = config.tms_url.trim_end_matches('/').to_owned();
        config.ki_url = config.ki_url.trim_end_matches('/').to_owned();
        let client = device_client(&config.identity, &config.server_roots)?;
        let parameter_key = config.parameter_verifying_key.map(|key| (key, None));
        Ok(Self {
            config,
            client,
            parameter_key,
            dukpt: DukptRegisters::default(),
            installed_version: 0,
            auth_url: String::new(),
        })
    }

    /// The same terminal, paying through the authorization service's device API at
    /// `auth_url`, e.g. `https://auth.example:8443` (mTLS with the device certificate, the
    /// configured server roots). Without it, [`Terminal::pay`] and its siblings answer
    /// [`SimError::NotConfigured`].
    ///
    /// (Not a [`TerminalConfig`] field: the configuration is built with struct literals by
    /// other crates, which a new field would break.)
    pub fn with_auth_url(mut self, auth_url: impl Into<String>) -> Self {
        self.set_auth_url(auth_url);
        self
    }

    /// Sets the authorization service's device API (see [`Terminal::with_auth_url`]); empty
    /// means not configured.
    pub fn set_auth_url(&mut self, auth_url: impl Into<String>) {
        self.auth_url = auth_url.into().trim().trim_end_matches('/').to_owned();
    }

    /// The authorization service's device API (empty: not configured).
    pub fn auth_url(&self) -> &str {
        &self.auth_url
    }

    /// The mTLS client presenting the device certificate.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The terminal id.
    pub fn terminal_id(&self) -> &str {
        &self.config.terminal_id
    }

    /// The DUKPT counter of the next transaction, once a key is installed.
    pub fn counter(&self) -> Option<u32> {
        self.dukpt.counter()
    }

    /// The parameter version installed (0: none yet).
    pub fn installed_parameter_version(&self) -> u64 {
        self.installed_version
    }

    // -----------------------------------------------------------------------------------
    // Activation
    // -----------------------------------------------------------------------------------

    /// First boot: activates the terminal the device certificate is bound to (again: answers
    /// its state). Fails when the platform names another terminal than the configured one.
    pub async fn activate(&mut self) -> Result<ActivationState, SimError> {
        const OPERATION: &str = "activate";
        let request = self
            .client
            .post(format!("{}/v1/devices/activate", self.config.tms_url))
            .json(&serde_json::json!({}));
        let terminal: tm_pb::Terminal = json(OPERATION, send(OPERATION, request, 200).await?)?;
        if terminal.terminal_id != self.config.terminal_id {
            return Err(SimError::protocol(
                OPERATION,
                format!(
                    "the device is bound to terminal {:?}, not {:?}",
                    terminal.terminal_id, self.config.terminal_id
                ),
            ));
        }
        let state = ActivationState {
            tenant_id: terminal.tenant_id.clone(),
            terminal_id: terminal.terminal_id.clone(),
            state: terminal.state().as_str_name().to_owned(),
            activation_method: terminal.activation_method().as_str_name().to_owned(),
        };
        tracing::info!(terminal_id = %state.terminal_id, state = %state.state, "terminal activated");
        Ok(state)
    }

    // -----------------------------------------------------------------------------------
    // Parameters
    // -----------------------------------------------------------------------------------

    /// Downloads the signed parameter set, verifies it (Ed25519 over the payload, for this
    /// terminal, not older than the installed version), installs it and acknowledges the
    /// version.
    pub async fn download_parameters(&mut self) -> Result<InstalledParameters, SimError> {
        const OPERATION: &str = "download parameters";
        let request = self
            .client
            .get(format!(
                "{}/v1/devices/{}/parameters",
                self.config.tms_url, self.config.terminal_id
            ))
            .header(reqwest::header::ACCEPT, PROTOBUF);
        let body = send(OPERATION, request, 200).await?;
        let signed = <tm_pb::SignedParameterSet as prost::Message>::decode(body.as_slice())
            .map_err(|error| SimError::protocol(OPERATION, error))?;
        let (key, key_id) = self.parameter_key().await?;
        if let Some(key_id) = key_id
            && key_id != signed.key_id
        {
            return Err(SimError::Parameters(format!(
                "signed with key {:?}, the device knows {key_id:?}",
                signed.key_id
            )));
        }
        let set = tms_params::verify(&signed, &key)
            .map_err(|error| SimError::Parameters(error.to_string()))?;
        if set.terminal_id != self.config.terminal_id {
            return Err(SimError::Parameters(format!(
                "the set is for terminal {:?}",
                set.terminal_id
            )));
        }
        if set.version < self.installed_version {
            return Err(SimError::Parameters(format!(
                "version {} is older than the installed {}",
                set.version, self.installed_version
            )));
        }
        let payload_sha256 = tms_params::payload_digest(&signed);
        let status = self.acknowledge(&set, payload_sha256).await?;
        self.installed_version = set.version;
        tracing::info!(terminal_id = %self.config.terminal_id, version = set.version, "parameters installed");
        Ok(InstalledParameters {
            version: set.version,
            payload_sha256,
            key_id: signed.key_id,
            set,
            status,
        })
    }

    /// The parameter-signing key: the preloaded one, or the platform's (fetched once).
    async fn parameter_key(&mut self) -> Result<(VerifyingKey, Option<String>), SimError> {
        const OPERATION: &str = "parameter signing key";
        if let Some(known) = &self.parameter_key {
            return Ok(known.clone());
        }
        let request = self
            .client
            .get(format!("{}/v1/parameter-signing-key", self.config.tms_url));
        let published: tm_pb::ParameterSigningKey =
            json(OPERATION, send(OPERATION, request, 200).await?)?;
        if published.algorithm != tms_params::ALGORITHM {
            return Err(SimError::protocol(
                OPERATION,
                format!("algorithm {:?}", published.algorithm),
            ));
        }
        let bytes: [u8; 32] = published
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| SimError::protocol(OPERATION, "the public key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| SimError::protocol(OPERATION, "not an Ed25519 public key"))?;
        let known = (key, Some(published.key_id));
        self.parameter_key = Some(known.clone());
        Ok(known)
    }

    async fn acknowledge(
        &self,
        set: &tm_pb::ParameterSet,
        payload_sha256: [u8; 32],
    ) -> Result<tm_pb::ParameterVersionStatus, SimError> {
        const OPERATION: &str = "acknowledge parameters";
        let now_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
            });
        let acknowledgement = tm_pb::ParameterSetAcknowledgement {
            tenant_id: set.tenant_id.clone(),
            terminal_id: set.terminal_id.clone(),
            version: set.version,
            payload_sha256: payload_sha256.to_vec(),
            installed_at: Some(mpos_proto::timestamp_from_micros(now_micros)),
        };
        let request = self
            .client
            .post(format!(
                "{}/v1/devices/{}/parameters/ack",
                self.config.tms_url, self.config.terminal_id
            ))
            .json(&acknowledgement);
        let status: tm_pb::ParameterVersionStatus =
            json(OPERATION, send(OPERATION, request, 200).await?)?;
        if status.installed_version != set.version {
            return Err(SimError::protocol(
                OPERATION,
                format!(
                    "the platform records version {}, not {}",
                    status.installed_version, set.version
                ),
            ));
        }
        Ok(status)
    }

    // -----------------------------------------------------------------------------------
    // Remote key injection
    // -----------------------------------------------------------------------------------

    /// Waits (polling with backoff until `deadline`) for the initial DUKPT key on
    /// key-injection's device API, installs it ([`Terminal::install_delivery`]) and confirms
    /// it with its KCV. A refused confirmation discards the key.
    pub async fn receive_key(&mut self, deadline: Instant) -> Result<InstalledKey, SimError> {
        let delivery = self.poll_delivery(deadline).await?;
        let installed = self.install_delivery(&delivery)?;
        if let Err(error) = self.confirm(&installed).await {
            self.dukpt.clear();
            return Err(error);
        }
        tracing::info!(
            terminal_id = %self.config.terminal_id,
            injection_id = %installed.injection_id,
            initial_key_id = %installed.initial_key_id,
            "initial key confirmed"
        );
        Ok(installed)
    }

    async fn poll_delivery(&self, deadline: Instant) -> Result<ki_pb::DeviceKeyDelivery, SimError> {
        const OPERATION: &str = "receive key";
        // Each request waits (long poll) up to KEY_WAIT for the key; the pause after a 404
        // only spaces out requests if the server answers at once.
        let url = format!(
            "{}/v1/devices/{}/keys?waitSeconds={}",
            self.config.ki_url,
            self.config.terminal_id,
            KEY_WAIT.as_secs()
        );
        let mut wait = FIRST_POLL_INTERVAL;
        loop {
            match send(OPERATION, self.client.get(&url), 200).await {
                Ok(body) => return json(OPERATION, body),
                Err(SimError::Refused {
                    status: 404, code, ..
                }) if code == "not_found" => {
                    if Instant::now() + wait > deadline {
                        return Err(SimError::Timeout {
                            operation: OPERATION,
                        });
                    }
                    tracing::debug!(terminal_id = %self.config.terminal_id, wait_ms = wait.as_millis() as u64, "no key waiting yet");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_POLL_INTERVAL);
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn confirm(&self, installed: &InstalledKey) -> Result<(), SimError> {
        const OPERATION: &str = "confirm key";
        let request = self
            .client
            .post(format!(
                "{}/v1/devices/{}/keys/{}/confirm",
                self.config.ki_url, self.config.terminal_id, installed.injection_id
            ))
            .json(&ki_pb::ConfirmInjectionRequest {
                kcv: installed.kcv.clone(),
            });
        let response: ki_pb::InjectionResponse =
            json(OPERATION, send(OPERATION, request, 200).await?)?;
        if response.state() != ki_pb::InjectionState::Confirmed {
            return Err(SimError::protocol(
                OPERATION,
                format!("the injection is {}", response.state().as_str_name()),
            ));
        }
        Ok(())
    }

    /// Opens a key delivery for this device and loads its initial key into the DUKPT
    /// registers (replacing any earlier key): TR-34 (the KDH certificate must chain to the
    /// preloaded KDH CA, the token must be signed by it, fresh, and addressed to this
    /// device's certificate) or ECDH. The key must be a DUKPT initial key (usage `B1`) of the
    /// delivery's algorithm. Returns what the device confirms with; no network.
    pub fn install_delivery(
        &mut self,
        delivery: &ki_pb::DeviceKeyDelivery,
    ) -> Result<InstalledKey, SimError> {
        let (header, key) = match delivery.method() {
            ki_pb::DeliveryMethod::Tr34 => self.open_tr34(delivery)?,
            ki_pb::DeliveryMethod::EcdhTr31 => {
                let identity = &self.config.identity;
                if identity.kind() != DeviceKeyKind::P256 {
                    return Err(SimError::Delivery(
                        "an ECDH delivery needs a P-256 device key".to_owned(),
                    ));
                }
                unwrap_ecdh(identity.private_key_der().expose(), delivery)?
            }
            ki_pb::DeliveryMethod::Unspecified => {
                return Err(SimError::Delivery("no delivery method".to_owned()));
            }
        };
        load_delivered(&mut self.dukpt, delivery, &header, &key)
    }

    /// TR-34 one-pass: verifies the token against the preloaded KDH CA and opens it with the
    /// device's RSA key.
    fn open_tr34(
        &self,
        delivery: &ki_pb::DeviceKeyDelivery,
    ) -> Result<(KeyHeader, SecretBytes), SimError> {
        let identity = &self.config.identity;
        if identity.kind() != DeviceKeyKind::Rsa2048 {
            return Err(SimError::Delivery(
                "a TR-34 delivery needs an RSA device key".to_owned(),
            ));
        }
        if delivery.kdh_certificate.is_empty() || delivery.key_token.is_empty() {
            return Err(SimError::Delivery(
                "a TR-34 delivery needs a key token and a KDH certificate".to_owned(),
            ));
        }
        let krd =
            tr34::Credential::from_der(identity.certificate_der(), identity.private_key_der())?;
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let received = tr34::open_key_token(
            &delivery.key_token,
            &tr34::KdhTrust {
                ca_certificate: &self.config.kdh_trust,
                kdh_chain: &[&delivery.kdh_certificate],
                now_unix,
            },
            &krd,
            tr34::ExpectedFreshness::SigningTime {
                now_unix,
                max_skew_secs: TR34_MAX_SKEW_SECS,
            },
        )?;
        let header = KeyHeader {
            usage: received.header.get(5..7).unwrap_or_default().to_owned(),
            algorithm: received.header.chars().nth(7).unwrap_or('?'),
        };
        Ok((header, received.key))
    }

    // -----------------------------------------------------------------------------------
    // Transactions
    // -----------------------------------------------------------------------------------

    /// Loads a DUKPT initial key directly, as a key injection facility (a key loading device
    /// cabled to the PED) does at manufacture or in a secure room; the alternative to
    /// [`Terminal::receive_key`]'s remote key injection, for tests and demos. `algorithm`
    /// TDES: `key` is the IPEK and `initial_key_id` the initial KSN (20 hex digits, zero
    /// counter); AES-128: the initial key and its initial key id (16 hex digits). Replaces
    /// any earlier key; the initial key is not kept (only the future-key registers). Answers
    /// what the device would confirm (no injection id).
    pub fn load_initial_key(
        &mut self,
        algorithm: ki_pb::DukptAlgorithm,
        key: &SecretBytes,
        initial_key_id: &str,
    ) -> Result<InstalledKey, SimError> {
        if key.len() != 16 {
            return Err(SimError::InvalidInput(format!(
                "initial key of {} bytes, expected 16",
                key.len()
            )));
        }
        let kcv = self.dukpt.load(algorithm, key, initial_key_id)?;
        tracing::info!(terminal_id = %self.config.terminal_id, initial_key_id = %initial_key_id, "initial key loaded locally");
        Ok(InstalledKey {
            injection_id: String::new(),
            algorithm,
            initial_key_id: initial_key_id.to_ascii_uppercase(),
            kcv,
        })
    }

    /// Enciphers one payment under ONE DUKPT transaction (the counter advances once): the
    /// track 2 equivalent data under the transaction's request data key (see
    /// [`EncryptedCardData`]) and, when a PIN was entered, the PIN block for the track's PAN
    /// under the same transaction's PIN key (see [`Terminal::pin_block`]). The host deciphers
    /// both with the BDK and the one KSN.
    pub fn encrypt_transaction(
        &mut self,
        track2: &Track2,
        pin: Option<&Pin>,
    ) -> Result<EncryptedTransaction, SimError> {
        self.dukpt.encrypt_transaction(track2, pin)
    }

    /// Enciphers `pin` for `pan` under the next transaction's DUKPT PIN key: ISO 9564-1
    /// format 0 under the TDES DUKPT PIN variant, or format 4 under the AES DUKPT AES-128 PIN
    /// encryption key (usage 1000), as the hsm-proxy's `TranslatePinData` takes them with the
    /// BDK and the KSN. Advances the counter: a transaction of its own (a payment uses
    /// [`Terminal::encrypt_transaction`], one KSN for its card data and PIN block).
    pub fn pin_block(&mut self, pan: &Pan, pin: &Pin) -> Result<EncryptedPinBlock, SimError> {
        let keys = self.dukpt.next_keys()?;
        let block = keys.encrypt_pin(pan, pin)?;
        Ok(EncryptedPinBlock {
            ksn: keys.ksn.clone(),
            format: keys.pin_format,
            block,
            masked_pan: pan.masked(),
        })
    }

    /// Enciphers `track2` under the next transaction's DUKPT data key (see
    /// [`EncryptedCardData`] for the exact form). Advances the counter: a transaction of its
    /// own (a payment uses [`Terminal::encrypt_transaction`]).
    pub fn encrypt_card_data(&mut self, track2: &Track2) -> Result<EncryptedCardData, SimError> {
        let keys = self.dukpt.next_keys()?;
        let ciphertext = keys.encrypt_card_data(track2)?;
        Ok(EncryptedCardData {
            ksn: keys.ksn.clone(),
            ciphertext,
            masked_pan: track2.pan().masked(),
        })
    }
}

/// The key must be 16 bytes of the header's algorithm.
/// ECDH (P-256) with the device's private key (PKCS#8 DER) and the platform's one-time
/// public key to a KBPK, then the TR-31 version D key block: what a PED with a P-256 device
/// key and a SoftPOS phone with its attested key both do.
pub(crate) fn unwrap_ecdh(
    private_key_der: &[u8],
    delivery: &ki_pb::DeviceKeyDelivery,
) -> Result<(KeyHeader, SecretBytes), SimError> {
    if delivery.method() != ki_pb::DeliveryMethod::EcdhTr31 {
        return Err(SimError::Delivery("not an ECDH delivery".to_owned()));
    }
    let (header, key) = paycrypto::ecdh::unwrap_on_device(
        private_key_der,
        &delivery.ephemeral_public_key,
        &delivery.key_block,
    )
    .map_err(SimError::from)?;
    Ok((
        KeyHeader {
            usage: header.key_usage.code().to_owned(),
            algorithm: header.algorithm.code().chars().next().unwrap_or('?'),
        },
        key,
    ))
}

/// Loads an unwrapped delivery into the DUKPT registers: it must be a DUKPT initial key
/// (usage `B1`) of the delivery's algorithm. Answers what the device confirms with.
pub(crate) fn load_delivered(
    dukpt: &mut DukptRegisters,
    delivery: &ki_pb::DeviceKeyDelivery,
    header: &KeyHeader,
    key: &SecretBytes,
) -> Result<InstalledKey, SimError> {
    if header.usage != tr31::KeyUsage::B1.code() {
        return Err(SimError::Delivery(format!(
            "key usage {} is not a DUKPT initial key (B1)",
            header.usage
        )));
    }
    match delivery.algorithm() {
        ki_pb::DukptAlgorithm::Tdes => expect_algorithm(header, 'T', key)?,
        ki_pb::DukptAlgorithm::Aes128 => expect_algorithm(header, 'A', key)?,
        ki_pb::DukptAlgorithm::Unspecified => {
            return Err(SimError::Delivery("no DUKPT algorithm".to_owned()));
        }
    }
    let kcv = dukpt.load(delivery.algorithm(), key, &delivery.initial_key_id)?;
    Ok(InstalledKey {
        injection_id: delivery.injection_id.clone(),
        algorithm: delivery.algorithm(),
        initial_key_id: delivery.initial_key_id.to_ascii_uppercase(),
        kcv,
    })
}

fn expect_algorithm(
    header: &KeyHeader,
    algorithm: char,
    key: &SecretBytes,
) -> Result<(), SimError> {
    if header.algorithm != algorithm {
        return Err(SimError::Delivery(format!(
            "key block algorithm {} does not match the delivery's DUKPT algorithm",
            header.algorithm
        )));
    }
    if key.len() != 16 {
        return Err(SimError::Delivery(format!(
            "initial key of {} bytes, expected 16",
            key.len()
        )));
    }
    Ok(())
}

/// `data` followed by zero bytes up to a multiple of `block` (nothing added when it already
/// is one).
fn zero_pad(data: &[u8], block: usize) -> Zeroizing<Vec<u8>> {
    let mut padded = Zeroizing::new(data.to_vec());
    let len = data.len().div_ceil(block).max(1) * block;
    padded.resize(len, 0);
    padded
}

/// Sends `request`; the body when the status is `expected`, else the platform's error.
pub(crate) async fn send(
    operation: &'static str,
    request: reqwest::RequestBuilder,
    expected: u16,
) -> Result<Vec<u8>, SimError> {
    let (status, body) = exchange(operation, request).await?;
    if status == expected {
        return Ok(body);
    }
    Err(refused(operation, status, &body))
}

/// Sends `request`; the status and the body, whatever the status.
pub(crate) async fn exchange(
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<(u16, Vec<u8>), SimError> {
    let response = request
        .send()
        .await
        .map_err(|error| SimError::transport(operation, &error))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|error| SimError::transport(operation, &error))?;
    Ok((status, body.to_vec()))
}

/// The platform's error answer (`{"code", "message"}`) as [`SimError::Refused`].
pub(crate) fn refused(operation: &'static str, status: u16, body: &[u8]) -> SimError {
    let error: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |field: &str| {
        error
            .get(field)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    SimError::Refused {
        operation,
        status,
        code: text("code"),
        message: text("message"),
    }
}

/// Decodes a protobuf JSON body.
pub(crate) fn json<T: DeserializeOwned>(
    operation: &'static str,
    body: Vec<u8>,
) -> Result<T, SimError> {
    serde_json::from_slice(&body).map_err(|error| SimError::protocol(operation, error))
}

#[cfg(test)]
mod tests {
    use paycrypto::primitives::{aes_decrypt_cbc, tdes_decrypt_cbc};

    use super::*;
    use crate::ManufacturerCa;

    /// ANSI X9.24-1:2009 Annex A.4 and the X9.24-3-2017 AES-128 test vectors, with their
    /// sources in tests/key_install.rs.
    const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
    const INITIAL_KSN: &str = "FFFF9876543210E00000";
    const IPEK: &str = "6AC292FAA1315B4D858AB3A3D7D5933A";
    const AES_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
    const AES_INITIAL_KEY_ID: &str = "1234567890123456";
    const AES_INITIAL_KEY: &str = "1273671EA26AC29AFA4D1084127652A1";

    fn key(text: &str) -> SecretBytes {
        SecretBytes::from_hex("test key", text).expect("hex")
    }

    fn terminal() -> Terminal {
        let ca = ManufacturerCa::generate("Unit Test CA").expect("ca");
        let identity = ca.issue(&[0x01], DeviceKeyKind::P256).expect("identity");
        Terminal::new(TerminalConfig {
            terminal_id: "t-1".to_owned(),
            identity,
            tms_url: "https://localhost:1".to_owned(),
            ki_url: "https://localhost:1".to_owned(),
            server_roots: vec![ca.certificate_der().to_vec()],
            kdh_trust: Vec::new(),
            parameter_verifying_key: None,
        })
        .expect("terminal")
    }

    #[test]
    fn zero_padding_fills_the_last_block_only() {
        assert_eq!(zero_pad(b"4012345678909D987", 8).len(), 24);
        assert_eq!(zero_pad(&[1; 16], 16).len(), 16);
        assert_eq!(zero_pad(b"", 8).as_slice(), &[0; 8]);
    }

    #[test]
    fn a_tdes_transaction_enciphers_card_data_and_pin_under_one_ksn() {
        let mut ped = terminal();
        let installed = ped
            .load_initial_key(ki_pb::DukptAlgorithm::Tdes, &key(IPEK), INITIAL_KSN)
            .expect("load");
        assert_eq!(
            installed.kcv,
            kcv::tdes_kcv(&key(IPEK)).expect("kcv").to_hex()
        );
        let track = Track2::parse("4012345678909D987").expect("track 2");
        let pin = Pin::new("1234").expect("pin");
        let first = ped
            .encrypt_transaction(&track, Some(&pin))
            .expect("transaction");
        assert_eq!(ped.counter(), Some(2), "the counter advances once");
        assert_eq!(first.ksn, "FFFF9876543210E00001");
        assert_eq!(first.pin_block_format, PinBlockFormat::Iso0);
        // A.4.2: the PIN block of E00001, as `pin_block` makes it.
        assert_eq!(
            first.encrypted_pin_block.as_deref(),
            Some("1B9C1845EB993A7A")
        );
        assert_eq!(first.masked_pan, "401234***8909");

        // The host side, from the BDK and the ONE KSN: both come back.
        let ksn = tdes_dukpt::Ksn::from_hex(&first.ksn).expect("ksn");
        let data_key = tdes_dukpt::host_working_key(
            &key(BDK),
            &ksn,
            tdes_dukpt::KeyUsage::DataRequest,
            tdes_dukpt::DataKeyDerivation::OneWay,
        )
        .expect("data key");
        let clear =
            tdes_decrypt_cbc(data_key.expose(), &[0; 8], &first.encrypted_card_data).expect("cbc");
        assert_eq!(&clear[..17], b"4012345678909D987");
        assert!(clear[17..].iter().all(|byte| *byte == 0));
        let pin_key = tdes_dukpt::host_working_key(
            &key(BDK),
            &ksn,
            tdes_dukpt::KeyUsage::PinEncryption,
            tdes_dukpt::DataKeyDerivation::OneWay,
        )
        .expect("pin key");
        let block = first.pin_block().expect("block");
        let clear_pin = paycrypto::pin::decrypt_pin_block(
            PinBlockFormat::Iso0,
            &pin_key,
            &block.block,
            Some(track.pan()),
        )
        .expect("pin");
        assert_eq!(clear_pin, pin);
        // The hsm-proxy requests name the same KSN.
        let request = first.card_data().hsm_decrypt_request("acme", "alias/bdk");
        let dukpt = request
            .encryption
            .and_then(|encryption| encryption.dukpt)
            .expect("dukpt");
        assert_eq!(dukpt.ksn, first.ksn);
        assert_eq!(
            block
                .hsm_pin_block_key("alias/bdk")
                .dukpt
                .expect("dukpt")
                .ksn,
            first.ksn
        );

        // A.4.2: the data request ciphertext of E00002, now in the second payment, without a
        // PIN.
        let second = ped.encrypt_transaction(&track, None).expect("transaction");
        assert_eq!(second.ksn, "FFFF9876543210E00002");
        assert_eq!(
            hex::encode_upper(&second.encrypted_card_data),
            "A2B4E70F846E63D68775B7215EB4563DFD3037244C61CC13"
        );
        assert_eq!(second.encrypted_pin_block, None);
        assert!(second.pin_block().is_none());
        // The old methods still take a counter each, with the same keys.
        let third = ped.pin_block(track.pan(), &pin).expect("pin block");
        assert_eq!(third.ksn, "FFFF9876543210E00003");
        assert_eq!(hex::encode_upper(&third.block), "18DC07B94797B466");
        assert_eq!(
            ped.encrypt_card_data(&track).expect("card").ksn,
            "FFFF9876543210E00004"
        );

        let printed = format!("{first:?} {ped:?}");
        for secret in ["4012345678909", "1B9C1845", IPEK] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn an_aes_transaction_enciphers_card_data_and_pin_under_one_ksn() {
        let mut ped = terminal();
        ped.load_initial_key(
            ki_pb::DukptAlgorithm::Aes128,
            &key(AES_INITIAL_KEY),
            AES_INITIAL_KEY_ID,
        )
        .expect("load");
        let track = Track2::parse("4111111111111111D2512101").expect("track 2");
        let pin = Pin::new("1234").expect("pin");
        let transaction = ped
            .encrypt_transaction(&track, Some(&pin))
            .expect("transaction");
        assert_eq!(transaction.ksn, "123456789012345600000001");
        assert_eq!(transaction.pin_block_format, PinBlockFormat::Iso4);
        assert_eq!(ped.counter(), Some(2));
        let ksn = aes_dukpt::Ksn::from_hex(&transaction.ksn).expect("ksn");
        let data_key = aes_dukpt::host_working_key(
            &key(AES_BDK),
            &ksn,
            aes_dukpt::KeyUsage::DataEncrypt,
            aes_dukpt::KeyType::Aes128,
        )
        .expect("data key");
        let clear = aes_decrypt_cbc(
            data_key.expose(),
            &[0; 16],
            &transaction.encrypted_card_data,
        )
        .expect("cbc");
        assert_eq!(clear.len(), 32);
        assert_eq!(&clear[..24], b"4111111111111111D2512101");
        let pin_key = aes_dukpt::host_working_key(
            &key(AES_BDK),
            &ksn,
            aes_dukpt::KeyUsage::PinEncryption,
            aes_dukpt::KeyType::Aes128,
        )
        .expect("pin key");
        let block = transaction.pin_block().expect("block");
        assert_eq!(block.block.len(), 16);
        let clear_pin = paycrypto::pin::decrypt_pin_block(
            PinBlockFormat::Iso4,
            &pin_key,
            &block.block,
            Some(track.pan()),
        )
        .expect("pin");
        assert_eq!(clear_pin, pin);
    }

    #[test]
    fn no_key_no_transaction_and_no_url_no_payment() {
        let mut ped = terminal();
        let track = Track2::parse("4012345678909D987").expect("track 2");
        assert!(matches!(
            ped.encrypt_transaction(&track, None),
            Err(SimError::NoKey)
        ));
        assert!(matches!(
            ped.load_initial_key(ki_pb::DukptAlgorithm::Tdes, &key("00"), INITIAL_KSN),
            Err(SimError::InvalidInput(_))
        ));
        assert_eq!(ped.auth_url(), "");
        let ped = ped.with_auth_url("https://auth.example:8443/");
        assert_eq!(ped.auth_url(), "https://auth.example:8443");
    }
}
