//! Typed host commands and responses, and their wire encoding (without the 2-byte length
//! prefix, see [`crate::framing`]).
//!
//! A command message is `header` (fixed length, echoed back) ‖ 2-character command code ‖
//! fields; a response is `header` ‖ response code (command code with its second character
//! incremented) ‖ 2-character error code ‖ fields (only when the error code is `00`).
//!
//! The field layouts follow the public payShield host command descriptions for a key-block
//! LMK; the exact subset and every deviation is listed in the crate documentation and in
//! `docs/payshield.md`. Every decoder returns a typed [`CodecError`] and never panics.

use std::fmt;

/// Why a message could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The message ends before a field.
    #[error("message truncated at {0}")]
    Truncated(&'static str),
    /// A field has invalid content or length.
    #[error("invalid {what}: {reason}")]
    InvalidField {
        /// The field.
        what: &'static str,
        /// Why (never contains field content).
        reason: &'static str,
    },
    /// Bytes remain after the last field.
    #[error("{0} unexpected bytes after the last field")]
    TrailingData(usize),
    /// The command code is not one this codec knows.
    #[error("unknown command code {0}")]
    UnknownCommand(String),
    /// The response code is not one this codec knows.
    #[error("unknown response code {0}")]
    UnknownResponse(String),
}

fn invalid(what: &'static str, reason: &'static str) -> CodecError {
    CodecError::InvalidField { what, reason }
}

/// Printable rendering of a 2-byte code (non-printable bytes escaped).
fn code_text(code: [u8; 2]) -> String {
    code.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------------------
// Small field types
// ---------------------------------------------------------------------------------------------

/// A value that must not appear in logs (PIN blocks, account numbers, message data): `Debug`
/// prints only its length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sensitive<T>(pub T);

impl<T: AsRef<[u8]>> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sensitive({} bytes)", self.0.as_ref().len())
    }
}

/// A 2-character error code of a response (`00` = no error).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub [u8; 2]);

impl ErrorCode {
    /// `00`: no error.
    pub const OK: Self = Self(*b"00");
    /// `01`: verification failure (MAC, ARQC).
    pub const VERIFICATION_FAILED: Self = Self(*b"01");
    /// `10`: source key parity error.
    pub const SOURCE_KEY_PARITY: Self = Self(*b"10");
    /// `11`: destination key parity error.
    pub const DESTINATION_KEY_PARITY: Self = Self(*b"11");
    /// `15`: invalid input data.
    pub const INVALID_INPUT: Self = Self(*b"15");
    /// `20`: PIN block does not contain valid values.
    pub const PIN_BLOCK_ERROR: Self = Self(*b"20");
    /// `23`: invalid PIN block format code.
    pub const INVALID_PIN_FORMAT: Self = Self(*b"23");
    /// `24`: PIN fewer than 4 or more than 12 digits.
    pub const PIN_LENGTH: Self = Self(*b"24");
    /// `26`: invalid key scheme.
    pub const INVALID_KEY_SCHEME: Self = Self(*b"26");
    /// `27`: incompatible key length.
    pub const INCOMPATIBLE_KEY_LENGTH: Self = Self(*b"27");
    /// `68`: command disabled (answered to unknown or unsupported commands).
    pub const COMMAND_DISABLED: Self = Self(*b"68");
    /// `80`: data length error.
    pub const DATA_LENGTH: Self = Self(*b"80");
    /// `A4`: key block authentication failure.
    pub const KEY_BLOCK_AUTH: Self = Self(*b"A4");
    /// `A6`: invalid key usage (wrong key type for the command).
    pub const INVALID_KEY_USAGE: Self = Self(*b"A6");
    /// `A7`: invalid algorithm.
    pub const INVALID_ALGORITHM: Self = Self(*b"A7");
    /// `A8`: invalid mode of use.
    pub const INVALID_MODE_OF_USE: Self = Self(*b"A8");

    /// Whether this is `00`.
    pub fn is_ok(self) -> bool {
        self == Self::OK
    }

    /// The code as text (non-printable bytes escaped).
    pub fn as_text(self) -> String {
        code_text(self.0)
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorCode({})", self.as_text())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_text())
    }
}

/// A key as it appears in a command: under the LMK or under a key-encryption key.
///
/// Key blocks are self-describing (their 4-digit length field at offset 1), so the codec can
/// find their end; the other schemes have fixed lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyField {
    /// `S` + key block (the simulator uses TR-31 version D text here).
    KeyBlock(String),
    /// `R` + TR-31 key block (keys exchanged under a ZMK/TMK).
    Tr31(String),
    /// Scheme letter + hex: `U`/`X` (32H, double-length TDES), `T`/`Y` (48H, triple-length).
    Scheme {
        /// `U`, `X`, `T` or `Y`.
        scheme: char,
        /// The encrypted key, hex.
        hex: String,
    },
    /// 16H single-length key without scheme letter.
    Single(String),
}

impl KeyField {
    /// The algorithm letter of a key block header (`T` TDES, `A` AES, ...), `T` for the
    /// TDES schemes, `D` for a single-length key.
    pub fn algorithm(&self) -> char {
        match self {
            Self::KeyBlock(text) | Self::Tr31(text) => {
                text.as_bytes().get(7).map_or('?', |b| char::from(*b))
            }
            Self::Scheme { .. } => 'T',
            Self::Single(_) => 'D',
        }
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match self {
            Self::KeyBlock(text) | Self::Tr31(text) => {
                let prefix = if matches!(self, Self::KeyBlock(_)) {
                    b'S'
                } else {
                    b'R'
                };
                check_key_block(text)?;
                out.push(prefix);
                out.extend_from_slice(text.as_bytes());
            }
            Self::Scheme { scheme, hex } => {
                let len = scheme_len(*scheme).ok_or(invalid("key", "unknown key scheme"))?;
                check_hex("key", hex, len)?;
                out.push(*scheme as u8);
                out.extend_from_slice(hex.as_bytes());
            }
            Self::Single(hex) => {
                check_hex("key", hex, 16)?;
                out.extend_from_slice(hex.as_bytes());
            }
        }
        Ok(())
    }
}

fn scheme_len(scheme: char) -> Option<usize> {
    match scheme {
        'U' | 'X' => Some(32),
        'T' | 'Y' => Some(48),
        _ => None,
    }
}

fn check_key_block(text: &str) -> Result<(), CodecError> {
    let bytes = text.as_bytes();
    let declared = bytes
        .get(1..5)
        .and_then(parse_digits)
        .ok_or(invalid("key block", "length field is not 4 digits"))?;
    if declared != bytes.len() || declared < 16 {
        return Err(invalid(
            "key block",
            "length field does not match the block",
        ));
    }
    if !bytes.iter().all(|b| (0x21..=0x7E).contains(b)) || bytes[0] == b';' {
        return Err(invalid("key block", "not printable ASCII"));
    }
    Ok(())
}

fn parse_digits(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0_usize, |acc, b| {
        acc.checked_mul(10)?.checked_add(usize::from(b - b'0'))
    })
}

