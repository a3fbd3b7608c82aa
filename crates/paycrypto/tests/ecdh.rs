//! ECDH key delivery to a P-256 device (`paycrypto::ecdh`): known answers for the ECDH
//! primitive and the one-step KDF from published sources, round trips, and refusals.
//!
//! Sources of the known answers (copied from the documents, never computed with this crate):
//! - RFC 5903 section 8.1, "256-bit Random ECP Group" (IKEv2 ECDH test vector): private
//!   keys `i` and `r`, public values `g^i`, `g^r`, shared value `g^ir` (x-coordinate).
//! - NIST CAVP "ECC CDH Primitive" test vectors (`ecccdhtestvectors.zip`,
//!   `KAS_ECC_CDH_PrimitiveTest.txt`), section `[P-256]`, `COUNT = 0`.
//! - RFC 7518 (JWA) Appendix C, "Example ECDH-ES Key Agreement Computation": a P-256 ECDH
//!   (Alice's ephemeral key, Bob's static key) giving `Z`, then the Concat KDF of SP 800-56A
//!   section 5.8.1 with SHA-256 (the one-step KDF of SP 800-56C rev2 section 4.1, option 1)
//!   over `Z` and the JOSE OtherInfo, giving the 128-bit key `VqqN6vgjbSBcIijNcacQGg`.
//!
//! TR-31 version D itself has published known answers in `tests/tr31.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
use paycrypto::ecdh::{self, EcdhDelivery};
use paycrypto::tr31::{
    Algorithm, Exportability, KeyBlockHeader, KeyUsage, ModeOfUse, OptionalBlock, Version,
};
use paycrypto::{CryptoError, SecretBytes};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::{OsRng, StdRng};

fn h(text: &str) -> Vec<u8> {
    hex::decode(text.split_whitespace().collect::<String>()).expect("hex")
}

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// SEC1 uncompressed point from its coordinates.
fn point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    out.extend_from_slice(x);
    out.extend_from_slice(y);
    out
}

// ------------------------------------------------------------------------------------------
// ECDH primitive known answers
// ------------------------------------------------------------------------------------------

/// RFC 5903 section 8.1: both parties reach `g^ir`; each public value is its private key's.
#[test]
fn kat_rfc5903_8_1_p256_ecdh() {
    let i = h("C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433");
    let gi = point(
        &h("DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180"),
        &h("5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3"),
    );
    let r = h("C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53");
    let gr = point(
        &h("D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63"),
        &h("56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB"),
    );
    let girx = h("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE");

    let initiator = ecdh::shared_secret(&i, &gr).expect("initiator");
    let responder = ecdh::shared_secret(&r, &gi).expect("responder");
    assert_eq!(initiator.expose(), girx.as_slice());
    assert_eq!(responder.expose(), girx.as_slice());
    // The published public values are the private keys' (checks the transcription too).
    let public_i = p256::SecretKey::from_slice(&i).expect("i").public_key();
    assert_eq!(
        ecdh::p256_public_key(&public_i.to_public_key_der().expect("spki").to_vec())
            .expect("point"),
        gi
    );
}

/// NIST CAVP KAS ECC CDH primitive, `[P-256]` `COUNT = 0`: `dIUT` with `QCAVS` gives `ZIUT`.
#[test]
fn kat_nist_cavp_ecc_cdh_p256_count_0() {
    let qcavs = point(
        &h("700c48f77f56584c5cc632ca65640db91b6bacce3a4df6b42ce7cc838833d287"),
        &h("db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ac"),
    );
    let d_iut = h("7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534");
    let q_iut = point(
        &h("ead218590119e8876b29146ff89ca61770c4edbbf97d38ce385ed281d8a6b230"),
        &h("28af61281fd35e2fa7002523acc85a429cb06ee6648325389f59edfce1405141"),
    );
    let z_iut = h("46fc62106420ff012e54a434fbdd2d25ccc5852060561e68040dd7778997bd7b");
    let z = ecdh::shared_secret(&d_iut, &qcavs).expect("cdh");
    assert_eq!(z.expose(), z_iut.as_slice());
    let public = p256::SecretKey::from_slice(&d_iut).expect("d").public_key();
    assert_eq!(
        ecdh::p256_public_key(&public.to_public_key_der().expect("spki").to_vec()).expect("point"),
        q_iut
    );
}

