//! TR-31 / ANSI X9.143 key blocks, versions A, B, C and D.
//!
//! A key block is printable ASCII: a 16-character header (version, length, key usage,
//! algorithm, mode of use, key version number, exportability, number of optional blocks,
//! reserved), the optional blocks, the encrypted payload in hex and the authenticator (MAC)
//! in hex. The payload is a 2-byte key length in bits, the key, and random padding (which
//! may also hide the key's true length: key length obfuscation).
//!
//! | Version | Binding                          | Cipher       | MAC                       |
//! |---------|----------------------------------|--------------|---------------------------|
//! | A, C    | key variants (KBPK ⊕ `45`/`4D`)  | TDES-CBC     | TDES CBC-MAC, 4 bytes     |
//! | B       | key derivation (TDES-CMAC PRF)   | TDES-CBC     | TDES-CMAC, 8 bytes        |
//! | D       | key derivation (AES-CMAC PRF)    | AES-CBC      | AES-CMAC, 16 bytes        |
//!
//! For A and C the IV is the first 8 header characters and the MAC covers the header and the
//! ciphertext; for B and D the MAC covers the header and the clear payload and is the CBC IV.
//!
//! [`unwrap`] verifies the MAC (constant time) before anything of the key is returned; every
//! malformed input is a typed [`CryptoError`], never a panic.

use std::fmt;

use aes::{Aes128, Aes192, Aes256};
use cipher::KeyInit;
use cmac::{Cmac, Mac};
use des::{TdesEde2, TdesEde3};
use rand::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::primitives::{
    AES_BLOCK, DES_BLOCK, aes_decrypt_cbc, aes_encrypt_cbc, tdes_decrypt_cbc, tdes_encrypt_cbc,
    xor_in_place,
};
use crate::{CryptoError, SecretBytes};

/// Length of the fixed part of the header.
pub const HEADER_LEN: usize = 16;
/// Largest key block the 4-digit length field can describe.
pub const MAX_BLOCK_LEN: usize = 9999;
/// Largest number of optional blocks the 2-digit count can describe.
pub const MAX_OPTIONAL_BLOCKS: usize = 99;

const WHAT: &str = "TR-31 header";
const WHAT_BLOCK: &str = "TR-31 key block";
const WHAT_OPT: &str = "TR-31 optional block";

// ---------------------------------------------------------------------------------------------
// Header fields
// ---------------------------------------------------------------------------------------------

/// Key block version ID (header byte 0): which binding method protects the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `A`: key variant binding, TDES (deprecated, kept for legacy peers).
    A,
    /// `B`: TDES key derivation binding, TDES-CMAC.
    B,
    /// `C`: TDES key variant binding (same cryptography as `A`).
    C,
    /// `D`: AES key derivation binding, AES-CMAC.
    D,
}

impl Version {
    /// The header character.
    pub fn code(self) -> char {
        match self {
            Self::A => 'A',
            Self::B => 'B',
            Self::C => 'C',
            Self::D => 'D',
        }
    }

    /// Parses the header character.
    pub fn from_code(code: u8) -> Result<Self, CryptoError> {
        match code {
            b'A' => Ok(Self::A),
            b'B' => Ok(Self::B),
            b'C' => Ok(Self::C),
            b'D' => Ok(Self::D),
            other if other.is_ascii_alphanumeric() => Err(CryptoError::Unsupported(format!(
                "TR-31 key block version {}",
                char::from(other)
            ))),
            _ => Err(CryptoError::format(WHAT, "version ID is not alphanumeric")),
        }
    }

    /// Encryption block size: 8 (TDES) or 16 (AES).
    pub fn block_size(self) -> usize {
        match self {
            Self::A | Self::B | Self::C => DES_BLOCK,
            Self::D => AES_BLOCK,
        }
    }

    /// Length of the authenticator in bytes: 4 (A, C), 8 (B) or 16 (D).
    pub fn mac_len(self) -> usize {
        match self {
            Self::A | Self::C => 4,
            Self::B => 8,
            Self::D => 16,
        }
    }
}

macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $len:literal, $what:literal, {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// Any other code (upper-case letters and digits), e.g. proprietary values.
            Other(String),
        }

        impl $name {
            /// The header code.
            pub fn code(&self) -> &str {
                match self {
                    $( Self::$variant => $code, )*
                    Self::Other(code) => code,
                }
            }

            /// Parses a header code; unknown but well-formed codes become `Other`.
            pub fn from_code(code: &str) -> Result<Self, CryptoError> {
                match code {
                    $( $code => Ok(Self::$variant), )*
                    other if is_code(other, $len) => Ok(Self::Other(other.to_owned())),
                    _ => Err(CryptoError::format(WHAT, concat!($what, ": not ", $len, " upper-case letters or digits"))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

/// Whether `text` is exactly `len` upper-case ASCII letters or digits.
fn is_code(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

code_enum! {
    /// Key usage (header bytes 5–6), ANSI X9.143 table 6.
    KeyUsage, 2, "key usage", {
        /// `B0`: base derivation key (BDK).
        B0 = "B0",
        /// `B1`: initial DUKPT key (IPEK / IK).
        B1 = "B1",
        /// `B2`: base key variant key.
        B2 = "B2",
        /// `B3`: key derivation key (non-X9.24).
        B3 = "B3",
        /// `C0`: card verification key (CVK).
        C0 = "C0",
        /// `D0`: symmetric data encryption key.
        D0 = "D0",
        /// `D1`: asymmetric data encryption key.
        D1 = "D1",
        /// `D2`: data encryption key for decimalization tables.
        D2 = "D2",
        /// `D3`: data encryption key for sensitive data.
        D3 = "D3",
        /// `E0`: EMV/chip issuer master key: application cryptograms.
        E0 = "E0",
        /// `E1`: EMV/chip issuer master key: secure messaging for confidentiality.
        E1 = "E1",
        /// `E2`: EMV/chip issuer master key: secure messaging for integrity.
        E2 = "E2",
        /// `E3`: EMV/chip issuer master key: data authentication code.
        E3 = "E3",
        /// `E4`: EMV/chip issuer master key: dynamic numbers.
        E4 = "E4",
        /// `E5`: EMV/chip issuer master key: card personalization.
        E5 = "E5",
        /// `E6`: EMV/chip issuer master key: other.
        E6 = "E6",
        /// `E7`: EMV/chip asymmetric key pair.
        E7 = "E7",
        /// `I0`: initialization vector.
        I0 = "I0",
        /// `K0`: key encryption or wrapping key.
        K0 = "K0",
        /// `K1`: TR-31 key block protection key.
        K1 = "K1",
        /// `K2`: TR-34 asymmetric key.
        K2 = "K2",
        /// `K3`: asymmetric key for key agreement / key wrapping.
        K3 = "K3",
        /// `K4`: ISO 20038 key block protection key.
        K4 = "K4",
        /// `M0`: ISO 16609 MAC key (algorithm 1, TDES).
        M0 = "M0",
        /// `M1`: ISO 9797-1 MAC algorithm 1.
        M1 = "M1",
        /// `M2`: ISO 9797-1 MAC algorithm 2.
        M2 = "M2",
        /// `M3`: ISO 9797-1 MAC algorithm 3 (retail MAC).
        M3 = "M3",
        /// `M4`: ISO 9797-1 MAC algorithm 4.
        M4 = "M4",
        /// `M5`: ISO 9797-1:1999 MAC algorithm 5.
        M5 = "M5",
        /// `M6`: ISO 9797-1:2011 MAC algorithm 5 / CMAC.
        M6 = "M6",
        /// `M7`: HMAC.
        M7 = "M7",
        /// `M8`: ISO 9797-1:2011 MAC algorithm 6.
        M8 = "M8",
        /// `P0`: PIN encryption key.
        P0 = "P0",
        /// `P1`: PIN generation key.
        P1 = "P1",
        /// `S0`: asymmetric key pair for digital signature.
        S0 = "S0",
        /// `S1`: asymmetric key pair, CA key.
        S1 = "S1",
        /// `S2`: asymmetric key pair, non-X9.24 key.
        S2 = "S2",
        /// `V0`: PIN verification key, other algorithm.
        V0 = "V0",
        /// `V1`: PIN verification key, IBM 3624.
        V1 = "V1",
        /// `V2`: PIN verification key, Visa PVV.
        V2 = "V2",
        /// `V3`: PIN verification key, X9.132 algorithm 1.
        V3 = "V3",
        /// `V4`: PIN verification key, X9.132 algorithm 2.
        V4 = "V4",
        /// `V5`: PIN verification key, X9.132 algorithm 3.
        V5 = "V5",
    }
}

code_enum! {
    /// Algorithm of the wrapped key (header byte 7).
    Algorithm, 1, "algorithm", {
        /// `A`: AES.
        Aes = "A",
        /// `D`: single DES.
        Des = "D",
        /// `E`: elliptic curve.
        Ec = "E",
        /// `H`: HMAC.
        Hmac = "H",
        /// `R`: RSA.
        Rsa = "R",
        /// `S`: DSA.
        Dsa = "S",
        /// `T`: triple DES.
        Tdes = "T",
    }
}

code_enum! {
    /// Mode of use of the wrapped key (header byte 8).
    ModeOfUse, 1, "mode of use", {
        /// `B`: encrypt/wrap and decrypt/unwrap.
        Both = "B",
        /// `C`: generate and verify (MAC, CVV, PIN verification).
        GenerateVerify = "C",
        /// `D`: decrypt/unwrap only.
        Decrypt = "D",
        /// `E`: encrypt/wrap only.
        Encrypt = "E",
        /// `G`: generate only.
        Generate = "G",
        /// `N`: no special restrictions.
        NoRestrictions = "N",
        /// `S`: signature only.
        Sign = "S",
        /// `T`: sign and decrypt.
        SignDecrypt = "T",
        /// `V`: verify only.
        Verify = "V",
        /// `X`: derive other keys.
        Derive = "X",
        /// `Y`: create key variants.
        Variant = "Y",
    }
}

/// Exportability of the wrapped key (header byte 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exportability {
    /// `E`: exportable under a KEK in a form meeting X9.24.
    Exportable,
    /// `N`: not exportable.
    NonExportable,
    /// `S`: sensitive; exportable under a KEK in a form not necessarily meeting X9.24.
    Sensitive,
}

impl Exportability {
    /// The header character.
    pub fn code(self) -> char {
        match self {
            Self::Exportable => 'E',
            Self::NonExportable => 'N',
            Self::Sensitive => 'S',
        }
    }

    /// Parses the header character.
    pub fn from_code(code: u8) -> Result<Self, CryptoError> {
        match code {
            b'E' => Ok(Self::Exportable),
            b'N' => Ok(Self::NonExportable),
            b'S' => Ok(Self::Sensitive),
            _ => Err(CryptoError::format(WHAT, "exportability is not E, N or S")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Optional blocks
// ---------------------------------------------------------------------------------------------

/// Algorithm of a key check value in a `KC` or `KP` optional block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KcvAlgorithm {
    /// `00`: legacy KCV (encrypt a zero block).
    Legacy,
    /// `01`: CMAC-based KCV.
    Cmac,
}

/// A key check value carried in a `KC` (wrapped key) or `KP` (KBPK) optional block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCheckValue {
    /// How the check value was computed.
    pub algorithm: KcvAlgorithm,
    /// The check value bytes.
    pub value: Vec<u8>,
}

/// One optional block: a 2-character ID and printable ASCII data.
///
/// The data of the blocks this module knows is validated: `KS` (hex key set identifier /
/// KSN), `IK` (16 hex digits: AES DUKPT initial key ID), `KC` / `KP` (`00` or `01` then a hex
/// check value), `TS` (time stamp), `PB` (padding, printable ASCII). Other IDs accept any
/// printable ASCII.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OptionalBlock {
    id: String,
    data: String,
}

impl OptionalBlock {
    /// Builds a block, validating the ID and data.
    pub fn new(id: &str, data: &str) -> Result<Self, CryptoError> {
        validate_optional_block(id, data)?;
        Ok(Self {
            id: id.to_owned(),
            data: data.to_owned(),
        })
    }

    /// `KS`: key set identifier (e.g. the TDES DUKPT KSN of an initial key), upper-case hex.
    pub fn key_set_identifier(ksi: &[u8]) -> Result<Self, CryptoError> {
        Self::new("KS", &hex::encode_upper(ksi))
    }

    /// `IK`: AES DUKPT initial key ID (8 bytes).
    pub fn initial_key_id(ik: &[u8]) -> Result<Self, CryptoError> {
        Self::new("IK", &hex::encode_upper(ik))
    }

    /// `KC`: check value of the wrapped key.
    pub fn key_check_value(kcv: &KeyCheckValue) -> Result<Self, CryptoError> {
        Self::new("KC", &format_kcv(kcv))
    }

    /// `KP`: check value of the key block protection key.
    pub fn kbpk_check_value(kcv: &KeyCheckValue) -> Result<Self, CryptoError> {
        Self::new("KP", &format_kcv(kcv))
    }

    /// `TS`: time stamp, ISO 8601 UTC (e.g. `20200818221218Z`).
    pub fn time_stamp(text: &str) -> Result<Self, CryptoError> {
        Self::new("TS", text)
    }

    /// The 2-character ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The data (without ID and length).
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Length of the encoded block: short form (`ID` + 2 hex digits) up to 255 characters,
    /// else the extended form (`ID` + `00` + `04` + 4 hex digits).
    fn encoded_len(&self) -> usize {
        let short = 4 + self.data.len();
        if short <= 0xFF {
            short
        } else {
            10 + self.data.len()
        }
    }

    fn encode_into(&self, out: &mut String) -> Result<(), CryptoError> {
        let len = self.encoded_len();
        out.push_str(&self.id);
        if len <= 0xFF {
            out.push_str(&format!("{len:02X}"));
        } else if len <= 0xFFFF {
            out.push_str(&format!("0004{len:04X}"));
        } else {
            return Err(CryptoError::OutOfRange {
                what: WHAT_OPT,
                reason: format!("{len} characters"),
            });
        }
        out.push_str(&self.data);
        Ok(())
    }
}

fn format_kcv(kcv: &KeyCheckValue) -> String {
    let algorithm = match kcv.algorithm {
        KcvAlgorithm::Legacy => "00",
        KcvAlgorithm::Cmac => "01",
    };
    format!("{algorithm}{}", hex::encode_upper(&kcv.value))
}

fn parse_kcv(data: &str) -> Result<KeyCheckValue, CryptoError> {
    let algorithm = match data.get(..2) {
        Some("00") => KcvAlgorithm::Legacy,
        Some("01") => KcvAlgorithm::Cmac,
        _ => {
            return Err(CryptoError::format(
                WHAT_OPT,
                "KC/KP: algorithm is not 00 or 01",
            ));
        }
    };
    let value = data.get(2..).unwrap_or_default();
    if value.is_empty() || !is_upper_hex(value) || !value.len().is_multiple_of(2) {
        return Err(CryptoError::format(
            WHAT_OPT,
            "KC/KP: check value is not an even number of hex digits",
        ));
    }
    let value = hex::decode(value).map_err(|_| CryptoError::InvalidHex(WHAT_OPT))?;
    Ok(KeyCheckValue { algorithm, value })
}

fn is_upper_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

fn validate_optional_block(id: &str, data: &str) -> Result<(), CryptoError> {
    if id.len() != 2 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CryptoError::format(
            WHAT_OPT,
            "ID is not 2 letters or digits",
        ));
    }
    if !data.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
        return Err(CryptoError::format(
            WHAT_OPT,
            format!("{id}: data is not printable ASCII"),
        ));
    }
    match id {
        "KS" if data.is_empty() || !is_upper_hex(data) => Err(CryptoError::format(
            WHAT_OPT,
            "KS: key set identifier is not hex",
        )),
        "IK" if data.len() != 16 || !is_upper_hex(data) => Err(CryptoError::format(
            WHAT_OPT,
            "IK: initial key ID is not 16 hex digits",
        )),
        "KC" | "KP" => parse_kcv(data).map(|_| ()),
        "TS" if data.is_empty()
            || !data
                .bytes()
                .all(|b| b.is_ascii_digit() || b"-:.TZ".contains(&b)) =>
        {
            Err(CryptoError::format(
                WHAT_OPT,
                "TS: not an ISO 8601 time stamp",
            ))
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/// A key block header: the fixed 16 characters and the optional blocks.
///
/// The block length and the optional block count are not stored: they are written by
/// [`KeyBlockHeader::format`] (and [`wrap`]) and reported by [`KeyBlockHeader::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBlockHeader {
    /// Version ID (binding method).
    pub version: Version,
    /// Key usage.
    pub key_usage: KeyUsage,
    /// Algorithm of the wrapped key.
    pub algorithm: Algorithm,
    /// Mode of use of the wrapped key.
    pub mode_of_use: ModeOfUse,
    /// Key version number: 2 letters or digits (`00`: unused; `c` + digit: component).
    pub key_version: String,
    /// Exportability.
    pub exportability: Exportability,
    /// Header bytes 14–15 (X9.143: key context and a reserved `0`; usually `00`).
    pub reserved: String,
    /// Optional blocks, in order.
    pub optional_blocks: Vec<OptionalBlock>,
}

/// Where a parsed header ends and how long the whole block says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLayout {
    /// Value of the length field: the whole key block, in characters.
    pub block_length: usize,
    /// Length of the header including the optional blocks, in characters.
    pub header_length: usize,
}

impl KeyBlockHeader {
    /// A header without optional blocks, key version `00`, reserved `00`.
    pub fn new(
        version: Version,
        key_usage: KeyUsage,
        algorithm: Algorithm,
        mode_of_use: ModeOfUse,
        exportability: Exportability,
    ) -> Self {
        Self {
            version,
            key_usage,
            algorithm,
            mode_of_use,
            key_version: "00".to_owned(),
            exportability,
            reserved: "00".to_owned(),
            optional_blocks: Vec::new(),
        }
    }

    /// Parses the header at the start of `text` (which may continue with the rest of the
    /// key block). Checks every field and optional block, and that the declared block length
    /// covers the header.
    pub fn parse(text: &str) -> Result<(Self, HeaderLayout), CryptoError> {
        let bytes = text.as_bytes();
        if bytes.len() < HEADER_LEN {
            return Err(CryptoError::InvalidLength {
                what: WHAT,
                expected: "at least 16 characters",
                actual: bytes.len(),
            });
        }
        if !bytes.iter().all(|b| (0x20..=0x7E).contains(b)) {
            return Err(CryptoError::format(WHAT_BLOCK, "not printable ASCII"));
        }
        // All-ASCII, so every index below is a char boundary.
        let field = |range: std::ops::Range<usize>| text.get(range).unwrap_or_default();
        let version = Version::from_code(bytes[0])?;
        let block_length = parse_decimal(field(1..5))
            .ok_or_else(|| CryptoError::format(WHAT, "length is not 4 digits"))?;
        let key_usage = KeyUsage::from_code(field(5..7))?;
        let algorithm = Algorithm::from_code(field(7..8))?;
        let mode_of_use = ModeOfUse::from_code(field(8..9))?;
        let key_version = field(9..11);
        if !key_version.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CryptoError::format(
                WHAT,
                "key version number is not 2 letters or digits",
            ));
        }
        let exportability = Exportability::from_code(bytes[11])?;
        let count = parse_decimal(field(12..14)).ok_or_else(|| {
            CryptoError::format(WHAT, "number of optional blocks is not 2 digits")
        })?;
        let reserved = field(14..16);
        if !reserved.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CryptoError::format(
                WHAT,
                "reserved field is not 2 letters or digits",
            ));
        }

        let mut position = HEADER_LEN;
        let mut optional_blocks = Vec::with_capacity(count);
        for index in 0..count {
            let (block, next) = parse_optional_block(text, position, index)?;
            optional_blocks.push(block);
            position = next;
        }
        if block_length < position {
            return Err(CryptoError::format(
                WHAT,
                format!(
                    "length field {block_length} is shorter than the header ({position} characters)"
                ),
            ));
        }
        let header = Self {
            version,
            key_usage,
            algorithm,
            mode_of_use,
            key_version: key_version.to_owned(),
            exportability,
            reserved: reserved.to_owned(),
            optional_blocks,
        };
        Ok((
            header,
            HeaderLayout {
                block_length,
                header_length: position,
            },
        ))
    }

    /// Formats the header with `block_length` in the length field. Fails if a field is not
    /// valid or a count or length does not fit its field.
    pub fn format(&self, block_length: usize) -> Result<String, CryptoError> {
        if block_length > MAX_BLOCK_LEN {
            return Err(CryptoError::OutOfRange {
                what: WHAT,
                reason: format!("block length {block_length} > 9999"),
            });
        }
        if self.optional_blocks.len() > MAX_OPTIONAL_BLOCKS {
            return Err(CryptoError::OutOfRange {
                what: WHAT,
                reason: format!("{} optional blocks > 99", self.optional_blocks.len()),
            });
        }
        // Re-validate the public fields (they may have been set directly).
        KeyUsage::from_code(self.key_usage.code())?;
        Algorithm::from_code(self.algorithm.code())?;
        ModeOfUse::from_code(self.mode_of_use.code())?;
        if self.key_version.len() != 2
            || !self.key_version.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(CryptoError::format(
                WHAT,
                "key version number is not 2 letters or digits",
            ));
        }
        if self.reserved.len() != 2 || !self.reserved.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CryptoError::format(
                WHAT,
                "reserved field is not 2 letters or digits",
            ));
        }
        let mut out = String::with_capacity(self.formatted_len());
        out.push(self.version.code());
        out.push_str(&format!("{block_length:04}"));
        out.push_str(self.key_usage.code());
        out.push_str(self.algorithm.code());
        out.push_str(self.mode_of_use.code());
        out.push_str(&self.key_version);
        out.push(self.exportability.code());
        out.push_str(&format!("{:02}", self.optional_blocks.len()));
        out.push_str(&self.reserved);
        for block in &self.optional_blocks {
            validate_optional_block(&block.id, &block.data)?;
            block.encode_into(&mut out)?;
        }
        Ok(out)
    }

    /// Length of the formatted header, optional blocks included.
    pub fn formatted_len(&self) -> usize {
        HEADER_LEN
            + self
                .optional_blocks
                .iter()
                .map(OptionalBlock::encoded_len)
                .sum::<usize>()
    }

    /// The first optional block with this ID.
    pub fn optional_block(&self, id: &str) -> Option<&OptionalBlock> {
        self.optional_blocks.iter().find(|block| block.id == id)
    }

    /// The `KS` key set identifier (e.g. a TDES DUKPT KSN), decoded from hex.
    pub fn key_set_identifier(&self) -> Result<Option<Vec<u8>>, CryptoError> {
        self.hex_block("KS")
    }

    /// The `IK` AES DUKPT initial key ID, decoded from hex.
    pub fn initial_key_id(&self) -> Result<Option<Vec<u8>>, CryptoError> {
        self.hex_block("IK")
    }

    /// The `KC` check value of the wrapped key.
    pub fn key_check_value(&self) -> Result<Option<KeyCheckValue>, CryptoError> {
        self.optional_block("KC")
            .map(|block| parse_kcv(&block.data))
            .transpose()
    }

    /// The `KP` check value of the key block protection key.
    pub fn kbpk_check_value(&self) -> Result<Option<KeyCheckValue>, CryptoError> {
        self.optional_block("KP")
            .map(|block| parse_kcv(&block.data))
            .transpose()
    }

    /// The `TS` time stamp text.
    pub fn time_stamp(&self) -> Option<&str> {
        self.optional_block("TS").map(OptionalBlock::data)
    }

    fn hex_block(&self, id: &str) -> Result<Option<Vec<u8>>, CryptoError> {
        self.optional_block(id)
            .map(|block| {
                if !block.data.len().is_multiple_of(2) {
                    return Err(CryptoError::format(
                        WHAT_OPT,
                        format!("{id}: odd number of hex digits"),
                    ));
                }
                hex::decode(&block.data).map_err(|_| CryptoError::InvalidHex(WHAT_OPT))
            })
            .transpose()
    }
}