fn check_hex(what: &'static str, text: &str, len: usize) -> Result<(), CodecError> {
    if text.len() != len {
        return Err(invalid(what, "wrong length"));
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(what, "not hexadecimal"));
    }
    Ok(())
}

fn check_digits(what: &'static str, text: &str, len: usize) -> Result<(), CodecError> {
    if text.len() != len {
        return Err(invalid(what, "wrong length"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(what, "not decimal digits"));
    }
    Ok(())
}

fn check_char(what: &'static str, c: char, allowed: &str) -> Result<(), CodecError> {
    if allowed.contains(c) {
        Ok(())
    } else {
        Err(invalid(what, "value not allowed"))
    }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated(what))?;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or(CodecError::Truncated(what))?;
        self.pos = end;
        Ok(slice)
    }

    fn rest(&mut self) -> &'a [u8] {
        let slice = &self.buf[self.pos..];
        self.pos = self.buf.len();
        slice
    }

    fn char(&mut self, what: &'static str) -> Result<char, CodecError> {
        let byte = self.take(1, what)?[0];
        if !byte.is_ascii_graphic() {
            return Err(invalid(what, "not printable ASCII"));
        }
        Ok(char::from(byte))
    }

    fn text(&mut self, n: usize, what: &'static str) -> Result<String, CodecError> {
        let bytes = self.take(n, what)?;
        if !bytes.iter().all(|b| (0x20..=0x7E).contains(b)) {
            return Err(invalid(what, "not printable ASCII"));
        }
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn hex(&mut self, n: usize, what: &'static str) -> Result<String, CodecError> {
        let text = self.text(n, what)?;
        check_hex(what, &text, n)?;
        Ok(text)
    }

    fn digits(&mut self, n: usize, what: &'static str) -> Result<String, CodecError> {
        let text = self.text(n, what)?;
        check_digits(what, &text, n)?;
        Ok(text)
    }

    fn number(&mut self, n: usize, what: &'static str) -> Result<usize, CodecError> {
        let bytes = self.take(n, what)?;
        parse_digits(bytes).ok_or(invalid(what, "not decimal digits"))
    }

    fn hex_number(&mut self, n: usize, what: &'static str) -> Result<usize, CodecError> {
        let text = self.hex(n, what)?;
        usize::from_str_radix(&text, 16).map_err(|_| invalid(what, "not hexadecimal"))
    }

    fn key(&mut self, what: &'static str) -> Result<KeyField, CodecError> {
        let first = self.peek().ok_or(CodecError::Truncated(what))?;
        match first {
            b'S' | b'R' => {
                self.pos += 1;
                let len_digits = self
                    .buf
                    .get(self.pos + 1..self.pos + 5)
                    .ok_or(CodecError::Truncated(what))?;
                let len = parse_digits(len_digits)
                    .ok_or(invalid(what, "key block length is not 4 digits"))?;
                if len < 16 {
                    return Err(invalid(what, "key block shorter than its header"));
                }
                let text = self.text(len, what)?;
                check_key_block(&text).map_err(|_| invalid(what, "malformed key block"))?;
                Ok(if first == b'S' {
                    KeyField::KeyBlock(text)
                } else {
                    KeyField::Tr31(text)
                })
            }
            b'U' | b'X' | b'T' | b'Y' => {
                self.pos += 1;
                let scheme = char::from(first);
                let len = scheme_len(scheme).ok_or(invalid(what, "unknown key scheme"))?;
                Ok(KeyField::Scheme {
                    scheme,
                    hex: self.hex(len, what)?,
                })
            }
            b if b.is_ascii_hexdigit() => Ok(KeyField::Single(self.hex(16, what)?)),
            _ => Err(invalid(what, "unknown key scheme")),
        }
    }

    fn end(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(CodecError::TrailingData(n)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// Key block attributes that follow the `#` delimiter (A0, A6): key usage, algorithm, mode of
/// use, key version number, exportability. Optional blocks are not supported (count `00`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBlockAttributes {
    /// Key usage, 2 characters (e.g. `P0`, `K0`, `B0`, `M3`, `D0`, `E0`).
    pub key_usage: String,
    /// Algorithm, 2 characters: `T2`, `T3` (TDES), `A1`, `A2`, `A3` (AES-128/192/256).
    pub algorithm: String,
    /// Mode of use (e.g. `B`, `C`, `E`, `D`, `G`, `V`, `N`, `X`).
    pub mode_of_use: char,
    /// Key version number, 2 characters (`00`).
    pub key_version: String,
    /// Exportability: `E`, `N` or `S`.
    pub exportability: char,
}

impl KeyBlockAttributes {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        check_alnum("key usage", &self.key_usage, 2)?;
        check_alnum("algorithm", &self.algorithm, 2)?;
        check_alnum("key version number", &self.key_version, 2)?;
        if !self.mode_of_use.is_ascii_alphanumeric() {
            return Err(invalid("mode of use", "not a letter or digit"));
        }
        check_char("exportability", self.exportability, "ENS")?;
        out.push(b'#');
        out.extend_from_slice(self.key_usage.as_bytes());
        out.extend_from_slice(self.algorithm.as_bytes());
        out.push(self.mode_of_use as u8);
        out.extend_from_slice(self.key_version.as_bytes());
        out.push(self.exportability as u8);
        out.extend_from_slice(b"00");
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        if r.take(1, "key block delimiter")? != b"#" {
            return Err(invalid("key block delimiter", "expected #"));
        }
        let key_usage = r.text(2, "key usage")?;
        check_alnum("key usage", &key_usage, 2)?;
        let algorithm = r.text(2, "algorithm")?;
        check_alnum("algorithm", &algorithm, 2)?;
        let mode_of_use = r.char("mode of use")?;
        if !mode_of_use.is_ascii_alphanumeric() {
            return Err(invalid("mode of use", "not a letter or digit"));
        }
        let key_version = r.text(2, "key version number")?;
        check_alnum("key version number", &key_version, 2)?;
        let exportability = r.char("exportability")?;
        check_char("exportability", exportability, "ENS")?;
        if r.number(2, "number of optional blocks")? != 0 {
            return Err(invalid("number of optional blocks", "only 00 is supported"));
        }
        Ok(Self {
            key_usage,
            algorithm,
            mode_of_use,
            key_version,
            exportability,
        })
    }
}

fn check_alnum(what: &'static str, text: &str, len: usize) -> Result<(), CodecError> {
    if text.len() != len || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(what, "not letters or digits of the right length"));
    }
    Ok(())
}

/// Where A0 (mode 1) and A8 put the exported key: a ZMK or TMK and the export key scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportTarget {
    /// `0`: ZMK, `1`: TMK.
    pub zmk_tmk_flag: char,
    /// The ZMK/TMK under the LMK.
    pub kek: KeyField,
    /// Export key scheme: `R` (TR-31 key block), `U`/`T` (TDES ECB under the KEK), `S`.
    pub scheme: char,
}