// ------------------------------------------------------------------------------------------
// One-step KDF known answer (with the ECDH that feeds it)
// ------------------------------------------------------------------------------------------

/// RFC 7518 Appendix C: ECDH-ES between Alice's ephemeral key and Bob's key, then the Concat
/// KDF (SHA-256) with AlgorithmID "A128GCM", PartyUInfo "Alice", PartyVInfo "Bob" (each
/// length-prefixed) and SuppPubInfo 128 (32 bits), keydatalen 128.
#[test]
fn kat_rfc7518_appendix_c_ecdh_es_concat_kdf() {
    let alice_d = b64("0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo");
    let bob = point(
        &b64("weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ"),
        &b64("e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck"),
    );
    let z: [u8; 32] = [
        158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110,
        163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
    ];
    assert_eq!(
        ecdh::shared_secret(&alice_d, &bob).expect("ecdh").expose(),
        z.as_slice()
    );
    // Bob's side, with Alice's published ephemeral public key.
    let bob_d = b64("VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw");
    let alice = point(
        &b64("gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0"),
        &b64("SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"),
    );
    assert_eq!(
        ecdh::shared_secret(&bob_d, &alice).expect("ecdh").expose(),
        z.as_slice()
    );

    let other_info: Vec<u8> = [
        &[0, 0, 0, 7, 65, 49, 50, 56, 71, 67, 77][..],
        &[0, 0, 0, 5, 65, 108, 105, 99, 101],
        &[0, 0, 0, 3, 66, 111, 98],
        &[0, 0, 0, 128],
    ]
    .concat();
    let key = ecdh::one_step_kdf_sha256(&z, &other_info, 16).expect("kdf");
    assert_eq!(key.expose(), b64("VqqN6vgjbSBcIijNcacQGg").as_slice());
    assert_eq!(
        key.expose(),
        [
            86, 170, 141, 234, 248, 35, 109, 32, 92, 34, 40, 205, 113, 167, 16, 26
        ]
        .as_slice()
    );
}

/// The FixedInfo layout is the one the module documents, byte for byte.
#[test]
fn fixed_info_is_the_documented_layout() {
    let ephemeral = [0xE1; 65];
    let device = [0xD2; 65];
    let mut expected = h("00000012");
    expected.extend_from_slice(b"TR31-D-KBPK-AES256");
    expected.extend_from_slice(&h("00000041"));
    expected.extend_from_slice(&ephemeral);
    expected.extend_from_slice(&h("00000041"));
    expected.extend_from_slice(&device);
    assert_eq!(ecdh::fixed_info(&ephemeral, &device), expected);
    assert_eq!(expected.len(), 160);
}

// ------------------------------------------------------------------------------------------
// Round trips
// ------------------------------------------------------------------------------------------

struct Device {
    pkcs8: Vec<u8>,
    spki: Vec<u8>,
    point: Vec<u8>,
}

fn device(rng: &mut StdRng) -> Device {
    let secret = p256::SecretKey::random(rng);
    let public = secret.public_key();
    Device {
        pkcs8: secret.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec(),
        spki: public.to_public_key_der().expect("spki").to_vec(),
        point: ecdh::p256_public_key(&public.to_public_key_der().expect("spki").to_vec())
            .expect("point"),
    }
}

/// The header of a DUKPT initial key delivery: B1, TDES or AES, mode X (derive), not
/// exportable (as hsm-proxy builds it).
fn initial_key_header(algorithm: Algorithm, optional: OptionalBlock) -> KeyBlockHeader {
    let mut header = KeyBlockHeader::new(
        Version::D,
        KeyUsage::B1,
        algorithm,
        ModeOfUse::Derive,
        Exportability::NonExportable,
    );
    header.optional_blocks.push(optional);
    header
}

fn tdes_header() -> KeyBlockHeader {
    initial_key_header(
        Algorithm::Tdes,
        OptionalBlock::key_set_identifier(&h("FFFF9876543210E00000")).expect("KS"),
    )
}

