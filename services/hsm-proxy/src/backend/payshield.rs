//! `payshield://` — a Thales payShield (or compatible HSM, e.g. `payshield-sim`) over the
//! host-command protocol of `crates/payshield`.
//!
//! ```text
//! payshield://host:port?id=<backend id>&site=<site>&header=4&connections=4&timeout_ms=400[&lmk_check=<16H>]
//! ```
//!
//! A payShield stores no keys: the host keeps every key encrypted under the HSM's local
//! master key (LMK), as the `S` key block the HSM returned, and sends it with each command.
//! That key block *is* this backend's handle. It is usable only inside an HSM holding the
//! same LMK, so HSMs of one pool share their LMK: a replica is the handle itself, and
//! importing one asks this HSM for the key's check value (BU), which proves that the HSM
//! opens the block and lets the service compare KCVs.
//!
//! Command mapping (every operation the command set covers; the rest is
//! [`HsmError::Unsupported`] naming the missing host command):
//!
//! | operation | host command |
//! |---|---|
//! | health check | NO (status) then NC (diagnostics; with `lmk_check`, its LMK check value must match) |
//! | generate | A0 mode 0, key block attributes |
//! | KCV, replica import | BU |
//! | import TR-31 | A6 (`R` key under a ZMK/TMK) |
//! | export TR-31 | A8 (`R` export scheme) |
//! | PIN translation key → key | CC (formats ISO 0, 1, 3, 4) |
//! | PIN translation TDES DUKPT → key | G0 (source ISO 0) |
//! | MAC generate / verify (ISO 9797-1 alg. 1 and 3) | M6 / M8 |
//! | encrypt / decrypt (ECB, CBC; TDES, AES) | M0 / M2 |
//! | ARQC / ARPC (option A, Visa CVN 10, M/Chip SKD verify, ARPC method 1) | KQ |
//!
//! Errors: HSM error codes for bad input are [`HsmError::Invalid`] (the caller's request,
//! `bad_request`), a verification failure (`01`) is a negative result; I/O errors, timeouts,
//! refused connections, protocol errors and a key block that does not open under this
//! HSM's LMK are [`HsmError::Unavailable`], so the pool fails over.
//!
//! The client's `timeout_ms` should stay below the pool's attempt timeout, so that a slow
//! request is abandoned by the client (which then drops the connection) rather than
//! cancelled by the pool mid-exchange.

use std::time::Duration;

use paycrypto::SecretBytes;
use paycrypto::mac::Padding;
use paycrypto::pin::{Pan, PinBlockFormat};
use paycrypto::tr31::{Exportability, KeyBlockHeader};
use payshield::client::{ClientError, PayShieldClient};
use payshield::codec::{
    self, ArqcRequest, DataRequest, DukptPinTranslation, ErrorCode, ExportKey, ExportTarget,
    GenerateKey, ImportKey, KeyBlockAttributes, KeyCheckValueRequest, KeyField, MacRequest,
    PinTranslation, Request, Response, Sensitive,
};
use tokio::sync::OnceCell;

use super::{
    Arpc, Backend, Cipher, CipherMode, Dukpt, KeyRef, Mac, MasterKeyDerivation, Operation, Outcome,
    StoredKey, Tr31Export, Working, url_id_and_site, url_query,
};
use crate::error::HsmError;
use crate::spec::{KeyAlgorithm, KeySpec};

/// Default client timeout: below the pool's default attempt timeout (500 ms).
const DEFAULT_TIMEOUT_MS: u64 = 400;

/// A payShield-compatible HSM.
pub struct PayShieldBackend {
    id: String,
    site: String,
    addr: String,
    header_len: usize,
    connections: usize,
    timeout: Duration,
    lmk_check: Option<String>,
    /// Created on first use, so that the service starts while the HSM is down; the client
    /// itself reopens failed connections.
    client: OnceCell<PayShieldClient>,
}

impl std::fmt::Debug for PayShieldBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayShieldBackend")
            .field("id", &self.id)
            .field("site", &self.site)
            .field("addr", &self.addr)
            .field("connections", &self.connections)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What an HSM error code means for the caller, per command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyOrigin {
    /// Every key block in the command is a handle of this service: one that does not open
    /// is this HSM's problem (another LMK), not the caller's.
    Handles,
    /// The command carries a key block from the caller (A6).
    Caller,
}

fn number<T: std::str::FromStr>(url: &str, name: &str, default: T) -> Result<T, HsmError> {
    match url_query(url, name) {
        None => Ok(default),
        Some(value) => value
            .parse()
            .map_err(|_| HsmError::invalid("backend url", format!("{name} must be a number"))),
    }
}

