//! Sealed card data (docs/hsm-proxy.md, "Sealed card data"): the sealed forms of DecryptData,
//! TranslatePinData and GenerateMac give what the clear forms give, with published vectors;
//! a field sealed to a key the hsm-proxy no longer holds is `conflict` and `HsmClient` fetches
//! the key again; a sealed field opens only in its own field and request; `require` refuses
//! clear card data; and a scan of every request and reply (recorded on the in-process bus, and
//! on a real NATS server with a raw subscription to `>`) finds neither the PAN nor the track 2.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{
    BDK, KBPK, PAN, TENANT, TestService, ZPK, attributes, dukpt, h, import_known, unique,
};
use hsm_proxy::rpc::{HsmClient, is_unknown_sealing_key};
use hsm_proxy::sealing::{SealedCardData, UNKNOWN_SEALING_KEY};
use mpos_bus::{BusError, Message, RequestHandler, RequestReply, ServeHandle};
use mpos_errors::{ErrorCode, ServiceError};
use mpos_proto::common as common_pb;
use mpos_proto::hsm as pb;
use mpos_seal::{Sealer, context};
use paycrypto::SecretBytes;
use paycrypto::dukpt::tdes as tdes_dukpt;
use paycrypto::pin::{Pan, Pin, PinBlockFormat, encrypt_pin_block};
use paycrypto::primitives::{tdes_decrypt_ecb, tdes_encrypt_cbc};
use paycrypto::tr31::{
    self, Algorithm, Exportability, KeyBlockHeader, KeyLengthMasking, KeyUsage, ModeOfUse, Version,
};
use prost::Message as _;

/// The tenant's card-token key (HMAC-SHA-256, M7), known to the test.
const TOKEN_KEY: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
/// ANSI X9.24-1:2009 A.4.2, KSN E00001: "4012345678909D987" zero-padded to 24 bytes,
/// TDES-CBC with a zero IV under the data request key.
const CARD_DATA_CIPHERTEXT: &str = "FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F";
const CARD_DATA: &[u8] = b"4012345678909D987";

// ------------------------------------------------------------------------------------------
// Recording every request and reply of a caller
// ------------------------------------------------------------------------------------------

/// Messages as (subject, bytes).
type Captured = Vec<(String, Vec<u8>)>;

/// Every message one caller sent and received, as bytes: subject, header names and values,
/// body (and an error's message).
#[derive(Debug, Default)]
struct Traffic {
    messages: Mutex<Captured>,
}

impl Traffic {
    fn record(&self, subject: &str, message: &Message) {
        let mut bytes = Vec::new();
        for (name, value) in &message.headers {
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(value.as_bytes());
        }
        bytes.extend_from_slice(&message.payload);
        self.messages
            .lock()
            .unwrap()
            .push((subject.to_owned(), bytes));
    }

    fn take(&self) -> Captured {
        std::mem::take(&mut *self.messages.lock().unwrap())
    }

    fn subjects(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|(subject, _)| subject.clone())
            .collect()
    }
}

/// A request-reply port that records what goes through it (the in-process bus has no
/// subscriber that sees request-reply traffic).
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn RequestReply>,
    traffic: Arc<Traffic>,
}

#[async_trait]
impl RequestReply for Recording {
    async fn request(
        &self,
        subject: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        self.traffic.record(subject, &request);
        let result = self.inner.request(subject, request, timeout).await;
        match &result {
            Ok(reply) => self.traffic.record(&format!("reply {subject}"), reply),
            Err(BusError::Rejected(error)) => self.traffic.record(
                &format!("error {subject}"),
                &Message::new(error.message.clone().into_bytes()),
            ),
            Err(_) => {}
        }
        result
    }

    async fn serve(
        &self,
        subject: &str,
        queue_group: &str,
        handler: Arc<dyn RequestHandler>,
    ) -> Result<ServeHandle, BusError> {
        self.inner.serve(subject, queue_group, handler).await
    }
}

/// A client with its own process sealer, over a recording port.
fn sealed_client(service: &TestService) -> (HsmClient, Arc<Traffic>) {
    let traffic = Arc::new(Traffic::default());
    let port: Arc<dyn RequestReply> = Arc::new(Recording {
        inner: service.requests.clone(),
        traffic: traffic.clone(),
    });
    let client = HsmClient::new(port, "service:authorization", Duration::from_secs(10))
        .with_sealer(Arc::new(Sealer::new().unwrap()));
    (client, traffic)
}

fn subjects_of(messages: &[(String, Vec<u8>)]) -> Vec<&str> {
    messages
        .iter()
        .map(|(subject, _)| subject.as_str())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// The messages holding any 10 consecutive digits of `pan`, or `secret`.
fn leaks<'m>(messages: &'m [(String, Vec<u8>)], pan: &str, secret: &[u8]) -> Vec<&'m str> {
    let digits = pan.as_bytes();
    messages
        .iter()
        .filter(|(_, bytes)| {
            contains(bytes, secret) || digits.windows(10).any(|window| contains(bytes, window))
        })
        .map(|(subject, _)| subject.as_str())
        .collect()
}

// ------------------------------------------------------------------------------------------
// Keys and card data
// ------------------------------------------------------------------------------------------