fn parse_decimal(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_hex_len(text: &str) -> Option<usize> {
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    usize::from_str_radix(text, 16).ok()
}

/// Parses the optional block starting at `start`; returns it and where the next begins.
fn parse_optional_block(
    text: &str,
    start: usize,
    index: usize,
) -> Result<(OptionalBlock, usize), CryptoError> {
    let truncated = || CryptoError::format(WHAT_OPT, format!("block {} is truncated", index + 1));
    let id = text.get(start..start + 2).ok_or_else(truncated)?;
    let short = text.get(start + 2..start + 4).ok_or_else(truncated)?;
    let short = parse_hex_len(short).ok_or_else(|| {
        CryptoError::format(WHAT_OPT, format!("{id}: length is not 2 hex digits"))
    })?;
    let (length, data_start) = if short != 0 {
        (short, start + 4)
    } else {
        // Extended length: "00", then the number of hex digits of the length, then the length.
        let digits = text.get(start + 4..start + 6).ok_or_else(truncated)?;
        let digits = parse_hex_len(digits)
            .filter(|digits| (1..=4).contains(digits))
            .ok_or_else(|| {
                CryptoError::format(WHAT_OPT, format!("{id}: bad extended length-of-length"))
            })?;
        let length = text
            .get(start + 6..start + 6 + digits)
            .ok_or_else(truncated)?;
        let length = parse_hex_len(length).ok_or_else(|| {
            CryptoError::format(WHAT_OPT, format!("{id}: extended length is not hex"))
        })?;
        (length, start + 6 + digits)
    };
    let end = start + length;
    if end < data_start {
        return Err(CryptoError::format(
            WHAT_OPT,
            format!("{id}: length {length} is shorter than its own header"),
        ));
    }
    let data = text.get(data_start..end).ok_or_else(truncated)?;
    let block = OptionalBlock::new(id, data)?;
    Ok((block, end))
}

// ---------------------------------------------------------------------------------------------
// Wrap / unwrap
// ---------------------------------------------------------------------------------------------

/// How far the payload is padded beyond the key itself (key length obfuscation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyLengthMasking {
    /// Pad as if the key had the algorithm's largest length: TDES 24, AES 32, DES 8 bytes
    /// (other algorithms: no masking). The default.
    #[default]
    AlgorithmMax,
    /// Pad only to the cipher block size (the key length is visible).
    None,
    /// Pad as if the key were at least this many bytes long.
    AtLeast(usize),
}

