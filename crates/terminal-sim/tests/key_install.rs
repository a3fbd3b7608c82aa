//! Key installation on the simulated PED without key-injection: TR-34 one-pass key tokens
//! built here with `paycrypto::tr34::build_key_token` (as the hsm-proxy builds them: header
//! `B0000B1TX00N0000` / `D0000B1AX00N0000`, RSA-OAEP-SHA-256, AES-128-CBC, PKCS #1 v1.5
//! signature, signing time), installed with `Terminal::install_delivery`, then the device's
//! transactions checked against published DUKPT vectors.
//!
//! Sources of the expected values:
//! * ANSI X9.24-1:2009 Annex A.4 (BDK 0123456789ABCDEFFEDCBA9876543210, initial KSN
//!   FFFF9876543210E00000, IPEK 6AC292FAA1315B4D858AB3A3D7D5933A, PIN 1234, PAN
//!   4012345678909, message "4012345678909D987"), A.4.2 initial sequence, as transcribed in
//!   the openemv/dukpt project (Leon Lynch), test/dukpt_tdes_test.c: encrypted PIN blocks
//!   1B9C1845EB993A7A (E00001) and 18DC07B94797B466 (E00003), TDES-CBC (zero IV) of the
//!   zero-padded message under the data request key of E00002
//!   A2B4E70F846E63D68775B7215EB4563DFD3037244C61CC13.
//! * The PIN variant key of KSN FFFF9876543210E00001, 042666B49184CF5C68DE9628D0397B36, as
//!   published in the shenyan1206/dukpt test suite (test/test_dukpt.js).
//! * ANSI X9.24-3-2017 supplement test vectors (ASC X9, "X9.24 Part 3 Test Vectors"; AES-128
//!   BDK FEDCBA9876543210F1F1F1F1F1F1F1F1, initial key id 1234567890123456, initial key
//!   1273671EA26AC29AFA4D1084127652A1), as transcribed in openemv/dukpt
//!   test/dukpt_aes128_test.c: PIN encryption key of counter 1
//!   AF8CB133A78F8DC2D1359F18527593FB, data encryption key of counter 2
//!   D639514AA33AC43AD9229E433D6D4E5B.

mod common;

use common::*;
use mpos_proto::key_injection as ki_pb;
use paycrypto::dukpt::tdes::{self, DataKeyDerivation, KeyUsage};
use paycrypto::pin::{Pan, Pin, PinBlockFormat};
use paycrypto::primitives::{aes_decrypt_cbc, tdes_decrypt_cbc};
use paycrypto::{CryptoError, kcv};
use terminal_sim::{DeviceKeyKind, ManufacturerCa, SimError, Track2};

#[test]
fn a_tr34_tdes_initial_key_gives_the_published_x9_24_1_transactions() {
    let pki = pki();
    let mut ped = terminal(&pki.ped, pki.rki_ca.certificate_der());
    let ipek = secret(IPEK);
    let delivery = delivery(
        ki_pb::DukptAlgorithm::Tdes,
        INITIAL_KSN,
        token(&pki.kdh, pki.ped.certificate_der(), &ipek, TDES_HEADER),
    );
    // The JSON the key-injection device API answers decodes to the same delivery.
    let wire = serde_json::to_value(&delivery).expect("json");
    assert_eq!(wire["method"], "DELIVERY_METHOD_TR34");
    let decoded: ki_pb::DeviceKeyDelivery = serde_json::from_value(wire).expect("decode");
    assert_eq!(decoded, delivery);

    let installed = ped.install_delivery(&decoded).expect("install");
    assert_eq!(installed.initial_key_id, INITIAL_KSN);
    assert_eq!(installed.algorithm, ki_pb::DukptAlgorithm::Tdes);
    // The KCV the hsm-proxy reports for a TDES initial key (kcv_of: tdes_kcv).
    assert_eq!(installed.kcv, kcv::tdes_kcv(&ipek).expect("kcv").to_hex());
    assert_eq!(ped.counter(), Some(1));

    let pan = Pan::new("4012345678909").expect("pan");
    let pin = Pin::new("1234").expect("pin");
    let first = ped.pin_block(&pan, &pin).expect("pin block");
    assert_eq!(first.ksn, "FFFF9876543210E00001");
    assert_eq!(first.format, PinBlockFormat::Iso0);
    assert_eq!(
        hex::encode_upper(&first.block),
        "1B9C1845EB993A7A",
        "A.4.2, E00001"
    );
    assert_eq!(first.masked_pan, "401234***8909");
    // The host side, from the BDK: the published PIN key of E00001, and the PIN comes back.
    let ksn = tdes::Ksn::from_hex(&first.ksn).expect("ksn");
    let pin_key = tdes::host_working_key(
        &secret(BDK),
        &ksn,
        KeyUsage::PinEncryption,
        DataKeyDerivation::OneWay,
    )
    .expect("pin key");
    assert_eq!(pin_key.to_hex_upper(), "042666B49184CF5C68DE9628D0397B36");
    let clear =
        paycrypto::pin::decrypt_pin_block(PinBlockFormat::Iso0, &pin_key, &first.block, Some(&pan))
            .expect("decrypt");
    assert_eq!(clear, pin);
    // No key material and no full PAN in what a caller may print.
    let printed = format!("{first:?} {installed:?} {ped:?}");
    for secret_text in [IPEK, "042666B4", "4012345678909"] {
        assert!(!printed.contains(secret_text), "{printed}");
    }

    // The counter advances: card data on E00002 is the published data request ciphertext.
    let track = Track2::parse("4012345678909D987").expect("track 2");
    let card = ped.encrypt_card_data(&track).expect("card data");
    assert_eq!(card.ksn, "FFFF9876543210E00002");
    assert_eq!(
        hex::encode_upper(&card.ciphertext),
        "A2B4E70F846E63D68775B7215EB4563DFD3037244C61CC13",
        "A.4.2, E00002"
    );
    let data_key = tdes::host_working_key(
        &secret(BDK),
        &tdes::Ksn::from_hex(&card.ksn).expect("ksn"),
        KeyUsage::DataRequest,
        DataKeyDerivation::OneWay,
    )
    .expect("data key");
    let plaintext =
        tdes_decrypt_cbc(data_key.expose(), &[0; 8], &card.ciphertext).expect("decrypt");
    assert_eq!(&plaintext[..17], b"4012345678909D987");
    assert!(plaintext[17..].iter().all(|b| *b == 0));
    // The hsm-proxy request that deciphers it names the BDK, CBC and the KSN.
    let request = card.hsm_decrypt_request("acme", "alias/bdk");
    let encryption = request.encryption.expect("encryption");
    assert_eq!(encryption.dukpt.expect("dukpt").ksn, card.ksn);
    assert_eq!(encryption.mode, mpos_proto::hsm::CipherMode::Cbc as i32);

    let third = ped.pin_block(&pan, &pin).expect("pin block");
    assert_eq!(third.ksn, "FFFF9876543210E00003");
    assert_eq!(
        hex::encode_upper(&third.block),
        "18DC07B94797B466",
        "A.4.2, E00003"
    );
    assert_eq!(ped.counter(), Some(4));
}

