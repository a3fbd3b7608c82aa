//! `mposctl calc`: the operator's payment-crypto calculator.
//!
//! One subcommand per `paycrypto` operation. Every value is hex in and hex out (PINs, PANs,
//! expiry dates and service codes are decimal digits); each call prints one JSON object.
//! Keys given or derived are printed on purpose (this is a calculator for test and
//! ceremony keys); error messages never contain key bytes.

use clap::{Args, Subcommand, ValueEnum};
use paycrypto::dukpt::{aes as dukpt_aes, tdes as dukpt_tdes};
use paycrypto::kcv::{KcvMethod, KeyAlgorithm};
use paycrypto::mac::{MacAlgorithm, Padding};
use paycrypto::pin::{Pan, Pin, PinBlockContext, PinBlockFormat};
use paycrypto::pinver::{self, DecimalizationTable, Ibm3624, PinOffset, Pvki, Pvv, ValidationData};
use paycrypto::{CryptoError, SecretBytes, cvv, emv, kcv, pin, tr31};
use rand::rngs::OsRng;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::CliError;

mod tr34;

type Result<T> = std::result::Result<T, CliError>;

/// `mposctl calc`.
#[derive(Debug, Args)]
pub(crate) struct CalcArgs {
    /// The operation.
    #[command(subcommand)]
    op: CalcCommand,
}

/// The calculator's operations.
#[derive(Debug, Subcommand)]
enum CalcCommand {
    /// Key check value (KCV) of a DES, TDES or AES key.
    Kcv(KcvArgs),
    /// TDES DUKPT (ANSI X9.24-1:2009): IPEK, transaction key, working keys, next KSN.
    #[command(subcommand)]
    DukptTdes(DukptTdesCommand),
    /// AES DUKPT (ANSI X9.24-3-2017): initial key, derivation key, working keys, next KSN.
    #[command(subcommand)]
    DukptAes(DukptAesCommand),
    /// ISO 9564-1 PIN blocks, formats 0, 1, 3 and 4.
    #[command(subcommand)]
    PinBlock(PinBlockCommand),
    /// MACs: ISO 9797-1 algorithms 1 and 3, AES-CMAC, TDES-CMAC, HMAC-SHA-256.
    #[command(subcommand)]
    Mac(MacCommand),
    /// Card verification values: CVV/CVC, CVV2, iCVV.
    #[command(subcommand)]
    Cvv(CvvCommand),
    /// Visa PIN Verification Value (PVV).
    #[command(subcommand)]
    Pvv(PvvCommand),
    /// IBM 3624 PIN offset and natural PIN.
    #[command(subcommand)]
    Ibm3624Offset(Ibm3624Command),
    /// EMV: ICC master key, session key, ARQC and ARPC (generate and verify).
    #[command(subcommand)]
    Emv(EmvCommand),
    /// TR-31 / ANSI X9.143 key blocks.
    #[command(subcommand)]
    Tr31(Tr31Command),
    /// TR-34 (ASC X9 TR 34-2019) key transport: key, random, credential, rebind and
    /// unbind tokens.
    Tr34(tr34::Tr34Args),
}

/// Runs one calculator operation and returns its JSON result.
pub(crate) fn run(args: CalcArgs) -> Result<Value> {
    match args.op {
        CalcCommand::Kcv(args) => kcv_cmd(&args),
        CalcCommand::DukptTdes(cmd) => dukpt_tdes_cmd(cmd),
        CalcCommand::DukptAes(cmd) => dukpt_aes_cmd(cmd),
        CalcCommand::PinBlock(cmd) => pin_block_cmd(cmd),
        CalcCommand::Mac(cmd) => mac_cmd(cmd),
        CalcCommand::Cvv(cmd) => cvv_cmd(cmd),
        CalcCommand::Pvv(cmd) => pvv_cmd(cmd),
        CalcCommand::Ibm3624Offset(cmd) => ibm3624_cmd(cmd),
        CalcCommand::Emv(cmd) => emv_cmd(cmd),
        CalcCommand::Tr31(cmd) => tr31_cmd(cmd),
        CalcCommand::Tr34(cmd) => tr34::run(cmd),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing helpers
// ---------------------------------------------------------------------------------------------

/// A secret from hex; `what` (the option name) names it in errors.
fn secret(what: &'static str, text: &str) -> Result<SecretBytes> {
    Ok(SecretBytes::from_hex(what, text.trim())?)
}

/// Non-secret bytes from hex (an empty string is empty data).
fn bytes(what: &'static str, text: &str) -> Result<Vec<u8>> {
    Ok(hex::decode(text.trim()).map_err(|_| CryptoError::InvalidHex(what))?)
}

/// Exactly `N` bytes from hex.
fn array<const N: usize>(
    what: &'static str,
    expected: &'static str,
    text: &str,
) -> Result<[u8; N]> {
    let value = bytes(what, text)?;
    value.as_slice().try_into().map_err(|_| {
        CliError::from(CryptoError::InvalidLength {
            what,
            expected,
            actual: value.len(),
        })
    })
}

fn pan(text: &str) -> Result<Pan> {
    Ok(Pan::new(text.trim())?)
}

fn pin_digits(text: &str) -> Result<Pin> {
    Ok(Pin::new(text.trim())?)
}

fn hex_upper(data: &[u8]) -> String {
    hex::encode_upper(data)
}

/// The usual 3-byte KCV of a key: encrypt zeros for DES/TDES, CMAC for AES.
fn kcv_of(key: &SecretBytes, algorithm: KeyAlgorithm) -> Result<String> {
    Ok(kcv::kcv(key, algorithm, KcvMethod::default_for(algorithm))?.to_hex())
}

/// Either a key given directly or a key to derive it from; exactly one must be present.
fn one_of<'a>(
    first: Option<&'a str>,
    second: Option<&'a str>,
    names: &str,
) -> Result<Either<&'a str>> {
    match (first, second) {
        (Some(value), None) => Ok(Either::First(value)),
        (None, Some(value)) => Ok(Either::Second(value)),
        _ => Err(CliError::bad_request(format!(
            "give exactly one of {names}"
        ))),
    }
}

enum Either<T> {
    First(T),
    Second(T),
}

// ---------------------------------------------------------------------------------------------
// kcv
// ---------------------------------------------------------------------------------------------

/// Key algorithm of `calc kcv`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyAlg {
    /// Single-length DES (8 bytes).
    Des,
    /// TDES (16 or 24 bytes).
    Tdes,
    /// AES (16, 24 or 32 bytes).
    Aes,
}

impl From<KeyAlg> for KeyAlgorithm {
    fn from(alg: KeyAlg) -> Self {
        match alg {
            KeyAlg::Des => Self::Des,
            KeyAlg::Tdes => Self::Tdes,
            KeyAlg::Aes => Self::Aes,
        }
    }
}

/// KCV method.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum KcvMethodArg {
    /// Encrypt one zero block (X9.24-1 first method; TR-31 KCV algorithm 00).
    EncryptZeros,
    /// CMAC of one zero block (X9.24-1:2017; TR-31 KCV algorithm 01).
    Cmac,
}

#[derive(Debug, Args)]
struct KcvArgs {
    /// The key (hex).
    #[arg(long)]
    key: String,
    /// The key's algorithm.
    #[arg(long, value_enum, default_value = "tdes")]
    algorithm: KeyAlg,
    /// KCV method; default: CMAC for AES, encrypt-zeros for DES and TDES.
    #[arg(long, value_enum)]
    method: Option<KcvMethodArg>,
    /// Check value length in bytes (1 to the block size).
    #[arg(long, default_value_t = 3)]
    length: usize,
}

fn kcv_cmd(args: &KcvArgs) -> Result<Value> {
    let key = secret("--key", &args.key)?;
    let algorithm = KeyAlgorithm::from(args.algorithm);
    let method = match args.method {
        Some(KcvMethodArg::EncryptZeros) => KcvMethod::EncryptZeros,
        Some(KcvMethodArg::Cmac) => KcvMethod::Cmac,
        None => KcvMethod::default_for(algorithm),
    };
    let value = kcv::check_value(&key, algorithm, method, args.length)?;
    Ok(json!({ "kcv": hex_upper(&value) }))
}

// ---------------------------------------------------------------------------------------------
// dukpt-tdes
// ---------------------------------------------------------------------------------------------