/// Wraps `key` under the key block protection key `kbpk` with `header` (its length field and
/// optional block count are computed; a `PB` padding block is added or replaced so that the
/// header is a multiple of the cipher block size). Padding bytes come from `rng`.
pub fn wrap<R: RngCore + CryptoRng>(
    kbpk: &[u8],
    header: &KeyBlockHeader,
    key: &[u8],
    masking: KeyLengthMasking,
    rng: &mut R,
) -> Result<String, CryptoError> {
    let version = header.version;
    check_kbpk(version, kbpk)?;
    if key.is_empty() || key.len() > 8191 {
        return Err(CryptoError::InvalidLength {
            what: "TR-31 key",
            expected: "1 to 8191 bytes",
            actual: key.len(),
        });
    }
    let block = version.block_size();

    let mut header = header.clone();
    header.optional_blocks.retain(|b| b.id != "PB");
    let unpadded = header.formatted_len();
    if !unpadded.is_multiple_of(block) {
        let mut pad = block - unpadded % block;
        if pad < 4 {
            pad += block;
        }
        header.optional_blocks.push(OptionalBlock {
            id: "PB".to_owned(),
            data: "0".repeat(pad - 4),
        });
    }

    let masked = match masking {
        KeyLengthMasking::None => key.len(),
        KeyLengthMasking::AlgorithmMax => match header.algorithm {
            Algorithm::Tdes => 24,
            Algorithm::Aes => 32,
            Algorithm::Des => 8,
            _ => key.len(),
        },
        KeyLengthMasking::AtLeast(n) => n,
    }
    .max(key.len())
    // Anything this long overflows the 9999-character block below; the cap avoids overflow.
    .min(MAX_BLOCK_LEN);
    let unpadded_payload = 2 + masked;
    let payload_len = unpadded_payload.div_ceil(block) * block;
    let total = header.formatted_len() + 2 * payload_len + 2 * version.mac_len();
    if total > MAX_BLOCK_LEN {
        return Err(CryptoError::OutOfRange {
            what: WHAT_BLOCK,
            reason: format!("{total} characters > 9999"),
        });
    }
    let header_text = header.format(total)?;

    let mut payload = Zeroizing::new(vec![0_u8; payload_len]);
    let bits = u16::try_from(key.len() * 8).map_err(|_| CryptoError::OutOfRange {
        what: "TR-31 key",
        reason: "too long".to_owned(),
    })?;
    payload[..2].copy_from_slice(&bits.to_be_bytes());
    payload[2..2 + key.len()].copy_from_slice(key);
    rng.fill_bytes(&mut payload[2 + key.len()..]);

    seal(version, kbpk, header_text, &payload)
}

