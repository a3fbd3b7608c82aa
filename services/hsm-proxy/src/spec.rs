//! What a key is and what it may do: algorithm, TR-31 key usage, mode of use and
//! exportability, validated together. Pure.

use mpos_proto::hsm as pb;
use paycrypto::tr31::{Algorithm, Exportability, KeyUsage, ModeOfUse};

use crate::error::HsmError;

/// The algorithm and length of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Double-length TDES (16 bytes).
    Tdes2,
    /// Triple-length TDES (24 bytes).
    Tdes3,
    /// AES-128.
    Aes128,
    /// AES-192.
    Aes192,
    /// AES-256.
    Aes256,
    /// A 32-byte HMAC-SHA-256 secret.
    HmacSha256,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
    /// ECDSA / ECDH on NIST P-256.
    EccP256,
    /// ECDSA / ECDH on NIST P-384.
    EccP384,
}

impl KeyAlgorithm {
    /// From the protobuf enum value.
    pub fn from_proto(value: i32) -> Result<Self, HsmError> {
        match pb::KeyAlgorithm::try_from(value) {
            Ok(pb::KeyAlgorithm::Tdes2key) => Ok(Self::Tdes2),
            Ok(pb::KeyAlgorithm::Tdes3key) => Ok(Self::Tdes3),
            Ok(pb::KeyAlgorithm::Aes128) => Ok(Self::Aes128),
            Ok(pb::KeyAlgorithm::Aes192) => Ok(Self::Aes192),
            Ok(pb::KeyAlgorithm::Aes256) => Ok(Self::Aes256),
            Ok(pb::KeyAlgorithm::HmacSha256) => Ok(Self::HmacSha256),
            Ok(pb::KeyAlgorithm::Rsa2048) => Ok(Self::Rsa2048),
            Ok(pb::KeyAlgorithm::Rsa3072) => Ok(Self::Rsa3072),
            Ok(pb::KeyAlgorithm::Rsa4096) => Ok(Self::Rsa4096),
            Ok(pb::KeyAlgorithm::EccNistP256) => Ok(Self::EccP256),
            Ok(pb::KeyAlgorithm::EccNistP384) => Ok(Self::EccP384),
            Ok(pb::KeyAlgorithm::Unspecified) | Err(_) => Err(HsmError::invalid(
                "attributes.algorithm",
                "missing or unknown",
            )),
        }
    }

    /// The protobuf enum.
    pub fn to_proto(self) -> pb::KeyAlgorithm {
        match self {
            Self::Tdes2 => pb::KeyAlgorithm::Tdes2key,
            Self::Tdes3 => pb::KeyAlgorithm::Tdes3key,
            Self::Aes128 => pb::KeyAlgorithm::Aes128,
            Self::Aes192 => pb::KeyAlgorithm::Aes192,
            Self::Aes256 => pb::KeyAlgorithm::Aes256,
            Self::HmacSha256 => pb::KeyAlgorithm::HmacSha256,
            Self::Rsa2048 => pb::KeyAlgorithm::Rsa2048,
            Self::Rsa3072 => pb::KeyAlgorithm::Rsa3072,
            Self::Rsa4096 => pb::KeyAlgorithm::Rsa4096,
            Self::EccP256 => pb::KeyAlgorithm::EccNistP256,
            Self::EccP384 => pb::KeyAlgorithm::EccNistP384,
        }
    }

    /// Key length in bytes of a symmetric key; asymmetric keys are stored as PKCS#8 DER of
    /// varying length (0 here).
    pub fn key_len(self) -> usize {
        match self {
            Self::Tdes2 | Self::Aes128 => 16,
            Self::Tdes3 | Self::Aes192 => 24,
            Self::Aes256 | Self::HmacSha256 => 32,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 | Self::EccP256 | Self::EccP384 => 0,
        }
    }

    /// Whether this is an RSA or EC key pair.
    pub fn is_asymmetric(self) -> bool {
        matches!(
            self,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 | Self::EccP256 | Self::EccP384
        )
    }

