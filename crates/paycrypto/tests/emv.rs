//! Known-answer and property tests for `paycrypto::emv`.
//!
//! Published vectors: the HSM-checked test suite of pyemv (github.com/knovichikhin/pyemv,
//! tests/test_kd_hsm.py and tests/test_cvn_hsm.py, commit cf6b82d7). That suite states the
//! derived keys by their 2-byte key check values (TDES encryption of zeros), so the KCV is
//! computed here with the crate's TDES primitive.

use paycrypto::SecretBytes;
use paycrypto::emv::{
    SessionKeyDerivation, arpc_method1, arpc_method2, derive_ac_session_key,
    derive_icc_mk_option_a, derive_icc_mk_option_b, derive_session_key_csk, generate_ac, verify_ac,
    visa_cvn10_arqc, visa_cvn18_arqc,
};
use paycrypto::mac::Padding;
use paycrypto::pin::Pan;
use paycrypto::primitives::tdes_encrypt_ecb;
use proptest::prelude::*;

fn h(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).expect("hex")
}

fn arr<const N: usize>(text: &str) -> [u8; N] {
    h(text).try_into().expect("length")
}

fn kcv(key: &SecretBytes) -> String {
    hex::encode_upper(&tdes_encrypt_ecb(key.expose(), &[0; 8]).expect("kcv")[..2])
}

fn imk() -> SecretBytes {
    SecretBytes::new(h("0123456789ABCDEFFEDCBA9876543210"))
}

fn pan(text: &str) -> Pan {
    Pan::new(text).expect("pan")
}

/// pyemv tests/test_kd_hsm.py `test_derive_icc_mk_a_psn` and `test_derive_common_sk`:
/// IMK KCV 08D7; option A, PAN 12345678901234567, PSN 45 → ICC MK KCV FF08; CSK with
/// R = 1234567890123456 → KCV DF82; ARQC over 0123456789ABCDEF0123456789ABCDEF (padding
/// method 2) → 19C1FBC83EBDC0D5; ARPC method 1 (ARC 0000) under the ICC MK → 78A372523FA35A03
/// and under the session key → C3620580668E5B65.
#[test]
fn option_a_with_psn_csk_arqc_arpc1() {
    let imk = imk();
    assert_eq!(kcv(&imk), "08D7");
    let mk = derive_icc_mk_option_a(&imk, &pan("12345678901234567"), Some("45")).expect("mk");
    assert_eq!(kcv(&mk), "FF08");
    let sk = derive_session_key_csk(&mk, &arr("1234567890123456")).expect("sk");
    assert_eq!(kcv(&sk), "DF82");
    let data = h("0123456789ABCDEF0123456789ABCDEF");
    let arqc = generate_ac(&sk, &data, Padding::Method2).expect("arqc");
    assert_eq!(arqc.to_vec(), h("19C1FBC83EBDC0D5"));
    verify_ac(&sk, &data, Padding::Method2, &arqc).expect("verify");
    assert_eq!(
        arpc_method1(&mk, &arqc, &[0, 0]).expect("arpc").to_vec(),
        h("78A372523FA35A03")
    );
    assert_eq!(
        arpc_method1(&sk, &arqc, &[0, 0]).expect("arpc").to_vec(),
        h("C3620580668E5B65")
    );
}

/// pyemv `test_derive_icc_mk_a_no_psn`: PAN 12345678901234567, PSN absent (00) → CSK KCV
/// 3F4F, ARQC 8698A7319324FD93, ARPC method 1 (ARC 0000) under the ICC MK → BEA11C8F4A47EF6F.
#[test]
fn option_a_without_psn() {
    let mk = derive_icc_mk_option_a(&imk(), &pan("12345678901234567"), None).expect("mk");
    let sk = derive_session_key_csk(&mk, &arr("1234567890123456")).expect("sk");
    assert_eq!(kcv(&sk), "3F4F");
    let arqc = generate_ac(
        &sk,
        &h("0123456789ABCDEF0123456789ABCDEF"),
        Padding::Method2,
    )
    .expect("arqc");
    assert_eq!(arqc.to_vec(), h("8698A7319324FD93"));
    assert_eq!(
        arpc_method1(&mk, &arqc, &[0, 0]).expect("arpc").to_vec(),
        h("BEA11C8F4A47EF6F")
    );
    // The explicit PSN "00" is the same as no PSN.
    let mk00 = derive_icc_mk_option_a(&imk(), &pan("12345678901234567"), Some("00")).expect("mk");
    assert_eq!(mk00, mk);
}