/// Encrypts and authenticates a complete payload under a formatted header.
fn seal(
    version: Version,
    kbpk: &[u8],
    header_text: String,
    payload: &[u8],
) -> Result<String, CryptoError> {
    let (ciphertext, mac) = match version {
        Version::A | Version::C => {
            let (kbek, kbmk) = variant_keys(kbpk);
            let iv = tdes_iv(&header_text)?;
            let ciphertext = tdes_encrypt_cbc(&kbek, &iv, payload)?;
            let mac = variant_mac(&kbmk, header_text.as_bytes(), &ciphertext)?;
            (ciphertext, mac)
        }
        Version::B => {
            let (kbek, kbmk) = derive_tdes(kbpk)?;
            let mac = cmac_tdes(&kbmk, &[header_text.as_bytes(), payload])?;
            let iv: [u8; 8] = mac.as_slice().try_into().map_err(|_| internal())?;
            (tdes_encrypt_cbc(&kbek, &iv, payload)?, mac)
        }
        Version::D => {
            let (kbek, kbmk) = derive_aes(kbpk)?;
            let mac = cmac_aes(&kbmk, &[header_text.as_bytes(), payload])?;
            let iv: [u8; 16] = mac.as_slice().try_into().map_err(|_| internal())?;
            (aes_encrypt_cbc(&kbek, &iv, payload)?, mac)
        }
    };
    let mut out = header_text;
    out.push_str(&hex::encode_upper(ciphertext));
    out.push_str(&hex::encode_upper(mac));
    Ok(out)
}