fn deliver(rng: &mut StdRng, device: &Device, key: &[u8]) -> EcdhDelivery {
    ecdh::wrap_for_device(
        rng,
        &device.spki,
        &tdes_header(),
        &SecretBytes::from_slice(key),
    )
    .expect("wrap")
}

#[test]
fn the_device_recovers_the_key_and_header() {
    let mut rng = StdRng::from_rng(OsRng).expect("rng");
    let device = device(&mut rng);
    let key = h("6AC292FAA1315B4D858AB3A3D7D5933A");
    for public in [&device.spki, &device.point] {
        let delivery = ecdh::wrap_for_device(
            &mut rng,
            public,
            &tdes_header(),
            &SecretBytes::from_slice(&key),
        )
        .expect("wrap");
        assert_eq!(delivery.ephemeral_public_key.len(), 65);
        assert_eq!(delivery.ephemeral_public_key[0], 0x04);
        assert!(delivery.key_block.starts_with('D'));
        assert_eq!(&delivery.key_block[5..12], "B1TX00N");
        let (header, received) = ecdh::unwrap_on_device(
            &device.pkcs8,
            &delivery.ephemeral_public_key,
            &delivery.key_block,
        )
        .expect("unwrap");
        assert_eq!(received.expose(), key.as_slice());
        assert_eq!(header.key_usage, KeyUsage::B1);
        assert_eq!(header.algorithm, Algorithm::Tdes);
        assert_eq!(
            header.key_set_identifier().expect("KS"),
            Some(h("FFFF9876543210E00000"))
        );
    }
}

#[test]
fn every_delivery_uses_a_fresh_ephemeral_key() {
    let mut rng = StdRng::from_rng(OsRng).expect("rng");
    let device = device(&mut rng);
    let key = h("6AC292FAA1315B4D858AB3A3D7D5933A");
    let first = deliver(&mut rng, &device, &key);
    let second = deliver(&mut rng, &device, &key);
    assert_ne!(first.ephemeral_public_key, second.ephemeral_public_key);
    assert_ne!(first.key_block, second.key_block);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_key_round_trips(
        seed in any::<u64>(),
        aes in any::<bool>(),
        key_len_choice in 0_usize..3,
        key_seed in any::<[u8; 32]>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let device = device(&mut rng);
        let (header, key_len) = if aes {
            (
                initial_key_header(
                    Algorithm::Aes,
                    OptionalBlock::initial_key_id(&h("1234567890123456")).expect("IK"),
                ),
                [16, 24, 32][key_len_choice],
            )
        } else {
            (tdes_header(), [16, 24, 16][key_len_choice])
        };
        let key = SecretBytes::from_slice(&key_seed[..key_len]);
        let delivery = ecdh::wrap_for_device(&mut rng, &device.spki, &header, &key).expect("wrap");
        let (received_header, received) = ecdh::unwrap_on_device(
            &device.pkcs8,
            &delivery.ephemeral_public_key,
            &delivery.key_block,
        )
        .expect("unwrap");
        prop_assert_eq!(received, key);
        prop_assert_eq!(received_header.optional_blocks[0].clone(), header.optional_blocks[0].clone());
    }
}

// ------------------------------------------------------------------------------------------
// Refusals
// ------------------------------------------------------------------------------------------

#[test]
fn another_device_cannot_open_it() {
    let mut rng = StdRng::from_rng(OsRng).expect("rng");
    let device_a = device(&mut rng);
    let device_b = device(&mut rng);
    let delivery = deliver(&mut rng, &device_a, &h("6AC292FAA1315B4D858AB3A3D7D5933A"));
    assert_eq!(
        ecdh::unwrap_on_device(
            &device_b.pkcs8,
            &delivery.ephemeral_public_key,
            &delivery.key_block
        ),
        Err(CryptoError::VerificationFailed("TR-31 key block MAC"))
    );
}