/// A0: generate a key (mode `0`), and also export it under a ZMK/TMK (mode `1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateKey {
    /// Key type, 3H (`FFF` for key-block LMKs).
    pub key_type: String,
    /// Key scheme for the LMK copy (`S`).
    pub lmk_scheme: char,
    /// Mode 1: the export target (`;` ZMK/TMK flag, ZMK/TMK, key scheme).
    pub export: Option<ExportTarget>,
    /// Attributes of the new key block.
    pub attributes: KeyBlockAttributes,
}

/// A6: import a key from ZMK to LMK encryption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportKey {
    /// Key type, 3H (`FFF`).
    pub key_type: String,
    /// The ZMK under the LMK.
    pub zmk: KeyField,
    /// The key under the ZMK (`R` TR-31 block, or `U`/`T` TDES ECB).
    pub key: KeyField,
    /// Key scheme for the LMK copy (`S`).
    pub lmk_scheme: char,
    /// Attributes for the LMK key block; required unless the key is a TR-31 block.
    pub attributes: Option<KeyBlockAttributes>,
}

/// A8: export a key from LMK to ZMK/TMK encryption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportKey {
    /// Key type, 3H (`FFF`).
    pub key_type: String,
    /// ZMK/TMK flag (`0` ZMK, `1` TMK), the KEK and the export scheme.
    pub target: ExportTarget,
    /// The key to export, under the LMK.
    pub key: KeyField,
}

/// CA / CC: translate a PIN block between two PIN keys (and formats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinTranslation {
    /// Source TPK (CA) or ZPK (CC) under the LMK.
    pub source_key: KeyField,
    /// Destination ZPK under the LMK.
    pub destination_key: KeyField,
    /// Maximum PIN length, 2N (`12`).
    pub max_pin_length: u8,
    /// Source PIN block, 16H (32H for format `48`).
    pub pin_block: Sensitive<String>,
    /// Source PIN block format code, 2N.
    pub source_format: String,
    /// Destination PIN block format code, 2N.
    pub destination_format: String,
    /// 12 rightmost PAN digits without check digit; the full PAN (12–19N) when either format
    /// is `48` (ISO format 4).
    pub account: Sensitive<String>,
}

/// CI / G0: translate a PIN block from a DUKPT key (BDK + KSN) to a ZPK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DukptPinTranslation {
    /// The BDK under the LMK.
    pub bdk: KeyField,
    /// The destination ZPK under the LMK.
    pub zpk: KeyField,
    /// KSN descriptor, 3H: BDK ID length, sub-key length, device ID length (e.g. `906`).
    pub ksn_descriptor: String,
    /// KSN, hex; its length is the sum of the descriptor's digits plus 5 (counter).
    pub ksn: String,
    /// Source PIN block (ISO format 0), 16H.
    pub pin_block: Sensitive<String>,
    /// G0 only: source PIN block format code (`01`). `None` for CI.
    pub source_format: Option<String>,
    /// Destination PIN block format code, 2N.
    pub destination_format: String,
    /// 12 rightmost PAN digits without check digit.
    pub account: Sensitive<String>,
}

/// KQ: verify an ARQC and/or generate an ARPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArqcRequest {
    /// `0`: verify ARQC, `1`: verify ARQC and generate ARPC, `2`: generate ARPC only.
    pub mode: char,
    /// `0`: Visa (no session key, zero padding), `1`: Mastercard (session key from ATC and
    /// UN, padding method 2).
    pub scheme: char,
    /// The issuer master key for application cryptograms (MK-AC) under the LMK.
    pub mk_ac: KeyField,
    /// PAN and PAN sequence number: rightmost 16 digits of PAN ‖ PSN, packed BCD, 8 bytes.
    pub pan_psn: Sensitive<[u8; 8]>,
    /// Application transaction counter, 2 bytes.
    pub atc: [u8; 2],
    /// Unpredictable number, 4 bytes.
    pub unpredictable_number: [u8; 4],
    /// Transaction data the ARQC covers: 1 to 255 bytes for modes 0 and 1 (the HSM adds zero
    /// padding to a multiple of 8; scheme padding such as `80` is the host's job), empty for
    /// mode 2, where the field, its length and the `;` delimiter are absent.
    pub transaction_data: Vec<u8>,
    /// The ARQC, 8 bytes.
    pub arqc: [u8; 8],
    /// Authorisation response code, 2 bytes (modes 1 and 2 only).
    pub arc: Option<[u8; 2]>,
}

/// M6 / M8: generate or verify a MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacRequest {
    /// `0` only block, `1` first, `2` middle, `3` last block.
    pub mode: char,
    /// `0` binary, `1` hex-encoded binary, `2` text.
    pub input_format: char,
    /// MAC algorithm, 2N: `01` ISO 9797-1 algorithm 1, `03` algorithm 3 (X9.19).
    pub algorithm: String,
    /// Padding: `0` none, `1` ISO 9797-1 method 1, `2` method 2.
    pub padding: char,
    /// Key type, 3H (`003` TAK, `008` ZAK, `FFF` key block).
    pub key_type: String,
    /// The MAC key under the LMK.
    pub key: KeyField,
    /// Intermediate IV, 16H (modes 2 and 3 only).
    pub iv: Option<String>,
    /// The message in its binary form (hex-encoded on the wire for input format `1`).
    pub message: Sensitive<Vec<u8>>,
    /// M8 only: the MAC to verify, 8H or 16H.
    pub mac: Option<String>,
}

/// M0 / M2: encrypt or decrypt data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRequest {
    /// Mode, 2N: `00` ECB, `01` CBC.
    pub mode: String,
    /// `0` binary, `1` hex-encoded binary.
    pub input_format: char,
    /// `0` binary, `1` hex-encoded binary.
    pub output_format: char,
    /// Key type, 3H (`00B` DEK, `FFF` key block).
    pub key_type: String,
    /// The data key under the LMK.
    pub key: KeyField,
    /// IV for CBC (16H for TDES keys, 32H for AES key blocks), mode `01` only.
    pub iv: Option<String>,
    /// The data in binary form (hex-encoded on the wire for input format `1`).
    pub message: Sensitive<Vec<u8>>,
}

/// BU: the check value of a key under the LMK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCheckValueRequest {
    /// Key type code, 2H (`FF`: the key block says what the key is).
    pub key_type_code: String,
    /// Key length flag, 1N: `0` single, `1` double, `2` triple length.
    pub key_length_flag: char,
    /// The key under the LMK.
    pub key: KeyField,
}

