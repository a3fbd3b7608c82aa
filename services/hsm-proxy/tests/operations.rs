//! Every data-plane operation of the hsm-proxy over the bus, against the soft:// backend, with
//! published known-answer vectors (each cites its source); typed errors for bad input that
//! change nothing; tenant isolation; the key lifecycle over the admin API; the registry
//! rebuilt from the log. On the embedded default (SQLite + in-process bus) and on PostgreSQL +
//! NATS.

#![allow(clippy::unwrap_used)]

mod common;

use common::{BDK, TENANT, TestService, ZPK, attributes, dukpt, h, import_known};
use mpos_errors::ErrorCode;
use mpos_proto::hsm as pb;
use paycrypto::primitives::tdes_decrypt_ecb;

async fn known_keys(service: &TestService) {
    common::import_bdk(service, "").await;
    common::import_zpk(service).await;
}

/// ANSI X9.24-1:2009 A.4.2: the DUKPT PIN blocks of PIN 1234 / PAN 4012345678909 for KSNs
/// E00001 and E00002, translated to a ZPK; the result opens under the ZPK to the published
/// clear ISO format 0 block 041274EDCBA9876F.
async fn translate_pin_dukpt_to_zpk(service: &TestService) {
    for (ksn, block) in [
        ("FFFF9876543210E00001", "1B9C1845EB993A7A"),
        ("FFFF9876543210E00002", "10A01C8D02C69107"),
    ] {
        let response: pb::TranslatePinDataResponse = service
            .call(
                "TranslatePinData",
                &pb::TranslatePinDataRequest {
                    tenant_id: TENANT.into(),
                    incoming: Some(pb::PinBlockKey {
                        key: "alias/bdk".into(),
                        format: pb::PinBlockFormat::Iso0.into(),
                        dukpt: dukpt(ksn, pb::DukptDirection::Request),
                    }),
                    outgoing: Some(pb::PinBlockKey {
                        key: "alias/zpk".into(),
                        format: pb::PinBlockFormat::Iso0.into(),
                        dukpt: None,
                    }),
                    pin_block: block.into(),
                    pan: "4012345678909".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("translate");
        let clear = tdes_decrypt_ecb(&h(ZPK), &h(&response.pin_block)).unwrap();
        assert_eq!(clear, h("041274EDCBA9876F"), "{ksn}");
    }
}

/// ANSI X9.24-1:2009 A.4.2, KSN E00001: the ANSI X9.19 MAC of "4012345678909D987" under
/// the request variant is 9CCC7817, under the response variant 20364223; the message
/// zero-padded to 24 bytes, TDES-CBC with a zero IV under the data request key, is
/// FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F.
async fn dukpt_mac_and_data(service: &TestService) {
    let message = b"4012345678909D987".to_vec();
    for (direction, expected) in [
        (pb::DukptDirection::Request, "9CCC7817"),
        (pb::DukptDirection::Response, "20364223"),
    ] {
        let response: pb::GenerateMacResponse = service
            .call(
                "GenerateMac",
                &pb::GenerateMacRequest {
                    tenant_id: TENANT.into(),
                    key: "alias/bdk".into(),
                    algorithm: pb::MacAlgorithm::Iso9797Alg3.into(),
                    padding: pb::MacPadding::Method1.into(),
                    dukpt: dukpt("FFFF9876543210E00001", direction),
                    message: message.clone(),
                    mac_length: 4,
                    ..Default::default()
                },
            )
            .await
            .expect("mac");
        assert_eq!(response.mac, h(expected), "{direction:?}");
    }
    let mut padded = message;
    padded.resize(24, 0);
    let ciphertext = h("FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F");
    let encryption = Some(pb::Encryption {
        key: "alias/bdk".into(),
        mode: pb::CipherMode::Cbc.into(),
        iv: vec![0; 8],
        dukpt: dukpt("FFFF9876543210E00001", pb::DukptDirection::Request),
    });
    let decrypted: pb::DecryptDataResponse = service
        .call(
            "DecryptData",
            &pb::DecryptDataRequest {
                tenant_id: TENANT.into(),
                encryption: encryption.clone(),
                ciphertext: ciphertext.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("decrypt");
    assert_eq!(decrypted.plaintext, padded);
    let encrypted: pb::EncryptDataResponse = service
        .call(
            "EncryptData",
            &pb::EncryptDataRequest {
                tenant_id: TENANT.into(),
                encryption,
                plaintext: padded,
            },
        )
        .await
        .expect("encrypt");
    assert_eq!(encrypted.ciphertext, ciphertext);
}

/// NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt, first block) and FIPS-197 C.1 (AES-128 ECB);
/// ReEncryptData from the one to the other, checked by decrypting with the published key.
async fn aes_data(service: &TestService) {
    use pb::KeyAlgorithm::Aes128;
    import_known(
        service,
        TENANT,
        attributes(Aes128, "D0", "B", ""),
        "2B7E151628AED2A6ABF7158809CF4F3C",
        "aes-cbc",
    )
    .await;
    import_known(
        service,
        TENANT,
        attributes(Aes128, "D0", "B", ""),
        "000102030405060708090A0B0C0D0E0F",
        "aes-ecb",
    )
    .await;
    let cbc = Some(pb::Encryption {
        key: "alias/aes-cbc".into(),
        mode: pb::CipherMode::Cbc.into(),
        iv: h("000102030405060708090A0B0C0D0E0F"),
        dukpt: None,
    });
    let encrypted: pb::EncryptDataResponse = service
        .call(
            "EncryptData",
            &pb::EncryptDataRequest {
                tenant_id: TENANT.into(),
                encryption: cbc.clone(),
                plaintext: h("6BC1BEE22E409F96E93D7E117393172A"),
            },
        )
        .await
        .expect("cbc");
    assert_eq!(encrypted.ciphertext, h("7649ABAC8119B246CEE98E9B12E9197D"));
    let ecb = Some(pb::Encryption {
        key: "alias/aes-ecb".into(),
        mode: pb::CipherMode::Ecb.into(),
        iv: Vec::new(),
        dukpt: None,
    });
    let encrypted: pb::EncryptDataResponse = service
        .call(
            "EncryptData",
            &pb::EncryptDataRequest {
                tenant_id: TENANT.into(),
                encryption: ecb.clone(),
                plaintext: h("00112233445566778899AABBCCDDEEFF"),
            },
        )
        .await
        .expect("ecb");
    assert_eq!(encrypted.ciphertext, h("69C4E0D86A7B0430D8CDB78070B4C55A"));
    let re_encrypted: pb::ReEncryptDataResponse = service
        .call(
            "ReEncryptData",
            &pb::ReEncryptDataRequest {
                tenant_id: TENANT.into(),
                incoming: cbc,
                outgoing: ecb,
                ciphertext: h("7649ABAC8119B246CEE98E9B12E9197D"),
            },
        )
        .await
        .expect("re-encrypt");
    // FIPS-197 C.1 backwards: the ECB ciphertext of the SP 800-38A plaintext under the C.1
    // key is opened with that key.
    let opened = paycrypto::primitives::aes_decrypt_ecb(
        &h("000102030405060708090A0B0C0D0E0F"),
        &re_encrypted.ciphertext,
    )
    .unwrap();
    assert_eq!(opened, h("6BC1BEE22E409F96E93D7E117393172A"));
}

/// RFC 4493 section 4, example 2 (AES-CMAC); Bouncy Castle ISO9797Alg3MacTest (retail MAC:
/// key 7CA110454A1A6E570131D9619DC1376E, "Hello World !!!!" → F09B856213BAB83B).
async fn macs(service: &TestService) {
    use pb::KeyAlgorithm::{Aes128, Tdes2key};
    import_known(
        service,
        TENANT,
        attributes(Aes128, "M6", "C", ""),
        "2B7E151628AED2A6ABF7158809CF4F3C",
        "cmac",
    )
    .await;
    import_known(
        service,
        TENANT,
        attributes(Tdes2key, "M3", "C", ""),
        "7CA110454A1A6E570131D9619DC1376E",
        "retail",
    )
    .await;
    for (key, algorithm, message, expected) in [
        (
            "alias/cmac",
            pb::MacAlgorithm::Cmac,
            h("6BC1BEE22E409F96E93D7E117393172A"),
            "070A16B46B4D4144F79BDD9DD04A287C",
        ),
        (
            "alias/retail",
            pb::MacAlgorithm::Iso9797Alg3,
            b"Hello World !!!!".to_vec(),
            "F09B856213BAB83B",
        ),
    ] {
        let generated: pb::GenerateMacResponse = service
            .call(
                "GenerateMac",
                &pb::GenerateMacRequest {
                    tenant_id: TENANT.into(),
                    key: key.into(),
                    algorithm: algorithm.into(),
                    message: message.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect("mac");
        assert_eq!(generated.mac, h(expected), "{key}");
        for (mac, verified) in [(h(expected), true), (h(&expected.replace('0', "1")), false)] {
            let response: pb::VerifyMacResponse = service
                .call(
                    "VerifyMac",
                    &pb::VerifyMacRequest {
                        tenant_id: TENANT.into(),
                        key: key.into(),
                        algorithm: algorithm.into(),
                        message: message.clone(),
                        mac,
                        ..Default::default()
                    },
                )
                .await
                .expect("verify");
            assert_eq!(response.verified, verified, "{key}");
        }
    }
}

/// The Visa CVV test data (CVK 0123456789ABCDEF / FEDCBA9876543210, PAN 4123456789012345,
/// expiry 8701, service code 101 → 561), as cited in paycrypto's tests/cvv.rs.
async fn card_validation(service: &TestService) {
    import_known(
        service,
        TENANT,
        attributes(pb::KeyAlgorithm::Tdes2key, "C0", "C", ""),
        BDK,
        "cvk",
    )
    .await;
    let generated: pb::GenerateCardValidationDataResponse = service
        .call(
            "GenerateCardValidationData",
            &pb::GenerateCardValidationDataRequest {
                tenant_id: TENANT.into(),
                key: "alias/cvk".into(),
                method: pb::CardValidationMethod::Cvv.into(),
                pan: "4123456789012345".into(),
                expiry: "8701".into(),
                service_code: "101".into(),
                ..Default::default()
            },
        )
        .await
        .expect("cvv");
    assert_eq!(generated.value, "561");
    for (value, verified) in [("561", true), ("562", false)] {
        let response: pb::VerifyCardValidationDataResponse = service
            .call(
                "VerifyCardValidationData",
                &pb::VerifyCardValidationDataRequest {
                    tenant_id: TENANT.into(),
                    key: "alias/cvk".into(),
                    method: pb::CardValidationMethod::Cvv.into(),
                    pan: "4123456789012345".into(),
                    expiry: "8701".into(),
                    service_code: "101".into(),
                    value: value.into(),
                    ..Default::default()
                },
            )
            .await
            .expect("verify cvv");
        assert_eq!(response.verified, verified);
    }
}

/// pyemv tests/test_cvn_hsm.py `test_visa_cvn10` (cited in paycrypto's tests/emv.rs):
/// IMK-AC 0123456789ABCDEFFEDCBA9876543210, PAN 1234567890123456, PSN 00, ARQC over the
/// CDOL1 data ‖ CVR 03A06010 → 29CCA15AE665FA2E; ARPC method 1 with ARC "00" (3030) →
/// 28993816AFAE4AEB.
async fn arqc(service: &TestService) {
    import_known(
        service,
        TENANT,
        attributes(pb::KeyAlgorithm::Tdes2key, "E0", "X", ""),
        BDK,
        "imk-ac",
    )
    .await;
    let data =
        h("000000004000 000000000000 0124 8000048000 0124 191105 01 52BF4585 1800 001C 03A06010");
    for (arqc, verified, arpc) in [
        ("29CCA15AE665FA2E", true, "28993816AFAE4AEB"),
        ("29CCA15AE665FA2F", false, ""),
    ] {
        let response: pb::VerifyAuthRequestCryptogramResponse = service
            .call(
                "VerifyAuthRequestCryptogram",
                &pb::VerifyAuthRequestCryptogramRequest {
                    tenant_id: TENANT.into(),
                    key: "alias/imk-ac".into(),
                    derivation: pb::MasterKeyDerivation::OptionA.into(),
                    session_key_scheme: pb::SessionKeyScheme::VisaCvn10.into(),
                    pan: "1234567890123456".into(),
                    pan_sequence_number: "00".into(),
                    atc: h("001C"),
                    transaction_data: data.clone(),
                    arqc: h(arqc),
                    arpc: Some(
                        pb::verify_auth_request_cryptogram_request::Arpc::ArpcMethod1(
                            pb::ArpcMethod1 {
                                auth_response_code: b"00".to_vec(),
                            },
                        ),
                    ),
                    ..Default::default()
                },
            )
            .await
            .expect("arqc");
        assert_eq!(response.verified, verified);
        assert_eq!(response.arpc, h(arpc));
    }
}

/// Bad input: each a typed error with the shared code, and nothing written.
async fn bad_input_changes_nothing(service: &TestService) {
    import_known(
        service,
        "other",
        attributes(pb::KeyAlgorithm::Tdes2key, "M3", "C", ""),
        "7CA110454A1A6E570131D9619DC1376E",
        "theirs",
    )
    .await;
    let theirs = service
        .hsm
        .registry()
        .resolve("other", "alias/theirs")
        .expect("other tenant's key")
        .key_id
        .clone();
    let before = service.event_count().await;
    let keys_before = service
        .hsm
        .list_keys(&pb::ListKeysRequest {
            tenant_id: TENANT.into(),
        })
        .unwrap();

    let mac = |key: &str| pb::GenerateMacRequest {
        tenant_id: TENANT.into(),
        key: key.into(),
        algorithm: pb::MacAlgorithm::Iso9797Alg3.into(),
        message: b"data".to_vec(),
        ..Default::default()
    };
    let translate = |block: &str, ksn: &str| pb::TranslatePinDataRequest {
        tenant_id: TENANT.into(),
        incoming: Some(pb::PinBlockKey {
            key: "alias/bdk".into(),
            format: pb::PinBlockFormat::Iso0.into(),
            dukpt: dukpt(ksn, pb::DukptDirection::Request),
        }),
        outgoing: Some(pb::PinBlockKey {
            key: "alias/zpk".into(),
            format: pb::PinBlockFormat::Iso0.into(),
            dukpt: None,
        }),
        pin_block: block.into(),
        pan: "4012345678909".into(),
        ..Default::default()
    };
    let cases: Vec<(&str, mpos_errors::ServiceError, ErrorCode)> = vec![
        (
            "MAC with a PIN key",
            service
                .call::<_, pb::GenerateMacResponse>("GenerateMac", &mac("alias/zpk"))
                .await
                .unwrap_err(),
            ErrorCode::BadRequest,
        ),
        (
            "unknown key",
            service
                .call::<_, pb::GenerateMacResponse>("GenerateMac", &mac("alias/nope"))
                .await
                .unwrap_err(),
            ErrorCode::NotFound,
        ),
        (
            "another tenant's key by id",
            service
                .call::<_, pb::GenerateMacResponse>("GenerateMac", &mac(&theirs))
                .await
                .unwrap_err(),
            ErrorCode::NotFound,
        ),
        (
            "another tenant's alias",
            service
                .call::<_, pb::GenerateMacResponse>("GenerateMac", &mac("alias/theirs"))
                .await
                .unwrap_err(),
            ErrorCode::NotFound,
        ),
        (
            "malformed PIN block (not hex)",
            service
                .call::<_, pb::TranslatePinDataResponse>(
                    "TranslatePinData",
                    &translate("1B9C1845EB993A7Z", "FFFF9876543210E00001"),
                )
                .await
                .unwrap_err(),
            ErrorCode::BadRequest,
        ),
        (
            "malformed PIN block (short)",
            service
                .call::<_, pb::TranslatePinDataResponse>(
                    "TranslatePinData",
                    &translate("1B9C1845EB99", "FFFF9876543210E00001"),
                )
                .await
                .unwrap_err(),
            ErrorCode::BadRequest,
        ),
        (
            "wrong KSN length",
            service
                .call::<_, pb::TranslatePinDataResponse>(
                    "TranslatePinData",
                    &translate("1B9C1845EB993A7A", "FFFF9876543210E000"),
                )
                .await
                .unwrap_err(),
            ErrorCode::BadRequest,
        ),
        (
            "a PIN block that does not decode (wrong PIN block for the KSN)",
            service
                .call::<_, pb::TranslatePinDataResponse>(
                    "TranslatePinData",
                    &translate("1B9C1845EB993A7A", "FFFF9876543210E00002"),
                )
                .await
                .unwrap_err(),
            ErrorCode::BadRequest,
        ),
        (
            "malformed tenant id",
            service
                .call::<_, pb::GenerateMacResponse>(
                    "GenerateMac",
                    &pb::GenerateMacRequest {
                        tenant_id: "Acme Pay!".into(),
                        ..mac("alias/retail")
                    },
                )
                .await
                .unwrap_err(),
            ErrorCode::BadRequest,
        ),
    ];
    for (what, error, code) in cases {
        assert_eq!(error.code, code, "{what}: {error:?}");
        assert!(!error.message.is_empty(), "{what}");
        // No key material, PIN block or PAN in the message.
        for secret in [BDK, ZPK, "4012345678909", "041274EDCBA9876F"] {
            assert!(!error.message.contains(secret), "{what}: {}", error.message);
        }
    }
    assert_eq!(
        service.event_count().await,
        before,
        "bad input wrote events"
    );
    let keys_after = service
        .hsm
        .list_keys(&pb::ListKeysRequest {
            tenant_id: TENANT.into(),
        })
        .unwrap();
    assert_eq!(keys_after, keys_before);
}

/// No event carries key material: neither the imported keys nor their components.
async fn events_hold_no_key_material(service: &TestService) {
    let events = service.store.read_after(0, 100_000).await.unwrap();
    assert!(!events.is_empty());
    for event in events {
        let text = event.event.payload.to_uppercase();
        for secret in [
            BDK,
            ZPK,
            "2B7E151628AED2A6ABF7158809CF4F3C",
            "7CA110454A1A6E570131D9619DC1376E",
        ] {
            assert!(
                !text.contains(secret),
                "event {} holds a key",
                event.event.event_type
            );
        }
        assert!(
            !text.contains("1111111111111111"),
            "event holds a component"
        );
    }
}

/// The registry rebuilt from the log answers exactly like the live one.
async fn registry_replays(service: &TestService) {
    let rebuilt = hsm_proxy::registry::Registry::new(service.store.clone());
    rebuilt.catch_up().await.unwrap();
    for tenant in [TENANT, "other"] {
        let live: Vec<pb::Key> = service
            .hsm
            .registry()
            .list(tenant)
            .iter()
            .map(|entry| entry.to_proto())
            .collect();
        let replayed: Vec<pb::Key> = rebuilt
            .list(tenant)
            .iter()
            .map(|entry| entry.to_proto())
            .collect();
        assert!(!live.is_empty());
        assert_eq!(live, replayed, "{tenant}");
    }
}

async fn all_operations(service: TestService) {
    known_keys(&service).await;
    translate_pin_dukpt_to_zpk(&service).await;
    dukpt_mac_and_data(&service).await;
    aes_data(&service).await;
    macs(&service).await;
    card_validation(&service).await;
    arqc(&service).await;
    common::pin_data(&service).await;
    bad_input_changes_nothing(&service).await;
    events_hold_no_key_material(&service).await;
    registry_replays(&service).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_the_embedded_default() {
    all_operations(common::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_postgres_and_nats() {
    all_operations(common::distributed().await).await;
}