/// The handle of a key under the LMK: `S` + key block.
fn handle_of(field: &KeyField) -> Result<String, HsmError> {
    match field {
        KeyField::KeyBlock(text) => Ok(format!("S{text}")),
        _ => Err(HsmError::Unavailable(
            "the hsm returned a key that is not a key block under its lmk".into(),
        )),
    }
}

/// The key field of a handle.
fn key_field(handle: &str) -> Result<KeyField, HsmError> {
    handle
        .strip_prefix('S')
        .filter(|block| block.len() >= 16)
        .map(|block| KeyField::KeyBlock(block.to_owned()))
        .ok_or_else(|| HsmError::Internal("malformed payshield key handle".into()))
}

/// The attributes of a key block for A0 and A6.
fn attributes(
    spec: &KeySpec,
    exportability: Exportability,
) -> Result<KeyBlockAttributes, HsmError> {
    let algorithm = match spec.algorithm {
        KeyAlgorithm::Tdes2 => "T2",
        KeyAlgorithm::Tdes3 => "T3",
        KeyAlgorithm::Aes128 => "A1",
        KeyAlgorithm::Aes192 => "A2",
        KeyAlgorithm::Aes256 => "A3",
        KeyAlgorithm::HmacSha256 => {
            return Err(HsmError::Unsupported(
                "HMAC keys on payshield: A0 in crates/payshield knows algorithms T2, T3, A1, A2, A3 only".into(),
            ));
        }
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa4096
        | KeyAlgorithm::EccP256
        | KeyAlgorithm::EccP384 => {
            return Err(HsmError::Unsupported(
                "RSA and EC key pairs on payshield need EI/GI, which crates/payshield does not cover"
                    .into(),
            ));
        }
    };
    let mode_of_use = spec
        .mode
        .code()
        .chars()
        .next()
        .ok_or_else(|| HsmError::Internal("empty mode of use".into()))?;
    Ok(KeyBlockAttributes {
        key_usage: spec.usage.code().to_owned(),
        algorithm: algorithm.to_owned(),
        mode_of_use,
        key_version: "00".to_owned(),
        exportability: exportability.code(),
    })
}

fn pin_format_code(format: PinBlockFormat) -> &'static str {
    match format {
        PinBlockFormat::Iso0 => "01",
        PinBlockFormat::Iso1 => "05",
        PinBlockFormat::Iso3 => "47",
        PinBlockFormat::Iso4 => "48",
    }
}

/// The account field of PIN commands: the 12 rightmost digits without the check digit, the
/// full PAN for ISO format 4, zeros without a PAN (format 1).
fn account(pan: Option<&Pan>, full: bool) -> Sensitive<String> {
    let Some(pan) = pan else {
        return Sensitive("0".repeat(12));
    };
    let digits = pan.expose();
    if full {
        return Sensitive(digits.to_owned());
    }
    let without_check = &digits[..digits.len().saturating_sub(1)];
    let start = without_check.len().saturating_sub(12);
    Sensitive(format!("{:0>12}", &without_check[start..]))
}

fn mac_padding(padding: Padding) -> char {
    match padding {
        Padding::Method1 => '1',
        Padding::Method2 => '2',
        Padding::Method3 => '3',
    }
}

/// The meaning of the payShield error codes a caller's input can cause (public payShield
/// error-code table).
fn error_meaning(code: ErrorCode) -> Option<&'static str> {
    Some(match &code.0 {
        b"10" => "source key parity error",
        b"11" => "destination key parity error",
        b"15" => "invalid input data",
        b"20" => "the PIN block does not contain valid values",
        b"22" => "invalid account number",
        b"23" => "invalid PIN block format code",
        b"24" => "PIN too short or too long",
        b"27" => "incompatible key length",
        b"29" => "key function not permitted (not exportable)",
        b"80" => "data length error",
        b"A6" => "key usage not allowed for this command",
        b"A7" => "algorithm not allowed for this command",
        b"A8" => "mode of use not allowed for this command",
        b"AA" => "invalid exportability",
        _ => return None,
    })
}