/// A host command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// NC: perform diagnostics (LMK check value, firmware number).
    Diagnostics,
    /// NO: HSM status; mode flag 2N (`00`).
    Status {
        /// Mode flag, 2N.
        mode: String,
    },
    /// A0: generate a key.
    GenerateKey(GenerateKey),
    /// A6: import a key.
    ImportKey(ImportKey),
    /// A8: export a key.
    ExportKey(ExportKey),
    /// CA: translate a PIN from TPK to ZPK.
    TranslatePinTpkToZpk(PinTranslation),
    /// CC: translate a PIN from ZPK to ZPK.
    TranslatePinZpkToZpk(PinTranslation),
    /// CI: translate a PIN from BDK (DUKPT) to ZPK.
    TranslatePinDukpt(DukptPinTranslation),
    /// G0: translate a PIN from BDK (3DES DUKPT) to ZPK.
    TranslatePinDukpt3Des(DukptPinTranslation),
    /// KQ: ARQC verification and/or ARPC generation.
    VerifyArqc(ArqcRequest),
    /// M6: generate a MAC.
    GenerateMac(MacRequest),
    /// M8: verify a MAC.
    VerifyMac(MacRequest),
    /// M0: encrypt data.
    EncryptData(DataRequest),
    /// M2: decrypt data.
    DecryptData(DataRequest),
    /// BU: generate a key check value.
    KeyCheckValue(KeyCheckValueRequest),
}

impl Request {
    /// The 2-character command code.
    pub fn command_code(&self) -> [u8; 2] {
        *match self {
            Self::Diagnostics => b"NC",
            Self::Status { .. } => b"NO",
            Self::GenerateKey(_) => b"A0",
            Self::ImportKey(_) => b"A6",
            Self::ExportKey(_) => b"A8",
            Self::TranslatePinTpkToZpk(_) => b"CA",
            Self::TranslatePinZpkToZpk(_) => b"CC",
            Self::TranslatePinDukpt(_) => b"CI",
            Self::TranslatePinDukpt3Des(_) => b"G0",
            Self::VerifyArqc(_) => b"KQ",
            Self::GenerateMac(_) => b"M6",
            Self::VerifyMac(_) => b"M8",
            Self::EncryptData(_) => b"M0",
            Self::DecryptData(_) => b"M2",
            Self::KeyCheckValue(_) => b"BU",
        }
    }
}

/// The response code for a command code: the second character incremented (`NC` → `ND`,
/// `A0` → `A1`, `G0` → `G1`); `9` becomes `:` and `Z` becomes `[` as plain byte arithmetic
/// would, which no command in this crate uses.
pub fn response_code_for(command: [u8; 2]) -> [u8; 2] {
    [command[0], command[1].wrapping_add(1)]
}

/// Encodes a command message: `header` ‖ command code ‖ fields (no length prefix).
pub fn encode(header: &[u8], request: &Request) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(header.len() + 64);
    out.extend_from_slice(header);
    out.extend_from_slice(&request.command_code());
    match request {
        Request::Diagnostics => {}
        Request::Status { mode } => {
            check_digits("mode flag", mode, 2)?;
            out.extend_from_slice(mode.as_bytes());
        }
        Request::GenerateKey(a0) => {
            out.push(if a0.export.is_some() { b'1' } else { b'0' });
            check_hex("key type", &a0.key_type, 3)?;
            out.extend_from_slice(a0.key_type.as_bytes());
            check_char("key scheme (LMK)", a0.lmk_scheme, "S")?;
            out.push(a0.lmk_scheme as u8);
            if let Some(target) = &a0.export {
                out.push(b';');
                encode_target(target, &mut out)?;
            }
            a0.attributes.encode(&mut out)?;
        }
        Request::ImportKey(a6) => {
            check_hex("key type", &a6.key_type, 3)?;
            out.extend_from_slice(a6.key_type.as_bytes());
            a6.zmk.encode(&mut out)?;
            a6.key.encode(&mut out)?;
            check_char("key scheme (LMK)", a6.lmk_scheme, "S")?;
            out.push(a6.lmk_scheme as u8);
            if let Some(attributes) = &a6.attributes {
                attributes.encode(&mut out)?;
            }
        }
        Request::ExportKey(a8) => {
            check_hex("key type", &a8.key_type, 3)?;
            out.extend_from_slice(a8.key_type.as_bytes());
            out.push(b';');
            check_char("ZMK/TMK flag", a8.target.zmk_tmk_flag, "01")?;
            out.push(a8.target.zmk_tmk_flag as u8);
            a8.target.kek.encode(&mut out)?;
            a8.key.encode(&mut out)?;
            check_char("key scheme (ZMK)", a8.target.scheme, "RUTS")?;
            out.push(a8.target.scheme as u8);
        }
        Request::TranslatePinTpkToZpk(t) | Request::TranslatePinZpkToZpk(t) => {
            t.source_key.encode(&mut out)?;
            t.destination_key.encode(&mut out)?;
            if t.max_pin_length > 99 {
                return Err(invalid("maximum PIN length", "more than 2 digits"));
            }
            out.extend_from_slice(format!("{:02}", t.max_pin_length).as_bytes());
            check_digits("source PIN block format", &t.source_format, 2)?;
            check_digits("destination PIN block format", &t.destination_format, 2)?;
            let block_len = if t.source_format == "48" { 32 } else { 16 };
            check_hex("PIN block", &t.pin_block.0, block_len)?;
            check_account(
                &t.account.0,
                uses_full_pan(&t.source_format, &t.destination_format),
            )?;
            out.extend_from_slice(t.pin_block.0.as_bytes());
            out.extend_from_slice(t.source_format.as_bytes());
            out.extend_from_slice(t.destination_format.as_bytes());
            out.extend_from_slice(t.account.0.as_bytes());
        }
        Request::TranslatePinDukpt(t) | Request::TranslatePinDukpt3Des(t) => {
            let g0 = matches!(request, Request::TranslatePinDukpt3Des(_));
            t.bdk.encode(&mut out)?;
            t.zpk.encode(&mut out)?;
            let ksn_len = ksn_len(&t.ksn_descriptor)?;
            check_hex("KSN", &t.ksn, ksn_len)?;
            out.extend_from_slice(t.ksn_descriptor.as_bytes());
            out.extend_from_slice(t.ksn.as_bytes());
            check_hex("PIN block", &t.pin_block.0, 16)?;
            out.extend_from_slice(t.pin_block.0.as_bytes());
            match (&t.source_format, g0) {
                (Some(format), true) => {
                    check_digits("source PIN block format", format, 2)?;
                    out.extend_from_slice(format.as_bytes());
                }
                (None, false) => {}
                _ => {
                    return Err(invalid(
                        "source PIN block format",
                        "present for G0 only, and required there",
                    ));
                }
            }
            check_digits("destination PIN block format", &t.destination_format, 2)?;
            out.extend_from_slice(t.destination_format.as_bytes());
            check_account(&t.account.0, false)?;
            out.extend_from_slice(t.account.0.as_bytes());
        }
        Request::VerifyArqc(kq) => {
            check_char("mode flag", kq.mode, "012")?;
            check_char("scheme ID", kq.scheme, "01")?;
            out.push(kq.mode as u8);
            out.push(kq.scheme as u8);
            kq.mk_ac.encode(&mut out)?;
            out.extend_from_slice(&kq.pan_psn.0);
            out.extend_from_slice(&kq.atc);
            out.extend_from_slice(&kq.unpredictable_number);
            if kq.mode == '2' {
                if !kq.transaction_data.is_empty() {
                    return Err(invalid("transaction data", "not sent in mode 2"));
                }
            } else {
                let len = u8::try_from(kq.transaction_data.len())
                    .ok()
                    .filter(|len| *len > 0)
                    .ok_or(invalid("transaction data", "not 1 to 255 bytes"))?;
                out.extend_from_slice(format!("{len:02X}").as_bytes());
                out.extend_from_slice(&kq.transaction_data);
                out.push(b';');
            }
            out.extend_from_slice(&kq.arqc);
            match (kq.mode, &kq.arc) {
                ('0', None) => {}
                ('1' | '2', Some(arc)) => out.extend_from_slice(arc),
                _ => return Err(invalid("ARC", "required for modes 1 and 2 only")),
            }
        }
        Request::GenerateMac(m) | Request::VerifyMac(m) => {
            let verify = matches!(request, Request::VerifyMac(_));
            check_char("mode flag", m.mode, "0123")?;
            check_char("input format flag", m.input_format, "012")?;
            check_digits("MAC algorithm", &m.algorithm, 2)?;
            check_char("padding method", m.padding, "0123456789")?;
            check_hex("key type", &m.key_type, 3)?;
            out.push(m.mode as u8);
            out.push(m.input_format as u8);
            out.extend_from_slice(m.algorithm.as_bytes());
            out.push(m.padding as u8);
            out.extend_from_slice(m.key_type.as_bytes());
            m.key.encode(&mut out)?;
            match (m.mode, &m.iv) {
                ('2' | '3', Some(iv)) => {
                    check_hex("IV", iv, 16)?;
                    out.extend_from_slice(iv.as_bytes());
                }
                ('0' | '1', None) => {}
                _ => return Err(invalid("IV", "required for modes 2 and 3 only")),
            }
            encode_message(m.input_format, &m.message.0, &mut out)?;
            match (&m.mac, verify) {
                (Some(mac), true) => {
                    if mac.len() != 8 && mac.len() != 16 {
                        return Err(invalid("MAC", "not 8H or 16H"));
                    }
                    check_hex("MAC", mac, mac.len())?;
                    out.extend_from_slice(mac.as_bytes());
                }
                (None, false) => {}
                _ => return Err(invalid("MAC", "present for M8 only, and required there")),
            }
        }
        Request::EncryptData(d) | Request::DecryptData(d) => {
            check_char("input format flag", d.input_format, "01")?;
            check_char("output format flag", d.output_format, "01")?;
            check_hex("key type", &d.key_type, 3)?;
            out.extend_from_slice(d.mode.as_bytes());
            check_digits("mode flag", &d.mode, 2)?;
            out.push(d.input_format as u8);
            out.push(d.output_format as u8);
            out.extend_from_slice(d.key_type.as_bytes());
            d.key.encode(&mut out)?;
            match (d.mode.as_str(), &d.iv) {
                ("01", Some(iv)) => {
                    check_hex("IV", iv, iv_len(&d.key))?;
                    out.extend_from_slice(iv.as_bytes());
                }
                ("00", None) => {}
                _ => return Err(invalid("IV", "required for CBC (mode 01) only")),
            }
            encode_message(d.input_format, &d.message.0, &mut out)?;
        }
        Request::KeyCheckValue(bu) => {
            check_hex("key type code", &bu.key_type_code, 2)?;
            check_char("key length flag", bu.key_length_flag, "012")?;
            out.extend_from_slice(bu.key_type_code.as_bytes());
            out.push(bu.key_length_flag as u8);
            bu.key.encode(&mut out)?;
        }
    }
    Ok(out)
}