async fn known_keys(service: &TestService) {
    use pb::KeyAlgorithm::Aes256;
    common::import_bdk(service, "").await;
    common::import_zpk(service).await;
    // HMAC keys cannot be entered as components: the known token key comes as a TR-31
    // version D block under a key block protection key entered as components.
    import_known(
        service,
        TENANT,
        attributes(Aes256, "K0", "B", ""),
        KBPK,
        "kbpk",
    )
    .await;
    let header = KeyBlockHeader::new(
        Version::D,
        KeyUsage::from_code("M7").unwrap(),
        Algorithm::Hmac,
        ModeOfUse::from_code("C").unwrap(),
        Exportability::NonExportable,
    );
    let block = tr31::wrap(
        &h(KBPK),
        &header,
        &h(TOKEN_KEY),
        KeyLengthMasking::None,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let _: pb::Key = service
        .call(
            "ImportKey",
            &pb::ImportKeyRequest {
                tenant_id: TENANT.into(),
                alias: "card-token".into(),
                material: Some(pb::import_key_request::Material::Tr31(pb::Tr31Import {
                    wrapping_key: "alias/kbpk".into(),
                    key_block: block,
                })),
            },
        )
        .await
        .expect("import the token key");
}

fn decrypt_request(ksn: &str, ciphertext: Vec<u8>) -> pb::DecryptDataRequest {
    pb::DecryptDataRequest {
        tenant_id: TENANT.into(),
        encryption: Some(pb::Encryption {
            key: "alias/bdk".into(),
            mode: pb::CipherMode::Cbc.into(),
            iv: vec![0; 8],
            dukpt: dukpt(ksn, pb::DukptDirection::Request),
        }),
        ciphertext,
        ..Default::default()
    }
}

fn translate_request(ksn: &str, pin_block: &str) -> pb::TranslatePinDataRequest {
    pb::TranslatePinDataRequest {
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
        pin_block: pin_block.into(),
        ..Default::default()
    }
}

fn token_request() -> pb::GenerateMacRequest {
    pb::GenerateMacRequest {
        tenant_id: TENANT.into(),
        key: "alias/card-token".into(),
        algorithm: pb::MacAlgorithm::HmacSha256.into(),
        ..Default::default()
    }
}

/// A random 16-digit PAN with a valid Luhn check digit: no other traffic on a shared NATS
/// server can hold it by chance.
fn random_pan() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut digits: Vec<u32> = std::iter::once(4)
        .chain((0..14).map(|_| rng.gen_range(0..10)))
        .collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, &digit)| {
            if index % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    let pan: String = digits.iter().map(|digit| digit.to_string()).collect();
    assert!(Pan::new_luhn_checked(&pan).is_ok());
    pan
}

/// A card read by a terminal: track 2 of `pan` enciphered under the X9.24 test BDK's data
/// request key for `ksn` (TDES-CBC, zero IV, zero padding), and a PIN block of PIN 1234
/// (ISO format 0) under its PIN key for `ksn`.
struct Card {
    pan: String,
    track2: Vec<u8>,
    ksn: &'static str,
    card_data: Vec<u8>,
    pin_block: String,
}

fn terminal_card(pan: String) -> Card {
    let ksn = "FFFF9876543210E00003";
    let bdk = SecretBytes::from_hex("bdk", BDK).unwrap();
    let ksn_value = tdes_dukpt::Ksn::from_hex(ksn).unwrap();
    let track2 = format!("{pan}D29121011234567890").into_bytes();
    let mut padded = track2.clone();
    padded.resize(track2.len().div_ceil(8) * 8, 0);
    let data_key = tdes_dukpt::host_working_key(
        &bdk,
        &ksn_value,
        tdes_dukpt::KeyUsage::DataRequest,
        tdes_dukpt::DataKeyDerivation::OneWay,
    )
    .unwrap();
    let card_data = tdes_encrypt_cbc(data_key.expose(), &[0; 8], &padded).unwrap();
    let pin_key = tdes_dukpt::host_working_key(
        &bdk,
        &ksn_value,
        tdes_dukpt::KeyUsage::PinEncryption,
        tdes_dukpt::DataKeyDerivation::OneWay,
    )
    .unwrap();
    let pin_block = encrypt_pin_block(
        PinBlockFormat::Iso0,
        &pin_key,
        &Pin::new("1234").unwrap(),
        Some(&Pan::new(&pan).unwrap()),
        &mut rand::thread_rng(),
    )
    .unwrap();
    Card {
        pan,
        track2,
        ksn,
        card_data,
        pin_block: hex::encode_upper(pin_block),
    }
}

/// DecryptData, TranslatePinData and the card's keyed token, all sealed; checks each answer.
async fn sealed_card_calls(client: &HsmClient, card: &Card) {
    let plaintext = client
        .decrypt_data_sealed(decrypt_request(card.ksn, card.card_data.clone()))
        .await
        .expect("sealed decrypt");
    assert_eq!(&plaintext[..card.track2.len()], card.track2.as_slice());
    assert!(plaintext[card.track2.len()..].iter().all(|byte| *byte == 0));
    let translated = client
        .translate_pin_data_sealed(translate_request(card.ksn, &card.pin_block), &card.pan)
        .await
        .expect("sealed translate");
    let pin = paycrypto::pin::decrypt_pin_block(
        PinBlockFormat::Iso0,
        &SecretBytes::from_hex("zpk", ZPK).unwrap(),
        &h(&translated.pin_block),
        Some(&Pan::new(&card.pan).unwrap()),
    );
    assert!(pin.is_ok(), "the translated block opens under the ZPK");
    let token = client
        .generate_mac_sealed(token_request(), card.pan.as_bytes())
        .await
        .expect("sealed token");
    assert_eq!(token.mac, expected_token(&card.pan));
}