/// pyemv option B cases: 16-digit PAN falls back to option A (KCV BAB0, CSK BC19, ARQC
/// 0CE77D211CB5459A, ARPC method 2 with CSU 00000000 → 8CD9AA5D); 17 digits with PSN 45
/// (0BAF, 4262, 5760EE07B4FA65D1, 106B81D9); 17 digits without PSN (4626, 7F36,
/// 0BAA251EA8989442, C1C41F3A); 18 digits with PSN 00 (C2F3, 7C35, DC95BCE3EBBE0296, ECCA0C4B).
#[test]
fn option_b_cases() {
    let cases = [
        (
            "1234567890123456",
            None,
            "BAB0",
            "BC19",
            "0CE77D211CB5459A",
            "8CD9AA5D",
        ),
        (
            "12345678901234567",
            Some("45"),
            "0BAF",
            "4262",
            "5760EE07B4FA65D1",
            "106B81D9",
        ),
        (
            "12345678901234567",
            None,
            "4626",
            "7F36",
            "0BAA251EA8989442",
            "C1C41F3A",
        ),
        (
            "123456789012345679",
            Some("00"),
            "C2F3",
            "7C35",
            "DC95BCE3EBBE0296",
            "ECCA0C4B",
        ),
    ];
    for (pan_text, psn, mk_kcv, sk_kcv, arqc_hex, arpc_hex) in cases {
        let mk = derive_icc_mk_option_b(&imk(), &pan(pan_text), psn).expect("mk");
        assert_eq!(kcv(&mk), mk_kcv, "{pan_text}");
        let sk = derive_session_key_csk(&mk, &arr("1234567890123456")).expect("sk");
        assert_eq!(kcv(&sk), sk_kcv, "{pan_text}");
        let arqc = generate_ac(
            &sk,
            &h("0123456789ABCDEF0123456789ABCDEF"),
            Padding::Method2,
        )
        .expect("arqc");
        assert_eq!(arqc.to_vec(), h(arqc_hex), "{pan_text}");
        let arpc = arpc_method2(&sk, &arqc, &[0; 4], &[]).expect("arpc");
        assert_eq!(arpc.to_vec(), h(arpc_hex), "{pan_text}");
    }
}

/// pyemv `test_derive_icc_mk_b_sha_pad`: PAN 000000000000000005, PSN 23, whose SHA-1 digest
/// has fewer than 16 decimal digits (letters decimalized) → ICC MK KCV DD73; CSK with
/// R = 001C000000000000 → 04F8; ARQC over the CDOL data → 8CAD6F2489C640B1; ARPC method 2
/// with CSU 00000000 and proprietary data 12345678 → E39F1876.
#[test]
fn option_b_decimalization_of_letters() {
    let mk = derive_icc_mk_option_b(&imk(), &pan("000000000000000005"), Some("23")).expect("mk");
    assert_eq!(kcv(&mk), "DD73");
    let sk =
        derive_ac_session_key(&mk, SessionKeyDerivation::EmvCsk { atc: [0x00, 0x1C] }).expect("sk");
    assert_eq!(kcv(&sk), "04F8");
    let data =
        h("0000000040000000000000000124800004800001241911050152BF45851800001C06011203A0B800");
    let arqc = generate_ac(&sk, &data, Padding::Method2).expect("arqc");
    assert_eq!(arqc.to_vec(), h("8CAD6F2489C640B1"));
    let arpc = arpc_method2(&sk, &arqc, &[0; 4], &h("12345678")).expect("arpc");
    assert_eq!(arpc.to_vec(), h("E39F1876"));
}

/// CDOL1 data of the pyemv CVN tests: 9F02 000000004000, 9F03 000000000000, 9F1A 0124,
/// 95 8000048000, 5F2A 0124, 9A 191105, 9C 01, 9F37 52BF4585, 82 1800, 9F36 001C.
const VISA_CDOL: &str =
    "000000004000 000000000000 0124 8000048000 0124 191105 01 52BF4585 1800 001C";

/// pyemv tests/test_cvn_hsm.py `test_visa_cvn10`: IMK-AC 0123456789ABCDEFFEDCBA9876543210,
/// PAN 1234567890123456, PSN 00 → ICC MK KCV BAB0; ARQC over CDOL ‖ CVR 03A06010 (no
/// session key, zero padding) → 29CCA15AE665FA2E; ARPC method 1 with ARC 3030 → 28993816AFAE4AEB.
#[test]
fn visa_cvn10() {
    let mk = derive_icc_mk_option_a(&imk(), &pan("1234567890123456"), Some("00")).expect("mk");
    assert_eq!(kcv(&mk), "BAB0");
    let data = h(&format!("{VISA_CDOL} 03A06010"));
    let arqc = visa_cvn10_arqc(&mk, &data).expect("arqc");
    assert_eq!(arqc.to_vec(), h("29CCA15AE665FA2E"));
    let sk = derive_ac_session_key(&mk, SessionKeyDerivation::None).expect("sk");
    verify_ac(&sk, &data, Padding::Method1, &arqc).expect("verify");
    assert_eq!(
        arpc_method1(&mk, &arqc, b"00").expect("arpc").to_vec(),
        h("28993816AFAE4AEB")
    );
}