impl PayShieldBackend {
    /// Reads `payshield://host:port?id=…&site=…&header=4&connections=4&timeout_ms=400`
    /// (and an optional `lmk_check`, the 16H LMK check value NC must report). Connects
    /// lazily.
    pub fn open(url: &str) -> Result<Self, HsmError> {
        let (addr, id, site) = url_id_and_site(url, "payshield");
        if addr.is_empty() || !addr.contains(':') {
            return Err(HsmError::invalid(
                "backend url",
                "payshield:// needs host:port",
            ));
        }
        let header_len = number(url, "header", 4_usize)?;
        let connections = number(url, "connections", 4_usize)?;
        let timeout_ms = number(url, "timeout_ms", DEFAULT_TIMEOUT_MS)?;
        if header_len > 32 || connections == 0 || connections > 256 || timeout_ms == 0 {
            return Err(HsmError::invalid(
                "backend url",
                "header must be 0–32, connections 1–256, timeout_ms above 0",
            ));
        }
        let lmk_check = url_query(url, "lmk_check").map(|value| value.to_uppercase());
        Ok(Self {
            id,
            site,
            addr,
            header_len,
            connections,
            timeout: Duration::from_millis(timeout_ms),
            lmk_check,
            client: OnceCell::new(),
        })
    }

    fn unavailable(&self, error: &ClientError) -> HsmError {
        HsmError::Unavailable(format!("backend {}: {error}", self.id))
    }

    async fn client(&self) -> Result<&PayShieldClient, HsmError> {
        self.client
            .get_or_try_init(|| {
                PayShieldClient::with_pool(
                    self.addr.clone(),
                    self.header_len,
                    self.timeout,
                    self.connections,
                )
            })
            .await
            .map_err(|error| self.unavailable(&error))
    }

    /// Sends a command; HSM error codes come back as `Err(Ok(code))`, everything that makes
    /// this HSM unusable as `Err(Err(unavailable))`.
    async fn send_raw(&self, request: &Request) -> Result<Response, Result<ErrorCode, HsmError>> {
        // Encode once locally: a request the codec refuses is the caller's bad input, not a
        // broken HSM (the client would report both as protocol errors).
        if let Err(error) = codec::encode(&vec![b'0'; self.header_len], request) {
            return Err(Err(HsmError::invalid("request", error.to_string())));
        }
        let client = self.client().await.map_err(Err)?;
        match client.send(request).await {
            Ok(response) => Ok(response),
            Err(ClientError::ErrorCode(code)) => Err(Ok(code)),
            Err(error) => Err(Err(self.unavailable(&error))),
        }
    }

    /// Sends a command and maps every HSM error code.
    async fn send(&self, request: &Request, keys: KeyOrigin) -> Result<Response, HsmError> {
        match self.send_raw(request).await {
            Ok(response) => Ok(response),
            Err(Ok(code)) => Err(self.error(request, code, keys)),
            Err(Err(error)) => Err(error),
        }
    }

    fn error(&self, request: &Request, code: ErrorCode, keys: KeyOrigin) -> HsmError {
        let command = String::from_utf8_lossy(&request.command_code()).into_owned();
        let field = format!("payshield {command}");
        match (&code.0, keys) {
            (b"A4" | b"26", KeyOrigin::Handles) => HsmError::Unavailable(format!(
                "backend {}: a key block does not open under this hsm's lmk (error {code})",
                self.id
            )),
            (b"A4", KeyOrigin::Caller) => {
                HsmError::invalid(field, "key block authentication failed (error A4)")
            }
            (b"26", KeyOrigin::Caller) => HsmError::invalid(field, "invalid key scheme (error 26)"),
            (b"68", _) => HsmError::Unsupported(format!(
                "backend {}: command {command} is disabled on the hsm (error 68)",
                self.id
            )),
            _ => match error_meaning(code) {
                Some(meaning) => HsmError::invalid(field, format!("{meaning} (error {code})")),
                None => HsmError::Internal(format!(
                    "backend {}: {command} answered error {code}",
                    self.id
                )),
            },
        }
    }

    /// BU: the check value of a key under this HSM's LMK.
    async fn check_value(&self, handle: &str, spec: &KeySpec) -> Result<String, HsmError> {
        let request = Request::KeyCheckValue(KeyCheckValueRequest {
            key_type_code: "FF".to_owned(),
            key_length_flag: if spec.algorithm.key_len() == 16 {
                '1'
            } else {
                '2'
            },
            key: key_field(handle)?,
        });
        match self.send(&request, KeyOrigin::Handles).await? {
            Response::KeyCheckValue { check_value } => {
                Ok(check_value.get(..6).unwrap_or(&check_value).to_owned())
            }
            other => Err(self.unexpected(&other)),
        }
    }

    fn unexpected(&self, response: &Response) -> HsmError {
        let kind = format!("{response:?}");
        let kind = kind
            .split([' ', '{', '('])
            .next()
            .unwrap_or_default()
            .to_owned();
        HsmError::Unavailable(format!("backend {}: unexpected answer {kind}", self.id))
    }

