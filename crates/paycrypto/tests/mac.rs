//! Known-answer and property tests for `paycrypto::mac`.

use paycrypto::mac::{MacAlgorithm, Padding, iso9797_alg1, pad, retail_mac_x919};
use paycrypto::{CryptoError, SecretBytes};
use proptest::prelude::*;

fn h(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).expect("hex")
}

fn key(text: &str) -> SecretBytes {
    SecretBytes::new(h(text))
}

// ---------------------------------------------------------------------------------------------
// ISO 9797-1 padding
// ---------------------------------------------------------------------------------------------

/// Expected values from the public test suite of psec (github.com/knovichikhin/psec,
/// tests/test_mac.py, `test_pad_iso_1/2/3`, commit 90ccbf3a).
#[test]
fn padding_methods_psec_suite() {
    let cases = [
        ("1234", Padding::Method1, "1234000000000000"),
        ("1234567890123456", Padding::Method1, "1234567890123456"),
        ("1234", Padding::Method2, "1234800000000000"),
        ("12345678901234", Padding::Method2, "1234567890123480"),
        (
            "1234567890123456",
            Padding::Method2,
            "12345678901234568000000000000000",
        ),
        ("1234", Padding::Method3, "00000000000000101234000000000000"),
        (
            "1234567890123456",
            Padding::Method3,
            "00000000000000401234567890123456",
        ),
    ];
    for (data, padding, expected) in cases {
        assert_eq!(
            pad(&h(data), 8, padding).expect("pad"),
            h(expected),
            "{data} {padding:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ISO 9797-1 MAC algorithm 1 (CBC-MAC)
// ---------------------------------------------------------------------------------------------

/// FIPS PUB 113 (Computer Data Authentication), Appendix: DES key 0123456789ABCDEF, data
/// "7654321 Now is the time for " zero-padded; the full DAC is F1D30F6849312CA4 (the
/// standard's 32-bit MAC is F1D30F68). Also used as `output1` in Bouncy Castle's MacTest.
#[test]
fn alg1_des_fips113() {
    let k = key("0123456789ABCDEF");
    let data = b"7654321 Now is the time for ";
    assert_eq!(
        iso9797_alg1(&k, data, Padding::Method1, 8).expect("mac"),
        h("F1D30F6849312CA4")
    );
    assert_eq!(
        iso9797_alg1(&k, data, Padding::Method1, 4).expect("mac"),
        h("F1D30F68")
    );
    MacAlgorithm::Iso9797Alg1(Padding::Method1)
        .verify(&k, data, &h("F1D30F68"))
        .expect("verify");
}

/// psec public test suite (knovichikhin/psec tests/test_mac.py `test_generate_cbc_mac`):
/// TDES key AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB, data "hello world", padding methods 1, 2, 3.
#[test]
fn alg1_tdes_psec_suite() {
    let k = key("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB");
    let cases = [
        (Padding::Method1, "68D9038F23360DF3"),
        (Padding::Method2, "32DC341271ACCD00"),
        (Padding::Method3, "CDACA53E2DAA5412"),
    ];
    for (padding, expected) in cases {
        assert_eq!(
            iso9797_alg1(&k, b"hello world", padding, 8).expect("mac"),
            h(expected),
            "{padding:?}"
        );
        assert_eq!(
            iso9797_alg1(&k, b"hello world", padding, 4).expect("mac"),
            h(&expected[..8]),
            "{padding:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ISO 9797-1 MAC algorithm 3 / ANSI X9.19 retail MAC
// ---------------------------------------------------------------------------------------------

/// Bouncy Castle ISO9797Alg3MacTest (bc-java core/src/test/.../ISO9797Alg3MacTest.java):
/// key 7CA110454A1A6E570131D9619DC1376E, "Hello World !!!!" (block-aligned, no padding added
/// by method 1) → F09B856213BAB83B.
#[test]
fn alg3_bouncy_castle() {
    let k = key("7CA110454A1A6E570131D9619DC1376E");
    assert_eq!(
        retail_mac_x919(&k, b"Hello World !!!!", Padding::Method1, 8).expect("mac"),
        h("F09B856213BAB83B")
    );
}

/// ICAO Doc 9303 Part 11, Appendix D (worked examples of BAC and secure messaging), D.3 and
/// D.4: retail MAC with padding method 2.
#[test]
fn alg3_icao_9303_part11_appendix_d() {
    let bac = key("7962D9ECE03D1ACD4C76089DCE131543");
    // D.3: MAC over E.IFD and over E.IC.
    let cases = [
        (
            &bac,
            "72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2",
            "5F1448EEA8AD90A7",
        ),
        (
            &bac,
            "46B9342A41396CD7386BF5803104D7CEDC122B9132139BAF2EEDC94EE178534F",
            "2F2D235D074D7449",
        ),
    ];
    for (k, data, expected) in cases {
        assert_eq!(
            retail_mac_x919(k, &h(data), Padding::Method2, 8).expect("mac"),
            h(expected)
        );
    }
    // D.4.1–D.4.3: secure messaging (KS_MAC, SSC-prefixed data).
    let sm = key("F1CB1F1FB5ADF208806B89DC579DC1F8");
    let cases = [
        (
            "887022120C06C2270CA4020C800000008709016375432908C044F6",
            "BF8B92D635FF24F8",
        ),
        ("887022120C06C22899029000", "FA855A5D4C50A8ED"),
        ("887022120C06C2290CB0000080000000970104", "ED6705417E96BA55"),
        (
            "887022120C06C22A8709019FF0EC34F992265199029000",
            "AD55CC17140B2DED",
        ),
        ("887022120C06C22B0CB0000480000000970112", "2EA28A70F3C7B535"),
        (
            "887022120C06C22C871901FB9235F4E4037F2327DCC8964F1F9B8C30F42C8E2FFF224A99029000",
            "C8B2787EAEA07D74",
        ),
    ];
    for (data, expected) in cases {
        assert_eq!(
            retail_mac_x919(&sm, &h(data), Padding::Method2, 8).expect("mac"),
            h(expected),
            "{data}"
        );
        MacAlgorithm::Iso9797Alg3(Padding::Method2)
            .verify(&sm, &h(data), &h(expected))
            .expect("verify");
    }
}

/// psec public test suite (knovichikhin/psec tests/test_mac.py `test_generate_retail_mac`):
/// K1 = "AAAAAAAA", K2 = "BBBBBBBB" (ASCII), data "hello world", padding methods 1, 2, 3.
#[test]
fn alg3_psec_suite() {
    let k = SecretBytes::new(b"AAAAAAAABBBBBBBB".to_vec());
    let cases = [
        (Padding::Method1, "3DDE5C5511661CBF"),
        (Padding::Method2, "E16941032C3BC7D4"),
        (Padding::Method3, "BA90F750EF43F668"),
    ];
    for (padding, expected) in cases {
        assert_eq!(
            retail_mac_x919(&k, b"hello world", padding, 8).expect("mac"),
            h(expected),
            "{padding:?}"
        );
        assert_eq!(
            retail_mac_x919(&k, b"hello world", padding, 4).expect("mac"),
            h(&expected[..8])
        );
    }
}

// ---------------------------------------------------------------------------------------------
// CMAC
// ---------------------------------------------------------------------------------------------

/// RFC 4493 section 4, examples 1–4 (= NIST SP 800-38B D.1, AES-128).
#[test]
fn aes_cmac_rfc4493() {
    let k = key("2b7e151628aed2a6abf7158809cf4f3c");
    let m = "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51 \
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710";
    let m = h(m);
    let cases = [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ];
    for (len, expected) in cases {
        assert_eq!(
            MacAlgorithm::AesCmac
                .generate(&k, &m[..len], 16)
                .expect("mac"),
            h(expected),
            "len {len}"
        );
        MacAlgorithm::AesCmac
            .verify(&k, &m[..len], &h(expected))
            .expect("verify");
        MacAlgorithm::AesCmac
            .verify(&k, &m[..len], &h(&expected[..8]))
            .expect("verify truncated");
    }
}

/// NIST SP 800-38B Appendix D.2 (AES-192) and D.3 (AES-256), examples 5, 8, 9 and 12.
#[test]
fn aes_cmac_sp800_38b_192_256() {
    let m = h(
        "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51 \
               30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710",
    );
    let k192 = key("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b");
    let k256 = key("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
    let cases = [
        (&k192, 0, "d17ddf46adaacde531cac483de7a9367"),
        (&k192, 64, "a1d5df0eed790f794d77589659f39a11"),
        (&k256, 0, "028962f61b7bf89efc6b551f4667d983"),
        (&k256, 64, "e1992190549f6ed5696a2c056c315410"),
    ];
    for (k, len, expected) in cases {
        assert_eq!(
            MacAlgorithm::AesCmac
                .generate(k, &m[..len], 16)
                .expect("mac"),
            h(expected),
            "{expected}"
        );
    }
}

/// NIST SP 800-38B Appendix D.4 (three-key TDEA, examples 13–16, values as corrected by the
/// NIST errata) and D.5 (two-key TDEA, examples 17–20).
#[test]
fn tdes_cmac_sp800_38b() {
    let m = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
    let three = key("8aa83bf8cbda1062 0bc1bf19fbb6cd58 bc313d4a371ca8b5");
    let two = key("4cf15134a2850dd5 8a3d10ba80570d38");
    let cases = [
        (&three, 0, "b7a688e122ffaf95"),
        (&three, 8, "8e8f293136283797"),
        (&three, 20, "743ddbe0ce2dc2ed"),
        (&three, 32, "33e6b1092400eae5"),
        (&two, 0, "bd2ebf9a3ba00361"),
        (&two, 8, "4ff2ab813c53ce83"),
        (&two, 20, "62dd1b471902bd4e"),
        (&two, 32, "31b1e431dabc4eb8"),
    ];
    for (k, len, expected) in cases {
        assert_eq!(
            MacAlgorithm::TdesCmac
                .generate(k, &m[..len], 8)
                .expect("mac"),
            h(expected),
            "{expected}"
        );
        MacAlgorithm::TdesCmac
            .verify(k, &m[..len], &h(expected))
            .expect("verify");
    }
}

// ---------------------------------------------------------------------------------------------
// HMAC-SHA-256
// ---------------------------------------------------------------------------------------------

/// RFC 4231 section 4, test cases 1–7 (HMAC-SHA-256 column; case 5 truncated to 128 bits).
#[test]
fn hmac_sha256_rfc4231() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
        (vec![0x0b; 20], b"Hi There".to_vec(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (vec![0xaa; 20], vec![0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (
            h("0102030405060708090a0b0c0d0e0f10111213141516171819"),
            vec![0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (vec![0x0c; 20], b"Test With Truncation".to_vec(), "a3b6167473100ee06e0c796c2955552b"),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. \
The key needs to be hashed before being used by the HMAC algorithm."
                .to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (k, data, expected) in cases {
        let k = SecretBytes::new(k);
        let expected = h(expected);
        assert_eq!(
            MacAlgorithm::HmacSha256
                .generate(&k, &data, expected.len())
                .expect("mac"),
            expected
        );
        MacAlgorithm::HmacSha256
            .verify(&k, &data, &expected)
            .expect("verify");
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and properties
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_mac_is_verification_failed() {
    let k = key("2b7e151628aed2a6abf7158809cf4f3c");
    let err = MacAlgorithm::AesCmac
        .verify(&k, b"", &h("bb1d6929e95937287fa37d129b756747"))
        .expect_err("mismatch");
    assert_eq!(err, CryptoError::VerificationFailed("MAC"));
    assert_eq!(err.code(), "verification_failed");
    // Too short a MAC is refused as a length error, not silently accepted.
    assert!(matches!(
        MacAlgorithm::AesCmac.verify(&k, b"", &h("bb1d69")),
        Err(CryptoError::InvalidLength { .. })
    ));
    assert!(matches!(
        MacAlgorithm::AesCmac.verify(&k, b"", &[]),
        Err(CryptoError::InvalidLength { .. })
    ));
}

fn algorithms() -> impl Strategy<Value = (MacAlgorithm, usize)> {
    let padding = prop_oneof![
        Just(Padding::Method1),
        Just(Padding::Method2),
        Just(Padding::Method3)
    ];
    prop_oneof![
        (
            padding.clone(),
            prop_oneof![Just(8_usize), Just(16), Just(24)]
        )
            .prop_map(|(p, k)| (MacAlgorithm::Iso9797Alg1(p), k)),
        padding.prop_map(|p| (MacAlgorithm::Iso9797Alg3(p), 16)),
        prop_oneof![Just(16_usize), Just(24), Just(32)].prop_map(|k| (MacAlgorithm::AesCmac, k)),
        prop_oneof![Just(16_usize), Just(24)].prop_map(|k| (MacAlgorithm::TdesCmac, k)),
        (1_usize..80).prop_map(|k| (MacAlgorithm::HmacSha256, k)),
    ]
}

proptest! {
    #[test]
    fn verify_accepts_own_mac_and_rejects_bit_flips(
        (alg, key_len) in algorithms(),
        key_seed in proptest::collection::vec(any::<u8>(), 80),
        data in proptest::collection::vec(any::<u8>(), 0..100),
        len_pick in any::<usize>(),
        flip in any::<usize>(),
    ) {
        let k = SecretBytes::from_slice(&key_seed[..key_len]);
        let mac_len = 4 + len_pick % (alg.full_len() - 3);
        let mac = alg.generate(&k, &data, mac_len).expect("mac");
        prop_assert_eq!(mac.len(), mac_len);
        prop_assert!(alg.verify(&k, &data, &mac).is_ok());
        let mut bad = mac.clone();
        let bit = flip % (bad.len() * 8);
        bad[bit / 8] ^= 1 << (bit % 8);
        prop_assert_eq!(alg.verify(&k, &data, &bad), Err(CryptoError::VerificationFailed("MAC")));
        if !data.is_empty() && mac_len == alg.full_len() {
            let mut tampered = data.clone();
            let bit = flip % (tampered.len() * 8);
            tampered[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(alg.verify(&k, &tampered, &mac), Err(CryptoError::VerificationFailed("MAC")));
        }
    }

    #[test]
    fn arbitrary_keys_and_lengths_never_panic(
        key_bytes in proptest::collection::vec(any::<u8>(), 0..40),
        data in proptest::collection::vec(any::<u8>(), 0..40),
        mac in proptest::collection::vec(any::<u8>(), 0..40),
        mac_len in 0_usize..40,
    ) {
        let k = SecretBytes::new(key_bytes);
        for p in [Padding::Method1, Padding::Method2, Padding::Method3] {
            for alg in [MacAlgorithm::Iso9797Alg1(p), MacAlgorithm::Iso9797Alg3(p)] {
                let _ = alg.generate(&k, &data, mac_len);
                let _ = alg.verify(&k, &data, &mac);
            }
        }
        for alg in [MacAlgorithm::AesCmac, MacAlgorithm::TdesCmac, MacAlgorithm::HmacSha256] {
            let _ = alg.generate(&k, &data, mac_len);
            let _ = alg.verify(&k, &data, &mac);
        }
    }
}
