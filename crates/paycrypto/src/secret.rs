//! Secret byte strings: zeroized on drop, never printed.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

/// Key material, PIN blocks in the clear, or any other secret bytes.
///
/// `Debug` shows only the length; the bytes are zeroized when the value is dropped;
/// equality is constant-time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Copies a slice.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// Parses hex (either case); `what` names the value in errors.
    pub fn from_hex(what: &'static str, hex_text: &str) -> Result<Self, CryptoError> {
        hex::decode(hex_text.trim())
            .map(Self)
            .map_err(|_| CryptoError::InvalidHex(what))
    }

    /// The secret bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Upper-case hex of the secret, for the operator's calculator only.
    pub fn to_hex_upper(&self) -> String {
        hex::encode_upper(&self.0)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes, ***)", self.0.len())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for SecretBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let secret = SecretBytes::from_hex("key", "0123456789ABCDEFFEDCBA9876543210").expect("hex");
        let printed = format!("{secret:?}");
        assert_eq!(printed, "SecretBytes(16 bytes, ***)");
        assert!(!printed.contains("0123"));
    }

    #[test]
    fn bad_hex_is_a_typed_error() {
        assert_eq!(
            SecretBytes::from_hex("key", "zz"),
            Err(CryptoError::InvalidHex("key"))
        );
    }
}
