//! Known answers from published sources, run through the same functions the `Sealer`
//! uses (`primitive::x25519`, `SealingKeyPair`, `primitive::hkdf_sha256`,
//! `primitive::cipher` + `seal_with_nonce` / `open_with_nonce`). Every expected value is
//! copied from its source, never computed with this crate.
//!
//! Sources:
//! - RFC 7748 (Elliptic Curves for Security), §5.2 "Test Vectors" (two single X25519
//!   calls; the iterated test after 1, 1,000 and 1,000,000 iterations) and §6.1
//!   "Curve25519" (the Diffie-Hellman example of Alice and Bob).
//! - RFC 5869 (HKDF), Appendix A, test cases 1, 2 and 3 (the SHA-256 ones).
//! - D. McGrew, J. Viega, "The Galois/Counter Mode of Operation (GCM)", revised submission
//!   to NIST (2005), Appendix B "AES Test Vectors", Test Case 16 (AES-256, 96-bit IV,
//!   20 bytes of AAD, 60 bytes of plaintext).
//! - Project Wycheproof (C2SP/wycheproof), `testvectors_v1/aes_gcm_test.json`: every test
//!   with a 256-bit key, 96-bit IV and 128-bit tag, valid and invalid
//!   (`tests/data/wycheproof_aes_256_gcm_96.json`, copied unchanged; commit in the file).
//! - Project Wycheproof, `testvectors_v1/x25519_test.json` as of commit
//!   dac1dd4729fd1f8dd9e1e9f3dce51d783da6c166 (file last changed in
//!   531e301a6b5dddf7313a106bca1dd1dc04aed310), tcId 69 to 82 ("public key with low
//!   order", flags LowOrderPublic + ZeroSharedSecret, one private key for all): the
//!   published low-order u-coordinates, canonical and not.

use serde::Deserialize;
use x25519_dalek::StaticSecret;

use crate::SealError;
use crate::keys::SealingKeyPair;
use crate::primitive::{self, cipher, hkdf_sha256, open_with_nonce, seal_with_nonce, x25519};

fn h(text: &str) -> Vec<u8> {
    hex::decode(text.split_whitespace().collect::<String>()).expect("hex")
}

fn h32(text: &str) -> [u8; 32] {
    h(text).try_into().expect("32 bytes")
}

// ------------------------------------------------------------------------------------------
// X25519: RFC 7748
// ------------------------------------------------------------------------------------------

/// RFC 7748 §5.2, the two single-call vectors (input scalar, input u-coordinate, output
/// u-coordinate). The scalars are not clamped in the vectors; X25519 clamps them, as
/// `StaticSecret` does.
#[test]
fn x25519_rfc7748_5_2_vectors() {
    let vectors = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (scalar, u, expected) in vectors {
        let secret = StaticSecret::from(h32(scalar));
        let shared = x25519(&secret, &h32(u)).expect("contributory");
        assert_eq!(shared.as_bytes(), &h32(expected), "scalar {scalar}");
    }
}

/// RFC 7748 §5.2, the iterated test: k = u = 9; repeat `r = X25519(k, u); u = k; k = r`.
fn x25519_iterated(iterations: u32) -> [u8; 32] {
    let mut nine = [0_u8; 32];
    nine[0] = 9;
    let (mut k, mut u) = (nine, nine);
    for _ in 0..iterations {
        let result = x25519(&StaticSecret::from(k), &u).expect("contributory");
        u = k;
        k = *result.as_bytes();
    }
    k
}