/// Unwraps a key block with the key block protection key `kbpk`: parses and checks the
/// header and lengths, verifies the MAC (constant time), and only then returns the header and
/// the key. A wrong MAC is [`CryptoError::VerificationFailed`].
pub fn unwrap(kbpk: &[u8], key_block: &str) -> Result<(KeyBlockHeader, SecretBytes), CryptoError> {
    let (header, layout) = KeyBlockHeader::parse(key_block)?;
    let version = header.version;
    if layout.block_length != key_block.len() {
        return Err(CryptoError::format(
            WHAT_BLOCK,
            format!(
                "length field says {} characters, the block has {}",
                layout.block_length,
                key_block.len()
            ),
        ));
    }
    let block = version.block_size();
    if !layout.header_length.is_multiple_of(block) {
        return Err(CryptoError::format(
            WHAT_BLOCK,
            format!(
                "header length {} is not a multiple of the {block}-byte cipher block",
                layout.header_length
            ),
        ));
    }
    check_kbpk(version, kbpk)?;
    let header_text = key_block.get(..layout.header_length).ok_or_else(internal)?;
    let body = key_block.get(layout.header_length..).ok_or_else(internal)?;
    let mac_hex = 2 * version.mac_len();
    if body.len() < mac_hex + 2 * block || !(body.len() - mac_hex).is_multiple_of(2 * block) {
        return Err(CryptoError::format(
            WHAT_BLOCK,
            format!(
                "encrypted data is not a whole number of {block}-byte blocks followed by the MAC"
            ),
        ));
    }
    let body = hex::decode(body).map_err(|_| CryptoError::InvalidHex(WHAT_BLOCK))?;
    let (ciphertext, mac) = body.split_at(body.len() - version.mac_len());

    let payload = match version {
        Version::A | Version::C => {
            let (kbek, kbmk) = variant_keys(kbpk);
            let expected = variant_mac(&kbmk, header_text.as_bytes(), ciphertext)?;
            verify_mac(&expected, mac)?;
            Zeroizing::new(tdes_decrypt_cbc(&kbek, &tdes_iv(header_text)?, ciphertext)?)
        }
        Version::B => {
            let (kbek, kbmk) = derive_tdes(kbpk)?;
            let iv: [u8; 8] = mac.try_into().map_err(|_| internal())?;
            let payload = Zeroizing::new(tdes_decrypt_cbc(&kbek, &iv, ciphertext)?);
            verify_mac(&cmac_tdes(&kbmk, &[header_text.as_bytes(), &payload])?, mac)?;
            payload
        }
        Version::D => {
            let (kbek, kbmk) = derive_aes(kbpk)?;
            let iv: [u8; 16] = mac.try_into().map_err(|_| internal())?;
            let payload = Zeroizing::new(aes_decrypt_cbc(&kbek, &iv, ciphertext)?);
            verify_mac(&cmac_aes(&kbmk, &[header_text.as_bytes(), &payload])?, mac)?;
            payload
        }
    };

    let bits = match payload.get(..2) {
        Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
        _ => return Err(internal()),
    };
    if bits == 0 || !bits.is_multiple_of(8) {
        return Err(CryptoError::format(
            WHAT_BLOCK,
            "key length is zero or not a whole number of bytes",
        ));
    }
    let key_len = bits / 8;
    let key = payload
        .get(2..2 + key_len)
        .ok_or(CryptoError::InvalidLength {
            what: "TR-31 key length",
            expected: "at most the payload length",
            actual: key_len,
        })?;
    Ok((header, SecretBytes::from_slice(key)))
}

