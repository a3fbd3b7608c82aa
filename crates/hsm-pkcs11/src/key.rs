//! Key kinds, key uses and key ids.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use cryptoki::object::KeyType;

use crate::Error;

/// Longest key id accepted (bytes of UTF-8; stored as `CKA_ID`).
pub const MAX_KEY_ID: usize = 64;
/// Longest key label accepted (bytes of UTF-8; stored as `CKA_LABEL`).
pub const MAX_KEY_LABEL: usize = 128;

/// The kinds of secret key this backend creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Double-length TDES (`CKK_DES2`, 16 bytes K1‖K2).
    Tdes2,
    /// Triple-length TDES (`CKK_DES3`, 24 bytes).
    Tdes3,
    /// AES-128 (`CKK_AES`).
    Aes128,
    /// AES-192 (`CKK_AES`).
    Aes192,
    /// AES-256 (`CKK_AES`).
    Aes256,
    /// An HMAC key (`CKK_GENERIC_SECRET`) of `bytes` bytes (1 to 512). Generated keys must be
    /// at least [`MIN_HMAC_KEY`] bytes; SoftHSM2 refuses HMAC-SHA-256 with keys under 32 bytes
    /// (its `CKM_SHA256_HMAC` key size range) with `CKR_KEY_SIZE_RANGE`.
    Hmac {
        /// Key length in bytes: 1 to 512.
        bytes: usize,
    },
}

/// Shortest HMAC key generated: SoftHSM2 refuses shorter keys for `CKM_SHA256_HMAC`, and RFC 2104
/// advises at least the hash output length.
pub const MIN_HMAC_KEY: usize = 32;
/// Longest HMAC (generic secret) key accepted (SoftHSM2's `CKM_SHA256_HMAC` maximum).
pub const MAX_HMAC_KEY: usize = 512;

impl KeyKind {
    /// Key length in bytes.
    pub fn len(self) -> usize {
        match self {
            Self::Tdes2 | Self::Aes128 => 16,
            Self::Tdes3 | Self::Aes192 => 24,
            Self::Aes256 => 32,
            Self::Hmac { bytes } => bytes,
        }
    }

    /// Always false: no key kind is empty (present for the `len` convention).
    pub fn is_empty(self) -> bool {
        false
    }

    /// The cipher family, for choosing mechanisms.
    pub fn family(self) -> KeyFamily {
        match self {
            Self::Tdes2 | Self::Tdes3 => KeyFamily::Tdes,
            Self::Aes128 | Self::Aes192 | Self::Aes256 => KeyFamily::Aes,
            Self::Hmac { .. } => KeyFamily::Hmac,
        }
    }

    pub(crate) fn key_type(self) -> KeyType {
        match self {
            Self::Tdes2 => KeyType::DES2,
            Self::Tdes3 => KeyType::DES3,
            Self::Aes128 | Self::Aes192 | Self::Aes256 => KeyType::AES,
            Self::Hmac { .. } => KeyType::GENERIC_SECRET,
        }
    }

    pub(crate) fn validate(self) -> Result<(), Error> {
        match self {
            Self::Hmac { bytes } if !(1..=MAX_HMAC_KEY).contains(&bytes) => {
                Err(Error::InvalidInput {
                    what: "HMAC key length",
                    reason: format!("{bytes} bytes; 1 to 512 accepted"),
                })
            }
            _ => Ok(()),
        }
    }

    /// The family of an existing token key from its `CKA_KEY_TYPE`.
    pub(crate) fn family_from_token(key_type: KeyType) -> Option<KeyFamily> {
        if key_type == KeyType::DES2 || key_type == KeyType::DES3 {
            Some(KeyFamily::Tdes)
        } else if key_type == KeyType::AES {
            Some(KeyFamily::Aes)
        } else if key_type == KeyType::GENERIC_SECRET {
            Some(KeyFamily::Hmac)
        } else {
            None
        }
    }

    /// The kind of an existing token key from its `CKA_KEY_TYPE` and `CKA_VALUE_LEN` (`None`
    /// when the length is not reported: SoftHSM2 leaves `CKA_VALUE_LEN = 0` on unwrapped keys).
    pub(crate) fn from_token(key_type: KeyType, value_len: Option<usize>) -> Option<Self> {
        if key_type == KeyType::DES2 {
            Some(Self::Tdes2)
        } else if key_type == KeyType::DES3 {
            Some(Self::Tdes3)
        } else if key_type == KeyType::AES {
            match value_len? {
                16 => Some(Self::Aes128),
                24 => Some(Self::Aes192),
                32 => Some(Self::Aes256),
                _ => None,
            }
        } else if key_type == KeyType::GENERIC_SECRET {
            value_len
                .filter(|n| *n > 0)
                .map(|bytes| Self::Hmac { bytes })
        } else {
            None
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tdes2 => f.write_str("TDES-2"),
            Self::Tdes3 => f.write_str("TDES-3"),
            Self::Aes128 => f.write_str("AES-128"),
            Self::Aes192 => f.write_str("AES-192"),
            Self::Aes256 => f.write_str("AES-256"),
            Self::Hmac { bytes } => write!(f, "HMAC ({bytes} bytes)"),
        }
    }
}