    /// Whether this is an RSA key pair.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    /// The TR-31 algorithm code.
    pub fn tr31(self) -> Algorithm {
        match self {
            Self::Tdes2 | Self::Tdes3 => Algorithm::Tdes,
            Self::Aes128 | Self::Aes192 | Self::Aes256 => Algorithm::Aes,
            Self::HmacSha256 => Algorithm::Hmac,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => Algorithm::Rsa,
            Self::EccP256 | Self::EccP384 => Algorithm::Ec,
        }
    }

    /// From a TR-31 algorithm and a key length.
    pub fn from_tr31(algorithm: &Algorithm, len: usize) -> Result<Self, HsmError> {
        match (algorithm, len) {
            (Algorithm::Tdes, 16) => Ok(Self::Tdes2),
            (Algorithm::Tdes, 24) => Ok(Self::Tdes3),
            (Algorithm::Aes, 16) => Ok(Self::Aes128),
            (Algorithm::Aes, 24) => Ok(Self::Aes192),
            (Algorithm::Aes, 32) => Ok(Self::Aes256),
            (Algorithm::Hmac, 32) => Ok(Self::HmacSha256),
            (algorithm, len) => Err(HsmError::invalid(
                "key block",
                format!("algorithm {algorithm} with a {len}-byte key is not supported"),
            )),
        }
    }

    /// Whether this is a TDES key.
    pub fn is_tdes(self) -> bool {
        matches!(self, Self::Tdes2 | Self::Tdes3)
    }

    /// Whether this is an AES key.
    pub fn is_aes(self) -> bool {
        matches!(self, Self::Aes128 | Self::Aes192 | Self::Aes256)
    }

    /// The cipher block size (HMAC: none, reported as 0).
    pub fn block_len(self) -> usize {
        if self.is_tdes() {
            8
        } else if self.is_aes() {
            16
        } else {
            0
        }
    }
}

/// Capabilities an operation asks of a key's mode of use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Encrypt or wrap.
    Encrypt,
    /// Decrypt or unwrap.
    Decrypt,
    /// Generate a MAC, CVV or PIN verification value.
    Generate,
    /// Verify a MAC, CVV or PIN verification value.
    Verify,
    /// Derive other keys (DUKPT, EMV).
    Derive,
    /// Sign (asymmetric keys).
    Sign,
}

impl Capability {
    fn allowed_by(self, mode: &ModeOfUse) -> bool {
        match mode {
            ModeOfUse::NoRestrictions => true,
            ModeOfUse::Both => matches!(self, Self::Encrypt | Self::Decrypt),
            ModeOfUse::Encrypt => self == Self::Encrypt,
            ModeOfUse::Decrypt => self == Self::Decrypt,
            ModeOfUse::GenerateVerify => matches!(self, Self::Generate | Self::Verify),
            ModeOfUse::Generate => self == Self::Generate,
            ModeOfUse::Verify => self == Self::Verify,
            ModeOfUse::Derive | ModeOfUse::Variant => self == Self::Derive,
            ModeOfUse::Sign => self == Self::Sign,
            ModeOfUse::SignDecrypt => matches!(self, Self::Sign | Self::Decrypt),
            _ => false,
        }
    }
}

/// A key's attributes, consistent with each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// Algorithm and length.
    pub algorithm: KeyAlgorithm,
    /// TR-31 key usage.
    pub usage: KeyUsage,
    /// TR-31 mode of use.
    pub mode: ModeOfUse,
    /// TR-31 exportability.
    pub exportability: Exportability,
}

/// The usages the platform's operations understand.
const SUPPORTED_USAGES: &[&str] = &[
    "B0", "B1", "C0", "D0", "D1", "E0", "E1", "E2", "E3", "E4", "E5", "E6", "K0", "K1", "K2", "K3",
    "M0", "M1", "M3", "M6", "M7", "P0", "S0", "S1", "S2", "V1", "V2",
];