fn internal() -> CryptoError {
    CryptoError::format(WHAT_BLOCK, "internal length mismatch")
}

fn check_kbpk(version: Version, kbpk: &[u8]) -> Result<(), CryptoError> {
    match (version, kbpk.len()) {
        (Version::A | Version::B | Version::C, 16 | 24) | (Version::D, 16 | 24 | 32) => Ok(()),
        (Version::D, actual) => Err(CryptoError::InvalidLength {
            what: "TR-31 KBPK (AES)",
            expected: "16, 24 or 32 bytes",
            actual,
        }),
        (_, actual) => Err(CryptoError::InvalidLength {
            what: "TR-31 KBPK (TDES)",
            expected: "16 or 24 bytes",
            actual,
        }),
    }
}

fn verify_mac(expected: &[u8], actual: &[u8]) -> Result<(), CryptoError> {
    if expected.len() == actual.len() && bool::from(expected.ct_eq(actual)) {
        Ok(())
    } else {
        Err(CryptoError::VerificationFailed("TR-31 key block MAC"))
    }
}

/// Versions A and C: KBEK = KBPK ⊕ `45…`, KBMK = KBPK ⊕ `4D…`.
fn variant_keys(kbpk: &[u8]) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
    let mut kbek = Zeroizing::new(kbpk.to_vec());
    let mut kbmk = Zeroizing::new(kbpk.to_vec());
    xor_in_place(&mut kbek, &vec![0x45; kbpk.len()]);
    xor_in_place(&mut kbmk, &vec![0x4D; kbpk.len()]);
    (kbek, kbmk)
}

/// Versions A and C: the IV is the first 8 header characters.
fn tdes_iv(header_text: &str) -> Result<[u8; 8], CryptoError> {
    header_text
        .as_bytes()
        .get(..8)
        .and_then(|iv| iv.try_into().ok())
        .ok_or_else(internal)
}

/// Versions A and C: TDES CBC-MAC (ISO 9797-1 algorithm 1) over header ‖ ciphertext, 4 bytes.
fn variant_mac(kbmk: &[u8], header: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut data = header.to_vec();
    data.extend_from_slice(ciphertext);
    let chained = tdes_encrypt_cbc(kbmk, &[0; 8], &data)?;
    let last = chained.len().checked_sub(DES_BLOCK).ok_or_else(internal)?;
    Ok(chained[last..last + 4].to_vec())
}

