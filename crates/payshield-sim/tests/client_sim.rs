//! Client ↔ simulator over real TCP (127.0.0.1, port 0) for every command, checked against
//! published known-answer values where they exist (sources cited at each value), plus bad
//! input and failover behaviour.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use paycrypto::SecretBytes;
use paycrypto::dukpt::tdes::{DataKeyDerivation, KeyUsage as DukptUsage, Ksn, host_working_key};
use paycrypto::pin::{Pan, PinBlockFormat, decipher_pin_block, decrypt_pin_block};
use paycrypto::primitives::tdes_decrypt_ecb;
use paycrypto::tr31::{
    self, Algorithm, Exportability, KeyBlockHeader, KeyUsage, ModeOfUse, Version,
};
use payshield::client::{ClientError, PayShieldClient};
use payshield::codec::{
    ArqcRequest, DataRequest, DukptPinTranslation, ErrorCode, ExportKey, ExportTarget, GenerateKey,
    ImportKey, KeyBlockAttributes, KeyField, MacRequest, PinTranslation, Request, Response,
    Sensitive,
};
use payshield::framing::{Framer, encode_frame};
use payshield_sim::{Engine, RunningSimulator, SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Test LMK (any 32 bytes; not a published value, it only protects keys inside the test).
const LMK: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";

fn h(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).unwrap()
}

fn lmk() -> SecretBytes {
    SecretBytes::new(h(LMK))
}

fn engine() -> Engine {
    Engine::new(lmk(), 4).unwrap()
}

/// A key under the test LMK, as an `S` key block.
fn lmk_key(usage: &str, algorithm: Algorithm, mode: &str, key_hex: &str) -> KeyField {
    let header = KeyBlockHeader::new(
        Version::D,
        KeyUsage::from_code(usage).unwrap(),
        algorithm,
        ModeOfUse::from_code(mode).unwrap(),
        Exportability::Exportable,
    );
    engine()
        .wrap_under_lmk(&header, &SecretBytes::new(h(key_hex)))
        .unwrap()
}

fn clear_key(field: &KeyField) -> (KeyBlockHeader, Vec<u8>) {
    let KeyField::KeyBlock(text) = field else {
        panic!("not a key block: {field:?}");
    };
    let (header, key) = tr31::unwrap(&h(LMK), text).unwrap();
    (header, key.expose().to_vec())
}

async fn start() -> (RunningSimulator, PayShieldClient) {
    let sim = Simulator::bind("127.0.0.1:0", SimConfig::new(lmk()))
        .await
        .unwrap();
    let client = PayShieldClient::connect(sim.local_addr().to_string(), 4, Duration::from_secs(5))
        .await
        .unwrap();
    (sim, client)
}

fn error_code(result: Result<Response, ClientError>) -> String {
    match result {
        Err(ClientError::ErrorCode(code)) => code.as_text(),
        other => panic!("expected an HSM error code, got {other:?}"),
    }
}

fn attributes(usage: &str, algorithm: &str, mode: char) -> KeyBlockAttributes {
    KeyBlockAttributes {
        key_usage: usage.to_owned(),
        algorithm: algorithm.to_owned(),
        mode_of_use: mode,
        key_version: "00".to_owned(),
        exportability: 'E',
    }
}

// ---------------------------------------------------------------------------------------------
// Published values
// ---------------------------------------------------------------------------------------------

/// ANSI X9.24-1:2009 Annex A.4 (as in crates/paycrypto/tests/dukpt_tdes.rs): BDK, KSN of the
/// first transaction, its encrypted ISO-0 PIN block (PIN 1234, PAN 4012345678909), and the
/// clear PIN block 041274EDCBA9876F.
const X924_BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
const X924_KSN_1: &str = "FFFF9876543210E00001";
const X924_PIN_BLOCK_1: &str = "1B9C1845EB993A7A";
const X924_CLEAR_PIN_BLOCK: &str = "041274EDCBA9876F";
/// X9.24-1:2009 A.4.2, KSN …E00001: transaction key 042666B49184CFA368DE9628D0397BC9; the
/// MAC request variant mask 000000000000FF00 000000000000FF00 applied to it gives this key.
const X924_MAC_KEY_1: &str = "042666B4918430A368DE9628D03984C9";
/// X9.24-1:2009 A.4.2, KSN …E00001: ANSI X9.19 MAC (4 bytes) of "4012345678909D987".
const X924_MAC_1: &str = "9CCC7817";
/// X9.24-1:2009 A.4.2, KSN …E00001: TDES-CBC (IV zero) of the message zero-padded to 24
/// bytes under the data request key.
const X924_DATA_1: &str = "FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F";
/// The account field for PAN 4012345678909: 12 rightmost digits without the check digit.
const X924_ACCOUNT: &str = "401234567890";

/// A destination ZPK for the tests (odd parity, no published role).
const ZPK_A: &str = "0123456789ABCDEFFEDCBA9876543210";
const ZPK_B: &str = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A";