#[test]
fn a_tr34_aes_initial_key_gives_the_published_x9_24_3_working_keys() {
    let pki = pki();
    let mut ped = terminal(&pki.ped, pki.rki_ca.certificate_der());
    let initial_key = secret(AES_INITIAL_KEY);
    let installed = ped
        .install_delivery(&delivery(
            ki_pb::DukptAlgorithm::Aes128,
            AES_INITIAL_KEY_ID,
            token(
                &pki.kdh,
                pki.ped.certificate_der(),
                &initial_key,
                AES_HEADER,
            ),
        ))
        .expect("install");
    // The KCV the hsm-proxy reports for an AES initial key (kcv_of: CMAC).
    assert_eq!(
        installed.kcv,
        kcv::aes_kcv_cmac(&initial_key).expect("kcv").to_hex()
    );

    let pan = Pan::new("4111111111111111").expect("pan");
    let pin = Pin::new("1234").expect("pin");
    let block = ped.pin_block(&pan, &pin).expect("pin block");
    assert_eq!(block.ksn, "123456789012345600000001");
    assert_eq!(block.format, PinBlockFormat::Iso4);
    let clear = paycrypto::pin::decrypt_pin_block(
        PinBlockFormat::Iso4,
        &secret("AF8CB133A78F8DC2D1359F18527593FB"),
        &block.block,
        Some(&pan),
    )
    .expect("the published PIN key of counter 1 opens it");
    assert_eq!(clear, pin);

    let card = ped
        .encrypt_card_data(&Track2::parse("4111111111111111D29121010000").expect("track"))
        .expect("card data");
    assert_eq!(card.ksn, "123456789012345600000002");
    let plaintext = aes_decrypt_cbc(
        &h("D639514AA33AC43AD9229E433D6D4E5B"),
        &[0; 16],
        &card.ciphertext,
    )
    .expect("the published data key of counter 2 opens it");
    assert_eq!(&plaintext[..28], b"4111111111111111D29121010000");
    assert!(plaintext[28..].iter().all(|b| *b == 0));
    assert_eq!(ped.counter(), Some(3));
}