/// pyemv `test_visa_cvn18`: CSK from ATC 001C → KCV 22C8; ARQC over CDOL ‖ IAD
/// 06011203A0B800 (padding method 2) → 7A788EA6B8A3E733; ARPC method 2 with CSU 00000000 →
/// 9AF514C1.
#[test]
fn visa_cvn18() {
    let mk = derive_icc_mk_option_a(&imk(), &pan("1234567890123456"), Some("00")).expect("mk");
    let sk =
        derive_ac_session_key(&mk, SessionKeyDerivation::EmvCsk { atc: [0x00, 0x1C] }).expect("sk");
    assert_eq!(kcv(&sk), "22C8");
    let data = h(&format!("{VISA_CDOL} 06011203A0B800"));
    let arqc = visa_cvn18_arqc(&mk, [0x00, 0x1C], &data).expect("arqc");
    assert_eq!(arqc.to_vec(), h("7A788EA6B8A3E733"));
    assert_eq!(
        arpc_method2(&sk, &arqc, &[0; 4], &[])
            .expect("arpc")
            .to_vec(),
        h("9AF514C1")
    );
}

/// pyemv `test_mastercard_cvn16`: Mastercard SKD with ATC 001C and UN ABCDEF12 → KCV 2FD5;
/// ARQC over 9F02 000000009999, 9F03 0…, 9F1A 0124, 95 8000000000, 5F2A 0124, 9A 209906,
/// 9C 00, 9F37 ABCDEF12, 82 1800, 9F36 001C, CVR A00003220000 (padding method 2) →
/// 24CCF3DEE3158C70; ARPC method 1 under the ICC MK with ARC 0010 → 73F6BBF389A6586C.
#[test]
fn mastercard_cvn16_skd() {
    let mk = derive_icc_mk_option_a(&imk(), &pan("1234567890123456"), Some("00")).expect("mk");
    let skd = SessionKeyDerivation::MastercardSkd {
        atc: [0x00, 0x1C],
        un: arr("ABCDEF12"),
    };
    let sk = derive_ac_session_key(&mk, skd).expect("sk");
    assert_eq!(kcv(&sk), "2FD5");
    let data = h(
        "000000009999 000000000000 0124 8000000000 0124 209906 00 ABCDEF12 1800 001C A00003220000",
    );
    let arqc = generate_ac(&sk, &data, Padding::Method2).expect("arqc");
    assert_eq!(arqc.to_vec(), h("24CCF3DEE3158C70"));
    assert_eq!(
        arpc_method1(&mk, &arqc, &arr("0010"))
            .expect("arpc")
            .to_vec(),
        h("73F6BBF389A6586C")
    );
}

#[test]
fn wrong_cryptogram_fails_verification() {
    let mk = derive_icc_mk_option_a(&imk(), &pan("1234567890123456"), None).expect("mk");
    let result = verify_ac(&mk, b"data", Padding::Method2, &[0; 8]);
    assert_eq!(
        result,
        Err(paycrypto::CryptoError::VerificationFailed("ARQC"))
    );
}

proptest! {
    #[test]
    fn derived_keys_have_odd_parity_and_arqc_verifies(
        pan_text in "[0-9]{12,19}",
        psn in "[0-9]{2}",
        atc in any::<[u8; 2]>(),
        un in any::<[u8; 4]>(),
        data in proptest::collection::vec(any::<u8>(), 0..64),
        flip in any::<usize>(),
    ) {
        let p = pan(&pan_text);
        for mk in [
            derive_icc_mk_option_a(&imk(), &p, Some(&psn)).expect("a"),
            derive_icc_mk_option_b(&imk(), &p, Some(&psn)).expect("b"),
        ] {
            prop_assert!(mk.expose().iter().all(|byte| byte.count_ones() % 2 == 1));
            for derivation in [
                SessionKeyDerivation::None,
                SessionKeyDerivation::EmvCsk { atc },
                SessionKeyDerivation::MastercardSkd { atc, un },
            ] {
                let sk = derive_ac_session_key(&mk, derivation).expect("sk");
                prop_assert!(sk.expose().iter().all(|byte| byte.count_ones() % 2 == 1));
                let arqc = generate_ac(&sk, &data, Padding::Method2).expect("arqc");
                prop_assert!(verify_ac(&sk, &data, Padding::Method2, &arqc).is_ok());
                let mut bad = arqc;
                bad[(flip / 8) % 8] ^= 1 << (flip % 8);
                prop_assert!(verify_ac(&sk, &data, Padding::Method2, &bad).is_err());
            }
        }
    }
}