/// TDES DUKPT operations.
#[derive(Debug, Subcommand)]
enum DukptTdesCommand {
    /// The initial PIN encryption key (IPEK) from the BDK and the KSN.
    Ipek {
        /// Base derivation key (16 bytes hex).
        #[arg(long)]
        bdk: String,
        /// Key serial number (20 hex digits; the counter bits are ignored).
        #[arg(long)]
        ksn: String,
    },
    /// The transaction key (before any variant) of a KSN, from the IPEK or the BDK.
    TransactionKey(TdesKeySource),
    /// A working key (PIN, MAC or data variant) of a KSN, from the IPEK or the BDK.
    WorkingKey {
        /// IPEK or BDK, and the KSN.
        #[command(flatten)]
        source: TdesKeySource,
        /// What the key is for.
        #[arg(long, value_enum)]
        usage: TdesUsage,
        /// Data keys: apply the X9.24-1:2009 one-way function (the default).
        #[arg(long, conflicts_with = "variant_only")]
        one_way: bool,
        /// Data keys: the bare variant, without the one-way function (X9.24-1:2004 practice).
        #[arg(long)]
        variant_only: bool,
    },
    /// The KSN of the device's next transaction.
    NextKsn {
        /// Key serial number (20 hex digits).
        #[arg(long)]
        ksn: String,
    },
}

/// Where a TDES DUKPT transaction key comes from.
#[derive(Debug, Args)]
struct TdesKeySource {
    /// Initial PIN encryption key (16 bytes hex).
    #[arg(long, conflicts_with = "bdk", required_unless_present = "bdk")]
    ipek: Option<String>,
    /// Base derivation key (16 bytes hex), instead of --ipek.
    #[arg(long)]
    bdk: Option<String>,
    /// Key serial number (20 hex digits).
    #[arg(long)]
    ksn: String,
}

/// TDES DUKPT key usage (variant).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TdesUsage {
    /// PIN encryption.
    Pin,
    /// MAC, request (device to host).
    MacRequest,
    /// MAC, response (host to device).
    MacResponse,
    /// Data encryption, request.
    DataRequest,
    /// Data encryption, response.
    DataResponse,
}

impl From<TdesUsage> for dukpt_tdes::KeyUsage {
    fn from(usage: TdesUsage) -> Self {
        match usage {
            TdesUsage::Pin => Self::PinEncryption,
            TdesUsage::MacRequest => Self::MacRequest,
            TdesUsage::MacResponse => Self::MacResponse,
            TdesUsage::DataRequest => Self::DataRequest,
            TdesUsage::DataResponse => Self::DataResponse,
        }
    }
}

fn tdes_ksn(text: &str) -> Result<dukpt_tdes::Ksn> {
    Ok(dukpt_tdes::Ksn::from_hex(text)?)
}

fn tdes_transaction_key(source: &TdesKeySource) -> Result<(dukpt_tdes::Ksn, SecretBytes)> {
    let ksn = tdes_ksn(&source.ksn)?;
    let key = match one_of(
        source.ipek.as_deref(),
        source.bdk.as_deref(),
        "--ipek or --bdk",
    )? {
        Either::First(ipek) => dukpt_tdes::transaction_key(&secret("--ipek", ipek)?, &ksn)?,
        Either::Second(bdk) => dukpt_tdes::transaction_key_from_bdk(&secret("--bdk", bdk)?, &ksn)?,
    };
    Ok((ksn, key))
}