fn expected_token(pan: &str) -> Vec<u8> {
    paycrypto::mac::MacAlgorithm::HmacSha256
        .generate(
            &SecretBytes::from_hex("token", TOKEN_KEY).unwrap(),
            pan.as_bytes(),
            32,
        )
        .unwrap()
}

// ------------------------------------------------------------------------------------------
// Sealed and clear forms agree
// ------------------------------------------------------------------------------------------

/// X9.24-1:2009 A.4.2 (KSN E00001): the sealed DecryptData gives the published plaintext, as
/// the clear one does; its request and reply hold neither the card data nor the PAN.
async fn decrypt_data_sealed_equals_clear(service: &TestService) {
    let (client, traffic) = sealed_client(service);
    let ciphertext = h(CARD_DATA_CIPHERTEXT);
    let clear: pb::DecryptDataResponse = client
        .call(
            "DecryptData",
            &decrypt_request("FFFF9876543210E00001", ciphertext.clone()),
        )
        .await
        .expect("clear decrypt");
    let mut padded = CARD_DATA.to_vec();
    padded.resize(24, 0);
    assert_eq!(clear.plaintext, padded);
    assert!(clear.sealed_plaintext.is_none());
    // The recording sees what the bus carries: the clear form leaks, as a control.
    assert!(!leaks(&traffic.take(), PAN, CARD_DATA).is_empty());

    let sealed = client
        .decrypt_data_sealed(decrypt_request("FFFF9876543210E00001", ciphertext))
        .await
        .expect("sealed decrypt");
    assert_eq!(sealed.as_slice(), padded.as_slice());
    let messages = traffic.take();
    assert!(
        leaks(&messages, PAN, CARD_DATA).is_empty(),
        "{:?}",
        subjects_of(&messages)
    );
    let subjects = subjects_of(&messages);
    assert_eq!(
        subjects,
        [
            "mpos.hsm-proxy.v1.DecryptData",
            "reply mpos.hsm-proxy.v1.DecryptData"
        ]
    );
    // The reply carries the plaintext only sealed.
    let reply = pb::DecryptDataResponse::decode(messages[1].1.as_slice());
    let reply = reply.unwrap();
    assert!(reply.plaintext.is_empty());
    assert!(reply.sealed_plaintext.is_some());
}

/// DecryptData naming a card token key (P2PE decrypt and tokenize, ADR 24): the plaintext of
/// X9.24-1:2009 A.4.2 as without it, and the token GenerateMac gives for its PAN (HMAC-SHA-256
/// under the known token key); a random card's token likewise. Data that is not track 2 is
/// refused with the field named and no digit in the message; without the key no token.
async fn decrypt_and_tokenize(service: &TestService) {
    let (client, traffic) = sealed_client(service);
    let mut request = decrypt_request("FFFF9876543210E00001", h(CARD_DATA_CIPHERTEXT));
    request.card_token_key = "alias/card-token".into();
    let decrypted = client
        .decrypt_card_data_sealed(request)
        .await
        .expect("decrypt and tokenize");
    assert_eq!(&decrypted.plaintext[..CARD_DATA.len()], CARD_DATA);
    assert_eq!(decrypted.card_token, expected_token(PAN));
    // One request and its reply (after the hsm-proxy's sealing key), neither with the PAN or
    // the track 2.
    let messages = traffic.take();
    let subjects = subjects_of(&messages);
    assert_eq!(
        subjects
            .iter()
            .filter(|subject| subject.contains("GetSealingKey"))
            .count()
            + 2,
        subjects.len(),
        "{subjects:?}"
    );
    assert!(leaks(&messages, PAN, CARD_DATA).is_empty());
    let by_mac = client
        .generate_mac_sealed(token_request(), PAN.as_bytes())
        .await
        .expect("token by GenerateMac");
    assert_eq!(decrypted.card_token, by_mac.mac);

    let card = terminal_card(random_pan());
    let mut request = decrypt_request(card.ksn, card.card_data.clone());
    request.card_token_key = "alias/card-token".into();
    let decrypted = client.decrypt_card_data_sealed(request).await.unwrap();
    assert_eq!(decrypted.card_token, expected_token(&card.pan));

    let without = client
        .decrypt_card_data_sealed(decrypt_request(card.ksn, card.card_data.clone()))
        .await
        .unwrap();
    assert!(without.card_token.is_empty());
    assert_eq!(without.plaintext, decrypted.plaintext);

    // Not track 2: the same key's data request key enciphers 16 digits without a separator.
    let bdk = SecretBytes::from_hex("bdk", BDK).unwrap();
    let ksn = tdes_dukpt::Ksn::from_hex(card.ksn).unwrap();
    let data_key = tdes_dukpt::host_working_key(
        &bdk,
        &ksn,
        tdes_dukpt::KeyUsage::DataRequest,
        tdes_dukpt::DataKeyDerivation::OneWay,
    )
    .unwrap();
    let digits = b"4111111111111111";
    let ciphertext = tdes_encrypt_cbc(data_key.expose(), &[0; 8], digits).unwrap();
    let mut request = decrypt_request(card.ksn, ciphertext);
    request.card_token_key = "alias/card-token".into();
    let error = client.decrypt_card_data_sealed(request).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::BadRequest, "{error}");
    let text = error.to_string();
    assert!(text.contains("card_token_key"), "{text}");
    assert!(!text.contains("4111"), "{text}");

    // A token key that does not exist: not found, named.
    let mut request = decrypt_request(card.ksn, card.card_data.clone());
    request.card_token_key = "alias/no-such-token-key".into();
    let error = client.decrypt_card_data_sealed(request).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::NotFound, "{error}");
}