// ---------------------------------------------------------------------------------------------
// NC, NO, health
// ---------------------------------------------------------------------------------------------

/// BU: the check value of a key under the LMK. ANSI X9 TR-31:2018 Annex A.7.4: the `KC` block
/// of the example carries the KCV 57C409 of TDES key 3F419E1CB7079442AA37474C2EFBF8B8 (as in
/// crates/paycrypto/tests/kcv.rs). A tampered block is `A4`, a key type code other than `FF`
/// is `15`.
#[tokio::test]
async fn bu_returns_the_check_value_of_an_lmk_key() {
    let (sim, client) = start().await;
    let key = lmk_key(
        "K0",
        Algorithm::Tdes,
        "B",
        "3F419E1CB7079442AA37474C2EFBF8B8",
    );
    let request = |key_type_code: &str, key: KeyField| {
        Request::KeyCheckValue(payshield::codec::KeyCheckValueRequest {
            key_type_code: key_type_code.to_owned(),
            key_length_flag: '1',
            key,
        })
    };
    assert_eq!(
        client.send(&request("FF", key.clone())).await.unwrap(),
        Response::KeyCheckValue {
            check_value: "57C409".to_owned()
        }
    );
    assert_eq!(
        error_code(client.send(&request("00", key.clone())).await),
        "15"
    );
    let KeyField::KeyBlock(text) = key else {
        panic!("not a key block");
    };
    let mut tampered = text.into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = KeyField::KeyBlock(String::from_utf8(tampered).unwrap());
    assert_eq!(
        error_code(client.send(&request("FF", tampered)).await),
        "A4"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn health_sends_no_and_nc() {
    let (sim, client) = start().await;
    let health = client.health().await.unwrap();
    assert_eq!(health.lmk_check_value, engine().lmk_check_value());
    assert_eq!(health.firmware, "SIM0-0001");
    assert!(matches!(health.status, Response::Status { .. }));
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// A0, A6, A8
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a0_generates_keys_under_lmk_and_zmk() {
    let (sim, client) = start().await;
    // Mode 0: a TDES ZPK.
    let response = client
        .send(&Request::GenerateKey(GenerateKey {
            key_type: "FFF".into(),
            lmk_scheme: 'S',
            export: None,
            attributes: attributes("P0", "T2", 'B'),
        }))
        .await
        .unwrap();
    let Response::GenerateKey {
        key_under_lmk,
        key_under_kek: None,
        check_value,
    } = response
    else {
        panic!("{response:?}");
    };
    let (header, key) = clear_key(&key_under_lmk);
    assert_eq!(header.key_usage, KeyUsage::P0);
    assert_eq!(key.len(), 16);
    assert!(key.iter().all(|b| b.count_ones() % 2 == 1), "odd parity");
    let kcv = paycrypto::kcv::tdes_kcv(&SecretBytes::new(key.clone())).unwrap();
    assert_eq!(check_value, kcv.to_hex());

    // Mode 1 under a TDES ZMK, scheme U (ECB) and R (TR-31 version B).
    let zmk_hex = "DD7515F2BFC17F85CE48F3CA25CB21F6";
    let zmk = lmk_key("K0", Algorithm::Tdes, "B", zmk_hex);
    for scheme in ['U', 'R'] {
        let response = client
            .send(&Request::GenerateKey(GenerateKey {
                key_type: "FFF".into(),
                lmk_scheme: 'S',
                export: Some(ExportTarget {
                    zmk_tmk_flag: '0',
                    kek: zmk.clone(),
                    scheme,
                }),
                attributes: attributes("M3", "T2", 'C'),
            }))
            .await
            .unwrap();
        let Response::GenerateKey {
            key_under_lmk,
            key_under_kek: Some(exported),
            ..
        } = response
        else {
            panic!("{response:?}");
        };
        let (_, key) = clear_key(&key_under_lmk);
        let under_zmk = match exported {
            KeyField::Scheme { scheme: 'U', hex } => {
                tdes_decrypt_ecb(&h(zmk_hex), &h(&hex)).unwrap()
            }
            KeyField::Tr31(text) => {
                let (header, key) = tr31::unwrap(&h(zmk_hex), &text).unwrap();
                assert_eq!(header.version, Version::B);
                assert_eq!(header.key_usage, KeyUsage::M3);
                key.expose().to_vec()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(under_zmk, key, "scheme {scheme}");
    }
    // AES-256 data key.
    let response = client
        .send(&Request::GenerateKey(GenerateKey {
            key_type: "FFF".into(),
            lmk_scheme: 'S',
            export: None,
            attributes: attributes("D0", "A3", 'B'),
        }))
        .await
        .unwrap();
    let Response::GenerateKey { key_under_lmk, .. } = response else {
        panic!("{response:?}");
    };
    let (header, key) = clear_key(&key_under_lmk);
    assert_eq!((header.algorithm, key.len()), (Algorithm::Aes, 32));
    sim.shutdown().await;
}

/// TR-31:2018 A.7.2.2 (version B, KBPK DD7515F2BFC17F85CE48F3CA25CB21F6) and A.7.4 (version
/// D, AES-256 KBPK 88E1AB2A…7DE6) both wrap the key 3F419E1CB7079442AA37474C2EFBF8B8 (as in
/// crates/paycrypto/tests/tr31.rs).
#[tokio::test]
async fn a6_imports_published_tr31_blocks_and_a8_exports_back() {
    let (sim, client) = start().await;
    let cases = [
        (
            Algorithm::Tdes,
            "DD7515F2BFC17F85CE48F3CA25CB21F6",
            "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E",
        ),
        (
            Algorithm::Aes,
            "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
            "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34",
        ),
    ];
    for (algorithm, zmk_hex, block) in cases {
        let zmk = lmk_key("K0", algorithm, "B", zmk_hex);
        let response = client
            .send(&Request::ImportKey(ImportKey {
                key_type: "FFF".into(),
                zmk: zmk.clone(),
                key: KeyField::Tr31(block.into()),
                lmk_scheme: 'S',
                attributes: None,
            }))
            .await
            .unwrap();
        let Response::ImportKey { key_under_lmk, .. } = response else {
            panic!("{response:?}");
        };
        let (header, key) = clear_key(&key_under_lmk);
        assert_eq!(key, h("3F419E1CB7079442AA37474C2EFBF8B8"));
        assert_eq!(header.key_usage, KeyUsage::P0);

        // A8 exports it again as TR-31 under the same ZMK.
        let response = client
            .send(&Request::ExportKey(ExportKey {
                key_type: "FFF".into(),
                target: ExportTarget {
                    zmk_tmk_flag: '0',
                    kek: zmk.clone(),
                    scheme: 'R',
                },
                key: key_under_lmk,
            }))
            .await
            .unwrap();
        let Response::ExportKey {
            key_under_kek: KeyField::Tr31(text),
            ..
        } = response
        else {
            panic!("{response:?}");
        };
        let (_, key) = tr31::unwrap(&h(zmk_hex), &text).unwrap();
        assert_eq!(
            key.expose(),
            h("3F419E1CB7079442AA37474C2EFBF8B8").as_slice()
        );
    }

    // U scheme: A8 exports the X9.24 BDK under a TDES ZMK, A6 imports it back (odd parity).
    let zmk = lmk_key("K0", Algorithm::Tdes, "B", ZPK_B);
    let bdk = lmk_key("B0", Algorithm::Tdes, "X", X924_BDK);
    let response = client
        .send(&Request::ExportKey(ExportKey {
            key_type: "FFF".into(),
            target: ExportTarget {
                zmk_tmk_flag: '0',
                kek: zmk.clone(),
                scheme: 'U',
            },
            key: bdk,
        }))
        .await
        .unwrap();
    let Response::ExportKey {
        key_under_kek,
        check_value,
    } = response
    else {
        panic!("{response:?}");
    };
    let response = client
        .send(&Request::ImportKey(ImportKey {
            key_type: "FFF".into(),
            zmk: zmk.clone(),
            key: key_under_kek,
            lmk_scheme: 'S',
            attributes: Some(attributes("B0", "T2", 'X')),
        }))
        .await
        .unwrap();
    let Response::ImportKey {
        key_under_lmk,
        check_value: imported_kcv,
    } = response
    else {
        panic!("{response:?}");
    };
    assert_eq!(clear_key(&key_under_lmk).1, h(X924_BDK));
    assert_eq!(imported_kcv, check_value);

    // A U-scheme key with even parity is refused (10), as is a non-exportable key in A8 (29).
    let bad = KeyField::Scheme {
        scheme: 'U',
        hex: "00000000000000000000000000000000".into(),
    };
    let result = client
        .send(&Request::ImportKey(ImportKey {
            key_type: "FFF".into(),
            zmk: zmk.clone(),
            key: bad,
            lmk_scheme: 'S',
            attributes: Some(attributes("P0", "T2", 'B')),
        }))
        .await;
    assert_eq!(error_code(result), "10");
    let header = KeyBlockHeader::new(
        Version::D,
        KeyUsage::P0,
        Algorithm::Tdes,
        ModeOfUse::Both,
        Exportability::NonExportable,
    );
    let locked = engine()
        .wrap_under_lmk(&header, &SecretBytes::new(h(ZPK_A)))
        .unwrap();
    let result = client
        .send(&Request::ExportKey(ExportKey {
            key_type: "FFF".into(),
            target: ExportTarget {
                zmk_tmk_flag: '0',
                kek: zmk,
                scheme: 'U',
            },
            key: locked,
        }))
        .await;
    assert_eq!(error_code(result), "29");
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// PIN translation: CI, G0, CC, CA
// ---------------------------------------------------------------------------------------------

fn dukpt_request(descriptor: &str, ksn: &str, g0: bool, destination: &str) -> DukptPinTranslation {
    DukptPinTranslation {
        bdk: lmk_key("B0", Algorithm::Tdes, "X", X924_BDK),
        zpk: lmk_key("P0", Algorithm::Tdes, "B", ZPK_A),
        ksn_descriptor: descriptor.into(),
        ksn: ksn.into(),
        pin_block: Sensitive(X924_PIN_BLOCK_1.into()),
        source_format: g0.then(|| "01".to_owned()),
        destination_format: destination.into(),
        account: Sensitive(X924_ACCOUNT.into()),
    }
}

fn translated(response: Response) -> (u8, String, String) {
    let Response::TranslatePin {
        pin_length,
        pin_block,
        format,
    } = response
    else {
        panic!("{response:?}");
    };
    (pin_length, pin_block.0, format)
}

/// The X9.24-1 A.4 PIN block (DUKPT, first KSN) translated to the ZPK deciphers to the
/// published clear ISO-0 block 041274EDCBA9876F: CI and G0, 20- and 16-character KSNs.
#[tokio::test]
async fn ci_and_g0_translate_the_x924_pin_block() {
    let (sim, client) = start().await;
    let zpk = SecretBytes::new(h(ZPK_A));
    let pan = Pan::new("4012345678909").unwrap();
    for (descriptor, ksn) in [("906", X924_KSN_1), ("605", "9876543210E00001")] {
        for g0 in [false, true] {
            let t = dukpt_request(descriptor, ksn, g0, "01");
            let request = if g0 {
                Request::TranslatePinDukpt3Des(t)
            } else {
                Request::TranslatePinDukpt(t)
            };
            let (len, block, format) = translated(client.send(&request).await.unwrap());
            assert_eq!((len, format.as_str()), (4, "01"));
            let clear =
                decipher_pin_block(PinBlockFormat::Iso0, &zpk, &h(&block), Some(&pan)).unwrap();
            assert_eq!(clear.expose(), h(X924_CLEAR_PIN_BLOCK).as_slice());
        }
    }
    // ISO 3 destination (47): decodes to PIN 1234.
    let (_, block, format) = translated(
        client
            .send(&Request::TranslatePinDukpt3Des(dukpt_request(
                "906", X924_KSN_1, true, "47",
            )))
            .await
            .unwrap(),
    );
    assert_eq!(format, "47");
    let pin = decrypt_pin_block(PinBlockFormat::Iso3, &zpk, &h(&block), Some(&pan)).unwrap();
    assert_eq!(pin.expose().as_str(), "1234");
    // Wrong PIN block (another KSN's) → 20; unknown destination format → 23; the BDK passed
    // as ZPK (wrong key type) → A6.
    let mut t = dukpt_request("906", "FFFF9876543210E00002", true, "01");
    t.pin_block = Sensitive("0000000000000000".into());
    assert_eq!(
        error_code(client.send(&Request::TranslatePinDukpt3Des(t)).await),
        "20"
    );
    let t = dukpt_request("906", X924_KSN_1, true, "99");
    assert_eq!(
        error_code(client.send(&Request::TranslatePinDukpt3Des(t)).await),
        "23"
    );
    let mut t = dukpt_request("906", X924_KSN_1, false, "01");
    t.zpk = t.bdk.clone();
    assert_eq!(
        error_code(client.send(&Request::TranslatePinDukpt(t)).await),
        "A6"
    );
    sim.shutdown().await;
}

/// CC: the X9.24 PIN block, first brought under ZPK A by G0, translated to ZPK B, still
/// deciphers to the published clear block. CA: the ep2 ISO-4 block (ep2 Security
/// Specification 8.0.0 §8.4 via psec `test_decipher_pinblock_iso_4`: AES key
/// C1D0F8FB4958670DBA40AB1F3752EF0D, PAN 432198765432109870, block
/// CC17F65586BFD0953010226C4FC5B3CA, PIN 1234) translated to ISO 0 under a TDES ZPK gives
/// the ISO 9564-1 format 0 block for PIN 1234 and that PAN: 041234FFFFFFFFFF XOR
/// 0000876543210987.
#[tokio::test]
async fn cc_and_ca_translate_known_pin_blocks() {
    let (sim, client) = start().await;
    let (_, under_a, _) = translated(
        client
            .send(&Request::TranslatePinDukpt3Des(dukpt_request(
                "906", X924_KSN_1, true, "01",
            )))
            .await
            .unwrap(),
    );
    let cc = PinTranslation {
        source_key: lmk_key("P0", Algorithm::Tdes, "B", ZPK_A),
        destination_key: lmk_key("P0", Algorithm::Tdes, "B", ZPK_B),
        max_pin_length: 12,
        pin_block: Sensitive(under_a),
        source_format: "01".into(),
        destination_format: "01".into(),
        account: Sensitive(X924_ACCOUNT.into()),
    };
    let (len, under_b, _) = translated(
        client
            .send(&Request::TranslatePinZpkToZpk(cc.clone()))
            .await
            .unwrap(),
    );
    assert_eq!(len, 4);
    let pan = Pan::new("4012345678909").unwrap();
    let clear = decipher_pin_block(
        PinBlockFormat::Iso0,
        &SecretBytes::new(h(ZPK_B)),
        &h(&under_b),
        Some(&pan),
    )
    .unwrap();
    assert_eq!(clear.expose(), h(X924_CLEAR_PIN_BLOCK).as_slice());
    // Maximum PIN length 3 is not a valid request (15); a PIN longer than the maximum is 24.
    let mut short = cc.clone();
    short.max_pin_length = 3;
    assert_eq!(
        error_code(client.send(&Request::TranslatePinZpkToZpk(short)).await),
        "15"
    );
    // A MAC key as the source PIN key: wrong key type → A6.
    let mut wrong = cc.clone();
    wrong.source_key = lmk_key("M3", Algorithm::Tdes, "C", ZPK_A);
    assert_eq!(
        error_code(client.send(&Request::TranslatePinZpkToZpk(wrong)).await),
        "A6"
    );
    // A tampered key block: authentication failure → A4.
    let mut tampered = cc;
    if let KeyField::KeyBlock(text) = &mut tampered.source_key {
        let last = text.pop().unwrap();
        text.push(if last == '0' { '1' } else { '0' });
    }
    assert_eq!(
        error_code(client.send(&Request::TranslatePinZpkToZpk(tampered)).await),
        "A4"
    );

    let ca = PinTranslation {
        source_key: lmk_key(
            "P0",
            Algorithm::Aes,
            "B",
            "C1D0F8FB4958670DBA40AB1F3752EF0D",
        ),
        destination_key: lmk_key("P0", Algorithm::Tdes, "B", ZPK_A),
        max_pin_length: 12,
        pin_block: Sensitive("CC17F65586BFD0953010226C4FC5B3CA".into()),
        source_format: "48".into(),
        destination_format: "01".into(),
        account: Sensitive("432198765432109870".into()),
    };
    let (len, block, format) = translated(
        client
            .send(&Request::TranslatePinTpkToZpk(ca))
            .await
            .unwrap(),
    );
    assert_eq!((len, format.as_str()), (4, "01"));
    let clear = paycrypto::primitives::tdes_decrypt_ecb(&h(ZPK_A), &h(&block)).unwrap();
    assert_eq!(clear, h("0412B39ABCDEF678"));
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// KQ
// ---------------------------------------------------------------------------------------------

/// pyemv tests/test_cvn_hsm.py (as in crates/paycrypto/tests/emv.rs): IMK-AC
/// 0123456789ABCDEFFEDCBA9876543210, PAN 1234567890123456, PSN 00, CDOL1 data
/// 000000004000 000000000000 0124 8000048000 0124 191105 01 52BF4585 1800 001C.
/// `test_visa_cvn10`: data ‖ CVR 03A06010 → ARQC 29CCA15AE665FA2E; ARPC method 1 with ARC
/// 3030 ("00") → 28993816AFAE4AEB. `test_mastercard_cvn16`: SKD with ATC 001C, UN ABCDEF12,
/// its data → ARQC 24CCF3DEE3158C70; ARPC method 1 under the ICC MK with ARC 0010 →
/// 73F6BBF389A6586C.
#[tokio::test]
async fn kq_verifies_published_arqcs_and_generates_arpcs() {
    let (sim, client) = start().await;
    let imk = lmk_key("E0", Algorithm::Tdes, "X", X924_BDK);
    let visa = ArqcRequest {
        mode: '1',
        scheme: '0',
        mk_ac: imk.clone(),
        pan_psn: Sensitive(h("3456789012345600").try_into().unwrap()),
        atc: [0x00, 0x1C],
        unpredictable_number: h("52BF4585").try_into().unwrap(),
        transaction_data: h(
            "000000004000 000000000000 0124 8000048000 0124 191105 01 52BF4585 1800 001C 03A06010",
        ),
        arqc: h("29CCA15AE665FA2E").try_into().unwrap(),
        arc: Some(*b"00"),
    };
    let response = client
        .send(&Request::VerifyArqc(visa.clone()))
        .await
        .unwrap();
    assert_eq!(
        response,
        Response::VerifyArqc {
            arpc: Some(h("28993816AFAE4AEB").try_into().unwrap())
        }
    );
    let mastercard = ArqcRequest {
        mode: '1',
        scheme: '1',
        mk_ac: imk,
        pan_psn: Sensitive(h("3456789012345600").try_into().unwrap()),
        atc: [0x00, 0x1C],
        unpredictable_number: h("ABCDEF12").try_into().unwrap(),
        transaction_data: h(
            // The host appends the M/Chip padding byte 80 (ISO 9797-1 method 2); the HSM
            // zero-pads the rest.
            "000000009999 000000000000 0124 8000000000 0124 209906 00 ABCDEF12 1800 001C A00003220000 80",
        ),
        arqc: h("24CCF3DEE3158C70").try_into().unwrap(),
        arc: Some([0x00, 0x10]),
    };
    let response = client
        .send(&Request::VerifyArqc(mastercard.clone()))
        .await
        .unwrap();
    assert_eq!(
        response,
        Response::VerifyArqc {
            arpc: Some(h("73F6BBF389A6586C").try_into().unwrap())
        }
    );
    // Mode 0: verification only, no ARPC.
    let mut only = mastercard.clone();
    only.mode = '0';
    only.arc = None;
    assert_eq!(
        client.send(&Request::VerifyArqc(only)).await.unwrap(),
        Response::VerifyArqc { arpc: None }
    );
    // Mode 2: ARPC only, no transaction data.
    let mut arpc_only = mastercard.clone();
    arpc_only.mode = '2';
    arpc_only.transaction_data = Vec::new();
    assert_eq!(
        client.send(&Request::VerifyArqc(arpc_only)).await.unwrap(),
        Response::VerifyArqc {
            arpc: Some(h("73F6BBF389A6586C").try_into().unwrap())
        }
    );
    // A wrong ARQC fails verification (01).
    let mut wrong = visa;
    wrong.arqc[0] ^= 1;
    assert_eq!(
        error_code(client.send(&Request::VerifyArqc(wrong)).await),
        "01"
    );
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// M6, M8
// ---------------------------------------------------------------------------------------------

fn mac_request(key: KeyField, algorithm: &str, message: &[u8], mac: Option<&str>) -> MacRequest {
    MacRequest {
        mode: '0',
        input_format: '1',
        algorithm: algorithm.into(),
        padding: '1',
        key_type: "FFF".into(),
        key,
        iv: None,
        message: Sensitive(message.to_vec()),
        mac: mac.map(str::to_owned),
    }
}

/// X9.19 (ISO 9797-1 alg. 3): X9.24-1:2009 A.4.2 MAC of "4012345678909D987" under the MAC
/// request key of KSN …E00001 is 9CCC7817 (leftmost 4 bytes). ISO 9797-1 alg. 1 with DES:
/// FIPS PUB 113 appendix, key 0123456789ABCDEF (here as the 2-key TDES K‖K, which equals
/// single DES), data "7654321 Now is the time for " zero-padded → F1D30F6849312CA4.
#[tokio::test]
async fn m6_and_m8_match_published_macs() {
    let (sim, client) = start().await;
    let x919 = lmk_key("M3", Algorithm::Tdes, "C", X924_MAC_KEY_1);
    let Response::GenerateMac { mac } = client
        .send(&Request::GenerateMac(mac_request(
            x919.clone(),
            "03",
            b"4012345678909D987",
            None,
        )))
        .await
        .unwrap()
    else {
        panic!("M7");
    };
    assert_eq!(&mac[..8], X924_MAC_1);

    let fips = lmk_key(
        "M1",
        Algorithm::Tdes,
        "C",
        "0123456789ABCDEF0123456789ABCDEF",
    );
    let mut request = mac_request(fips, "01", b"7654321 Now is the time for ", None);
    request.input_format = '0';
    let Response::GenerateMac { mac } = client.send(&Request::GenerateMac(request)).await.unwrap()
    else {
        panic!("M7");
    };
    assert_eq!(mac, "F1D30F6849312CA4");

    // M8: the published 4-byte MAC verifies; a changed one fails with 01.
    let ok = mac_request(x919.clone(), "03", b"4012345678909D987", Some(X924_MAC_1));
    assert_eq!(
        client.send(&Request::VerifyMac(ok)).await.unwrap(),
        Response::VerifyMac
    );
    let bad = mac_request(x919.clone(), "03", b"4012345678909D988", Some(X924_MAC_1));
    assert_eq!(
        error_code(client.send(&Request::VerifyMac(bad)).await),
        "01"
    );
    // No padding with a message that is not a multiple of 8 bytes → 80; unknown algorithm
    // → 15; a PIN key as MAC key → A6.
    let mut unpadded = mac_request(x919.clone(), "03", b"123", None);
    unpadded.padding = '0';
    assert_eq!(
        error_code(client.send(&Request::GenerateMac(unpadded)).await),
        "80"
    );
    let other = mac_request(x919, "09", b"123", None);
    assert_eq!(
        error_code(client.send(&Request::GenerateMac(other)).await),
        "15"
    );
    let pin_key = lmk_key("P0", Algorithm::Tdes, "B", ZPK_A);
    assert_eq!(
        error_code(
            client
                .send(&Request::GenerateMac(mac_request(
                    pin_key, "03", b"1", None
                )))
                .await
        ),
        "A6"
    );
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// M0, M2
// ---------------------------------------------------------------------------------------------

fn data_request(key: KeyField, iv: Option<&str>, message: Vec<u8>) -> DataRequest {
    DataRequest {
        mode: if iv.is_some() { "01" } else { "00" }.into(),
        input_format: '1',
        output_format: '1',
        key_type: "FFF".into(),
        key,
        iv: iv.map(str::to_owned),
        message: Sensitive(message),
    }
}

fn data_of(response: Response) -> Vec<u8> {
    let Response::Data { data, .. } = response else {
        panic!("{response:?}");
    };
    data.0
}

/// AES: NIST SP 800-38A F.1.1 (ECB-AES128.Encrypt, block 1) and F.2.1 (CBC-AES128.Encrypt,
/// block 1): key 2B7E151628AED2A6ABF7158809CF4F3C, plaintext 6BC1BEE22E409F96E93D7E117393172A
/// → 3AD77BB40D7A3660A89ECAF32466EF97 (ECB), 7649ABAC8119B246CEE98E9B12E9197D (CBC, IV
/// 000102030405060708090A0B0C0D0E0F). TDES: X9.24-1:2009 A.4.2 data request encryption
/// of the message under KSN …E00001 (the data key comes from the published BDK and KSN).
#[tokio::test]
async fn m0_and_m2_match_published_ciphertexts() {
    let (sim, client) = start().await;
    let aes = lmk_key(
        "D0",
        Algorithm::Aes,
        "B",
        "2B7E151628AED2A6ABF7158809CF4F3C",
    );
    let plain = h("6BC1BEE22E409F96E93D7E117393172A");
    let ecb = client
        .send(&Request::EncryptData(data_request(
            aes.clone(),
            None,
            plain.clone(),
        )))
        .await
        .unwrap();
    assert_eq!(data_of(ecb), h("3AD77BB40D7A3660A89ECAF32466EF97"));
    let iv = "000102030405060708090A0B0C0D0E0F";
    let cbc = client
        .send(&Request::EncryptData(data_request(
            aes.clone(),
            Some(iv),
            plain.clone(),
        )))
        .await
        .unwrap();
    assert_eq!(data_of(cbc), h("7649ABAC8119B246CEE98E9B12E9197D"));
    let back = client
        .send(&Request::DecryptData(data_request(
            aes,
            Some(iv),
            h("7649ABAC8119B246CEE98E9B12E9197D"),
        )))
        .await
        .unwrap();
    assert_eq!(data_of(back), plain);

    let data_key = host_working_key(
        &SecretBytes::new(h(X924_BDK)),
        &Ksn::from_hex(X924_KSN_1).unwrap(),
        DukptUsage::DataRequest,
        DataKeyDerivation::OneWay,
    )
    .unwrap();
    let tdes = lmk_key("D0", Algorithm::Tdes, "B", &data_key.to_hex_upper());
    let mut message = b"4012345678909D987".to_vec();
    message.resize(24, 0);
    let mut request = data_request(tdes.clone(), Some("0000000000000000"), message.clone());
    request.output_format = '0';
    let response = client.send(&Request::EncryptData(request)).await.unwrap();
    assert!(matches!(
        response,
        Response::Data {
            hex_encoded: false,
            ..
        }
    ));
    assert_eq!(data_of(response), h(X924_DATA_1));
    let response = client
        .send(&Request::DecryptData(data_request(
            tdes.clone(),
            Some("0000000000000000"),
            h(X924_DATA_1),
        )))
        .await
        .unwrap();
    assert_eq!(data_of(response), message);
    // Not a multiple of the block size → 80; an encrypt-only key cannot decrypt → A8.
    assert_eq!(
        error_code(
            client
                .send(&Request::EncryptData(data_request(tdes, None, vec![1; 5])))
                .await
        ),
        "80"
    );
    let encrypt_only = lmk_key("D0", Algorithm::Tdes, "E", ZPK_A);
    assert_eq!(
        error_code(
            client
                .send(&Request::DecryptData(data_request(
                    encrypt_only,
                    None,
                    vec![0; 8]
                )))
                .await
        ),
        "A8"
    );
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input on the wire, timeouts, restarts
// ---------------------------------------------------------------------------------------------

async fn raw_exchange(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream
        .write_all(&encode_frame(message).unwrap())
        .await
        .unwrap();
    read_frame(stream).await
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut framer = Framer::new(65535);
    let mut buf = [0_u8; 1024];
    loop {
        if let Some(frame) = framer.next_frame().unwrap() {
            return frame;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        framer.push(&buf[..n]);
    }
}

#[tokio::test]
async fn malformed_input_gets_error_codes_and_the_simulator_keeps_serving() {
    let (sim, client) = start().await;
    let mut stream = TcpStream::connect(sim.local_addr()).await.unwrap();
    // Unknown command → 68 with the incremented response code.
    assert_eq!(raw_exchange(&mut stream, b"0001XY").await, b"0001XZ68");
    // Truncated commands → 15.
    assert_eq!(raw_exchange(&mut stream, b"0002CA").await, b"0002CB15");
    assert_eq!(raw_exchange(&mut stream, b"0003CCS0096").await, b"0003CD15");
    assert_eq!(raw_exchange(&mut stream, b"0004NO0").await, b"0004NP15");
    assert_eq!(
        raw_exchange(&mut stream, b"0005M6\xFF\x00").await,
        b"0005M715"
    );
    // Trailing data → 15.
    assert_eq!(raw_exchange(&mut stream, b"0006NC1").await, b"0006ND15");
    // A message shorter than header + command code gets no answer; the next one does.
    stream
        .write_all(&encode_frame(b"00").unwrap())
        .await
        .unwrap();
    assert_eq!(
        raw_exchange(&mut stream, b"0007NO00").await[..8],
        *b"0007NP00"
    );
    // A frame longer than the maximum closes that connection only.
    stream.write_all(&[0xFF, 0xFF, 0]).await.unwrap();
    let mut buf = [0_u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection closed");
    // The client (another connection) is still served.
    client.health().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn client_times_out_on_a_slow_hsm_and_recovers() {
    let sim = Simulator::bind("127.0.0.1:0", SimConfig::new(lmk()))
        .await
        .unwrap();
    let client =
        PayShieldClient::connect(sim.local_addr().to_string(), 4, Duration::from_millis(200))
            .await
            .unwrap();
    sim.set_delay(Duration::from_millis(600));
    assert!(matches!(
        client.send(&Request::Diagnostics).await,
        Err(ClientError::Timeout)
    ));
    sim.set_delay(Duration::ZERO);
    // The timed-out connection was dropped; the late answer cannot be mistaken for this one.
    client.health().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn simulator_restarts_on_the_same_port_and_the_client_reconnects() {
    let sim = Simulator::bind("127.0.0.1:0", SimConfig::new(lmk()))
        .await
        .unwrap();
    let addr = sim.local_addr();
    let client = PayShieldClient::with_pool(addr.to_string(), 4, Duration::from_secs(2), 2)
        .await
        .unwrap();
    client.health().await.unwrap();
    sim.shutdown().await;
    // Down: the open connection is closed, new ones are refused.
    for _ in 0..2 {
        assert!(matches!(
            client.send(&Request::Diagnostics).await,
            Err(ClientError::Io(_))
        ));
    }
    let sim = Simulator::bind(&addr.to_string(), SimConfig::new(lmk()))
        .await
        .unwrap();
    assert_eq!(sim.local_addr(), addr);
    for _ in 0..4 {
        client.health().await.unwrap();
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_different_header_length_is_honoured() {
    let mut config = SimConfig::new(lmk());
    config.header_len = 8;
    let sim = Simulator::bind("127.0.0.1:0", config).await.unwrap();
    let client = PayShieldClient::connect(sim.local_addr().to_string(), 8, Duration::from_secs(2))
        .await
        .unwrap();
    client.health().await.unwrap();
    let mut stream = TcpStream::connect(sim.local_addr()).await.unwrap();
    assert_eq!(
        raw_exchange(&mut stream, b"ABCDEFGHNC").await[..12],
        *b"ABCDEFGHND00"
    );
    sim.shutdown().await;
}

#[test]
fn error_codes_print_as_text() {
    assert_eq!(ErrorCode::COMMAND_DISABLED.to_string(), "68");
}

#[tokio::test]
async fn a_pool_serves_concurrent_requests() {
    let sim = Simulator::bind("127.0.0.1:0", SimConfig::new(lmk()))
        .await
        .unwrap();
    let client = std::sync::Arc::new(
        PayShieldClient::with_pool(sim.local_addr().to_string(), 4, Duration::from_secs(5), 3)
            .await
            .unwrap(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let client = std::sync::Arc::clone(&client);
        tasks.spawn(async move { client.health().await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_truncated_frame_then_hangup_does_not_disturb_the_simulator() {
    let (sim, client) = start().await;
    let mut stream = TcpStream::connect(sim.local_addr()).await.unwrap();
    // The length says 40 bytes; only 6 arrive before the peer hangs up.
    stream.write_all(&[0, 40]).await.unwrap();
    stream.write_all(b"0001NC").await.unwrap();
    drop(stream);
    client.health().await.unwrap();
    let mut stream = TcpStream::connect(sim.local_addr()).await.unwrap();
    assert_eq!(
        raw_exchange(&mut stream, b"0009NC").await[..8],
        *b"0009ND00"
    );
    sim.shutdown().await;
}