fn encode_target(target: &ExportTarget, out: &mut Vec<u8>) -> Result<(), CodecError> {
    check_char("ZMK/TMK flag", target.zmk_tmk_flag, "01")?;
    check_char("key scheme (ZMK)", target.scheme, "RUTS")?;
    out.push(target.zmk_tmk_flag as u8);
    target.kek.encode(out)?;
    out.push(target.scheme as u8);
    Ok(())
}

fn uses_full_pan(source: &str, destination: &str) -> bool {
    source == "48" || destination == "48"
}

fn check_account(account: &str, full_pan: bool) -> Result<(), CodecError> {
    let ok_len = if full_pan {
        (12..=19).contains(&account.len())
    } else {
        account.len() == 12
    };
    if !ok_len || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "account number",
            "not 12 digits (12 to 19 for format 48)",
        ));
    }
    Ok(())
}

fn iv_len(key: &KeyField) -> usize {
    if key.algorithm() == 'A' { 32 } else { 16 }
}

/// Sum of the three descriptor digits plus 5 counter characters; at most 20.
fn ksn_len(descriptor: &str) -> Result<usize, CodecError> {
    check_hex("KSN descriptor", descriptor, 3)?;
    let sum: usize = descriptor
        .chars()
        .filter_map(|c| c.to_digit(16))
        .map(|d| d as usize)
        .sum();
    let len = sum + 5;
    if !(10..=20).contains(&len) {
        return Err(invalid(
            "KSN descriptor",
            "KSN would not be 10 to 20 characters",
        ));
    }
    Ok(len)
}

fn encode_message(format: char, message: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let len =
        u16::try_from(message.len()).map_err(|_| invalid("message", "longer than 65535 bytes"))?;
    out.extend_from_slice(format!("{len:04X}").as_bytes());
    if format == '1' {
        out.extend_from_slice(hex::encode_upper(message).as_bytes());
    } else {
        out.extend_from_slice(message);
    }
    Ok(())
}

fn decode_message(format: char, r: &mut Reader<'_>) -> Result<Vec<u8>, CodecError> {
    let len = r.hex_number(4, "message length")?;
    if format == '1' {
        let text = r.take(len * 2, "message")?;
        hex::decode(text).map_err(|_| invalid("message", "not hexadecimal"))
    } else {
        Ok(r.take(len, "message")?.to_vec())
    }
}

/// A command message split into its parts, before the fields are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawCommand<'a> {
    /// The header (to echo).
    pub header: &'a [u8],
    /// The command code.
    pub code: [u8; 2],
    /// The fields, undecoded.
    pub body: &'a [u8],
}

/// Splits a command message into header, command code and fields.
pub fn split_request(header_len: usize, message: &[u8]) -> Result<RawCommand<'_>, CodecError> {
    let header = message
        .get(..header_len)
        .ok_or(CodecError::Truncated("header"))?;
    let code = message
        .get(header_len..header_len + 2)
        .ok_or(CodecError::Truncated("command code"))?;
    Ok(RawCommand {
        header,
        code: [code[0], code[1]],
        body: &message[header_len + 2..],
    })
}

/// Decodes a command message (server side): returns the header and the command.
pub fn decode_request(header_len: usize, message: &[u8]) -> Result<(Vec<u8>, Request), CodecError> {
    let raw = split_request(header_len, message)?;
    Ok((
        raw.header.to_vec(),
        decode_request_body(raw.code, raw.body)?,
    ))
}