#[test]
fn x25519_rfc7748_5_2_iterated_1_and_1000() {
    assert_eq!(
        x25519_iterated(1),
        h32("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
    );
    assert_eq!(
        x25519_iterated(1_000),
        h32("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    );
}

#[test]
#[ignore = "1,000,000 X25519 calls: minutes in a debug build"]
fn x25519_rfc7748_5_2_iterated_1000000() {
    assert_eq!(
        x25519_iterated(1_000_000),
        h32("7c3911e0ab2586fd864497297e575e6f3bc601c0883c30df5f4dd2d24f665424")
    );
}

const ALICE_SECRET: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const BOB_SECRET: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const SHARED_K: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

/// The RFC 7748 §6.1 key pairs as the `Sealer` holds them.
pub(super) fn alice() -> SealingKeyPair {
    SealingKeyPair::from_secret(StaticSecret::from(h32(ALICE_SECRET)))
}

pub(super) fn bob() -> SealingKeyPair {
    SealingKeyPair::from_secret(StaticSecret::from(h32(BOB_SECRET)))
}

pub(super) fn rfc7748_shared_k() -> [u8; 32] {
    h32(SHARED_K)
}

/// RFC 7748 §6.1: each public key from its private key, and the shared secret K from
/// either side, through `SealingKeyPair` (what `Sealer` derives pair keys with).
#[test]
fn x25519_rfc7748_6_1_diffie_hellman() {
    let (alice, bob) = (alice(), bob());
    assert_eq!(alice.public_key().as_bytes(), &h32(ALICE_PUBLIC));
    assert_eq!(bob.public_key().as_bytes(), &h32(BOB_PUBLIC));
    let from_alice = alice
        .shared_secret(bob.public_key().as_bytes())
        .expect("contributory");
    let from_bob = bob
        .shared_secret(alice.public_key().as_bytes())
        .expect("contributory");
    assert_eq!(from_alice.as_bytes(), &h32(SHARED_K));
    assert_eq!(from_bob.as_bytes(), &h32(SHARED_K));
}

/// Wycheproof x25519 tcId 69-82: with their private key, every published low-order
/// public key (the shared value is all zero) is refused.
#[test]
fn x25519_wycheproof_low_order_public_keys_are_refused() {
    let private = h32("786a33a4f7af297a20e7642925932bf509e7070fa1bc36986af1eb13f4f50b55");
    let low_order = [
        (
            69,
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            70,
            "0100000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            71,
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ),
        (
            72,
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        ),
        (
            73,
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        ),
        (
            74,
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ),
        (
            75,
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ),
        (
            76,
            "0000000000000000000000000000000000000000000000000000000000000080",
        ),
        (
            77,
            "0100000000000000000000000000000000000000000000000000000000000080",
        ),
        (
            78,
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
        (
            79,
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
        ),
        (
            80,
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
        ),
        (
            81,
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
        (
            82,
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
    ];
    let pair = SealingKeyPair::from_secret(StaticSecret::from(private));
    for (tc_id, public) in low_order {
        assert!(
            pair.shared_secret(&h32(public)).is_none(),
            "Wycheproof x25519 tcId {tc_id} accepted"
        );
    }
}

// ------------------------------------------------------------------------------------------
// HKDF-SHA256: RFC 5869 Appendix A
// ------------------------------------------------------------------------------------------

/// RFC 5869 A.1-A.3 (IKM, salt, info, L, OKM), through `hkdf_sha256`, the helper
/// `pair_key` derives with. Test case 3 has an empty salt and info.
#[test]
fn hkdf_sha256_rfc5869_appendix_a() {
    let cases = [
        (
            "A.1",
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            "3cb25f25faacd57a90434f64d0362f2a 2d2d0a90cf1a5a4c5db02d56ecc4c5bf
             34007208d5b887185865",
        ),
        (
            "A.2",
            "000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f
             202122232425262728292a2b2c2d2e2f 303132333435363738393a3b3c3d3e3f
             404142434445464748494a4b4c4d4e4f",
            "606162636465666768696a6b6c6d6e6f 707172737475767778797a7b7c7d7e7f
             808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f
             a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
            "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf c0c1c2c3c4c5c6c7c8c9cacbcccdcecf
             d0d1d2d3d4d5d6d7d8d9dadbdcdddedf e0e1e2e3e4e5e6e7e8e9eaebecedeeef
             f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
            "b11e398dc80327a1c8e7f78c596a4934 4f012eda2d4efad8a050cc4c19afa97c
             59045a99cac7827271cb41c65e590e09 da3275600c2f09b8367793a9aca3db71
             cc30c58179ec3e87c14c01d5c1f3434f 1d87",
        ),
        (
            "A.3",
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "",
            "",
            "8da4e775a563c18f715f802a063c5a31 b8a11f5c5ee1879ec3454e5f3c738d2d
             9d201395faa4b61a96c8",
        ),
    ];
    for (name, ikm, salt, info, okm) in cases {
        let expected = h(okm);
        let mut out = vec![0_u8; expected.len()];
        hkdf_sha256(&h(salt), &h(ikm), &h(info), &mut out).expect("length");
        assert_eq!(out, expected, "RFC 5869 {name}");
    }
}

#[test]
fn hkdf_sha256_refuses_more_than_255_blocks() {
    let mut out = vec![0_u8; 255 * 32 + 1];
    assert_eq!(
        hkdf_sha256(b"salt", b"ikm", b"info", &mut out),
        Err(SealError::TooLong)
    );
}

// ------------------------------------------------------------------------------------------
// AES-256-GCM: McGrew-Viega Test Case 16, Wycheproof
// ------------------------------------------------------------------------------------------

/// McGrew-Viega, GCM specification, Appendix B, Test Case 16: encryption gives C || T,
/// decryption gives P back, and a changed tag, ciphertext, AAD or IV is refused.
#[test]
fn aes_256_gcm_mcgrew_viega_test_case_16() {
    let key = h32("feffe9928665731c6d6a8f9467308308 feffe9928665731c6d6a8f9467308308");
    let plaintext = h(
        "d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72
                       1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b39",
    );
    let aad = h("feedfacedeadbeeffeedfacedeadbeef abaddad2");
    let iv: [u8; 12] = h("cafebabefacedbaddecaf888").try_into().expect("96 bits");
    let ciphertext = h(
        "522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa
                        8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662",
    );
    let tag = h("76fc6ece0f4e1768cddf8853bb2d551b");
    let expected = [ciphertext, tag].concat();

    let gcm = cipher(&key);
    assert_eq!(
        seal_with_nonce(&gcm, &iv, &aad, &plaintext).expect("seal"),
        expected
    );
    assert_eq!(
        open_with_nonce(&gcm, &iv, &aad, &expected)
            .expect("open")
            .as_slice(),
        plaintext.as_slice()
    );

    let last = expected.len() - 1;
    let mut bad_tag = expected.clone();
    bad_tag[last] ^= 0x01;
    let mut bad_ciphertext = expected.clone();
    bad_ciphertext[0] ^= 0x80;
    let mut bad_aad = aad.clone();
    bad_aad[19] ^= 0x01;
    let mut bad_iv = iv;
    bad_iv[11] ^= 0x01;
    for (what, iv, aad, sealed) in [
        ("tag", iv, &aad, &bad_tag),
        ("ciphertext", iv, &aad, &bad_ciphertext),
        ("aad", iv, &bad_aad, &expected),
        ("iv", bad_iv, &aad, &expected),
    ] {
        assert_eq!(
            open_with_nonce(&gcm, &iv, aad, sealed).err(),
            Some(SealError::Invalid),
            "changed {what} opened"
        );
    }
    assert_eq!(
        open_with_nonce(&gcm, &iv, &aad, &expected[..15]).err(),
        Some(SealError::Invalid),
        "shorter than a tag"
    );
}

#[derive(Deserialize)]
struct WycheproofFile {
    source: String,
    tests: Vec<WycheproofTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WycheproofTest {
    tc_id: u32,
    key: String,
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: String,
}

/// Wycheproof AES-GCM, every 256-bit-key, 96-bit-IV, 128-bit-tag test: "valid" ones seal
/// to ct || tag and open to msg; "invalid" ones (modified tags and the like) never open.
#[test]
fn aes_256_gcm_wycheproof() {
    let file: WycheproofFile = serde_json::from_str(include_str!(
        "../../tests/data/wycheproof_aes_256_gcm_96.json"
    ))
    .expect("vector file");
    assert!(file.source.contains("C2SP/wycheproof"));
    let (mut valid, mut invalid) = (0, 0);
    for test in &file.tests {
        let key = h32(&test.key);
        let iv: [u8; 12] = h(&test.iv).try_into().expect("96-bit IV");
        let (aad, msg) = (h(&test.aad), h(&test.msg));
        let sealed = [h(&test.ct), h(&test.tag)].concat();
        let gcm = cipher(&key);
        let opened = open_with_nonce(&gcm, &iv, &aad, &sealed);
        match test.result.as_str() {
            "valid" => {
                valid += 1;
                assert_eq!(
                    seal_with_nonce(&gcm, &iv, &aad, &msg).expect("seal"),
                    sealed,
                    "tcId {}",
                    test.tc_id
                );
                assert_eq!(
                    opened.expect("valid test opens").as_slice(),
                    msg.as_slice(),
                    "tcId {}",
                    test.tc_id
                );
            }
            "invalid" => {
                invalid += 1;
                assert_eq!(
                    opened.err(),
                    Some(SealError::Invalid),
                    "tcId {}",
                    test.tc_id
                );
            }
            other => panic!("tcId {}: unexpected result {other}", test.tc_id),
        }
    }
    assert_eq!((valid, invalid), (39, 27));
}

/// The label the construction is named by, as specified.
#[test]
fn label_is_the_specified_one() {
    assert_eq!(primitive::LABEL, b"mpos-seal v1");
}