fn dukpt_tdes_cmd(cmd: DukptTdesCommand) -> Result<Value> {
    match cmd {
        DukptTdesCommand::Ipek { bdk, ksn } => {
            let ipek = dukpt_tdes::derive_ipek(&secret("--bdk", &bdk)?, &tdes_ksn(&ksn)?)?;
            Ok(json!({
                "ipek": ipek.to_hex_upper(),
                "kcv": kcv_of(&ipek, KeyAlgorithm::Tdes)?,
            }))
        }
        DukptTdesCommand::TransactionKey(source) => {
            let (ksn, key) = tdes_transaction_key(&source)?;
            Ok(json!({
                "ksn": ksn.to_hex(),
                "counter": ksn.counter(),
                "transaction_key": key.to_hex_upper(),
                "kcv": kcv_of(&key, KeyAlgorithm::Tdes)?,
            }))
        }
        DukptTdesCommand::WorkingKey {
            source,
            usage,
            one_way: _,
            variant_only,
        } => {
            let (ksn, key) = tdes_transaction_key(&source)?;
            let derivation = if variant_only {
                dukpt_tdes::DataKeyDerivation::VariantOnly
            } else {
                dukpt_tdes::DataKeyDerivation::OneWay
            };
            let working = dukpt_tdes::working_key(&key, usage.into(), derivation)?;
            Ok(json!({
                "ksn": ksn.to_hex(),
                "usage": usage.to_possible_value().map(|v| v.get_name().to_owned()),
                "working_key": working.to_hex_upper(),
                "kcv": kcv_of(&working, KeyAlgorithm::Tdes)?,
            }))
        }
        DukptTdesCommand::NextKsn { ksn } => {
            let next = tdes_ksn(&ksn)?.next()?;
            Ok(json!({ "ksn": next.to_hex(), "counter": next.counter() }))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// dukpt-aes
// ---------------------------------------------------------------------------------------------

/// AES DUKPT operations.
#[derive(Debug, Subcommand)]
enum DukptAesCommand {
    /// The initial key of a device from the BDK and the initial key ID (or a KSN).
    InitialKey {
        /// Base derivation key (AES-128/192/256, hex).
        #[arg(long)]
        bdk: String,
        /// Initial key ID (16 hex digits).
        #[arg(long, conflicts_with = "ksn", required_unless_present = "ksn")]
        initial_key_id: Option<String>,
        /// A KSN of the device (24 hex digits), instead of --initial-key-id.
        #[arg(long)]
        ksn: Option<String>,
    },
    /// The intermediate derivation key of a transaction, from the initial key or the BDK.
    DerivationKey(AesKeySource),
    /// A working key of a transaction, from the initial key or the BDK.
    WorkingKey {
        /// Initial key or BDK, and the KSN.
        #[command(flatten)]
        source: AesKeySource,
        /// What the key is for.
        #[arg(long, value_enum)]
        usage: AesUsage,
        /// Type of the derived key.
        #[arg(long, value_enum, default_value = "aes128")]
        key_type: AesKeyType,
    },
    /// The KSN of the device's next transaction.
    NextKsn {
        /// Key serial number (24 hex digits).
        #[arg(long)]
        ksn: String,
    },
}

/// Where an AES DUKPT derivation key comes from.
#[derive(Debug, Args)]
struct AesKeySource {
    /// The device's initial key (AES, hex).
    #[arg(long, conflicts_with = "bdk", required_unless_present = "bdk")]
    initial_key: Option<String>,
    /// Base derivation key (AES, hex), instead of --initial-key.
    #[arg(long)]
    bdk: Option<String>,
    /// Key serial number (24 hex digits).
    #[arg(long)]
    ksn: String,
}

/// AES DUKPT key usage.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum AesUsage {
    /// Key encryption key (0002).
    KeyEncryption,
    /// PIN encryption (1000).
    Pin,
    /// MAC generation (2000).
    MacGenerate,
    /// MAC verification (2001).
    MacVerify,
    /// MAC, both ways (2002).
    MacBoth,
    /// Data encryption, encrypt (3000).
    DataEncrypt,
    /// Data encryption, decrypt (3001).
    DataDecrypt,
    /// Data encryption, both ways (3002).
    DataBoth,
}

impl From<AesUsage> for dukpt_aes::KeyUsage {
    fn from(usage: AesUsage) -> Self {
        match usage {
            AesUsage::KeyEncryption => Self::KeyEncryptionKey,
            AesUsage::Pin => Self::PinEncryption,
            AesUsage::MacGenerate => Self::MacGeneration,
            AesUsage::MacVerify => Self::MacVerification,
            AesUsage::MacBoth => Self::MacBoth,
            AesUsage::DataEncrypt => Self::DataEncrypt,
            AesUsage::DataDecrypt => Self::DataDecrypt,
            AesUsage::DataBoth => Self::DataBoth,
        }
    }
}

/// AES DUKPT derived key type.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum AesKeyType {
    /// Double-length TDES.
    #[value(name = "2tdea")]
    Tdes2,
    /// Triple-length TDES.
    #[value(name = "3tdea")]
    Tdes3,
    /// AES-128.
    Aes128,
    /// AES-192.
    Aes192,
    /// AES-256.
    Aes256,
}

impl From<AesKeyType> for dukpt_aes::KeyType {
    fn from(key_type: AesKeyType) -> Self {
        match key_type {
            AesKeyType::Tdes2 => Self::Tdes2,
            AesKeyType::Tdes3 => Self::Tdes3,
            AesKeyType::Aes128 => Self::Aes128,
            AesKeyType::Aes192 => Self::Aes192,
            AesKeyType::Aes256 => Self::Aes256,
        }
    }
}

fn aes_ksn(text: &str) -> Result<dukpt_aes::Ksn> {
    Ok(dukpt_aes::Ksn::from_hex(text)?)
}

fn aes_initial_key(source: &AesKeySource, ksn: &dukpt_aes::Ksn) -> Result<SecretBytes> {
    match one_of(
        source.initial_key.as_deref(),
        source.bdk.as_deref(),
        "--initial-key or --bdk",
    )? {
        Either::First(ik) => secret("--initial-key", ik),
        Either::Second(bdk) => Ok(dukpt_aes::derive_initial_key(
            &secret("--bdk", bdk)?,
            &ksn.initial_key_id(),
        )?),
    }
}

fn dukpt_aes_cmd(cmd: DukptAesCommand) -> Result<Value> {
    match cmd {
        DukptAesCommand::InitialKey {
            bdk,
            initial_key_id,
            ksn,
        } => {
            let id = match one_of(
                initial_key_id.as_deref(),
                ksn.as_deref(),
                "--initial-key-id or --ksn",
            )? {
                Either::First(id) => dukpt_aes::InitialKeyId::from_hex(id)?,
                Either::Second(ksn) => aes_ksn(ksn)?.initial_key_id(),
            };
            let ik = dukpt_aes::derive_initial_key(&secret("--bdk", &bdk)?, &id)?;
            Ok(json!({
                "initial_key_id": id.to_hex(),
                "initial_key": ik.to_hex_upper(),
                "kcv": kcv_of(&ik, KeyAlgorithm::Aes)?,
            }))
        }
        DukptAesCommand::DerivationKey(source) => {
            let ksn = aes_ksn(&source.ksn)?;
            let ik = aes_initial_key(&source, &ksn)?;
            let key = dukpt_aes::derivation_key(&ik, &ksn)?;
            Ok(json!({
                "ksn": ksn.to_hex(),
                "counter": ksn.counter(),
                "derivation_key": key.to_hex_upper(),
                "kcv": kcv_of(&key, KeyAlgorithm::Aes)?,
            }))
        }
        DukptAesCommand::WorkingKey {
            source,
            usage,
            key_type,
        } => {
            let ksn = aes_ksn(&source.ksn)?;
            let ik = aes_initial_key(&source, &ksn)?;
            let key = dukpt_aes::working_key(&ik, &ksn, usage.into(), key_type.into())?;
            let algorithm = match key_type {
                AesKeyType::Tdes2 | AesKeyType::Tdes3 => KeyAlgorithm::Tdes,
                _ => KeyAlgorithm::Aes,
            };
            Ok(json!({
                "ksn": ksn.to_hex(),
                "usage": usage.to_possible_value().map(|v| v.get_name().to_owned()),
                "key_type": key_type.to_possible_value().map(|v| v.get_name().to_owned()),
                "working_key": key.to_hex_upper(),
                "kcv": kcv_of(&key, algorithm)?,
            }))
        }
        DukptAesCommand::NextKsn { ksn } => {
            let next = aes_ksn(&ksn)?.next()?;
            Ok(json!({ "ksn": next.to_hex(), "counter": next.counter() }))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pin-block
// ---------------------------------------------------------------------------------------------

/// ISO 9564-1 PIN block format.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PinFormat {
    /// ISO format 0 (ANSI X9.8), TDES.
    #[value(name = "0")]
    Iso0,
    /// ISO format 1, TDES, no PAN.
    #[value(name = "1")]
    Iso1,
    /// ISO format 3, TDES.
    #[value(name = "3")]
    Iso3,
    /// ISO format 4, AES.
    #[value(name = "4")]
    Iso4,
}

impl From<PinFormat> for PinBlockFormat {
    fn from(format: PinFormat) -> Self {
        match format {
            PinFormat::Iso0 => Self::Iso0,
            PinFormat::Iso1 => Self::Iso1,
            PinFormat::Iso3 => Self::Iso3,
            PinFormat::Iso4 => Self::Iso4,
        }
    }
}

/// PIN block operations.
#[derive(Debug, Subcommand)]
enum PinBlockCommand {
    /// Encodes a clear PIN block (formats 0/1/3) or clear PIN field (format 4).
    Encode {
        /// Format and PAN.
        #[command(flatten)]
        target: PinTarget,
        /// The PIN (4 to 12 digits).
        #[arg(long)]
        pin: String,
    },
    /// Decodes a clear PIN block / PIN field.
    Decode {
        /// Format and PAN.
        #[command(flatten)]
        target: PinTarget,
        /// The clear PIN block (hex).
        #[arg(long)]
        pin_block: String,
    },
    /// Encodes and enciphers a PIN (TDES for formats 0/1/3, AES for format 4).
    Encrypt {
        /// Format and PAN.
        #[command(flatten)]
        target: PinTarget,
        /// PIN encryption key (hex).
        #[arg(long)]
        key: String,
        /// The PIN (4 to 12 digits).
        #[arg(long)]
        pin: String,
    },
    /// Deciphers and decodes a PIN block.
    Decrypt {
        /// Format and PAN.
        #[command(flatten)]
        target: PinTarget,
        /// PIN encryption key (hex).
        #[arg(long)]
        key: String,
        /// The enciphered PIN block (hex).
        #[arg(long)]
        pin_block: String,
    },
    /// Translates an enciphered PIN block to another key and/or format.
    Translate(TranslateArgs),
}

/// The format of a PIN block, its PAN and, for a deterministic result, its fill.
#[derive(Debug, Args)]
struct PinTarget {
    /// PIN block format.
    #[arg(long, value_enum)]
    format: PinFormat,
    /// The PAN (12 to 19 digits; required for formats 0, 3 and 4).
    #[arg(long)]
    pan: Option<String>,
    /// Fixed fill instead of OS randomness: formats 1 and 3, the 14 − PIN-length fill nibbles
    /// (format 3: A–F); format 4, the 8 random bytes (16 hex digits). Not for format 0.
    #[arg(long)]
    fill: Option<String>,
}

#[derive(Debug, Args)]
struct TranslateArgs {
    /// Source format.
    #[arg(long, value_enum)]
    from_format: PinFormat,
    /// Source PIN encryption key (hex).
    #[arg(long)]
    from_key: String,
    /// Destination format.
    #[arg(long, value_enum)]
    to_format: PinFormat,
    /// Destination PIN encryption key (hex).
    #[arg(long)]
    to_key: String,
    /// The enciphered PIN block under the source key (hex).
    #[arg(long)]
    pin_block: String,
    /// The PAN (required for formats 0, 3 and 4).
    #[arg(long)]
    pan: Option<String>,
    /// Fixed fill of the destination block (see `pin-block encode --help`).
    #[arg(long)]
    fill: Option<String>,
}

fn optional_pan(format: PinBlockFormat, text: Option<&str>) -> Result<Option<Pan>> {
    match text {
        Some(text) => Ok(Some(pan(text)?)),
        None if format.needs_pan() => Err(CliError::bad_request(format!(
            "--pan is required for PIN block format {}",
            format.control()
        ))),
        None => Ok(None),
    }
}

/// Encodes with a caller-given fill: builds the PIN field, then has paycrypto decode it to
/// check every rule (control, length, digits, fill) before it is used.
fn encode_with_fill(
    format: PinBlockFormat,
    pin: &Pin,
    pan: Option<&Pan>,
    fill: &str,
) -> Result<SecretBytes> {
    let fill = fill.trim().to_ascii_uppercase();
    if !fill.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CryptoError::InvalidHex("--fill").into());
    }
    let digits = pin.expose();
    let mut nibbles = Zeroizing::new(String::with_capacity(48));
    nibbles.push(char::from(b'0' + format.control()));
    nibbles.push_str(&format!("{:X}", pin.len()));
    nibbles.push_str(&digits);
    let wanted = 14 - pin.len();
    match format {
        PinBlockFormat::Iso0 => {
            return Err(CliError::bad_request(
                "--fill is not used by PIN block format 0 (its fill is F)",
            ));
        }
        PinBlockFormat::Iso1 | PinBlockFormat::Iso3 => {
            if fill.len() != wanted {
                return Err(CliError::bad_request(format!(
                    "--fill: expected {wanted} hex digits for a {}-digit PIN, got {}",
                    pin.len(),
                    fill.len()
                )));
            }
            nibbles.push_str(&fill);
        }
        PinBlockFormat::Iso4 => {
            if fill.len() != 16 {
                return Err(CliError::bad_request(format!(
                    "--fill: expected 16 hex digits (8 bytes) for format 4, got {}",
                    fill.len()
                )));
            }
            nibbles.push_str(&"A".repeat(wanted));
            nibbles.push_str(&fill);
        }
    }
    let mut block = Zeroizing::new(
        hex::decode(nibbles.as_bytes()).map_err(|_| CryptoError::InvalidHex("--fill"))?,
    );
    if format == PinBlockFormat::Iso3 {
        let pan = pan.ok_or_else(|| CliError::bad_request("--pan is required for format 3"))?;
        // Format 3 PAN field: 0000 then the 12 rightmost digits excluding the check digit.
        let digits = pan.expose();
        let end = digits.len() - 1;
        let field = Zeroizing::new(format!("0000{}", &digits[end - 12..end]));
        let field = Zeroizing::new(
            hex::decode(field.as_bytes()).map_err(|_| CryptoError::InvalidHex("--pan"))?,
        );
        for (byte, pan_byte) in block.iter_mut().zip(field.iter()) {
            *byte ^= pan_byte;
        }
    }
    let block = SecretBytes::from_slice(&block);
    pin::decode_pin_block(format, &block, pan).map_err(|err| {
        CliError::bad_request(format!("--fill does not make a valid PIN block: {err}"))
    })?;
    Ok(block)
}

fn encode(
    format: PinBlockFormat,
    pin: &Pin,
    pan: Option<&Pan>,
    fill: Option<&str>,
) -> Result<SecretBytes> {
    match fill {
        Some(fill) => encode_with_fill(format, pin, pan, fill),
        None => Ok(pin::encode_pin_block(format, pin, pan, &mut OsRng)?),
    }
}

fn pin_json(pin: &Pin) -> Value {
    json!({ "pin": pin.expose().as_str() })
}

fn pin_block_cmd(cmd: PinBlockCommand) -> Result<Value> {
    match cmd {
        PinBlockCommand::Encode { target, pin } => {
            let format = PinBlockFormat::from(target.format);
            let pan = optional_pan(format, target.pan.as_deref())?;
            let pin = pin_digits(&pin)?;
            let block = encode(format, &pin, pan.as_ref(), target.fill.as_deref())?;
            Ok(json!({ "pin_block": block.to_hex_upper() }))
        }
        PinBlockCommand::Decode { target, pin_block } => {
            let format = PinBlockFormat::from(target.format);
            let pan = optional_pan(format, target.pan.as_deref())?;
            let block = secret("--pin-block", &pin_block)?;
            Ok(pin_json(&pin::decode_pin_block(
                format,
                &block,
                pan.as_ref(),
            )?))
        }
        PinBlockCommand::Encrypt { target, key, pin } => {
            let format = PinBlockFormat::from(target.format);
            let pan = optional_pan(format, target.pan.as_deref())?;
            let key = secret("--key", &key)?;
            let pin = pin_digits(&pin)?;
            let clear = encode(format, &pin, pan.as_ref(), target.fill.as_deref())?;
            let block = pin::encipher_pin_block(format, &key, &clear, pan.as_ref())?;
            Ok(json!({ "pin_block": hex_upper(&block) }))
        }
        PinBlockCommand::Decrypt {
            target,
            key,
            pin_block,
        } => {
            let format = PinBlockFormat::from(target.format);
            let pan = optional_pan(format, target.pan.as_deref())?;
            let key = secret("--key", &key)?;
            let block = bytes("--pin-block", &pin_block)?;
            Ok(pin_json(&pin::decrypt_pin_block(
                format,
                &key,
                &block,
                pan.as_ref(),
            )?))
        }
        PinBlockCommand::Translate(args) => translate(&args),
    }
}

fn translate(args: &TranslateArgs) -> Result<Value> {
    let from_format = PinBlockFormat::from(args.from_format);
    let to_format = PinBlockFormat::from(args.to_format);
    let needs_pan = from_format.needs_pan() || to_format.needs_pan();
    let pan = optional_pan(
        if needs_pan {
            PinBlockFormat::Iso0
        } else {
            PinBlockFormat::Iso1
        },
        args.pan.as_deref(),
    )?;
    let from_key = secret("--from-key", &args.from_key)?;
    let to_key = secret("--to-key", &args.to_key)?;
    let block = bytes("--pin-block", &args.pin_block)?;
    let out = match args.fill.as_deref() {
        None => pin::translate_pin_block(
            &PinBlockContext {
                format: from_format,
                key: &from_key,
                pan: pan.as_ref(),
            },
            &block,
            &PinBlockContext {
                format: to_format,
                key: &to_key,
                pan: pan.as_ref(),
            },
            &mut OsRng,
        )?,
        Some(fill) => {
            let pin = pin::decrypt_pin_block(from_format, &from_key, &block, pan.as_ref())?;
            let clear = encode_with_fill(to_format, &pin, pan.as_ref(), fill)?;
            pin::encipher_pin_block(to_format, &to_key, &clear, pan.as_ref())?
        }
    };
    Ok(json!({ "pin_block": hex_upper(&out) }))
}

// ---------------------------------------------------------------------------------------------
// mac
// ---------------------------------------------------------------------------------------------

/// MAC algorithm.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum MacAlg {
    /// ISO 9797-1 algorithm 1 (CBC-MAC; DES or TDES).
    Alg1,
    /// ISO 9797-1 algorithm 3 / ANSI X9.19 retail MAC.
    #[value(alias = "retail")]
    Alg3,
    /// AES-CMAC (RFC 4493).
    AesCmac,
    /// TDES-CMAC (SP 800-38B).
    TdesCmac,
    /// HMAC-SHA-256.
    HmacSha256,
}