/// Decodes the fields of command `code`.
pub fn decode_request_body(code: [u8; 2], body: &[u8]) -> Result<Request, CodecError> {
    let mut r = Reader::new(body);
    let request = match &code {
        b"NC" => Request::Diagnostics,
        b"NO" => Request::Status {
            mode: r.digits(2, "mode flag")?,
        },
        b"A0" => {
            let mode = r.char("mode")?;
            check_char("mode", mode, "01")?;
            let key_type = r.hex(3, "key type")?;
            let lmk_scheme = r.char("key scheme (LMK)")?;
            check_char("key scheme (LMK)", lmk_scheme, "S")?;
            let export = if mode == '1' {
                if r.take(1, "delimiter")? != b";" {
                    return Err(invalid("delimiter", "expected ;"));
                }
                Some(decode_target(&mut r)?)
            } else {
                None
            };
            let attributes = KeyBlockAttributes::decode(&mut r)?;
            Request::GenerateKey(GenerateKey {
                key_type,
                lmk_scheme,
                export,
                attributes,
            })
        }
        b"A6" => {
            let key_type = r.hex(3, "key type")?;
            let zmk = r.key("ZMK")?;
            let key = r.key("key under ZMK")?;
            let lmk_scheme = r.char("key scheme (LMK)")?;
            check_char("key scheme (LMK)", lmk_scheme, "S")?;
            let attributes = if r.peek() == Some(b'#') {
                Some(KeyBlockAttributes::decode(&mut r)?)
            } else {
                None
            };
            Request::ImportKey(ImportKey {
                key_type,
                zmk,
                key,
                lmk_scheme,
                attributes,
            })
        }
        b"A8" => {
            let key_type = r.hex(3, "key type")?;
            let zmk_tmk_flag = if r.peek() == Some(b';') {
                r.take(1, "delimiter")?;
                let flag = r.char("ZMK/TMK flag")?;
                check_char("ZMK/TMK flag", flag, "01")?;
                flag
            } else {
                '0'
            };
            let kek = r.key("ZMK/TMK")?;
            let key = r.key("key")?;
            let scheme = r.char("key scheme (ZMK)")?;
            check_char("key scheme (ZMK)", scheme, "RUTS")?;
            Request::ExportKey(ExportKey {
                key_type,
                target: ExportTarget {
                    zmk_tmk_flag,
                    kek,
                    scheme,
                },
                key,
            })
        }
        b"CA" | b"CC" => {
            let source_key = r.key("source key")?;
            let destination_key = r.key("destination key")?;
            let max_pin_length = r.number(2, "maximum PIN length")? as u8;
            // The PIN block is 16H, or 32H for ISO format 4; the fixed fields after it make
            // the two layouts differ in total length (≤ 39 vs ≥ 48 characters).
            let block_len = if r.remaining() >= 48 { 32 } else { 16 };
            let pin_block = Sensitive(r.hex(block_len, "PIN block")?);
            let source_format = r.digits(2, "source PIN block format")?;
            let destination_format = r.digits(2, "destination PIN block format")?;
            if (source_format == "48") != (block_len == 32) {
                return Err(invalid("PIN block", "length does not match the format"));
            }
            let account = String::from_utf8_lossy(r.rest()).into_owned();
            check_account(&account, uses_full_pan(&source_format, &destination_format))?;
            let t = PinTranslation {
                source_key,
                destination_key,
                max_pin_length,
                pin_block,
                source_format,
                destination_format,
                account: Sensitive(account),
            };
            if &code == b"CA" {
                Request::TranslatePinTpkToZpk(t)
            } else {
                Request::TranslatePinZpkToZpk(t)
            }
        }
        b"CI" | b"G0" => {
            let bdk = r.key("BDK")?;
            let zpk = r.key("ZPK")?;
            let ksn_descriptor = r.hex(3, "KSN descriptor")?;
            let ksn = r.hex(ksn_len(&ksn_descriptor)?, "KSN")?;
            let pin_block = Sensitive(r.hex(16, "PIN block")?);
            let source_format = if &code == b"G0" {
                Some(r.digits(2, "source PIN block format")?)
            } else {
                None
            };
            let destination_format = r.digits(2, "destination PIN block format")?;
            let account = Sensitive(r.digits(12, "account number")?);
            let t = DukptPinTranslation {
                bdk,
                zpk,
                ksn_descriptor,
                ksn,
                pin_block,
                source_format,
                destination_format,
                account,
            };
            if &code == b"CI" {
                Request::TranslatePinDukpt(t)
            } else {
                Request::TranslatePinDukpt3Des(t)
            }
        }
        b"KQ" => {
            let mode = r.char("mode flag")?;
            check_char("mode flag", mode, "012")?;
            let scheme = r.char("scheme ID")?;
            check_char("scheme ID", scheme, "01")?;
            let mk_ac = r.key("MK-AC")?;
            let pan_psn = Sensitive(array(r.take(8, "PAN/PSN")?));
            let atc = array(r.take(2, "ATC")?);
            let unpredictable_number = array(r.take(4, "unpredictable number")?);
            let transaction_data = if mode == '2' {
                Vec::new()
            } else {
                let len = r.hex_number(2, "transaction data length")?;
                if len == 0 {
                    return Err(invalid("transaction data length", "zero"));
                }
                let data = r.take(len, "transaction data")?.to_vec();
                if r.take(1, "delimiter")? != b";" {
                    return Err(invalid("delimiter", "expected ;"));
                }
                data
            };
            let arqc = array(r.take(8, "ARQC")?);
            let arc = if mode == '0' {
                None
            } else {
                Some(array(r.take(2, "ARC")?))
            };
            Request::VerifyArqc(ArqcRequest {
                mode,
                scheme,
                mk_ac,
                pan_psn,
                atc,
                unpredictable_number,
                transaction_data,
                arqc,
                arc,
            })
        }
        b"M6" | b"M8" => {
            let mode = r.char("mode flag")?;
            check_char("mode flag", mode, "0123")?;
            let input_format = r.char("input format flag")?;
            check_char("input format flag", input_format, "012")?;
            let algorithm = r.digits(2, "MAC algorithm")?;
            let padding = r.char("padding method")?;
            check_char("padding method", padding, "0123456789")?;
            let key_type = r.hex(3, "key type")?;
            let key = r.key("MAC key")?;
            let iv = if matches!(mode, '2' | '3') {
                Some(r.hex(16, "IV")?)
            } else {
                None
            };
            let message = Sensitive(decode_message(input_format, &mut r)?);
            let mac = if &code == b"M8" {
                let len = r.remaining();
                if len != 8 && len != 16 {
                    return Err(invalid("MAC", "not 8H or 16H"));
                }
                Some(r.hex(len, "MAC")?)
            } else {
                None
            };
            let m = MacRequest {
                mode,
                input_format,
                algorithm,
                padding,
                key_type,
                key,
                iv,
                message,
                mac,
            };
            if &code == b"M6" {
                Request::GenerateMac(m)
            } else {
                Request::VerifyMac(m)
            }
        }
        b"M0" | b"M2" => {
            let mode = r.digits(2, "mode flag")?;
            let input_format = r.char("input format flag")?;
            check_char("input format flag", input_format, "01")?;
            let output_format = r.char("output format flag")?;
            check_char("output format flag", output_format, "01")?;
            let key_type = r.hex(3, "key type")?;
            let key = r.key("data key")?;
            let iv = match mode.as_str() {
                "01" => Some(r.hex(iv_len(&key), "IV")?),
                "00" => None,
                _ => return Err(invalid("mode flag", "only 00 (ECB) and 01 (CBC)")),
            };
            let message = Sensitive(decode_message(input_format, &mut r)?);
            let d = DataRequest {
                mode,
                input_format,
                output_format,
                key_type,
                key,
                iv,
                message,
            };
            if &code == b"M0" {
                Request::EncryptData(d)
            } else {
                Request::DecryptData(d)
            }
        }
        b"BU" => {
            let key_type_code = r.hex(2, "key type code")?;
            let key_length_flag = r.char("key length flag")?;
            check_char("key length flag", key_length_flag, "012")?;
            Request::KeyCheckValue(KeyCheckValueRequest {
                key_type_code,
                key_length_flag,
                key: r.key("key")?,
            })
        }
        _ => return Err(CodecError::UnknownCommand(code_text(code))),
    };
    r.end()?;
    Ok(request)
}