    fn stored_key(&self, key: KeyRef<'_>) -> Result<KeyField, HsmError> {
        key_field(key.handle)
    }

    async fn translate_pin(
        &self,
        from: &super::PinKey<'_>,
        to: &super::PinKey<'_>,
        block: &[u8],
        pan: Option<&Pan>,
    ) -> Result<Outcome, HsmError> {
        if to.key.dukpt.is_some() {
            return Err(HsmError::Unsupported(
                "PIN translation to a DUKPT key: no such payShield host command".into(),
            ));
        }
        let destination_format = pin_format_code(to.format).to_owned();
        let destination = self.stored_key(to.key.key)?;
        let pin_block = Sensitive(hex::encode_upper(block));
        let request = match &from.key.dukpt {
            None => {
                let full = from.format == PinBlockFormat::Iso4 || to.format == PinBlockFormat::Iso4;
                Request::TranslatePinZpkToZpk(PinTranslation {
                    source_key: self.stored_key(from.key.key)?,
                    destination_key: destination,
                    max_pin_length: 12,
                    pin_block,
                    source_format: pin_format_code(from.format).to_owned(),
                    destination_format,
                    account: account(pan, full),
                })
            }
            Some(Dukpt::Tdes { ksn, .. }) => {
                if from.format != PinBlockFormat::Iso0 {
                    return Err(HsmError::Unsupported(
                        "DUKPT PIN blocks other than ISO format 0: G0 in crates/payshield takes format 01 only".into(),
                    ));
                }
                Request::TranslatePinDukpt3Des(DukptPinTranslation {
                    bdk: self.stored_key(from.key.key)?,
                    zpk: destination,
                    // BDK ID 9, sub-key 0, device ID 6 hex digits, + 5 for the counter: 20.
                    ksn_descriptor: "906".to_owned(),
                    ksn: ksn.to_hex(),
                    pin_block,
                    source_format: Some("01".to_owned()),
                    destination_format,
                    account: account(pan, false),
                })
            }
            Some(Dukpt::Aes { .. }) => {
                return Err(HsmError::Unsupported(
                    "AES DUKPT PIN translation: no AES DUKPT host command in crates/payshield"
                        .into(),
                ));
            }
        };
        match self.send(&request, KeyOrigin::Handles).await? {
            Response::TranslatePin { pin_block, .. } => {
                Ok(Outcome::Bytes(hex::decode(&pin_block.0).map_err(|_| {
                    HsmError::Unavailable(format!("backend {}: PIN block not hex", self.id))
                })?))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    fn mac_request(
        &self,
        key: &Working<'_>,
        algorithm: Mac,
        data: &[u8],
        mac: Option<String>,
    ) -> Result<Request, HsmError> {
        if key.dukpt.is_some() {
            return Err(HsmError::Unsupported(
                "DUKPT MAC keys: M6/M8 in crates/payshield take a stored MAC key, no BDK and KSN"
                    .into(),
            ));
        }
        let (code, padding) = match algorithm {
            Mac::Alg1(padding) => ("01", padding),
            Mac::Alg3(padding) => ("03", padding),
            Mac::Cmac | Mac::HmacSha256 => {
                return Err(HsmError::Unsupported(
                    "CMAC and HMAC: M6/M8 in crates/payshield cover ISO 9797-1 algorithms 1 and 3 (01, 03) only".into(),
                ));
            }
        };
        let request = MacRequest {
            mode: '0',
            input_format: '0',
            algorithm: code.to_owned(),
            padding: mac_padding(padding),
            key_type: "FFF".to_owned(),
            key: self.stored_key(key.key)?,
            iv: None,
            message: Sensitive(data.to_vec()),
            mac: mac.clone(),
        };
        Ok(if mac.is_some() {
            Request::VerifyMac(request)
        } else {
            Request::GenerateMac(request)
        })
    }

    async fn cipher(
        &self,
        cipher: &Cipher<'_>,
        encrypt: bool,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        if cipher.key.dukpt.is_some() {
            return Err(HsmError::Unsupported(
                "DUKPT data keys: M0/M2 in crates/payshield and the simulator take a stored data key, no BDK and KSN".into(),
            ));
        }
        let block = cipher.key.key.spec.algorithm.block_len();
        let iv = match cipher.mode {
            CipherMode::Ecb => None,
            CipherMode::Cbc if cipher.iv.is_empty() => Some("0".repeat(2 * block)),
            CipherMode::Cbc if cipher.iv.len() == block => Some(hex::encode_upper(&cipher.iv)),
            CipherMode::Cbc => {
                return Err(HsmError::invalid(
                    "iv",
                    format!("must be {block} bytes for this key"),
                ));
            }
        };
        let request = DataRequest {
            mode: if iv.is_some() { "01" } else { "00" }.to_owned(),
            input_format: '0',
            output_format: '0',
            key_type: "FFF".to_owned(),
            key: self.stored_key(cipher.key.key)?,
            iv,
            message: Sensitive(data.to_vec()),
        };
        let request = if encrypt {
            Request::EncryptData(request)
        } else {
            Request::DecryptData(request)
        };
        match self.send(&request, KeyOrigin::Handles).await? {
            Response::Data { data, .. } => Ok(data.0),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn arqc(&self, request: &super::Arqc<'_>) -> Result<Outcome, HsmError> {
        let pan = request.pan.expose();
        if request.derivation == MasterKeyDerivation::OptionB && pan.len() > 16 {
            return Err(HsmError::Unsupported(
                "EMV option B (PANs over 16 digits): KQ in crates/payshield derives with option A"
                    .into(),
            ));
        }
        let (scheme, atc, un) = match request.session {
            paycrypto::emv::SessionKeyDerivation::None => ('0', [0; 2], [0; 4]),
            paycrypto::emv::SessionKeyDerivation::MastercardSkd { atc, un } => ('1', atc, un),
            paycrypto::emv::SessionKeyDerivation::EmvCsk { .. } => {
                return Err(HsmError::Unsupported(
                    "the EMV common session key: KQ covers Visa (scheme 0) and M/Chip (scheme 1); EMV 2000 / CSK needs KW".into(),
                ));
            }
        };
        let (mode, arc) = match &request.arpc {
            Arpc::None => ('0', None),
            Arpc::Method1(arc) if scheme == '0' => ('1', Some(*arc)),
            Arpc::Method1(_) => {
                return Err(HsmError::Unsupported(
                    "an ARPC under the M/Chip session key: KQ computes the ARPC under the ICC master key".into(),
                ));
            }
            Arpc::Method2 { .. } => {
                return Err(HsmError::Unsupported(
                    "ARPC method 2: not in KQ of crates/payshield (payShield KW)".into(),
                ));
            }
        };
        // The HSM zero-pads (ISO 9797-1 method 1); scheme padding is the host's job.
        let mut data = request.data.clone();
        match request.padding {
            Padding::Method1 => {}
            Padding::Method2 => data.push(0x80),
            Padding::Method3 => {
                return Err(HsmError::Unsupported(
                    "ISO 9797-1 padding method 3 for ARQCs: KQ zero-pads".into(),
                ));
            }
        }
        // PAN/PSN: the rightmost 16 digits of PAN ‖ PSN (option A's Y), packed.
        let digits = format!("{pan}{}", request.psn);
        let y = format!("{:0>16}", &digits[digits.len().saturating_sub(16)..]);
        let pan_psn: [u8; 8] = hex::decode(&y)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| HsmError::invalid("psn", "must be 2 digits"))?;
        let kq = Request::VerifyArqc(ArqcRequest {
            mode,
            scheme,
            mk_ac: self.stored_key(request.key)?,
            pan_psn: Sensitive(pan_psn),
            atc,
            unpredictable_number: un,
            transaction_data: data,
            arqc: request.arqc,
            arc,
        });
        match self.send_raw(&kq).await {
            Ok(Response::VerifyArqc { arpc }) => Ok(Outcome::Verified {
                verified: true,
                arpc: arpc.map(|arpc| arpc.to_vec()).unwrap_or_default(),
            }),
            Ok(other) => Err(self.unexpected(&other)),
            Err(Ok(ErrorCode::VERIFICATION_FAILED)) => Ok(Outcome::Verified {
                verified: false,
                arpc: Vec::new(),
            }),
            Err(Ok(code)) => Err(self.error(&kq, code, KeyOrigin::Handles)),
            Err(Err(error)) => Err(error),
        }
    }
}

/// The key length a TR-31 block carries, from its encrypted key field: the smallest length of
/// the algorithm that pads to the field (TR-31 pads `2-byte length ‖ key` to the cipher
/// block). A block whose sender masked the key length looks like a longer key: such a key
/// is registered with the longest length its field can hold.
fn tr31_key_len(header: &KeyBlockHeader, block: &str, layout_header: usize) -> Option<usize> {
    let version = header.version;
    let field_chars = block
        .len()
        .checked_sub(layout_header)?
        .checked_sub(2 * version.mac_len())?;
    let field = field_chars / 2;
    let lengths: &[usize] = match header.algorithm {
        paycrypto::tr31::Algorithm::Tdes => &[16, 24],
        paycrypto::tr31::Algorithm::Aes => &[16, 24, 32],
        _ => return None,
    };
    let size = version.block_size();
    let padded = |len: usize| (2 + len).div_ceil(size) * size;
    lengths
        .iter()
        .copied()
        .find(|len| padded(*len) == field)
        .or_else(|| {
            lengths
                .iter()
                .copied()
                .rev()
                .find(|len| padded(*len) <= field)
        })
}

#[async_trait::async_trait]
impl Backend for PayShieldBackend {
    fn id(&self) -> &str {
        &self.id
    }

    fn site(&self) -> &str {
        &self.site
    }

    fn kind(&self) -> &'static str {
        "payshield"
    }

    async fn check(&self) -> Result<(), HsmError> {
        let health = self
            .client()
            .await?
            .health()
            .await
            .map_err(|error| self.unavailable(&error))?;
        if let Some(expected) = &self.lmk_check
            && *expected != health.lmk_check_value
        {
            return Err(HsmError::Unavailable(format!(
                "backend {}: the hsm reports another lmk check value",
                self.id
            )));
        }
        Ok(())
    }

    async fn generate(&self, spec: &KeySpec) -> Result<StoredKey, HsmError> {
        let request = Request::GenerateKey(GenerateKey {
            key_type: "FFF".to_owned(),
            lmk_scheme: 'S',
            export: None,
            attributes: attributes(spec, spec.exportability)?,
        });
        match self.send(&request, KeyOrigin::Handles).await? {
            Response::GenerateKey {
                key_under_lmk,
                check_value,
                ..
            } => Ok(StoredKey {
                handle: handle_of(&key_under_lmk)?,
                kcv: check_value,
            }),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn import_clear(&self, _: &KeySpec, _: SecretBytes) -> Result<StoredKey, HsmError> {
        Err(HsmError::Unsupported(
            "clear-component import on payshield: no host command in crates/payshield forms a key from clear components (a payShield takes them at its console); import a TR-31 block (A6) instead".into(),
        ))
    }

    async fn import_tr31(
        &self,
        wrapping_key: KeyRef<'_>,
        key_block: &str,
    ) -> Result<(KeyBlockHeader, KeySpec, StoredKey), HsmError> {
        let block = key_block.trim();
        let (header, layout) = KeyBlockHeader::parse(block)?;
        if layout.block_length != block.len() {
            return Err(HsmError::invalid(
                "tr31.keyBlock",
                "the length field does not match the block",
            ));
        }
        let len = tr31_key_len(&header, block, layout.header_length).ok_or_else(|| {
            HsmError::invalid("tr31.keyBlock", "no key of its algorithm fits the block")
        })?;
        let algorithm = KeyAlgorithm::from_tr31(&header.algorithm, len)?;
        let spec = KeySpec::new(
            algorithm,
            header.key_usage.clone(),
            header.mode_of_use.clone(),
            header.exportability,
        )?;
        let request = Request::ImportKey(ImportKey {
            key_type: "FFF".to_owned(),
            zmk: self.stored_key(wrapping_key)?,
            key: KeyField::Tr31(block.to_owned()),
            lmk_scheme: 'S',
            attributes: None,
        });
        match self.send(&request, KeyOrigin::Caller).await? {
            Response::ImportKey {
                key_under_lmk,
                check_value,
            } => Ok((
                header,
                spec,
                StoredKey {
                    handle: handle_of(&key_under_lmk)?,
                    kcv: check_value,
                },
            )),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn export_tr31(&self, export: Tr31Export<'_>) -> Result<String, HsmError> {
        let request = Request::ExportKey(ExportKey {
            key_type: "FFF".to_owned(),
            target: ExportTarget {
                zmk_tmk_flag: '0',
                kek: self.stored_key(export.wrapping_key)?,
                scheme: 'R',
            },
            key: self.stored_key(export.key)?,
        });
        let block = match self.send(&request, KeyOrigin::Handles).await? {
            Response::ExportKey {
                key_under_kek: KeyField::Tr31(block),
                ..
            } => block,
            other => return Err(self.unexpected(&other)),
        };
        // A8 in crates/payshield has no field for the exported block's attributes: the block
        // carries the key's own exportability. Refuse rather than hand out a block that
        // allows more than was asked.
        let (header, _) = KeyBlockHeader::parse(&block).map_err(|_| {
            HsmError::Unavailable(format!(
                "backend {}: A8 answered a malformed key block",
                self.id
            ))
        })?;
        if header.exportability != export.exportability {
            return Err(HsmError::Unsupported(format!(
                "an exported block with exportability {}: A8 in crates/payshield keeps the key's own ({}); ask for exportability {}",
                export.exportability.code(),
                header.exportability.code(),
                header.exportability.code()
            )));
        }
        Ok(block)
    }

    async fn export_dukpt_initial_key(
        &self,
        _: KeyRef<'_>,
        _: KeyRef<'_>,
        _: &Dukpt,
    ) -> Result<(String, String), HsmError> {
        Err(HsmError::Unsupported(
            "DUKPT initial key export on payshield: deriving an IPEK (payShield A0 mode A) is not in crates/payshield".into(),
        ))
    }

    async fn public_key(&self, _key: KeyRef<'_>) -> Result<Vec<u8>, HsmError> {
        Err(HsmError::Unsupported(
            "RSA and EC key pairs on payshield need EI/GI, which crates/payshield does not cover"
                .into(),
        ))
    }

    async fn kcv(&self, key: KeyRef<'_>) -> Result<String, HsmError> {
        self.check_value(key.handle, key.spec).await
    }

    async fn delete(&self, _: &str) -> Result<(), HsmError> {
        // The HSM holds nothing: the key block lives in the registry only.
        Ok(())
    }

    async fn export_replica(&self, key: KeyRef<'_>) -> Result<String, HsmError> {
        Ok(key.handle.to_owned())
    }

    async fn import_replica(&self, spec: &KeySpec, replica: &str) -> Result<StoredKey, HsmError> {
        let field = key_field(replica)?;
        if let KeyField::KeyBlock(text) = &field {
            let (header, _) = KeyBlockHeader::parse(text)
                .map_err(|_| HsmError::Internal("malformed payshield replica".into()))?;
            if header.key_usage != spec.usage {
                return Err(HsmError::Internal("replica does not match its key".into()));
            }
        }
        // BU proves that this HSM opens the block (same LMK) and gives its KCV.
        let kcv = self.check_value(replica, spec).await?;
        Ok(StoredKey {
            handle: replica.to_owned(),
            kcv,
        })
    }

    async fn run(&self, operation: Operation<'_>) -> Result<Outcome, HsmError> {
        match operation {
            Operation::Encrypt { cipher, data } => {
                Ok(Outcome::Bytes(self.cipher(&cipher, true, &data).await?))
            }
            Operation::Decrypt { cipher, data } => {
                Ok(Outcome::Bytes(self.cipher(&cipher, false, &data).await?))
            }
            Operation::ReEncrypt { .. } => Err(HsmError::Unsupported(
                "re-encryption inside the HSM on payshield: M4 (translate data) is not in crates/payshield".into(),
            )),
            Operation::TranslatePin {
                from,
                to,
                block,
                pan,
            } => self.translate_pin(&from, &to, &block, pan.as_ref()).await,
            Operation::GenerateMac {
                key,
                algorithm,
                data,
                length,
            } => {
                if !(4..=8).contains(&length) {
                    return Err(HsmError::invalid(
                        "length",
                        "payshield MACs are 4 to 8 bytes",
                    ));
                }
                let request = self.mac_request(&key, algorithm, &data, None)?;
                match self.send(&request, KeyOrigin::Handles).await? {
                    Response::GenerateMac { mac } => {
                        let mac = hex::decode(mac).map_err(|_| {
                            HsmError::Unavailable(format!("backend {}: MAC not hex", self.id))
                        })?;
                        Ok(Outcome::Bytes(mac.get(..length).unwrap_or(&mac).to_vec()))
                    }
                    other => Err(self.unexpected(&other)),
                }
            }
            Operation::VerifyMac {
                key,
                algorithm,
                data,
                mac,
            } => {
                if mac.len() != 4 && mac.len() != 8 {
                    return Err(HsmError::invalid(
                        "mac",
                        "payshield verifies MACs of 4 or 8 bytes",
                    ));
                }
                let request =
                    self.mac_request(&key, algorithm, &data, Some(hex::encode_upper(&mac)))?;
                let verified = match self.send_raw(&request).await {
                    Ok(Response::VerifyMac) => true,
                    Ok(other) => return Err(self.unexpected(&other)),
                    Err(Ok(ErrorCode::VERIFICATION_FAILED)) => false,
                    Err(Ok(code)) => return Err(self.error(&request, code, KeyOrigin::Handles)),
                    Err(Err(error)) => return Err(error),
                };
                Ok(Outcome::Verified {
                    verified,
                    arpc: Vec::new(),
                })
            }
            Operation::GenerateCardValidation { .. } | Operation::VerifyCardValidation { .. } => {
                Err(HsmError::Unsupported(
                    "CVV, CVV2 and iCVV on payshield: CW/CY are not in crates/payshield".into(),
                ))
            }
            Operation::VerifyArqc(request) => self.arqc(&request).await,
            Operation::GeneratePinData(_) | Operation::VerifyPinData { .. } => {
                Err(HsmError::Unsupported(
                    "PVV and IBM 3624 on payshield: DG/FW, DE/EE and the PIN verification commands are not in crates/payshield".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls() {
        let backend = PayShieldBackend::open(
            "payshield://127.0.0.1:1500?id=hsm-a&site=fra&connections=8&timeout_ms=250",
        )
        .unwrap();
        assert_eq!(backend.id, "hsm-a");
        assert_eq!(backend.site, "fra");
        assert_eq!(backend.addr, "127.0.0.1:1500");
        assert_eq!(backend.header_len, 4);
        assert_eq!(backend.connections, 8);
        assert_eq!(backend.timeout, Duration::from_millis(250));
        for bad in [
            "payshield://",
            "payshield://host",
            "payshield://h:1?connections=0",
            "payshield://h:1?timeout_ms=x",
        ] {
            assert!(matches!(
                PayShieldBackend::open(bad),
                Err(HsmError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn account_fields() {
        let pan = Pan::new("4012345678909").unwrap();
        assert_eq!(account(Some(&pan), false).0, "401234567890");
        assert_eq!(account(Some(&pan), true).0, "4012345678909");
        assert_eq!(account(None, false).0, "000000000000");
    }

    /// The key length read from a TR-31 block's key field: exact for versions B and D except
    /// D's 16/24 ambiguity (registered as 16); a length-masked block reads as the longest.
    #[test]
    fn key_length_from_tr31_blocks() {
        use paycrypto::tr31::{Algorithm, KeyLengthMasking, KeyUsage, ModeOfUse, Version};
        let kbpk_b = [0x11_u8; 16];
        let kbpk_d = [0x22_u8; 32];
        let cases = [
            (Version::B, Algorithm::Tdes, 16, KeyLengthMasking::None, 16),
            (Version::B, Algorithm::Tdes, 24, KeyLengthMasking::None, 24),
            (Version::B, Algorithm::Aes, 16, KeyLengthMasking::None, 16),
            (Version::B, Algorithm::Aes, 24, KeyLengthMasking::None, 24),
            (Version::B, Algorithm::Aes, 32, KeyLengthMasking::None, 32),
            (Version::D, Algorithm::Tdes, 16, KeyLengthMasking::None, 16),
            (Version::D, Algorithm::Tdes, 24, KeyLengthMasking::None, 16),
            (Version::D, Algorithm::Aes, 16, KeyLengthMasking::None, 16),
            (Version::D, Algorithm::Aes, 32, KeyLengthMasking::None, 32),
            (
                Version::D,
                Algorithm::Aes,
                16,
                KeyLengthMasking::AlgorithmMax,
                32,
            ),
            (
                Version::B,
                Algorithm::Tdes,
                16,
                KeyLengthMasking::AlgorithmMax,
                24,
            ),
        ];
        for (version, algorithm, len, masking, expected) in cases {
            let header = KeyBlockHeader::new(
                version,
                KeyUsage::from_code("D0").unwrap(),
                algorithm.clone(),
                ModeOfUse::from_code("B").unwrap(),
                Exportability::Exportable,
            );
            let kbpk: &[u8] = if version == Version::D {
                &kbpk_d
            } else {
                &kbpk_b
            };
            let key = vec![0x5A_u8; len];
            let block = paycrypto::tr31::wrap(kbpk, &header, &key, masking, &mut rand::rngs::OsRng)
                .unwrap();
            let (parsed, layout) = KeyBlockHeader::parse(&block).unwrap();
            assert_eq!(
                tr31_key_len(&parsed, &block, layout.header_length),
                Some(expected),
                "{version:?} {algorithm} {len} {masking:?}"
            );
        }
    }

    #[test]
    fn handles_round_trip() {
        assert!(key_field("X0000").is_err());
        assert!(key_field("S0016").is_err());
        let field = key_field("SD0016P0TB00N0000").unwrap();
        assert_eq!(handle_of(&field).unwrap(), "SD0016P0TB00N0000");
    }
}