/// ISO 9797-1 padding method.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PaddingArg {
    /// Method 1: zeros.
    #[value(name = "1")]
    M1,
    /// Method 2: 80 then zeros.
    #[value(name = "2")]
    M2,
    /// Method 3: length block, then zeros.
    #[value(name = "3")]
    M3,
}

impl From<PaddingArg> for Padding {
    fn from(padding: PaddingArg) -> Self {
        match padding {
            PaddingArg::M1 => Self::Method1,
            PaddingArg::M2 => Self::Method2,
            PaddingArg::M3 => Self::Method3,
        }
    }
}

/// MAC operations.
#[derive(Debug, Subcommand)]
enum MacCommand {
    /// Computes a MAC.
    Generate {
        /// Algorithm, key and data.
        #[command(flatten)]
        input: MacInput,
        /// MAC length in bytes (4 to the full length; default: full).
        #[arg(long)]
        length: Option<usize>,
    },
    /// Verifies a MAC (its length is the number of bytes compared).
    Verify {
        /// Algorithm, key and data.
        #[command(flatten)]
        input: MacInput,
        /// The MAC to check (hex).
        #[arg(long)]
        mac: String,
    },
}

#[derive(Debug, Args)]
struct MacInput {
    /// Algorithm.
    #[arg(long, value_enum)]
    algorithm: MacAlg,
    /// ISO 9797-1 padding method (alg1 and alg3 only; default 1).
    #[arg(long, value_enum)]
    padding: Option<PaddingArg>,
    /// MAC key (hex).
    #[arg(long)]
    key: String,
    /// Message (hex; may be empty).
    #[arg(long, conflicts_with = "text", required_unless_present = "text")]
    data: Option<String>,
    /// Message as text (UTF-8 bytes), instead of --data.
    #[arg(long)]
    text: Option<String>,
}