impl KeySpec {
    /// Validates protobuf attributes.
    pub fn from_proto(attributes: Option<&pb::KeyAttributes>) -> Result<Self, HsmError> {
        let attributes = attributes.ok_or_else(|| HsmError::invalid("attributes", "missing"))?;
        let algorithm = KeyAlgorithm::from_proto(attributes.algorithm)?;
        let usage = KeyUsage::from_code(attributes.key_usage.trim())
            .map_err(|_| HsmError::invalid("attributes.keyUsage", "not a TR-31 key usage"))?;
        let mode = if attributes.mode_of_use.trim().is_empty() {
            default_mode(&usage)
        } else {
            ModeOfUse::from_code(attributes.mode_of_use.trim())
                .map_err(|_| HsmError::invalid("attributes.modeOfUse", "not a TR-31 mode of use"))?
        };
        let exportability = match attributes.exportability.trim() {
            "" | "N" => Exportability::NonExportable,
            "E" => Exportability::Exportable,
            "S" => Exportability::Sensitive,
            _ => {
                return Err(HsmError::invalid(
                    "attributes.exportability",
                    "must be E, N or S",
                ));
            }
        };
        Self::new(algorithm, usage, mode, exportability)
    }

    /// Checks that algorithm, usage and mode of use fit together.
    pub fn new(
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
        mode: ModeOfUse,
        exportability: Exportability,
    ) -> Result<Self, HsmError> {
        let code = usage.code().to_owned();
        if !SUPPORTED_USAGES.contains(&code.as_str()) {
            return Err(HsmError::invalid(
                "attributes.keyUsage",
                format!(
                    "{code} is not supported (supported: {})",
                    SUPPORTED_USAGES.join(", ")
                ),
            ));
        }
        let algorithm_fits = match code.as_str() {
            "M7" => algorithm == KeyAlgorithm::HmacSha256,
            "M0" | "M1" | "M3" | "C0" | "V1" | "V2" | "E0" | "E1" | "E2" | "E3" | "E4" | "E5"
            | "E6" => algorithm.is_tdes(),
            "S0" | "S1" | "S2" | "K3" => algorithm.is_asymmetric(),
            "D1" | "K2" => algorithm.is_rsa(),
            _ => algorithm != KeyAlgorithm::HmacSha256 && !algorithm.is_asymmetric(),
        };
        if !algorithm_fits {
            return Err(HsmError::invalid(
                "attributes.algorithm",
                format!("{algorithm:?} cannot have key usage {code}"),
            ));
        }
        let modes: &[&str] = match code.as_str() {
            "B0" | "B1" | "E0" | "E1" | "E2" | "E3" | "E4" | "E5" | "E6" => &["X", "N"],
            "K0" | "K1" | "D0" | "P0" | "D1" | "K2" | "K3" => &["B", "E", "D", "N"],
            "S0" | "S1" | "S2" => &["S", "V", "N"],
            _ => &["C", "G", "V", "N"],
        };
        if !modes.contains(&mode.code()) {
            return Err(HsmError::invalid(
                "attributes.modeOfUse",
                format!("key usage {code} allows mode of use {}", modes.join(", ")),
            ));
        }
        Ok(Self {
            algorithm,
            usage,
            mode,
            exportability,
        })
    }

    /// The protobuf attributes.
    pub fn to_proto(&self) -> pb::KeyAttributes {
        pb::KeyAttributes {
            algorithm: self.algorithm.to_proto().into(),
            key_usage: self.usage.code().to_owned(),
            mode_of_use: self.mode.code().to_owned(),
            exportability: self.exportability.code().to_string(),
        }
    }

    /// Whether the key may serve an operation that needs `capability` with one of `usages`.
    pub fn permits(&self, usages: &[&str], capability: Capability) -> Result<(), HsmError> {
        if !usages.contains(&self.usage.code()) {
            return Err(HsmError::WrongKeyUsage(format!(
                "the key has usage {} but the operation needs {}",
                self.usage.code(),
                usages.join(" or ")
            )));
        }
        if !capability.allowed_by(&self.mode) {
            return Err(HsmError::WrongKeyUsage(format!(
                "the key's mode of use {} does not allow {capability:?}",
                self.mode.code()
            )));
        }
        Ok(())
    }
}