fn decode_target(r: &mut Reader<'_>) -> Result<ExportTarget, CodecError> {
    let zmk_tmk_flag = r.char("ZMK/TMK flag")?;
    check_char("ZMK/TMK flag", zmk_tmk_flag, "01")?;
    let kek = r.key("ZMK/TMK")?;
    let scheme = r.char("key scheme (ZMK)")?;
    check_char("key scheme (ZMK)", scheme, "RUTS")?;
    Ok(ExportTarget {
        zmk_tmk_flag,
        kek,
        scheme,
    })
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0_u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// The fields of a successful response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// ND: LMK check value (16H) and firmware number (9A).
    Diagnostics {
        /// LMK check value, 16H.
        lmk_check_value: String,
        /// Firmware number, 9A (e.g. `1500-0001`).
        firmware: String,
    },
    /// NP: status (mode 00).
    Status {
        /// I/O buffer size, 1N.
        io_buffer_size: char,
        /// Ethernet type, 1N.
        ethernet_type: char,
        /// Number of TCP sockets, 2N.
        tcp_sockets: String,
        /// Firmware number, 9A.
        firmware: String,
        /// Any further status fields, uninterpreted printable ASCII.
        extra: String,
    },
    /// A1: the new key under the LMK, under the ZMK/TMK (mode 1), and its check value.
    GenerateKey {
        /// The key under the LMK.
        key_under_lmk: KeyField,
        /// Mode 1: the key under the ZMK/TMK.
        key_under_kek: Option<KeyField>,
        /// Key check value, 6H.
        check_value: String,
    },
    /// A7: the imported key under the LMK and its check value.
    ImportKey {
        /// The key under the LMK.
        key_under_lmk: KeyField,
        /// Key check value, 6H.
        check_value: String,
    },
    /// A9: the key under the ZMK/TMK and its check value.
    ExportKey {
        /// The key under the ZMK/TMK.
        key_under_kek: KeyField,
        /// Key check value, 6H.
        check_value: String,
    },
    /// CB, CD, CJ, G1: the translated PIN block.
    TranslatePin {
        /// PIN length, 2N.
        pin_length: u8,
        /// Destination PIN block, 16H (32H for format 48).
        pin_block: Sensitive<String>,
        /// Destination PIN block format code, 2N.
        format: String,
    },
    /// KR: the ARPC (modes 1 and 2), 8 bytes.
    VerifyArqc {
        /// The ARPC.
        arpc: Option<[u8; 8]>,
    },
    /// M7: the MAC, 16H.
    GenerateMac {
        /// The MAC, hex.
        mac: String,
    },
    /// M9: the MAC verified.
    VerifyMac,
    /// BV: the key check value, 6H (16H accepted).
    KeyCheckValue {
        /// The check value, hex.
        check_value: String,
    },
    /// M1 / M3: the output data.
    Data {
        /// Whether the data was hex-encoded on the wire (output format `1`).
        hex_encoded: bool,
        /// The output data, binary.
        data: Sensitive<Vec<u8>>,
    },
}

/// A decoded response message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseMessage {
    /// The header, echoed from the command.
    pub header: Vec<u8>,
    /// The response code (e.g. `ND`).
    pub response_code: [u8; 2],
    /// The error code.
    pub error: ErrorCode,
    /// The fields; `None` when the error code is not `00`.
    pub body: Option<Response>,
}

/// Encodes a response message: `header` ‖ response code ‖ error code ‖ fields.
pub fn encode_response(message: &ResponseMessage) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(message.header.len() + 64);
    out.extend_from_slice(&message.header);
    out.extend_from_slice(&message.response_code);
    out.extend_from_slice(&message.error.0);
    let Some(body) = &message.body else {
        return Ok(out);
    };
    if !message.error.is_ok() {
        return Err(invalid(
            "response",
            "fields are only sent with error code 00",
        ));
    }
    if !body_matches(message.response_code, body) {
        return Err(invalid("response", "fields do not match the response code"));
    }
    match body {
        Response::Diagnostics {
            lmk_check_value,
            firmware,
        } => {
            check_hex("LMK check value", lmk_check_value, 16)?;
            check_printable("firmware number", firmware, 9)?;
            out.extend_from_slice(lmk_check_value.as_bytes());
            out.extend_from_slice(firmware.as_bytes());
        }
        Response::Status {
            io_buffer_size,
            ethernet_type,
            tcp_sockets,
            firmware,
            extra,
        } => {
            check_char("I/O buffer size", *io_buffer_size, "0123456789")?;
            check_char("Ethernet type", *ethernet_type, "0123456789")?;
            check_digits("number of TCP sockets", tcp_sockets, 2)?;
            check_printable("firmware number", firmware, 9)?;
            check_printable("status", extra, extra.len())?;
            out.push(*io_buffer_size as u8);
            out.push(*ethernet_type as u8);
            out.extend_from_slice(tcp_sockets.as_bytes());
            out.extend_from_slice(firmware.as_bytes());
            out.extend_from_slice(extra.as_bytes());
        }
        Response::GenerateKey {
            key_under_lmk,
            key_under_kek,
            check_value,
        } => {
            key_under_lmk.encode(&mut out)?;
            if let Some(key) = key_under_kek {
                key.encode(&mut out)?;
            }
            check_hex("check value", check_value, 6)?;
            out.extend_from_slice(check_value.as_bytes());
        }
        Response::ImportKey {
            key_under_lmk: key,
            check_value,
        }
        | Response::ExportKey {
            key_under_kek: key,
            check_value,
        } => {
            key.encode(&mut out)?;
            check_hex("check value", check_value, 6)?;
            out.extend_from_slice(check_value.as_bytes());
        }
        Response::TranslatePin {
            pin_length,
            pin_block,
            format,
        } => {
            if *pin_length > 99 {
                return Err(invalid("PIN length", "more than 2 digits"));
            }
            check_digits("PIN block format", format, 2)?;
            let block_len = if format == "48" { 32 } else { 16 };
            check_hex("PIN block", &pin_block.0, block_len)?;
            out.extend_from_slice(format!("{pin_length:02}").as_bytes());
            out.extend_from_slice(pin_block.0.as_bytes());
            out.extend_from_slice(format.as_bytes());
        }
        Response::VerifyArqc { arpc } => {
            if let Some(arpc) = arpc {
                out.extend_from_slice(arpc);
            }
        }
        Response::GenerateMac { mac } => {
            if mac.len() != 8 && mac.len() != 16 {
                return Err(invalid("MAC", "not 8H or 16H"));
            }
            check_hex("MAC", mac, mac.len())?;
            out.extend_from_slice(mac.as_bytes());
        }
        Response::VerifyMac => {}
        Response::KeyCheckValue { check_value } => {
            if check_value.len() != 6 && check_value.len() != 16 {
                return Err(invalid("check value", "not 6H or 16H"));
            }
            check_hex("check value", check_value, check_value.len())?;
            out.extend_from_slice(check_value.as_bytes());
        }
        Response::Data { hex_encoded, data } => {
            encode_message(if *hex_encoded { '1' } else { '0' }, &data.0, &mut out)?;
        }
    }
    Ok(out)
}

