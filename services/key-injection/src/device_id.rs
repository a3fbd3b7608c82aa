//! Every device's DUKPT identity under a BDK, from its number under that BDK.
//!
//! * TDES DUKPT (ANSI X9.24-1): the 80-bit KSN is the BDK's 40-bit key set identifier, a 19-bit
//!   device id and a 21-bit transaction counter; a device's initial KSN has counter 0. One BDK
//!   serves 2^19 = 524,288 devices.
//! * AES DUKPT (ANSI X9.24-3-2017): the 64-bit initial key id is the 32-bit BDK id and a 32-bit
//!   derivation id. One BDK serves 2^32 devices.
//!
//! Pure functions; which number a device gets is the `bdk` aggregate's business.

use mpos_proto::key_injection as pb;
use paycrypto::dukpt::tdes;

/// Why an identity cannot be formed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    /// The algorithm is missing or unknown.
    #[error("algorithm must be DUKPT_ALGORITHM_TDES or DUKPT_ALGORITHM_AES128")]
    Algorithm,
    /// The key set id is not the right number of hex digits.
    #[error(
        "key_set_id must be {0} hexadecimal digits (TDES: the 40-bit key set identifier; AES: the 32-bit BDK id)"
    )]
    KeySetId(usize),
    /// Every device number of the BDK is taken.
    #[error("the BDK has no device identities left ({0} allocated): assign a new BDK")]
    Exhausted(u64),
}

/// How a BDK numbers its devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// TDES DUKPT under a 40-bit key set identifier.
    Tdes {
        /// The key set identifier.
        key_set_id: [u8; 5],
    },
    /// AES DUKPT under a 32-bit BDK id.
    Aes {
        /// The BDK id.
        bdk_id: [u8; 4],
    },
}

impl Scheme {
    /// The scheme of a BDK of `algorithm` whose key set id (TDES) or BDK id (AES) is
    /// `key_set_id` in hex.
    pub fn parse(algorithm: pb::DukptAlgorithm, key_set_id: &str) -> Result<Self, DeviceIdError> {
        match algorithm {
            pb::DukptAlgorithm::Tdes => {
                let mut bytes = [0_u8; 5];
                hex::decode_to_slice(key_set_id, &mut bytes)
                    .map_err(|_| DeviceIdError::KeySetId(10))?;
                Ok(Self::Tdes { key_set_id: bytes })
            }
            pb::DukptAlgorithm::Aes128 => {
                let mut bytes = [0_u8; 4];
                hex::decode_to_slice(key_set_id, &mut bytes)
                    .map_err(|_| DeviceIdError::KeySetId(8))?;
                Ok(Self::Aes { bdk_id: bytes })
            }
            pb::DukptAlgorithm::Unspecified => Err(DeviceIdError::Algorithm),
        }
    }

    /// How many devices the BDK can serve.
    pub fn capacity(self) -> u64 {
        match self {
            Self::Tdes { .. } => 1 << (tdes::KSN_LEN as u32 * 8 - 40 - tdes::COUNTER_BITS),
            Self::Aes { .. } => 1 << 32,
        }
    }

    /// The key set id (TDES) or BDK id (AES), uppercase hex.
    pub fn key_set_id(self) -> String {
        match self {
            Self::Tdes { key_set_id } => hex::encode_upper(key_set_id),
            Self::Aes { bdk_id } => hex::encode_upper(bdk_id),
        }
    }