/// X9.24-1:2009 A.4.2: the DUKPT PIN blocks of PIN 1234 / PAN 4012345678909 translate to the
/// same ZPK block (which opens to the published clear block 041274EDCBA9876F) with the PAN
/// sealed as with it in clear.
async fn translate_pin_data_sealed_equals_clear(service: &TestService) {
    let (client, traffic) = sealed_client(service);
    for (ksn, block) in [
        ("FFFF9876543210E00001", "1B9C1845EB993A7A"),
        ("FFFF9876543210E00002", "10A01C8D02C69107"),
    ] {
        let clear = client
            .translate_pin_data(&pb::TranslatePinDataRequest {
                pan: PAN.into(),
                ..translate_request(ksn, block)
            })
            .await
            .expect("clear translate");
        traffic.take();
        let sealed = client
            .translate_pin_data_sealed(translate_request(ksn, block), PAN)
            .await
            .expect("sealed translate");
        assert_eq!(sealed.pin_block, clear.pin_block, "{ksn}");
        let opened = tdes_decrypt_ecb(&h(ZPK), &h(&sealed.pin_block)).unwrap();
        assert_eq!(opened, h("041274EDCBA9876F"), "{ksn}");
        let messages = traffic.take();
        assert!(
            leaks(&messages, PAN, b"").is_empty(),
            "{:?}",
            subjects_of(&messages)
        );
    }
    // The first sealed call fetched the hsm-proxy's key; the second used the cached one.
    let key = client.hsm_sealing_key().await.unwrap();
    assert_eq!(key, service.sealer.public_key());
    assert!(traffic.take().is_empty());
}

/// The card's keyed token: HMAC-SHA-256 (M7) of the PAN digits, sealed, equals the clear
/// GenerateMac and paycrypto's HMAC under the known key; VerifyMac agrees, sealed.
async fn generate_mac_sealed_equals_clear(service: &TestService) {
    let (client, traffic) = sealed_client(service);
    let clear: pb::GenerateMacResponse = client
        .call(
            "GenerateMac",
            &pb::GenerateMacRequest {
                message: PAN.as_bytes().to_vec(),
                ..token_request()
            },
        )
        .await
        .expect("clear token");
    traffic.take();
    let sealed = client
        .generate_mac_sealed(token_request(), PAN.as_bytes())
        .await
        .expect("sealed token");
    assert_eq!(sealed.mac, clear.mac);
    assert_eq!(sealed.mac, expected_token(PAN));
    let verify = |message: &'static str, mac: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .verify_mac_sealed(
                    pb::VerifyMacRequest {
                        tenant_id: TENANT.into(),
                        key: "alias/card-token".into(),
                        algorithm: pb::MacAlgorithm::HmacSha256.into(),
                        mac,
                        ..Default::default()
                    },
                    message.as_bytes(),
                )
                .await
                .expect("sealed verify")
                .verified
        }
    };
    assert!(verify(PAN, sealed.mac.clone()).await);
    assert!(!verify("4012345678901", sealed.mac).await);
    let messages = traffic.take();
    assert!(
        leaks(&messages, PAN, b"").is_empty(),
        "{:?}",
        subjects_of(&messages)
    );
}