/// Cipher family of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// TDES (8-byte blocks).
    Tdes,
    /// AES (16-byte blocks).
    Aes,
    /// Generic secret for HMAC.
    Hmac,
}

impl KeyFamily {
    /// Block size in bytes (0 for HMAC keys, which have no block cipher).
    pub fn block_size(self) -> usize {
        match self {
            Self::Tdes => 8,
            Self::Aes => 16,
            Self::Hmac => 0,
        }
    }
}

/// What a key may be used for. Each flag maps to one PKCS#11 attribute that is set to true;
/// every other usage attribute is set to false (least privilege: a MAC key gets
/// [`KeyUses::SIGN`] | [`KeyUses::VERIFY`] only).
///
/// [`KeyUses::EXPORT`] is the backend's export policy: only a key created with it has
/// `CKA_EXTRACTABLE = true` and can leave the token, and then only wrapped under a KEK by
/// [`crate::Token::wrap_key`]; it is still `CKA_SENSITIVE`, so its clear value can never be read.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyUses(u8);

impl KeyUses {
    /// No use at all.
    pub const NONE: Self = Self(0);
    /// `CKA_ENCRYPT`.
    pub const ENCRYPT: Self = Self(1);
    /// `CKA_DECRYPT`.
    pub const DECRYPT: Self = Self(1 << 1);
    /// `CKA_SIGN` (MAC generation).
    pub const SIGN: Self = Self(1 << 2);
    /// `CKA_VERIFY` (MAC verification).
    pub const VERIFY: Self = Self(1 << 3);
    /// `CKA_WRAP` (a KEK that exports other keys).
    pub const WRAP: Self = Self(1 << 4);
    /// `CKA_UNWRAP` (a KEK that imports other keys).
    pub const UNWRAP: Self = Self(1 << 5);
    /// `CKA_DERIVE` (a base key for derivation).
    pub const DERIVE: Self = Self(1 << 6);
    /// `CKA_EXTRACTABLE`: the key may be exported wrapped under a KEK (never in clear).
    pub const EXPORT: Self = Self(1 << 7);

    /// A MAC key: sign and verify.
    pub const MAC: Self = Self(Self::SIGN.0 | Self::VERIFY.0);
    /// A data key: encrypt and decrypt.
    pub const CIPHER: Self = Self(Self::ENCRYPT.0 | Self::DECRYPT.0);
    /// A KEK: wrap and unwrap.
    pub const KEK: Self = Self(Self::WRAP.0 | Self::UNWRAP.0);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for KeyUses {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for KeyUses {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for KeyUses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(KeyUses, &str); 8] = [
            (KeyUses::ENCRYPT, "ENCRYPT"),
            (KeyUses::DECRYPT, "DECRYPT"),
            (KeyUses::SIGN, "SIGN"),
            (KeyUses::VERIFY, "VERIFY"),
            (KeyUses::WRAP, "WRAP"),
            (KeyUses::UNWRAP, "UNWRAP"),
            (KeyUses::DERIVE, "DERIVE"),
            (KeyUses::EXPORT, "EXPORT"),
        ];
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        write!(f, "KeyUses({})", names.join(" | "))
    }
}

/// Checks a caller-chosen key id: 1 to [`MAX_KEY_ID`] bytes, no control characters.
pub(crate) fn check_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_KEY_ID {
        return Err(Error::InvalidKeyId("must be 1 to 64 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::InvalidKeyId("must not contain control characters"));
    }
    Ok(())
}

/// Checks a key label: at most [`MAX_KEY_LABEL`] bytes, no control characters.
pub(crate) fn check_label(label: &str) -> Result<(), Error> {
    if label.len() > MAX_KEY_LABEL || label.chars().any(char::is_control) {
        return Err(Error::InvalidInput {
            what: "key label",
            reason: "at most 128 bytes without control characters".into(),
        });
    }
    Ok(())
}

/// Information about a key held by the token (never its value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The caller's id (`CKA_ID`).
    pub id: String,
    /// `CKA_LABEL`.
    pub label: String,
    /// Cipher family from `CKA_KEY_TYPE`.
    pub family: KeyFamily,
    /// Kind from `CKA_KEY_TYPE` and `CKA_VALUE_LEN`; `None` when the token does not report the
    /// length (SoftHSM2 leaves `CKA_VALUE_LEN = 0` on keys made by `C_UnwrapKey`).
    pub kind: Option<KeyKind>,
    /// Usage attributes currently true.
    pub uses: KeyUses,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_LOCAL`: generated inside the token.
    pub local: bool,
}

impl KeyInfo {
    /// The kind for messages: e.g. "AES-256", or "AES (length not reported)".
    pub fn describe(&self) -> String {
        match (self.kind, self.family) {
            (Some(kind), _) => kind.to_string(),
            (None, KeyFamily::Tdes) => "TDES".into(),
            (None, KeyFamily::Aes) => "AES (length not reported)".into(),
            (None, KeyFamily::Hmac) => "HMAC (length not reported)".into(),
        }
    }
}