    /// Device number `index`'s initial KSN (TDES, 20 hex digits, counter 0) or initial key id
    /// (AES, 16 hex digits), uppercase.
    pub fn initial_key_id(self, index: u64) -> Result<String, DeviceIdError> {
        if index >= self.capacity() {
            return Err(DeviceIdError::Exhausted(index));
        }
        match self {
            Self::Tdes { key_set_id } => {
                let mut ksn = [0_u8; tdes::KSN_LEN];
                ksn[..5].copy_from_slice(&key_set_id);
                let low = index << tdes::COUNTER_BITS;
                ksn[5..].copy_from_slice(&low.to_be_bytes()[3..]);
                Ok(hex::encode_upper(ksn))
            }
            Self::Aes { bdk_id } => {
                let derivation_id =
                    u32::try_from(index).map_err(|_| DeviceIdError::Exhausted(index))?;
                Ok(hex::encode_upper(bdk_id) + &hex::encode_upper(derivation_id.to_be_bytes()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use paycrypto::dukpt::aes;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_x9_24_1_example_ksn_is_device_0x19087_of_key_set_ffff987654() {
        // ANSI X9.24-1:2009 Annex A.4: initial KSN FFFF9876543210E00000, i.e. key set
        // identifier FFFF987654, then 3210E0 >> 5 = 0x19087 as the 19-bit device id, then a
        // 21-bit counter of 0.
        let scheme = Scheme::parse(pb::DukptAlgorithm::Tdes, "FFFF987654").expect("scheme");
        assert_eq!(
            scheme.initial_key_id(0x19087).expect("ksn"),
            "FFFF9876543210E00000"
        );
        assert_eq!(scheme.capacity(), 524_288);
        assert_eq!(
            scheme.initial_key_id(0).expect("first"),
            "FFFF9876540000000000"
        );
        assert_eq!(
            scheme.initial_key_id(524_287).expect("last"),
            "FFFF987654FFFFE00000"
        );
        assert_eq!(
            scheme.initial_key_id(524_288),
            Err(DeviceIdError::Exhausted(524_288))
        );
    }

    #[test]
    fn the_x9_24_3_example_initial_key_id_is_derivation_0x90123456_of_bdk_12345678() {
        // ANSI X9.24-3-2017 supplement test vectors: initial key ID 1234567890123456 = BDK ID
        // 12345678, derivation ID 90123456.
        let scheme = Scheme::parse(pb::DukptAlgorithm::Aes128, "12345678").expect("scheme");
        assert_eq!(
            scheme.initial_key_id(0x9012_3456).expect("id"),
            "1234567890123456"
        );
        assert_eq!(scheme.capacity(), 1 << 32);
        assert_eq!(
            scheme.initial_key_id(1 << 32),
            Err(DeviceIdError::Exhausted(1 << 32))
        );
    }

    #[test]
    fn malformed_schemes_are_refused() {
        assert_eq!(
            Scheme::parse(pb::DukptAlgorithm::Tdes, "FFFF98765"),
            Err(DeviceIdError::KeySetId(10))
        );
        assert_eq!(
            Scheme::parse(pb::DukptAlgorithm::Aes128, "1234567Z"),
            Err(DeviceIdError::KeySetId(8))
        );
        assert_eq!(
            Scheme::parse(pb::DukptAlgorithm::Unspecified, "12345678"),
            Err(DeviceIdError::Algorithm)
        );
    }

    proptest! {
        #[test]
        fn distinct_indexes_give_distinct_initial_ksns_with_counter_zero(
            key_set in any::<[u8; 5]>(),
            a in 0_u64..524_288,
            b in 0_u64..524_288,
        ) {
            let scheme = Scheme::Tdes { key_set_id: key_set };
            let (ka, kb) = (scheme.initial_key_id(a).expect("a"), scheme.initial_key_id(b).expect("b"));
            prop_assert_eq!(ka == kb, a == b);
            let ksn = tdes::Ksn::from_hex(&ka).expect("ksn");
            prop_assert_eq!(ksn.counter(), 0);
            prop_assert_eq!(&ka[..10], hex::encode_upper(key_set));
        }

        #[test]
        fn aes_ids_keep_the_bdk_id_and_number_devices(
            bdk in any::<[u8; 4]>(),
            a in any::<u32>(),
            b in any::<u32>(),
        ) {
            let scheme = Scheme::Aes { bdk_id: bdk };
            let (ia, ib) = (
                scheme.initial_key_id(u64::from(a)).expect("a"),
                scheme.initial_key_id(u64::from(b)).expect("b"),
            );
            prop_assert_eq!(ia == ib, a == b);
            let id = aes::InitialKeyId::from_hex(&ia).expect("id");
            prop_assert_eq!(id.bdk_id(), bdk);
            prop_assert_eq!(id.derivation_id(), a.to_be_bytes());
        }
    }
}