fn check_printable(what: &'static str, text: &str, len: usize) -> Result<(), CodecError> {
    if text.len() != len || !text.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
        return Err(invalid(what, "not printable ASCII of the right length"));
    }
    Ok(())
}

fn body_matches(code: [u8; 2], body: &Response) -> bool {
    matches!(
        (&code, body),
        (b"ND", Response::Diagnostics { .. })
            | (b"NP", Response::Status { .. })
            | (b"A1", Response::GenerateKey { .. })
            | (b"A7", Response::ImportKey { .. })
            | (b"A9", Response::ExportKey { .. })
            | (b"CB" | b"CD" | b"CJ" | b"G1", Response::TranslatePin { .. })
            | (b"KR", Response::VerifyArqc { .. })
            | (b"M7", Response::GenerateMac { .. })
            | (b"M9", Response::VerifyMac)
            | (b"M1" | b"M3", Response::Data { .. })
            | (b"BV", Response::KeyCheckValue { .. })
    )
}

/// Decodes a response message (client side). Fields are decoded only for error code `00`;
/// any other error code yields `body: None` (and whatever follows it is ignored).
pub fn decode_response(header_len: usize, message: &[u8]) -> Result<ResponseMessage, CodecError> {
    let header = message
        .get(..header_len)
        .ok_or(CodecError::Truncated("header"))?;
    let code = message
        .get(header_len..header_len + 2)
        .ok_or(CodecError::Truncated("response code"))?;
    let code = [code[0], code[1]];
    let error = message
        .get(header_len + 2..header_len + 4)
        .ok_or(CodecError::Truncated("error code"))?;
    let error = ErrorCode([error[0], error[1]]);
    let known = [
        b"ND", b"NP", b"A1", b"A7", b"A9", b"CB", b"CD", b"CJ", b"G1", b"KR", b"M7", b"M9", b"M1",
        b"M3", b"BV",
    ];
    if !known.contains(&&code) {
        return Err(CodecError::UnknownResponse(code_text(code)));
    }
    let body = if error.is_ok() {
        Some(decode_response_body(code, &message[header_len + 4..])?)
    } else {
        None
    };
    Ok(ResponseMessage {
        header: header.to_vec(),
        response_code: code,
        error,
        body,
    })
}

fn decode_response_body(code: [u8; 2], body: &[u8]) -> Result<Response, CodecError> {
    let mut r = Reader::new(body);
    let response = match &code {
        b"ND" => Response::Diagnostics {
            lmk_check_value: r.hex(16, "LMK check value")?,
            firmware: r.text(9, "firmware number")?,
        },
        b"NP" => {
            let io_buffer_size = r.char("I/O buffer size")?;
            check_char("I/O buffer size", io_buffer_size, "0123456789")?;
            let ethernet_type = r.char("Ethernet type")?;
            check_char("Ethernet type", ethernet_type, "0123456789")?;
            let tcp_sockets = r.digits(2, "number of TCP sockets")?;
            let firmware = r.text(9, "firmware number")?;
            let extra = r.text(r.remaining(), "status")?;
            Response::Status {
                io_buffer_size,
                ethernet_type,
                tcp_sockets,
                firmware,
                extra,
            }
        }
        b"A1" => {
            let key_under_lmk = r.key("key under LMK")?;
            let key_under_kek = if r.remaining() > 6 {
                Some(r.key("key under ZMK/TMK")?)
            } else {
                None
            };
            Response::GenerateKey {
                key_under_lmk,
                key_under_kek,
                check_value: r.hex(6, "check value")?,
            }
        }
        b"A7" => Response::ImportKey {
            key_under_lmk: r.key("key under LMK")?,
            check_value: r.hex(6, "check value")?,
        },
        b"A9" => Response::ExportKey {
            key_under_kek: r.key("key under ZMK/TMK")?,
            check_value: r.hex(6, "check value")?,
        },
        b"CB" | b"CD" | b"CJ" | b"G1" => {
            let pin_length = r.number(2, "PIN length")? as u8;
            let block_len = if r.remaining() == 34 { 32 } else { 16 };
            let pin_block = Sensitive(r.hex(block_len, "PIN block")?);
            let format = r.digits(2, "PIN block format")?;
            if (format == "48") != (block_len == 32) {
                return Err(invalid("PIN block", "length does not match the format"));
            }
            Response::TranslatePin {
                pin_length,
                pin_block,
                format,
            }
        }
        b"KR" => Response::VerifyArqc {
            arpc: if r.remaining() == 0 {
                None
            } else {
                Some(array(r.take(8, "ARPC")?))
            },
        },
        b"M7" => {
            let len = r.remaining();
            if len != 8 && len != 16 {
                return Err(invalid("MAC", "not 8H or 16H"));
            }
            Response::GenerateMac {
                mac: r.hex(len, "MAC")?,
            }
        }
        b"M9" => Response::VerifyMac,
        b"BV" => {
            let len = r.remaining();
            if len != 6 && len != 16 {
                return Err(invalid("check value", "not 6H or 16H"));
            }
            Response::KeyCheckValue {
                check_value: r.hex(len, "check value")?,
            }
        }
        _ => {
            // M1 / M3: length 4H then the data, binary (length bytes) or hex (2 × length).
            let len = r.hex_number(4, "message length")?;
            let hex_encoded = len > 0 && r.remaining() == 2 * len;
            let data = if hex_encoded {
                hex::decode(r.take(2 * len, "message")?)
                    .map_err(|_| invalid("message", "not hexadecimal"))?
            } else {
                r.take(len, "message")?.to_vec()
            };
            Response::Data {
                hex_encoded,
                data: Sensitive(data),
            }
        }
    };
    r.end()?;
    Ok(response)
}