#[test]
fn deliveries_for_another_device_or_from_an_untrusted_kdh_are_refused() {
    let pki = pki();
    let ipek = secret(IPEK);
    let mut ped = terminal(&pki.ped, pki.rki_ca.certificate_der());

    // A token for another device's certificate.
    let foreign = delivery(
        ki_pb::DukptAlgorithm::Tdes,
        INITIAL_KSN,
        token(
            &pki.kdh,
            pki.other_ped.certificate_der(),
            &ipek,
            TDES_HEADER,
        ),
    );
    let error = ped
        .install_delivery(&foreign)
        .expect_err("not for this device");
    assert!(
        matches!(error, SimError::Crypto(CryptoError::VerificationFailed(_))),
        "{error}"
    );
    assert_eq!(ped.counter(), None, "nothing installed");
    // The other device opens it.
    let mut other = terminal(&pki.other_ped, pki.rki_ca.certificate_der());
    other.install_delivery(&foreign).expect("its own token");

    // A device that trusts another KDH CA refuses the platform's token.
    let stranger_ca =
        ManufacturerCa::generate_with("Other RKI CA", DeviceKeyKind::Rsa2048).expect("ca");
    let mut wary = terminal(&pki.ped, stranger_ca.certificate_der());
    let ours = delivery(
        ki_pb::DukptAlgorithm::Tdes,
        INITIAL_KSN,
        token(&pki.kdh, pki.ped.certificate_der(), &ipek, TDES_HEADER),
    );
    assert!(matches!(
        wary.install_delivery(&ours),
        Err(SimError::Crypto(CryptoError::VerificationFailed(_)))
    ));

    // A key that is not a DUKPT initial key, or not of the announced algorithm.
    let not_ipek = delivery(
        ki_pb::DukptAlgorithm::Tdes,
        INITIAL_KSN,
        token(
            &pki.kdh,
            pki.ped.certificate_der(),
            &ipek,
            "B0000P0TE00N0000",
        ),
    );
    assert!(matches!(
        ped.install_delivery(&not_ipek),
        Err(SimError::Delivery(_))
    ));
    let mut mislabelled = ours.clone();
    mislabelled.algorithm = ki_pb::DukptAlgorithm::Aes128.into();
    mislabelled.initial_key_id = AES_INITIAL_KEY_ID.to_owned();
    assert!(matches!(
        ped.install_delivery(&mislabelled),
        Err(SimError::Delivery(_))
    ));

    // ECDH: an RSA device cannot take it; a P-256 device waits for the ECDH unwrap.
    let ecdh = ki_pb::DeviceKeyDelivery {
        method: ki_pb::DeliveryMethod::EcdhTr31.into(),
        algorithm: ki_pb::DukptAlgorithm::Aes128.into(),
        initial_key_id: AES_INITIAL_KEY_ID.to_owned(),
        ephemeral_public_key: vec![4; 65],
        key_block: "D0000B1AX00N0000".to_owned(),
        ..ki_pb::DeviceKeyDelivery::default()
    };
    assert!(matches!(
        ped.install_delivery(&ecdh),
        Err(SimError::Delivery(_))
    ));
    let ec = pki
        .vendor
        .issue(&[0x7E, 0x03], DeviceKeyKind::P256)
        .expect("ec device");
    let mut ec_ped = terminal(&ec, pki.rki_ca.certificate_der());
    // A made-up ephemeral key is no P-256 point: refused as bad cryptographic input.
    assert!(matches!(
        ec_ped.install_delivery(&ecdh),
        Err(SimError::Crypto(_))
    ));
    // A real ECDH delivery of the X9.24-3 published initial key, for this device's key.
    use paycrypto::tr31::{
        Algorithm, Exportability, KeyBlockHeader, KeyUsage as Usage, ModeOfUse, Version,
    };
    let header = KeyBlockHeader::new(
        Version::D,
        Usage::B1,
        Algorithm::Aes,
        ModeOfUse::Derive,
        Exportability::NonExportable,
    );
    let initial_key =
        paycrypto::SecretBytes::from_slice(&hex::decode(AES_INITIAL_KEY).expect("hex"));
    // The device's key, as key-injection reads it from the bound certificate.
    let public =
        paycrypto::ecdh::p256_public_key_from_certificate(ec.certificate_der()).expect("p-256 key");
    let wrapped =
        paycrypto::ecdh::wrap_for_device(&mut rand::rngs::OsRng, &public, &header, &initial_key)
            .expect("wrap");
    let real = ki_pb::DeviceKeyDelivery {
        ephemeral_public_key: wrapped.ephemeral_public_key.clone(),
        key_block: wrapped.key_block.clone(),
        ..ecdh.clone()
    };
    let installed = ec_ped.install_delivery(&real).expect("ecdh install");
    assert_eq!(installed.initial_key_id, AES_INITIAL_KEY_ID);
    assert_eq!(
        installed.kcv,
        kcv::aes_kcv_cmac(&initial_key).expect("kcv").to_hex()
    );
    // Another P-256 device cannot open it.
    let stranger = pki
        .vendor
        .issue(&[0x7E, 0x04], DeviceKeyKind::P256)
        .expect("ec device");
    let mut stranger_ped = terminal(&stranger, pki.rki_ca.certificate_der());
    assert!(matches!(
        stranger_ped.install_delivery(&real),
        Err(SimError::Crypto(_))
    ));
    // And an EC device cannot open TR-34.
    assert!(matches!(
        ec_ped.install_delivery(&ours),
        Err(SimError::Delivery(_))
    ));
}