#[test]
fn a_tampered_block_or_ephemeral_key_is_refused() {
    let mut rng = StdRng::from_rng(OsRng).expect("rng");
    let device = device(&mut rng);
    let delivery = deliver(&mut rng, &device, &h("6AC292FAA1315B4D858AB3A3D7D5933A"));
    // Flip one hex digit in the ciphertext, in the MAC, and in the header.
    let block = delivery.key_block.as_bytes();
    for position in [block.len() - 40, block.len() - 1, 7] {
        let mut tampered = block.to_vec();
        tampered[position] = if tampered[position] == b'0' {
            b'1'
        } else {
            b'0'
        };
        let tampered = String::from_utf8(tampered).expect("ascii");
        let result =
            ecdh::unwrap_on_device(&device.pkcs8, &delivery.ephemeral_public_key, &tampered);
        assert!(result.is_err(), "position {position}");
    }
    // Another (valid) ephemeral key: another KBPK.
    let other = self::device(&mut rng);
    assert_eq!(
        ecdh::unwrap_on_device(&device.pkcs8, &other.point, &delivery.key_block),
        Err(CryptoError::VerificationFailed("TR-31 key block MAC"))
    );
}

/// Not P-256 public keys: each a typed error on both sides, never a panic.
fn not_p256_keys() -> Vec<(&'static str, Vec<u8>)> {
    // secp256k1's generator (SEC 2 section 2.4.1) in a SubjectPublicKeyInfo.
    let secp256k1 = h("3056301006072a8648ce3d020106052b8104000a034200
        04 79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
        483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8");
    // An Ed25519 SubjectPublicKeyInfo (RFC 8410 section 10.1).
    let ed25519 = h(
        "302a300506032b657003210019bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1",
    );
    let rsa = rsa::RsaPrivateKey::new(&mut OsRng, 1024)
        .expect("rsa")
        .to_public_key();
    let rsa = rsa::pkcs8::EncodePublicKey::to_public_key_der(&rsa)
        .expect("spki")
        .to_vec();
    let mut off_curve = vec![0x04];
    off_curve.extend_from_slice(&[0x01; 64]);
    let valid = ecdh::p256_public_key(
        &p256::SecretKey::random(&mut OsRng)
            .public_key()
            .to_public_key_der()
            .expect("spki")
            .to_vec(),
    )
    .expect("point");
    vec![
        ("secp256k1", secp256k1),
        ("ed25519", ed25519),
        ("rsa", rsa),
        ("empty", Vec::new()),
        ("identity", vec![0x00]),
        ("off the curve", off_curve),
        ("truncated point", valid[..40].to_vec()),
        (
            "point with a trailing byte",
            [valid.as_slice(), &[0]].concat(),
        ),
        ("garbage", b"not a key".to_vec()),
        ("truncated SPKI", h("3059301306072a8648ce3d0201")),
    ]
}

#[test]
fn non_p256_or_malformed_public_keys_are_typed_errors() {
    let mut rng = StdRng::from_rng(OsRng).expect("rng");
    let device = device(&mut rng);
    let delivery = deliver(&mut rng, &device, &h("6AC292FAA1315B4D858AB3A3D7D5933A"));
    let key = SecretBytes::from_slice(&h("6AC292FAA1315B4D858AB3A3D7D5933A"));
    for (name, public) in not_p256_keys() {
        let wrapped = ecdh::wrap_for_device(&mut rng, &public, &tdes_header(), &key);
        assert!(
            matches!(
                wrapped,
                Err(CryptoError::InvalidFormat { .. } | CryptoError::InvalidLength { .. })
            ),
            "{name}: {wrapped:?}"
        );
        let unwrapped = ecdh::unwrap_on_device(&device.pkcs8, &public, &delivery.key_block);
        assert!(
            matches!(
                unwrapped,
                Err(CryptoError::InvalidFormat { .. } | CryptoError::InvalidLength { .. })
            ),
            "{name}: {unwrapped:?}"
        );
        assert!(ecdh::p256_public_key(&public).is_err(), "{name}");
        assert!(ecdh::shared_secret(&[1; 32], &public).is_err(), "{name}");
    }
}

#[test]
fn other_refusals_are_typed() {
    let mut rng = StdRng::from_rng(OsRng).expect("rng");
    let device = device(&mut rng);
    let key = SecretBytes::from_slice(&h("6AC292FAA1315B4D858AB3A3D7D5933A"));
    // Only version D.
    let mut header = tdes_header();
    header.version = Version::B;
    assert!(matches!(
        ecdh::wrap_for_device(&mut rng, &device.spki, &header, &key),
        Err(CryptoError::Unsupported(_))
    ));
    let delivery = deliver(&mut rng, &device, key.expose());
    let version_b = format!("B{}", &delivery.key_block[1..]);
    assert!(matches!(
        ecdh::unwrap_on_device(&device.pkcs8, &delivery.ephemeral_public_key, &version_b),
        Err(CryptoError::InvalidFormat { .. })
    ));
    // Not a PKCS #8 P-256 private key.
    assert!(matches!(
        ecdh::unwrap_on_device(
            b"not a key",
            &delivery.ephemeral_public_key,
            &delivery.key_block
        ),
        Err(CryptoError::InvalidFormat { .. })
    ));
    // Private scalars out of range or of the wrong length.
    assert!(matches!(
        ecdh::shared_secret(&[0; 32], &delivery.ephemeral_public_key),
        Err(CryptoError::OutOfRange { .. })
    ));
    assert!(matches!(
        ecdh::shared_secret(&[0xFF; 32], &delivery.ephemeral_public_key),
        Err(CryptoError::OutOfRange { .. })
    ));
    assert!(matches!(
        ecdh::shared_secret(&[1; 31], &delivery.ephemeral_public_key),
        Err(CryptoError::InvalidLength { .. })
    ));
    // A certificate that is not one.
    assert!(ecdh::p256_public_key_from_certificate(b"not a certificate").is_err());
    assert!(ecdh::p256_public_key_from_certificate(&device.spki).is_err());
}

/// The device's public key (part of the KBPK derivation) is the one its PKCS #8 key carries
/// (RFC 5915), or computed when it carries none; a carried key that is not the device's makes
/// the block's MAC fail, and a key of another curve is refused.
#[test]
fn the_device_public_key_comes_from_its_pkcs8_key_or_is_computed() {
    use p256::pkcs8::der::Encode;
    use p256::pkcs8::der::asn1::{AnyRef, ObjectIdentifier};
    use p256::pkcs8::{AlgorithmIdentifierRef, DecodePrivateKey, PrivateKeyInfo};

    const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
    let mut rng = StdRng::from_rng(OsRng).expect("rng");
    let device = device(&mut rng);
    let other = self::device(&mut rng);
    let key = h("6AC292FAA1315B4D858AB3A3D7D5933A");
    let delivery = deliver(&mut rng, &device, &key);
    let scalar = p256::SecretKey::from_pkcs8_der(&device.pkcs8)
        .expect("pkcs8")
        .to_bytes();
    let pkcs8 = |public_key: Option<&[u8]>, curve: &ObjectIdentifier| -> Vec<u8> {
        let ec = sec1::EcPrivateKey {
            private_key: scalar.as_slice(),
            parameters: None,
            public_key,
        }
        .to_der()
        .expect("sec1");
        let algorithm = AlgorithmIdentifierRef {
            oid: p256::elliptic_curve::ALGORITHM_OID,
            parameters: Some(AnyRef::from(curve)),
        };
        PrivateKeyInfo::new(algorithm, &ec).to_der().expect("pkcs8")
    };
    let open = |pkcs8: &[u8]| {
        ecdh::unwrap_on_device(pkcs8, &delivery.ephemeral_public_key, &delivery.key_block)
    };

    let (_, without) = open(&pkcs8(None, &P256)).expect("computed public key");
    assert_eq!(without.expose(), key.as_slice());
    let (_, with) = open(&pkcs8(Some(&device.point), &P256)).expect("carried public key");
    assert_eq!(with.expose(), key.as_slice());
    assert!(matches!(
        open(&pkcs8(Some(&other.point), &P256)),
        Err(CryptoError::VerificationFailed(_))
    ));
    assert!(matches!(
        open(&pkcs8(None, &P384)),
        Err(CryptoError::InvalidFormat { .. })
    ));
}