fn default_mode(usage: &KeyUsage) -> ModeOfUse {
    match usage.code() {
        "B0" | "B1" | "E0" | "E1" | "E2" | "E3" | "E4" | "E5" | "E6" => ModeOfUse::Derive,
        "K0" | "K1" | "D0" | "P0" | "D1" | "K2" | "K3" => ModeOfUse::Both,
        "S0" | "S1" | "S2" => ModeOfUse::Sign,
        _ => ModeOfUse::GenerateVerify,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(algorithm: pb::KeyAlgorithm, usage: &str, mode: &str) -> pb::KeyAttributes {
        pb::KeyAttributes {
            algorithm: algorithm.into(),
            key_usage: usage.into(),
            mode_of_use: mode.into(),
            exportability: String::new(),
        }
    }

    #[test]
    fn consistent_attributes_are_accepted_with_default_modes() {
        let spec = KeySpec::from_proto(Some(&attributes(pb::KeyAlgorithm::Tdes2key, "P0", "")))
            .expect("pin key");
        assert_eq!(spec.mode, ModeOfUse::Both);
        assert_eq!(spec.exportability, Exportability::NonExportable);
        let spec = KeySpec::from_proto(Some(&attributes(pb::KeyAlgorithm::Aes128, "B0", "")))
            .expect("aes bdk");
        assert_eq!(spec.mode, ModeOfUse::Derive);
        let spec = KeySpec::from_proto(Some(&attributes(pb::KeyAlgorithm::HmacSha256, "M7", "G")))
            .expect("hmac key");
        assert_eq!(spec.mode, ModeOfUse::Generate);
    }

    #[test]
    fn inconsistent_attributes_name_the_field() {
        for (attrs, field) in [
            (
                attributes(pb::KeyAlgorithm::Aes128, "M3", ""),
                "attributes.algorithm",
            ),
            (
                attributes(pb::KeyAlgorithm::Tdes2key, "M7", ""),
                "attributes.algorithm",
            ),
            (
                attributes(pb::KeyAlgorithm::Tdes2key, "P0", "C"),
                "attributes.modeOfUse",
            ),
            (
                attributes(pb::KeyAlgorithm::Tdes2key, "B0", "B"),
                "attributes.modeOfUse",
            ),
            (
                attributes(pb::KeyAlgorithm::Tdes2key, "X9", ""),
                "attributes.keyUsage",
            ),
            (
                attributes(pb::KeyAlgorithm::Tdes2key, "S0", ""),
                "attributes.algorithm",
            ),
            (
                attributes(pb::KeyAlgorithm::Tdes2key, "p0", ""),
                "attributes.keyUsage",
            ),
            (
                attributes(pb::KeyAlgorithm::Unspecified, "P0", ""),
                "attributes.algorithm",
            ),
        ] {
            let error = KeySpec::from_proto(Some(&attrs)).expect_err("refused");
            assert!(error.to_string().contains(field), "{error} names {field}");
        }
        let signing = KeySpec::from_proto(Some(&attributes(pb::KeyAlgorithm::Rsa2048, "S0", "")))
            .expect("rsa signing key");
        assert_eq!(signing.mode, ModeOfUse::Sign);
        for (algorithm, usage) in [
            (pb::KeyAlgorithm::EccNistP256, "D1"),
            (pb::KeyAlgorithm::Rsa2048, "P0"),
            (pb::KeyAlgorithm::Aes128, "S0"),
        ] {
            assert!(
                KeySpec::from_proto(Some(&attributes(algorithm, usage, ""))).is_err(),
                "{algorithm:?} {usage}"
            );
        }
    }

    #[test]
    fn operations_check_usage_and_mode() {
        let mac_key = KeySpec::from_proto(Some(&attributes(pb::KeyAlgorithm::Tdes2key, "M3", "G")))
            .expect("mac key");
        assert!(mac_key.permits(&["M3"], Capability::Generate).is_ok());
        assert!(matches!(
            mac_key.permits(&["M3"], Capability::Verify),
            Err(HsmError::WrongKeyUsage(_))
        ));
        assert!(matches!(
            mac_key.permits(&["P0"], Capability::Encrypt),
            Err(HsmError::WrongKeyUsage(_))
        ));
    }
}