/// The other PAN-bearing operations give the published answers with the PAN sealed, as
/// tests/operations.rs checks them in clear: Visa PVV (jPOS `testCalculatePVVImpl1`: PVK
/// "4 times 12345678", PAN 1234567890123, PVKI 0, PIN 1234 → 1226), Visa CVV (CVK
/// 0123456789ABCDEF / FEDCBA9876543210, PAN 4123456789012345, 8701, 101 → 561), Visa CVN 10
/// ARQC (pyemv `test_visa_cvn10`: → 29CCA15AE665FA2E, ARPC 28993816AFAE4AEB).
async fn other_pan_operations_sealed(service: &TestService) {
    use pb::KeyAlgorithm::Tdes2key;
    common::import_pvk(service).await;
    import_known(
        service,
        TENANT,
        attributes(Tdes2key, "C0", "C", ""),
        BDK,
        "cvk",
    )
    .await;
    import_known(
        service,
        TENANT,
        attributes(Tdes2key, "E0", "X", ""),
        BDK,
        "imk-ac",
    )
    .await;
    let (client, traffic) = sealed_client(service);

    let pvv_pan = "1234567890123";
    let pin_block = encrypt_pin_block(
        PinBlockFormat::Iso0,
        &SecretBytes::new(h(ZPK)),
        &Pin::new("1234").unwrap(),
        Some(&Pan::new(pvv_pan).unwrap()),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let pin_fields = || {
        (
            "alias/pvk".to_owned(),
            Some(pb::PinVerification {
                method: pb::PinVerificationMethod::VisaPvv.into(),
                ..Default::default()
            }),
            Some(pb::PinBlockKey {
                key: "alias/zpk".into(),
                format: pb::PinBlockFormat::Iso0.into(),
                dukpt: None,
            }),
            hex::encode_upper(&pin_block),
        )
    };
    let (verification_key, verification, encryption, pin_block_hex) = pin_fields();
    let generated = client
        .generate_pin_data_sealed(
            pb::GeneratePinDataRequest {
                tenant_id: TENANT.into(),
                verification_key,
                verification,
                encryption,
                pin_block: pin_block_hex,
                ..Default::default()
            },
            pvv_pan,
        )
        .await
        .expect("sealed generate pin data");
    assert_eq!(generated.verification_value, "1226");
    for (value, verified) in [("1226", true), ("1227", false)] {
        let (verification_key, verification, encryption, pin_block_hex) = pin_fields();
        let response = client
            .verify_pin_data_sealed(
                pb::VerifyPinDataRequest {
                    tenant_id: TENANT.into(),
                    verification_key,
                    verification,
                    encryption,
                    pin_block: pin_block_hex,
                    verification_value: value.into(),
                    ..Default::default()
                },
                pvv_pan,
            )
            .await
            .expect("sealed verify pin data");
        assert_eq!(response.verified, verified, "{value}");
    }

    let cvv_pan = "4123456789012345";
    let generated = client
        .generate_card_validation_data_sealed(
            pb::GenerateCardValidationDataRequest {
                tenant_id: TENANT.into(),
                key: "alias/cvk".into(),
                method: pb::CardValidationMethod::Cvv.into(),
                expiry: "8701".into(),
                service_code: "101".into(),
                ..Default::default()
            },
            cvv_pan,
        )
        .await
        .expect("sealed cvv");
    assert_eq!(generated.value, "561");
    for (value, verified) in [("561", true), ("562", false)] {
        let response = client
            .verify_card_validation_data_sealed(
                pb::VerifyCardValidationDataRequest {
                    tenant_id: TENANT.into(),
                    key: "alias/cvk".into(),
                    method: pb::CardValidationMethod::Cvv.into(),
                    expiry: "8701".into(),
                    service_code: "101".into(),
                    value: value.into(),
                    ..Default::default()
                },
                cvv_pan,
            )
            .await
            .expect("sealed verify cvv");
        assert_eq!(response.verified, verified, "{value}");
    }

    let emv_pan = "1234567890123456";
    let data =
        h("000000004000 000000000000 0124 8000048000 0124 191105 01 52BF4585 1800 001C 03A06010");
    for (arqc, verified, arpc) in [
        ("29CCA15AE665FA2E", true, "28993816AFAE4AEB"),
        ("29CCA15AE665FA2F", false, ""),
    ] {
        let response = client
            .verify_auth_request_cryptogram_sealed(
                pb::VerifyAuthRequestCryptogramRequest {
                    tenant_id: TENANT.into(),
                    key: "alias/imk-ac".into(),
                    derivation: pb::MasterKeyDerivation::OptionA.into(),
                    session_key_scheme: pb::SessionKeyScheme::VisaCvn10.into(),
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
                emv_pan,
            )
            .await
            .expect("sealed arqc");
        assert_eq!(response.verified, verified);
        assert_eq!(response.arpc, h(arpc));
    }
    let messages = traffic.take();
    for pan in [pvv_pan, cvv_pan, emv_pan] {
        assert!(
            leaks(&messages, pan, b"").is_empty(),
            "{:?}",
            subjects_of(&messages)
        );
    }
}

// ------------------------------------------------------------------------------------------
// Keys that changed, fields out of place, both forms
// ------------------------------------------------------------------------------------------

fn seal_for(
    sealer: &Sealer,
    recipient: &mpos_seal::PublicKey,
    field: &str,
    request_id: &str,
    value: &[u8],
) -> common_pb::Sealed {
    common_pb::Sealed::from(
        sealer
            .seal(recipient, &context(field, request_id), value)
            .unwrap(),
    )
}

/// Calls `operation`, which must be refused. (The reply type has no fields: any reply would
/// decode, so a request that is not refused fails the test.)
async fn rejected<Q: prost::Message>(
    service: &TestService,
    operation: &str,
    request: &Q,
) -> ServiceError {
    service
        .call::<_, pb::GetSealingKeyRequest>(operation, request)
        .await
        .expect_err("refused")
}

/// A field sealed to a key the hsm-proxy no longer holds is `conflict` "unknown sealing key";
/// `HsmClient` then fetches the key again and succeeds.
async fn stale_key_is_refetched(service: &TestService) {
    let caller = Sealer::new().unwrap();
    // A key of an earlier hsm-proxy process (a new Sealer stands for it).
    let earlier = Sealer::new().unwrap();
    let request_id = unique("req-");
    let error = rejected(
        service,
        "TranslatePinData",
        &pb::TranslatePinDataRequest {
            request_id: request_id.clone(),
            sealed_pan: Some(seal_for(
                &caller,
                &earlier.public_key(),
                "hsm.TranslatePinDataRequest.pan",
                &request_id,
                PAN.as_bytes(),
            )),
            ..translate_request("FFFF9876543210E00001", "1B9C1845EB993A7A")
        },
    )
    .await;
    assert_eq!(error.code, ErrorCode::Conflict, "{error}");
    assert!(error.message.contains(UNKNOWN_SEALING_KEY), "{error}");
    assert!(is_unknown_sealing_key(&error));
    assert!(!error.message.contains(PAN));

    // The client caches the hsm-proxy's key; the hsm-proxy then rotates twice (as good as a
    // restart: the cached key is gone).
    let (client, traffic) = sealed_client(service);
    let before = client.hsm_sealing_key().await.unwrap();
    service.sealer.rotate().unwrap();
    service.sealer.rotate().unwrap();
    assert_ne!(before, service.sealer.public_key());
    traffic.take();
    let translated = client
        .translate_pin_data_sealed(
            translate_request("FFFF9876543210E00001", "1B9C1845EB993A7A"),
            PAN,
        )
        .await
        .expect("retried with the new key");
    let opened = tdes_decrypt_ecb(&h(ZPK), &h(&translated.pin_block)).unwrap();
    assert_eq!(opened, h("041274EDCBA9876F"));
    assert_eq!(
        traffic.subjects(),
        [
            "mpos.hsm-proxy.v1.TranslatePinData",
            "error mpos.hsm-proxy.v1.TranslatePinData",
            "mpos.hsm-proxy.v1.GetSealingKey",
            "reply mpos.hsm-proxy.v1.GetSealingKey",
            "mpos.hsm-proxy.v1.TranslatePinData",
            "reply mpos.hsm-proxy.v1.TranslatePinData",
        ]
    );
    assert_eq!(
        client.hsm_sealing_key().await.unwrap(),
        service.sealer.public_key()
    );
}

/// A sealed field opens only in the field and request it was sealed for; both forms, a
/// missing request id, a malformed sealed field or reply key are `bad_request`.
async fn fields_out_of_place_are_refused(service: &TestService) {
    let caller = Sealer::new().unwrap();
    let hsm_key = service.sealer.public_key();
    let translate = || translate_request("FFFF9876543210E00001", "1B9C1845EB993A7A");
    let sealed_pan = |field: &str, request_id: &str| {
        Some(seal_for(
            &caller,
            &hsm_key,
            field,
            request_id,
            PAN.as_bytes(),
        ))
    };
    let bad = |error: ServiceError, field: &str| {
        assert_eq!(error.code, ErrorCode::BadRequest, "{error}");
        assert!(error.message.starts_with(field), "{error}");
        assert!(!error.message.contains(PAN), "{error}");
    };
    // Sealed for VerifyPinData's PAN, sent in TranslatePinData.
    let error = rejected(
        service,
        "TranslatePinData",
        &pb::TranslatePinDataRequest {
            request_id: "r1".into(),
            sealed_pan: sealed_pan("hsm.VerifyPinDataRequest.pan", "r1"),
            ..translate()
        },
    )
    .await;
    assert_eq!(error.code, ErrorCode::BadRequest, "{error}");
    assert_eq!(error.message, "sealedPan: the sealed field does not open");
    // Sealed for request r1, sent as request r2.
    let error = rejected(
        service,
        "TranslatePinData",
        &pb::TranslatePinDataRequest {
            request_id: "r2".into(),
            sealed_pan: sealed_pan("hsm.TranslatePinDataRequest.pan", "r1"),
            ..translate()
        },
    )
    .await;
    assert_eq!(error.message, "sealedPan: the sealed field does not open");
    // A sealed PAN moved into a MAC message.
    let error = rejected(
        service,
        "GenerateMac",
        &pb::GenerateMacRequest {
            request_id: "r3".into(),
            sealed_message: sealed_pan("hsm.TranslatePinDataRequest.pan", "r3"),
            ..token_request()
        },
    )
    .await;
    assert_eq!(
        error.message,
        "sealedMessage: the sealed field does not open"
    );
    // Both forms.
    let error = rejected(
        service,
        "TranslatePinData",
        &pb::TranslatePinDataRequest {
            request_id: "r4".into(),
            pan: PAN.into(),
            sealed_pan: sealed_pan("hsm.TranslatePinDataRequest.pan", "r4"),
            ..translate()
        },
    )
    .await;
    bad(error, "sealedPan: set either pan or sealedPan");
    let error = rejected(
        service,
        "GenerateMac",
        &pb::GenerateMacRequest {
            request_id: "r5".into(),
            message: PAN.as_bytes().to_vec(),
            sealed_message: sealed_pan("hsm.GenerateMacRequest.message", "r5"),
            ..token_request()
        },
    )
    .await;
    bad(error, "sealedMessage: set either message or sealedMessage");
    // No request id; an over-long one.
    for request_id in [String::new(), "x".repeat(129)] {
        let error = rejected(
            service,
            "TranslatePinData",
            &pb::TranslatePinDataRequest {
                request_id: request_id.clone(),
                sealed_pan: sealed_pan("hsm.TranslatePinDataRequest.pan", &request_id),
                ..translate()
            },
        )
        .await;
        bad(error, "requestId");
    }
    // A sealed field of the wrong form; one with a changed byte.
    let mut changed = sealed_pan("hsm.TranslatePinDataRequest.pan", "r6").unwrap();
    changed.ciphertext[0] ^= 1;
    for sealed in [
        common_pb::Sealed {
            nonce: vec![0; 3],
            ..changed.clone()
        },
        changed,
    ] {
        let error = rejected(
            service,
            "TranslatePinData",
            &pb::TranslatePinDataRequest {
                request_id: "r6".into(),
                sealed_pan: Some(sealed),
                ..translate()
            },
        )
        .await;
        assert_eq!(error.message, "sealedPan: the sealed field does not open");
    }
    // A reply key that is not a key; one whose key id is not its own; no request id.
    let caller_key = common_pb::SealingKey::from(&caller.public_key());
    for (reply_key, request_id, field) in [
        (
            common_pb::SealingKey {
                public_key: vec![1; 31],
                ..caller_key.clone()
            },
            "r7",
            "replyKey",
        ),
        (
            common_pb::SealingKey {
                key_id: "0000000000000000".into(),
                ..caller_key.clone()
            },
            "r7",
            "replyKey",
        ),
        (caller_key.clone(), "", "requestId"),
    ] {
        let error = service
            .call::<_, pb::DecryptDataResponse>(
                "DecryptData",
                &pb::DecryptDataRequest {
                    request_id: request_id.into(),
                    reply_key: Some(reply_key),
                    ..decrypt_request("FFFF9876543210E00001", h(CARD_DATA_CIPHERTEXT))
                },
            )
            .await
            .expect_err("refused");
        bad(error, field);
    }
    // A sealed reply does not open in another request's context.
    let response: pb::DecryptDataResponse = service
        .call(
            "DecryptData",
            &pb::DecryptDataRequest {
                request_id: "r8".into(),
                reply_key: Some(caller_key),
                ..decrypt_request("FFFF9876543210E00001", h(CARD_DATA_CIPHERTEXT))
            },
        )
        .await
        .unwrap();
    let sealed = mpos_seal::Sealed::try_from(response.sealed_plaintext.as_ref().unwrap()).unwrap();
    assert!(
        caller
            .open(&sealed, &context("hsm.DecryptDataResponse.plaintext", "r9"))
            .is_err()
    );
    let opened = caller
        .open(&sealed, &context("hsm.DecryptDataResponse.plaintext", "r8"))
        .unwrap();
    assert_eq!(&opened[..CARD_DATA.len()], CARD_DATA);
}

/// Scans every request and reply of a sealed DecryptData, TranslatePinData and card token
/// with a random PAN: neither the PAN nor the track 2 is in any of them. The same card in
/// clear is found, so the scan sees what it must.
async fn recorded_traffic_holds_no_card_data(service: &TestService) {
    let (client, traffic) = sealed_client(service);
    let card = terminal_card(random_pan());
    sealed_card_calls(&client, &card).await;
    let messages = traffic.take();
    assert!(messages.len() >= 8, "{:?}", traffic.subjects());
    assert!(
        leaks(&messages, &card.pan, &card.track2).is_empty(),
        "{:?}",
        subjects_of(&messages)
    );
    let _: pb::DecryptDataResponse = client
        .call(
            "DecryptData",
            &decrypt_request(card.ksn, card.card_data.clone()),
        )
        .await
        .unwrap();
    assert!(!leaks(&traffic.take(), &card.pan, &card.track2).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_card_data_on_the_embedded_default() {
    let service = common::embedded().await;
    known_keys(&service).await;
    decrypt_data_sealed_equals_clear(&service).await;
    decrypt_and_tokenize(&service).await;
    translate_pin_data_sealed_equals_clear(&service).await;
    generate_mac_sealed_equals_clear(&service).await;
    other_pan_operations_sealed(&service).await;
    fields_out_of_place_are_refused(&service).await;
    recorded_traffic_holds_no_card_data(&service).await;
    stale_key_is_refetched(&service).await;
    service.stop().await;
}

// ------------------------------------------------------------------------------------------
// MPOS_HSM_SEALED_CARD_DATA=require
// ------------------------------------------------------------------------------------------

async fn embedded_requiring_sealed_card_data() -> TestService {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("hsm.db").display());
    let backends = vec![format!("soft://{}", dir.path().join("keys").display())];
    common::start_sealed(
        dir,
        &database,
        &format!("memory://{}", unique("hsm")),
        backends,
        None,
        Duration::from_millis(500),
        SealedCardData::Require,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_clear_card_data() {
    let service = embedded_requiring_sealed_card_data().await;
    known_keys(&service).await;
    let refused = |error: ServiceError, field: &str| {
        assert_eq!(error.code, ErrorCode::BadRequest, "{error}");
        assert!(error.message.starts_with(&format!("{field}: ")), "{error}");
        assert!(!error.message.contains(PAN), "{error}");
    };
    // A clear PAN.
    let error = rejected(
        &service,
        "TranslatePinData",
        &pb::TranslatePinDataRequest {
            pan: PAN.into(),
            ..translate_request("FFFF9876543210E00001", "1B9C1845EB993A7A")
        },
    )
    .await;
    refused(error, "pan");
    let error = service
        .call::<_, pb::GenerateCardValidationDataResponse>(
            "GenerateCardValidationData",
            &pb::GenerateCardValidationDataRequest {
                tenant_id: TENANT.into(),
                key: "alias/any".into(),
                method: pb::CardValidationMethod::Cvv2.into(),
                pan: PAN.into(),
                expiry: "2912".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("refused");
    refused(error, "pan");
    // A clear card token message; a clear bare PAN under another MAC.
    let error = rejected(
        &service,
        "GenerateMac",
        &pb::GenerateMacRequest {
            message: b"any message".to_vec(),
            ..token_request()
        },
    )
    .await;
    refused(error, "message");
    let error = rejected(
        &service,
        "VerifyMac",
        &pb::VerifyMacRequest {
            tenant_id: TENANT.into(),
            key: "alias/bdk".into(),
            algorithm: pb::MacAlgorithm::Iso9797Alg3.into(),
            dukpt: dukpt("FFFF9876543210E00001", pb::DukptDirection::Request),
            message: PAN.as_bytes().to_vec(),
            mac: vec![0; 4],
            ..Default::default()
        },
    )
    .await;
    refused(error, "message");
    // A DUKPT DecryptData without a reply key.
    let error = service
        .call::<_, pb::DecryptDataResponse>(
            "DecryptData",
            &decrypt_request("FFFF9876543210E00001", h(CARD_DATA_CIPHERTEXT)),
        )
        .await
        .expect_err("refused");
    refused(error, "replyKey");

    // The sealed forms pass; a MAC of a message that holds no bare PAN needs no seal.
    let (client, _) = sealed_client(&service);
    let card = terminal_card(random_pan());
    sealed_card_calls(&client, &card).await;
    let mac: pb::GenerateMacResponse = client
        .call(
            "GenerateMac",
            &pb::GenerateMacRequest {
                tenant_id: TENANT.into(),
                key: "alias/bdk".into(),
                algorithm: pb::MacAlgorithm::Iso9797Alg3.into(),
                padding: pb::MacPadding::Method1.into(),
                dukpt: dukpt("FFFF9876543210E00001", pb::DukptDirection::Request),
                message: CARD_DATA.to_vec(),
                mac_length: 4,
                ..Default::default()
            },
        )
        .await
        .expect("not a bare PAN");
    // X9.24-1:2009 A.4.2: the published request MAC of "4012345678909D987".
    assert_eq!(mac.mac, h("9CCC7817"));
    service.stop().await;
}

// ------------------------------------------------------------------------------------------
// A real NATS server, scanned by a raw subscriber
// ------------------------------------------------------------------------------------------

/// On a real NATS server (`MPOS_TEST_NATS_URL`), a raw `async-nats` subscription to `>` sees
/// every request and reply on the server while the sealed calls run: none holds the card's
/// random PAN or its track 2. A clear DecryptData of the same card afterwards is seen, so the
/// scan would have caught a leak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_carries_no_card_data() {
    use futures::StreamExt;
    let Ok(nats) = std::env::var("MPOS_TEST_NATS_URL") else {
        eprintln!("MPOS_TEST_NATS_URL is not set: skipping the scan of a real NATS server");
        return;
    };
    let server = nats.split('?').next().unwrap_or(&nats).to_owned();
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("hsm.db").display());
    let backends = vec![format!("soft://{}", dir.path().join("keys").display())];
    let service = common::start(dir, &database, &common::nats_url(), backends).await;
    known_keys(&service).await;

    let raw = async_nats::connect(server.as_str())
        .await
        .expect("raw nats");
    let mut everything = raw.subscribe(">").await.unwrap();
    raw.flush().await.unwrap();
    let seen: Arc<Mutex<Captured>> = Arc::default();
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(message) = everything.next().await {
                let mut bytes = Vec::new();
                if let Some(headers) = &message.headers {
                    for (name, values) in headers.iter() {
                        bytes.extend_from_slice(name.to_string().as_bytes());
                        for value in values {
                            bytes.extend_from_slice(value.as_str().as_bytes());
                        }
                    }
                }
                bytes.extend_from_slice(&message.payload);
                seen.lock()
                    .unwrap()
                    .push((message.subject.to_string(), bytes));
            }
        })
    };
    // Everything published before a marker of ours has reached the subscriber once the marker
    // has.
    let drain = |marker: String| {
        let (raw, seen) = (raw.clone(), seen.clone());
        async move {
            raw.publish(marker.clone(), "marker".into()).await.unwrap();
            raw.flush().await.unwrap();
            for _ in 0..500 {
                if seen
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(subject, _)| *subject == marker)
                {
                    return std::mem::take(&mut *seen.lock().unwrap());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the raw subscriber never saw {marker}");
        }
    };
    drain(unique("scan.start.")).await;

    let client = HsmClient::new(
        service.requests.clone(),
        "service:authorization",
        Duration::from_secs(10),
    )
    .with_sealer(Arc::new(Sealer::new().unwrap()));
    let card = terminal_card(random_pan());
    sealed_card_calls(&client, &card).await;
    let during = drain(unique("scan.sealed.")).await;
    let ours: Vec<&str> = during
        .iter()
        .map(|(subject, _)| subject.as_str())
        .filter(|subject| subject.contains(".mpos.hsm-proxy.v1."))
        .collect();
    for operation in [
        "GetSealingKey",
        "DecryptData",
        "TranslatePinData",
        "GenerateMac",
    ] {
        assert!(
            ours.iter().any(|subject| subject.ends_with(operation)),
            "the scan saw no {operation} request: {ours:?}"
        );
    }
    assert!(
        during
            .iter()
            .any(|(subject, _)| subject.starts_with("_INBOX.")),
        "the scan saw no reply"
    );
    let leaked = leaks(&during, &card.pan, &card.track2);
    assert!(leaked.is_empty(), "card data on {leaked:?}");

    let _: pb::DecryptDataResponse = client
        .call(
            "DecryptData",
            &decrypt_request(card.ksn, card.card_data.clone()),
        )
        .await
        .unwrap();
    let after = drain(unique("scan.clear.")).await;
    assert!(
        !leaks(&after, &card.pan, &card.track2).is_empty(),
        "the scan missed a clear reply"
    );
    collector.abort();
    service.stop().await;
}