/// Key derivation input (X9.143 / TR-31 key derivation binding): counter, usage (`0000`
/// encryption, `0001` MAC), separator `00`, algorithm, key length in bits.
fn derivation_input(counter: u8, mac: bool, algorithm: u16, bits: u16) -> [u8; 8] {
    let [a0, a1] = algorithm.to_be_bytes();
    let [l0, l1] = bits.to_be_bytes();
    [counter, 0, u8::from(mac), 0, a0, a1, l0, l1]
}

type KeyPair = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>);

/// Version B: KBEK and KBMK by TDES-CMAC in counter mode.
fn derive_tdes(kbpk: &[u8]) -> Result<KeyPair, CryptoError> {
    let (algorithm, bits, rounds) = if kbpk.len() == 24 {
        (1, 192, 3)
    } else {
        (0, 128, 2)
    };
    let derive = |mac: bool| -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut out = Zeroizing::new(Vec::with_capacity(kbpk.len()));
        for counter in 1..=rounds {
            out.extend_from_slice(&cmac_tdes(
                kbpk,
                &[&derivation_input(counter, mac, algorithm, bits)],
            )?);
        }
        Ok(out)
    };
    Ok((derive(false)?, derive(true)?))
}

/// Version D: KBEK and KBMK by AES-CMAC in counter mode.
fn derive_aes(kbpk: &[u8]) -> Result<KeyPair, CryptoError> {
    let (algorithm, bits, rounds) = match kbpk.len() {
        16 => (2, 128, 1),
        24 => (3, 192, 2),
        _ => (4, 256, 2),
    };
    let derive = |mac: bool| -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut out = Zeroizing::new(Vec::with_capacity(32));
        for counter in 1..=rounds {
            out.extend_from_slice(&cmac_aes(
                kbpk,
                &[&derivation_input(counter, mac, algorithm, bits)],
            )?);
        }
        out.truncate(kbpk.len());
        Ok(out)
    };
    Ok((derive(false)?, derive(true)?))
}

macro_rules! run_cmac {
    ($cipher:ty, $key:expr, $parts:expr) => {{
        let mut mac = <Cmac<$cipher> as KeyInit>::new_from_slice($key).map_err(|_| {
            CryptoError::InvalidLength {
                what: "CMAC key",
                expected: "a cipher key",
                actual: $key.len(),
            }
        })?;
        for part in $parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }};
}

fn cmac_tdes(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
    Ok(match key.len() {
        16 => run_cmac!(TdesEde2, key, parts),
        24 => run_cmac!(TdesEde3, key, parts),
        actual => {
            return Err(CryptoError::InvalidLength {
                what: "TDES key",
                expected: "16 or 24 bytes",
                actual,
            });
        }
    })
}

fn cmac_aes(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
    Ok(match key.len() {
        16 => run_cmac!(Aes128, key, parts),
        24 => run_cmac!(Aes192, key, parts),
        32 => run_cmac!(Aes256, key, parts),
        actual => {
            return Err(CryptoError::InvalidLength {
                what: "AES key",
                expected: "16, 24 or 32 bytes",
                actual,
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seals a hand-made payload (valid MAC) under a 16-character header for `version`.
    fn sealed(version: Version, payload: &[u8]) -> (Vec<u8>, String) {
        let kbpk = vec![0x3C; if version == Version::D { 32 } else { 16 }];
        let length = HEADER_LEN + 2 * payload.len() + 2 * version.mac_len();
        let header = KeyBlockHeader::new(
            version,
            KeyUsage::P0,
            Algorithm::Tdes,
            ModeOfUse::Encrypt,
            Exportability::Exportable,
        )
        .format(length)
        .expect("header");
        let block = seal(version, &kbpk, header, payload).expect("seal");
        (kbpk, block)
    }

    #[test]
    fn key_length_exceeding_the_block_is_a_typed_error() {
        for version in [Version::A, Version::B, Version::C, Version::D] {
            // Claims 256 bits (32 bytes) in a payload that holds 30 after the length.
            let mut payload = vec![0x11; 32];
            payload[..2].copy_from_slice(&[0x01, 0x00]);
            let (kbpk, block) = sealed(version, &payload);
            assert_eq!(
                unwrap(&kbpk, &block).map(|_| ()),
                Err(CryptoError::InvalidLength {
                    what: "TR-31 key length",
                    expected: "at most the payload length",
                    actual: 32
                }),
                "{version:?}"
            );
        }
    }

    #[test]
    fn zero_or_fractional_key_length_is_a_typed_error() {
        for bits in [[0x00, 0x00], [0x00, 0x7F]] {
            let mut payload = vec![0x22; 16];
            payload[..2].copy_from_slice(&bits);
            let (kbpk, block) = sealed(Version::D, &payload);
            assert!(matches!(
                unwrap(&kbpk, &block),
                Err(CryptoError::InvalidFormat { .. })
            ));
        }
    }

    #[test]
    fn a_key_filling_the_payload_exactly_is_accepted() {
        let mut payload = vec![0x33; 16];
        payload[..2].copy_from_slice(&[0x00, 0x70]); // 112 bits = 14 bytes = 16 - 2
        let (kbpk, block) = sealed(Version::D, &payload);
        let (_, key) = unwrap(&kbpk, &block).expect("unwrap");
        assert_eq!(key.expose(), &[0x33; 14]);
    }
}