impl MacInput {
    fn algorithm(&self) -> Result<MacAlgorithm> {
        let padding = self.padding.map(Padding::from);
        match (self.algorithm, padding) {
            (MacAlg::Alg1, padding) => Ok(MacAlgorithm::Iso9797Alg1(
                padding.unwrap_or(Padding::Method1),
            )),
            (MacAlg::Alg3, padding) => Ok(MacAlgorithm::Iso9797Alg3(
                padding.unwrap_or(Padding::Method1),
            )),
            (_, Some(_)) => Err(CliError::bad_request(
                "--padding applies to alg1 and alg3 only",
            )),
            (MacAlg::AesCmac, None) => Ok(MacAlgorithm::AesCmac),
            (MacAlg::TdesCmac, None) => Ok(MacAlgorithm::TdesCmac),
            (MacAlg::HmacSha256, None) => Ok(MacAlgorithm::HmacSha256),
        }
    }

    fn data(&self) -> Result<Vec<u8>> {
        match (&self.data, &self.text) {
            (Some(data), _) => bytes("--data", data),
            (None, Some(text)) => Ok(text.as_bytes().to_vec()),
            (None, None) => Err(CliError::bad_request("give --data or --text")),
        }
    }
}

fn mac_cmd(cmd: MacCommand) -> Result<Value> {
    match cmd {
        MacCommand::Generate { input, length } => {
            let algorithm = input.algorithm()?;
            let key = secret("--key", &input.key)?;
            let data = input.data()?;
            let mac = algorithm.generate(&key, &data, length.unwrap_or(algorithm.full_len()))?;
            Ok(json!({ "mac": hex_upper(&mac) }))
        }
        MacCommand::Verify { input, mac } => {
            let algorithm = input.algorithm()?;
            let key = secret("--key", &input.key)?;
            let data = input.data()?;
            algorithm.verify(&key, &data, &bytes("--mac", &mac)?)?;
            Ok(json!({ "valid": true }))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cvv
// ---------------------------------------------------------------------------------------------

/// Which card verification value.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CvvKind {
    /// CVV/CVC of the magnetic stripe (needs --service-code).
    Cvv,
    /// CVV2 (service code 000).
    Cvv2,
    /// iCVV (service code 999).
    Icvv,
}

#[derive(Debug, Args)]
struct CvvInput {
    /// Which value.
    #[arg(long, value_enum, default_value = "cvv")]
    kind: CvvKind,
    /// CVK A ‖ CVK B (16 bytes hex).
    #[arg(long)]
    cvk: String,
    /// The PAN (12 to 19 digits).
    #[arg(long)]
    pan: String,
    /// Expiry date, 4 digits (normally YYMM).
    #[arg(long)]
    expiry: String,
    /// Service code, 3 digits (kind cvv only).
    #[arg(long)]
    service_code: Option<String>,
}

impl CvvInput {
    fn service_code(&self) -> Result<&str> {
        match (self.kind, self.service_code.as_deref()) {
            (CvvKind::Cvv, Some(code)) => Ok(code),
            (CvvKind::Cvv, None) => Err(CliError::bad_request(
                "--service-code is required for --kind cvv",
            )),
            (CvvKind::Cvv2, None) => Ok(cvv::CVV2_SERVICE_CODE),
            (CvvKind::Icvv, None) => Ok(cvv::ICVV_SERVICE_CODE),
            (_, Some(_)) => Err(CliError::bad_request(
                "--service-code applies to --kind cvv only (cvv2 uses 000, icvv 999)",
            )),
        }
    }
}

/// CVV operations.
#[derive(Debug, Subcommand)]
enum CvvCommand {
    /// Computes a CVV, CVV2 or iCVV.
    Generate(CvvInput),
    /// Verifies a CVV, CVV2 or iCVV.
    Verify {
        /// Kind, keys and card data.
        #[command(flatten)]
        input: CvvInput,
        /// The value to check (digits).
        #[arg(long)]
        cvv: String,
    },
}

fn cvv_cmd(cmd: CvvCommand) -> Result<Value> {
    match cmd {
        CvvCommand::Generate(input) => {
            let cvk = secret("--cvk", &input.cvk)?;
            let pan = pan(&input.pan)?;
            let value = cvv::generate_cvv(&cvk, &pan, input.expiry.trim(), input.service_code()?)?;
            Ok(json!({ "cvv": value.as_str() }))
        }
        CvvCommand::Verify { input, cvv } => {
            let cvk = secret("--cvk", &input.cvk)?;
            let pan = pan(&input.pan)?;
            cvv::verify_cvv(
                &cvk,
                &pan,
                input.expiry.trim(),
                input.service_code()?,
                cvv.trim(),
            )?;
            Ok(json!({ "valid": true }))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pvv
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Args)]
struct PvvInput {
    /// PVK A ‖ PVK B (16 bytes hex; 24 accepted).
    #[arg(long)]
    pvk: String,
    /// The PAN (12 to 19 digits).
    #[arg(long)]
    pan: String,
    /// PIN verification key indicator, one digit 0–9 (Visa defines 1–6).
    #[arg(long)]
    pvki: String,
    /// The PIN (4 to 12 digits; the 4 leftmost take part).
    #[arg(long)]
    pin: String,
}

/// PVV operations.
#[derive(Debug, Subcommand)]
enum PvvCommand {
    /// Computes the PVV of a PIN.
    Generate(PvvInput),
    /// Verifies a PIN against a reference PVV.
    Verify {
        /// Key, card and PIN.
        #[command(flatten)]
        input: PvvInput,
        /// The reference PVV (4 digits).
        #[arg(long)]
        pvv: String,
    },
}

impl PvvInput {
    fn generate(&self) -> Result<Pvv> {
        let pvk = secret("--pvk", &self.pvk)?;
        let pan = pan(&self.pan)?;
        let pvki = Pvki::parse(self.pvki.trim())?;
        let pin = pin_digits(&self.pin)?;
        Ok(pinver::generate_pvv(&pvk, &pan, pvki, &pin)?)
    }
}

fn pvv_cmd(cmd: PvvCommand) -> Result<Value> {
    match cmd {
        PvvCommand::Generate(input) => {
            let pvv = input.generate()?;
            Ok(json!({ "pvv": pvv.expose().as_str() }))
        }
        PvvCommand::Verify { input, pvv } => {
            let reference = Pvv::parse(pvv.trim())?;
            let pvk = secret("--pvk", &input.pvk)?;
            let pan = pan(&input.pan)?;
            let pvki = Pvki::parse(input.pvki.trim())?;
            let pin = pin_digits(&input.pin)?;
            pinver::verify_pvv(&pvk, &pan, pvki, &pin, &reference)?;
            Ok(json!({ "valid": true }))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ibm3624-offset
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Args)]
struct Ibm3624Input {
    /// PIN verification key (TDES, 16 or 24 bytes hex; a single-DES key K is K‖K).
    #[arg(long)]
    pvk: String,
    /// Decimalization table, 16 decimal digits.
    #[arg(long, default_value = "0123456789012345")]
    decimalization_table: String,
    /// Take the validation data from this PAN (see --validation-start/--validation-length).
    #[arg(
        long,
        conflicts_with = "validation_data",
        required_unless_present = "validation_data"
    )]
    pan: Option<String>,
    /// First PAN digit of the validation data, 0-based from the left (default 0).
    #[arg(long, requires = "pan")]
    validation_start: Option<usize>,
    /// Number of PAN digits in the validation data, 4 to 16 (default: the rest of the PAN,
    /// at most 16).
    #[arg(long, requires = "pan")]
    validation_length: Option<usize>,
    /// The validation data itself, 4 to 16 hex digits.
    #[arg(long)]
    validation_data: Option<String>,
    /// Pad digit that right-fills the validation data to 16 digits (hex digit).
    #[arg(long, default_value = "F")]
    pad: String,
}

impl Ibm3624Input {
    fn pad(&self) -> Result<char> {
        let mut chars = self.pad.trim().chars();
        match (chars.next(), chars.next()) {
            (Some(pad), None) => Ok(pad),
            _ => Err(CliError::bad_request("--pad: expected one hex digit")),
        }
    }

    fn validation(&self) -> Result<ValidationData> {
        let pad = self.pad()?;
        match one_of(
            self.pan.as_deref(),
            self.validation_data.as_deref(),
            "--pan or --validation-data",
        )? {
            Either::First(pan_text) => {
                let pan = pan(pan_text)?;
                let start = self.validation_start.unwrap_or(0);
                let len = self
                    .validation_length
                    .unwrap_or_else(|| pan.len().saturating_sub(start).min(16));
                Ok(ValidationData::from_pan(&pan, start, len, pad)?)
            }
            Either::Second(_)
                if self.validation_start.is_some() || self.validation_length.is_some() =>
            {
                Err(CliError::bad_request(
                    "--validation-start and --validation-length apply to --pan only",
                ))
            }
            Either::Second(data) => Ok(ValidationData::parse(data.trim(), pad)?),
        }
    }

    /// Runs `f` with the parsed key, table and validation data.
    fn with<T>(&self, f: impl FnOnce(&Ibm3624<'_>) -> Result<T>) -> Result<T> {
        let pvk = secret("--pvk", &self.pvk)?;
        let table = DecimalizationTable::parse(self.decimalization_table.trim())?;
        let validation = self.validation()?;
        f(&Ibm3624 {
            pvk: &pvk,
            table: &table,
            validation: &validation,
        })
    }
}

/// IBM 3624 operations.
#[derive(Debug, Subcommand)]
enum Ibm3624Command {
    /// Computes the PIN offset of a customer-selected PIN.
    Generate {
        /// Key, table and validation data.
        #[command(flatten)]
        input: Ibm3624Input,
        /// The customer PIN (4 to 12 digits).
        #[arg(long)]
        pin: String,
        /// PIN check length: offset digits, 4 to the PIN length (default: the PIN length).
        #[arg(long)]
        check_length: Option<usize>,
    },
    /// Verifies a PIN against a reference offset.
    Verify {
        /// Key, table and validation data.
        #[command(flatten)]
        input: Ibm3624Input,
        /// The PIN to check (4 to 12 digits).
        #[arg(long)]
        pin: String,
        /// The reference offset (4 to 12 digits, at most the PIN length).
        #[arg(long)]
        offset: String,
    },
    /// Computes the natural PIN, or with --offset the customer PIN it assigns.
    Pin {
        /// Key, table and validation data.
        #[command(flatten)]
        input: Ibm3624Input,
        /// PIN length, 4 to 12.
        #[arg(long)]
        pin_length: usize,
        /// Offset to add to the rightmost digits of the natural PIN.
        #[arg(long)]
        offset: Option<String>,
    },
}

fn ibm3624_cmd(cmd: Ibm3624Command) -> Result<Value> {
    match cmd {
        Ibm3624Command::Generate {
            input,
            pin,
            check_length,
        } => {
            let pin = pin_digits(&pin)?;
            let check_length = check_length.unwrap_or(pin.len());
            let offset = input.with(|ibm| Ok(ibm.generate_offset(&pin, check_length)?))?;
            Ok(json!({ "offset": offset.expose().as_str() }))
        }
        Ibm3624Command::Verify { input, pin, offset } => {
            let pin = pin_digits(&pin)?;
            let offset = PinOffset::parse(offset.trim())?;
            input.with(|ibm| Ok(ibm.verify_offset(&pin, &offset)?))?;
            Ok(json!({ "valid": true }))
        }
        Ibm3624Command::Pin {
            input,
            pin_length,
            offset,
        } => {
            let offset = offset
                .as_deref()
                .map(|text| PinOffset::parse(text.trim()))
                .transpose()?;
            let pin = input.with(|ibm| match &offset {
                Some(offset) => Ok(ibm.pin_from_offset(offset, pin_length)?),
                None => Ok(ibm.natural_pin(pin_length)?),
            })?;
            Ok(json!({ "pin": pin.expose().as_str() }))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// emv
// ---------------------------------------------------------------------------------------------

/// ICC master key derivation option.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum MkOption {
    /// Option A (EMV Book 2 A1.4.1).
    A,
    /// Option B (A1.4.2; PANs over 16 digits, else as option A).
    B,
}

/// Padding of an application cryptogram.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum AcPadding {
    /// Method 1, zeros (Visa CVN 10).
    #[value(name = "1")]
    M1,
    /// Method 2, 80 then zeros (EMV).
    #[value(name = "2")]
    M2,
}

/// ARPC method.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ArpcMethod {
    /// Method 1: TDES(key, ARQC ⊕ ARC).
    #[value(name = "1")]
    M1,
    /// Method 2: MAC over ARQC ‖ CSU ‖ proprietary data.
    #[value(name = "2")]
    M2,
}

/// EMV operations.
#[derive(Debug, Subcommand)]
enum EmvCommand {
    /// Derives the ICC master key from the issuer master key, PAN and PSN.
    DeriveMk {
        /// Issuer master key (16 bytes hex).
        #[arg(long)]
        imk: String,
        /// The PAN.
        #[arg(long)]
        pan: String,
        /// PAN sequence number (2 digits; default 00).
        #[arg(long)]
        psn: Option<String>,
        /// Derivation option.
        #[arg(long, value_enum, default_value = "a")]
        option: MkOption,
    },
    /// Derives the AC session key (EMV common session key) from the ICC master key.
    SessionKey {
        /// ICC master key (16 bytes hex).
        #[arg(long)]
        mk: String,
        /// Application transaction counter (2 bytes hex): R = ATC ‖ 000000000000.
        #[arg(long, conflicts_with = "r", required_unless_present = "r")]
        atc: Option<String>,
        /// Unpredictable number (4 bytes hex), with --atc: Mastercard R = ATC ‖ 0000 ‖ UN.
        #[arg(long, requires = "atc")]
        un: Option<String>,
        /// The diversification value R itself (8 bytes hex), instead of --atc.
        #[arg(long)]
        r: Option<String>,
    },
    /// Computes an application cryptogram (ARQC/TC/AAC) over the CDOL data.
    Arqc {
        /// Session key (or the ICC master key for Visa CVN 10), 16 bytes hex.
        #[arg(long)]
        key: String,
        /// CDOL data (hex).
        #[arg(long)]
        data: String,
        /// Padding method.
        #[arg(long, value_enum, default_value = "2")]
        padding: AcPadding,
    },
    /// Verifies an application cryptogram (ARQC/TC/AAC) over the CDOL data, under a session
    /// key given directly (--key) or derived from the ICC master key (--mk with --atc).
    VerifyArqc {
        /// AC session key (or the ICC master key for Visa CVN 10), 16 bytes hex.
        #[arg(long, conflicts_with = "mk", required_unless_present = "mk")]
        key: Option<String>,
        /// ICC master key (16 bytes hex), instead of --key: the session key is the EMV
        /// common session key from --atc (and --un: Mastercard SKD).
        #[arg(long, requires = "atc")]
        mk: Option<String>,
        /// With --mk: application transaction counter (2 bytes hex).
        #[arg(long, requires = "mk")]
        atc: Option<String>,
        /// With --mk and --atc: unpredictable number (4 bytes hex), Mastercard R = ATC ‖ 0000 ‖ UN.
        #[arg(long, requires = "atc")]
        un: Option<String>,
        /// CDOL data (hex).
        #[arg(long)]
        data: String,
        /// Padding method.
        #[arg(long, value_enum, default_value = "2")]
        padding: AcPadding,
        /// The cryptogram to check (8 bytes hex).
        #[arg(long)]
        arqc: String,
    },
    /// Computes an ARPC.
    Arpc(ArpcArgs),
    /// Verifies an ARPC (recomputes it and compares in constant time).
    VerifyArpc {
        /// Method, key, ARQC and response data.
        #[command(flatten)]
        input: ArpcArgs,
        /// The ARPC to check (8 bytes hex for method 1, 4 for method 2).
        #[arg(long)]
        arpc: String,
    },
}

/// The inputs of an ARPC.
#[derive(Debug, Args)]
struct ArpcArgs {
    /// Method.
    #[arg(long, value_enum)]
    method: ArpcMethod,
    /// Key (ICC master key or session key, per scheme; 16 bytes hex).
    #[arg(long)]
    key: String,
    /// The ARQC (8 bytes hex).
    #[arg(long)]
    arqc: String,
    /// Method 1: authorisation response code (2 bytes hex).
    #[arg(long)]
    arc: Option<String>,
    /// Method 2: card status update (4 bytes hex).
    #[arg(long)]
    csu: Option<String>,
    /// Method 2: proprietary authentication data (0 to 8 bytes hex).
    #[arg(long)]
    proprietary: Option<String>,
}

/// Computes the ARPC of `args`.
fn arpc_of(args: &ArpcArgs) -> Result<Vec<u8>> {
    let key = secret("--key", &args.key)?;
    let arqc: [u8; 8] = array("--arqc", "8 bytes (16 hex digits)", &args.arqc)?;
    match args.method {
        ArpcMethod::M1 => {
            if args.csu.is_some() || args.proprietary.is_some() {
                return Err(CliError::bad_request(
                    "--csu and --proprietary apply to ARPC method 2 only",
                ));
            }
            let arc = required(args.arc.as_deref(), "--arc is required for ARPC method 1")?;
            let arc: [u8; 2] = array("--arc", "2 bytes (4 hex digits)", arc)?;
            Ok(emv::arpc_method1(&key, &arqc, &arc)?.to_vec())
        }
        ArpcMethod::M2 => {
            if args.arc.is_some() {
                return Err(CliError::bad_request("--arc applies to ARPC method 1 only"));
            }
            let csu = required(args.csu.as_deref(), "--csu is required for ARPC method 2")?;
            let csu: [u8; 4] = array("--csu", "4 bytes (8 hex digits)", csu)?;
            let proprietary = bytes("--proprietary", args.proprietary.as_deref().unwrap_or(""))?;
            Ok(emv::arpc_method2(&key, &arqc, &csu, &proprietary)?.to_vec())
        }
    }
}

fn ac_padding(padding: AcPadding) -> Padding {
    match padding {
        AcPadding::M1 => Padding::Method1,
        AcPadding::M2 => Padding::Method2,
    }
}

fn required<'a>(value: Option<&'a str>, message: &str) -> Result<&'a str> {
    value.ok_or_else(|| CliError::bad_request(message))
}

fn emv_cmd(cmd: EmvCommand) -> Result<Value> {
    match cmd {
        EmvCommand::DeriveMk {
            imk,
            pan: pan_text,
            psn,
            option,
        } => {
            let imk = secret("--imk", &imk)?;
            let pan = pan(&pan_text)?;
            let mk = match option {
                MkOption::A => emv::derive_icc_mk_option_a(&imk, &pan, psn.as_deref())?,
                MkOption::B => emv::derive_icc_mk_option_b(&imk, &pan, psn.as_deref())?,
            };
            Ok(json!({ "icc_mk": mk.to_hex_upper(), "kcv": kcv_of(&mk, KeyAlgorithm::Tdes)? }))
        }
        EmvCommand::SessionKey { mk, atc, un, r } => {
            let mk = secret("--mk", &mk)?;
            let r: [u8; 8] = match (atc, un, r) {
                (_, _, Some(r)) => array("--r", "8 bytes (16 hex digits)", &r)?,
                (Some(atc), un, None) => {
                    let atc: [u8; 2] = array("--atc", "2 bytes (4 hex digits)", &atc)?;
                    let un: [u8; 4] = match un {
                        Some(un) => array("--un", "4 bytes (8 hex digits)", &un)?,
                        None => [0; 4],
                    };
                    [atc[0], atc[1], 0, 0, un[0], un[1], un[2], un[3]]
                }
                (None, _, None) => return Err(CliError::bad_request("give --atc or --r")),
            };
            let sk = emv::derive_session_key_csk(&mk, &r)?;
            Ok(json!({ "session_key": sk.to_hex_upper(), "kcv": kcv_of(&sk, KeyAlgorithm::Tdes)? }))
        }
        EmvCommand::Arqc { key, data, padding } => {
            let key = secret("--key", &key)?;
            let arqc = emv::generate_ac(&key, &bytes("--data", &data)?, ac_padding(padding))?;
            Ok(json!({ "arqc": hex_upper(&arqc) }))
        }
        EmvCommand::VerifyArqc {
            key,
            mk,
            atc,
            un,
            data,
            padding,
            arqc,
        } => {
            let session_key = match (key, mk, atc) {
                (Some(key), None, None) => secret("--key", &key)?,
                (None, Some(mk), Some(atc)) => {
                    let mk = secret("--mk", &mk)?;
                    let atc: [u8; 2] = array("--atc", "2 bytes (4 hex digits)", &atc)?;
                    let derivation = match un {
                        Some(un) => emv::SessionKeyDerivation::MastercardSkd {
                            atc,
                            un: array("--un", "4 bytes (8 hex digits)", &un)?,
                        },
                        None => emv::SessionKeyDerivation::EmvCsk { atc },
                    };
                    emv::derive_ac_session_key(&mk, derivation)?
                }
                _ => {
                    return Err(CliError::bad_request("give --key, or --mk with --atc"));
                }
            };
            let arqc = bytes("--arqc", &arqc)?;
            emv::verify_ac(
                &session_key,
                &bytes("--data", &data)?,
                ac_padding(padding),
                &arqc,
            )?;
            Ok(json!({ "valid": true }))
        }
        EmvCommand::Arpc(args) => Ok(json!({ "arpc": hex_upper(&arpc_of(&args)?) })),
        EmvCommand::VerifyArpc { input, arpc } => {
            let expected = arpc_of(&input)?;
            let given = bytes("--arpc", &arpc)?;
            if given.len() != expected.len() {
                return Err(CryptoError::InvalidLength {
                    what: "--arpc",
                    expected: match input.method {
                        ArpcMethod::M1 => "8 bytes for method 1",
                        ArpcMethod::M2 => "4 bytes for method 2",
                    },
                    actual: given.len(),
                }
                .into());
            }
            if bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_slice(),
                given.as_slice(),
            )) {
                Ok(json!({ "valid": true }))
            } else {
                Err(CryptoError::VerificationFailed("ARPC").into())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tr31
// ---------------------------------------------------------------------------------------------

/// Key length masking of a wrapped key: `max`, `none` or a number of bytes.
#[derive(Debug, Clone, Copy)]
enum Masking {
    /// Pad as if the key had the algorithm's largest length (TDES 24, AES 32 bytes).
    Max,
    /// No masking: pad only to the cipher block.
    None,
    /// Pad as if the key were at least this many bytes long.
    AtLeast(usize),
}

impl From<Masking> for tr31::KeyLengthMasking {
    fn from(masking: Masking) -> Self {
        match masking {
            Masking::Max => Self::AlgorithmMax,
            Masking::None => Self::None,
            Masking::AtLeast(bytes) => Self::AtLeast(bytes),
        }
    }
}

/// Parses `--masking` (the message names the rule, never the value).
fn parse_masking(text: &str) -> std::result::Result<Masking, String> {
    match text {
        "max" => Ok(Masking::Max),
        "none" => Ok(Masking::None),
        _ => match text.parse::<usize>() {
            Ok(bytes) if (1..=8191).contains(&bytes) => Ok(Masking::AtLeast(bytes)),
            _ => Err("expected max, none or a key length in bytes (1 to 8191)".to_owned()),
        },
    }
}

/// How a `KC` / `KP` check value is computed.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CheckValueAlg {
    /// `00`: encrypt a zero block (legacy); 3 bytes unless told otherwise.
    Legacy,
    /// `01`: CMAC of a zero block; 5 bytes unless told otherwise.
    Cmac,
}

impl CheckValueAlg {
    fn method(self) -> KcvMethod {
        match self {
            Self::Legacy => KcvMethod::EncryptZeros,
            Self::Cmac => KcvMethod::Cmac,
        }
    }

    fn block_algorithm(self) -> tr31::KcvAlgorithm {
        match self {
            Self::Legacy => tr31::KcvAlgorithm::Legacy,
            Self::Cmac => tr31::KcvAlgorithm::Cmac,
        }
    }

    fn default_len(self) -> usize {
        match self {
            Self::Legacy => 3,
            Self::Cmac => 5,
        }
    }
}

/// The optional blocks of `tr31 wrap`, written in this order: KS, IK, KC, KP, TS, then every
/// `--optional-block` in the order given (a `PB` padding block is added by the wrap).
#[derive(Debug, Args)]
struct OptionalBlockArgs {
    /// KS block: key set identifier (hex, e.g. the TDES DUKPT KSN of an initial key).
    #[arg(long)]
    ks: Option<String>,
    /// IK block: AES DUKPT initial key ID (8 bytes, 16 hex digits).
    #[arg(long)]
    ik: Option<String>,
    /// KC block: the wrapped key's check value, computed by this method (legacy or cmac).
    #[arg(long, value_enum)]
    kc: Option<CheckValueAlg>,
    /// Length of the KC check value in bytes (default 3 for legacy, 5 for cmac).
    #[arg(long, requires = "kc")]
    kc_length: Option<usize>,
    /// KP block: the KBPK's check value, computed by this method (legacy or cmac).
    #[arg(long, value_enum)]
    kp: Option<CheckValueAlg>,
    /// Length of the KP check value in bytes (default 3 for legacy, 5 for cmac).
    #[arg(long, requires = "kp")]
    kp_length: Option<usize>,
    /// TS block: time stamp, ISO 8601 UTC (e.g. 20200818221218Z).
    #[arg(long)]
    ts: Option<String>,
    /// Any other optional block as ID=DATA (printable ASCII; repeatable; checked as the
    /// standard defines the known IDs).
    #[arg(long = "optional-block", value_name = "ID=DATA")]
    optional_blocks: Vec<String>,
}

/// TR-31 operations.
#[derive(Debug, Subcommand)]
enum Tr31Command {
    /// Wraps a key in a key block under the key block protection key (KBPK).
    Wrap {
        /// Key block protection key (hex; TDES for A/B/C, AES for D).
        #[arg(long)]
        kbpk: String,
        /// The key to wrap (hex).
        #[arg(long)]
        key: String,
        /// Version ID (binding method): A, B, C or D.
        #[arg(long, default_value = "D")]
        version: String,
        /// Key usage (2 characters, e.g. P0, B1, K0, M3).
        #[arg(long)]
        usage: String,
        /// Algorithm of the wrapped key (1 character: T TDES, A AES, D DES, H HMAC).
        #[arg(long)]
        algorithm: String,
        /// Mode of use (1 character, e.g. E, D, B, C, G, V, X, N).
        #[arg(long)]
        mode: String,
        /// Key version number (2 characters).
        #[arg(long, default_value = "00")]
        key_version: String,
        /// Exportability: E, N or S.
        #[arg(long, default_value = "E")]
        exportability: String,
        /// Key length masking: max (pad as the algorithm's longest key), none, or a length
        /// in bytes to pad as if the key were at least that long.
        #[arg(long, value_parser = parse_masking, default_value = "max")]
        masking: Masking,
        /// Optional blocks.
        #[command(flatten)]
        blocks: Box<OptionalBlockArgs>,
    },
    /// Verifies and unwraps a key block.
    Unwrap {
        /// Key block protection key (hex).
        #[arg(long)]
        kbpk: String,
        /// The key block.
        #[arg(long)]
        key_block: String,
    },
}

/// The key algorithm for a check value of a key whose TR-31 algorithm is `algorithm`.
fn check_value_algorithm(what: &str, algorithm: &tr31::Algorithm) -> Result<KeyAlgorithm> {
    match algorithm {
        tr31::Algorithm::Tdes => Ok(KeyAlgorithm::Tdes),
        tr31::Algorithm::Aes => Ok(KeyAlgorithm::Aes),
        tr31::Algorithm::Des => Ok(KeyAlgorithm::Des),
        other => Err(CliError::bad_request(format!(
            "{what}: no check value for key algorithm {}",
            other.code()
        ))),
    }
}

fn check_value_block(
    key: &SecretBytes,
    algorithm: KeyAlgorithm,
    how: CheckValueAlg,
    length: Option<usize>,
) -> Result<tr31::KeyCheckValue> {
    let value = kcv::check_value(
        key,
        algorithm,
        how.method(),
        length.unwrap_or(how.default_len()),
    )?;
    Ok(tr31::KeyCheckValue {
        algorithm: how.block_algorithm(),
        value,
    })
}

/// Builds the optional blocks of a wrap from the options.
fn optional_blocks(
    args: &OptionalBlockArgs,
    header: &tr31::KeyBlockHeader,
    kbpk: &SecretBytes,
    key: &SecretBytes,
) -> Result<Vec<tr31::OptionalBlock>> {
    let mut blocks = Vec::new();
    if let Some(ks) = &args.ks {
        blocks.push(tr31::OptionalBlock::key_set_identifier(&bytes(
            "--ks", ks,
        )?)?);
    }
    if let Some(ik) = &args.ik {
        let ik: [u8; 8] = array("--ik", "8 bytes (16 hex digits)", ik)?;
        blocks.push(tr31::OptionalBlock::initial_key_id(&ik)?);
    }
    if let Some(how) = args.kc {
        let algorithm = check_value_algorithm("--kc", &header.algorithm)?;
        let kcv = check_value_block(key, algorithm, how, args.kc_length)?;
        blocks.push(tr31::OptionalBlock::key_check_value(&kcv)?);
    }
    if let Some(how) = args.kp {
        let algorithm = match header.version {
            tr31::Version::D => KeyAlgorithm::Aes,
            _ => KeyAlgorithm::Tdes,
        };
        let kcv = check_value_block(kbpk, algorithm, how, args.kp_length)?;
        blocks.push(tr31::OptionalBlock::kbpk_check_value(&kcv)?);
    }
    if let Some(ts) = &args.ts {
        blocks.push(tr31::OptionalBlock::time_stamp(ts.trim())?);
    }
    for spec in &args.optional_blocks {
        let (id, data) = spec.split_once('=').ok_or_else(|| {
            CliError::bad_request("--optional-block: expected ID=DATA (e.g. HM=21)")
        })?;
        blocks.push(tr31::OptionalBlock::new(id, data)?);
    }
    Ok(blocks)
}

fn single_char(what: &'static str, text: &str) -> Result<u8> {
    match text.as_bytes() {
        [byte] => Ok(*byte),
        _ => Err(CliError::bad_request(format!(
            "{what}: expected one character"
        ))),
    }
}

fn tr31_kcv(header: &tr31::KeyBlockHeader, key: &SecretBytes) -> Option<String> {
    let algorithm = match header.algorithm {
        tr31::Algorithm::Tdes => KeyAlgorithm::Tdes,
        tr31::Algorithm::Aes => KeyAlgorithm::Aes,
        tr31::Algorithm::Des => KeyAlgorithm::Des,
        _ => return None,
    };
    kcv_of(key, algorithm).ok()
}

fn header_json(header: &tr31::KeyBlockHeader) -> Value {
    let blocks: Vec<Value> = header
        .optional_blocks
        .iter()
        .map(|block| json!({ "id": block.id(), "data": block.data() }))
        .collect();
    json!({
        "version": header.version.code().to_string(),
        "key_usage": header.key_usage.code(),
        "algorithm": header.algorithm.code(),
        "mode_of_use": header.mode_of_use.code(),
        "key_version": header.key_version,
        "exportability": header.exportability.code().to_string(),
        "optional_blocks": blocks,
    })
}

fn tr31_cmd(cmd: Tr31Command) -> Result<Value> {
    match cmd {
        Tr31Command::Wrap {
            kbpk,
            key,
            version,
            usage,
            algorithm,
            mode,
            key_version,
            exportability,
            masking,
            blocks,
        } => {
            let kbpk = secret("--kbpk", &kbpk)?;
            let key = secret("--key", &key)?;
            let mut header = tr31::KeyBlockHeader::new(
                tr31::Version::from_code(single_char("--version", &version)?)?,
                tr31::KeyUsage::from_code(&usage)?,
                tr31::Algorithm::from_code(&algorithm)?,
                tr31::ModeOfUse::from_code(&mode)?,
                tr31::Exportability::from_code(single_char("--exportability", &exportability)?)?,
            );
            header.key_version = key_version;
            header.optional_blocks = optional_blocks(&blocks, &header, &kbpk, &key)?;
            let block = tr31::wrap(
                kbpk.expose(),
                &header,
                key.expose(),
                masking.into(),
                &mut OsRng,
            )?;
            let mut out = json!({ "key_block": block });
            if let Some(kcv) = tr31_kcv(&header, &key) {
                out["kcv"] = Value::String(kcv);
            }
            Ok(out)
        }
        Tr31Command::Unwrap { kbpk, key_block } => {
            let kbpk = secret("--kbpk", &kbpk)?;
            let (header, key) = tr31::unwrap(kbpk.expose(), key_block.trim())?;
            let mut out = json!({ "header": header_json(&header), "key": key.to_hex_upper() });
            if let Some(kcv) = tr31_kcv(&header, &key) {
                out["kcv"] = Value::String(kcv);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_is_max_none_or_a_length() {
        assert!(matches!(parse_masking("max"), Ok(Masking::Max)));
        assert!(matches!(parse_masking("none"), Ok(Masking::None)));
        assert!(matches!(parse_masking("32"), Ok(Masking::AtLeast(32))));
        for bad in ["0", "8192", "-1", "3F419E1CB7079442"] {
            let err = parse_masking(bad).expect_err(bad);
            assert!(!err.contains(bad), "{err}");
        }
    }
}
