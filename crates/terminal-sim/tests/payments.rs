//! Payments end to end on the device side, and the EMV card against the platform's issuer:
//!
//! * the [`EmvCard`] against acquirer-sim's issuer (`ClearIssuer` with the same issuer master
//!   key, the field-55 reading `ArqcInput::from_icc` and the tag 91 answer
//!   `issuer_authentication_data`, exactly what the simulator runs for a `verify_arqc` rule):
//!   approved with an ARPC the card verifies, for every test card; a wrong IMK declines;
//! * `Terminal::pay` (mTLS with the device certificate) and `SoftPosTerminal::pay` (TLS and
//!   the attestation token) against a stand-in for the authorization service's device
//!   payment API, served with `device_identity::serve` as the platform's device listeners
//!   are. The stand-in does what the platform does with the request: derives the
//!   transaction's keys from the BDK and the ONE KSN, deciphers the card data and the PIN,
//!   has the ARQC verified by acquirer-sim's issuer, answers idempotently, and records what
//!   it saw.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use acquirer_sim::issuer::{ArqcInput, ClearIssuer, IssuerCrypto as _, issuer_authentication_data};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use device_identity::PeerCertificate;
use mpos_proto::authorization as pb;
use mpos_proto::key_injection::DukptAlgorithm;
use paycrypto::SecretBytes;
use paycrypto::dukpt::{aes as aes_dukpt, tdes as tdes_dukpt};
use paycrypto::pin::{Pan, Pin, PinBlockFormat};
use terminal_sim::card::TEST_IMK_HEX;
use terminal_sim::{
    CardDecision, DeviceKeyKind, EmvTransaction, ManufacturerCa, Payment, SimError, SoftPosConfig,
    SoftPosTerminal, Terminal, TerminalConfig, test_card, test_cards,
};
use tokio_util::sync::CancellationToken;

/// ANSI X9.24-1:2009 A.4 and X9.24-3-2017 (sources in tests/key_install.rs).
const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
const INITIAL_KSN: &str = "FFFF9876543210E00000";
const IPEK: &str = "6AC292FAA1315B4D858AB3A3D7D5933A";
const AES_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
const AES_INITIAL_KEY_ID: &str = "1234567890123456";
const AES_INITIAL_KEY: &str = "1273671EA26AC29AFA4D1084127652A1";
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJwaG9uZS0xIn0.c2ln";

fn key(text: &str) -> SecretBytes {
    SecretBytes::from_hex("test key", text).unwrap()
}

fn issuer(imk: &str) -> ClearIssuer {
    ClearIssuer {
        imk_ac: Some(key(imk)),
        ..ClearIssuer::default()
    }
}

/// What acquirer-sim answers for a `verify_arqc` rule: tag 91 when the ARQC verifies.
async fn issuer_answer(
    issuer: &ClearIssuer,
    pan: &Pan,
    psn: &str,
    icc: &[u8],
    arc: [u8; 2],
) -> Option<Vec<u8>> {
    // Field 23 is 3 digits; acquirer-sim takes the last two.
    let input = ArqcInput::from_icc(pan.clone(), Some(&format!("0{psn}")), icc, arc).unwrap();
    issuer
        .verify_arqc(&input)
        .await
        .unwrap()
        .map(|arpc| issuer_authentication_data(&arpc, arc))
}

#[tokio::test]
async fn every_test_card_is_approved_by_the_acquirer_sim_issuer_and_verifies_its_arpc() {
    let issuer = issuer(TEST_IMK_HEX);
    for card in test_cards() {
        let mut chip = card.emv_card(1);
        let emv = chip
            .generate_ac(
                &EmvTransaction::purchase(4_000, 978, 250, "260115"),
                CardDecision::Arqc,
            )
            .unwrap();
        let psn = chip.psn_digits();
        let tag91 = issuer_answer(&issuer, card.pan(), &psn, &emv.tlv, *b"00")
            .await
            .unwrap_or_else(|| panic!("{}: the issuer declined the ARQC", card.name));
        assert!(chip.verify_arpc(&tag91), "{}", card.name);
        assert_eq!(chip.issuer_response_code(&tag91), Some(*b"00"));
        // A decline is authenticated too (ARC 51), and a flipped ARPC bit is refused.
        let declined = issuer_answer(&issuer, card.pan(), &psn, &emv.tlv, *b"51")
            .await
            .unwrap();
        assert_eq!(chip.issuer_response_code(&declined), Some(*b"51"));
        let mut forged = tag91.clone();
        forged[2] ^= 0x01;
        assert!(!chip.verify_arpc(&forged), "{}", card.name);
        assert!(!chip.verify_arpc(&[]), "{}", card.name);
    }
}

#[tokio::test]
async fn a_wrong_issuer_master_key_declines_and_a_changed_amount_too() {
    let card = test_card("visa").unwrap();
    let mut chip = card.emv_card(41);
    let emv = chip
        .generate_ac(
            &EmvTransaction::purchase_today(1_999, 978, 250),
            CardDecision::Arqc,
        )
        .unwrap();
    let psn = chip.psn_digits();
    let wrong = issuer("00112233445566778899AABBCCDDEEFF");
    assert_eq!(
        issuer_answer(&wrong, card.pan(), &psn, &emv.tlv, *b"00").await,
        None
    );
    // Another PSN is another ICC master key.
    assert_eq!(
        issuer_answer(&issuer(TEST_IMK_HEX), card.pan(), "02", &emv.tlv, *b"00").await,
        None
    );
    // Tampering with a CDOL1 value (the amount) breaks the cryptogram.
    let mut items = emv_tlv::parse(&emv.tlv).unwrap();
    for item in &mut items {
        if item.tag == emv_tlv::Tag(0x9F02) {
            *item = emv_tlv::Tlv::primitive(item.tag, hex::decode("000000000001").unwrap());
        }
    }
    let tampered = emv_tlv::encode(&items);
    assert_eq!(
        issuer_answer(&issuer(TEST_IMK_HEX), card.pan(), &psn, &tampered, *b"00").await,
        None
    );
    assert_eq!(chip.atc, 42);
}

// ---------------------------------------------------------------------------------------
// A stand-in for the authorization service's device payment API
// ---------------------------------------------------------------------------------------

/// What the stand-in saw and keeps.
#[derive(Default)]
struct Platform {
    /// Authorizations made (a retry makes none).
    authorizations: u32,
    /// Answers by idempotency key, with the request they answered.
    by_key: HashMap<String, (pb::PaymentRequest, pb::PaymentResponse)>,
    /// Answers by payment id.
    by_id: HashMap<String, pb::PaymentResponse>,
    /// The device certificate serial of the last request (PED), if any.
    peer_serial: Option<String>,
    /// The raw JSON bodies received.
    bodies: Vec<String>,
    /// The PINs deciphered, per payment (checked by the test, never printed).
    pins: Vec<Option<Pin>>,
    /// The last status request's bearer token.
    bearer: Option<String>,
}

type Shared = Arc<Mutex<Platform>>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"code": code, "message": message})),
    )
        .into_response()
}

/// Deciphers the card data and the PIN block with the BDK and the request's ONE KSN, as the
/// hsm-proxy's `DecryptData` and `TranslatePinData` do.
fn decipher(request: &pb::PaymentRequest) -> Result<(String, Option<Pin>), &'static str> {
    let (track, pin_key, format) = match request.ksn.len() {
        20 => {
            let ksn = tdes_dukpt::Ksn::from_hex(&request.ksn).map_err(|_| "ksn")?;
            let data = tdes_dukpt::host_working_key(
                &key(BDK),
                &ksn,
                tdes_dukpt::KeyUsage::DataRequest,
                tdes_dukpt::DataKeyDerivation::OneWay,
            )
            .map_err(|_| "data key")?;
            let clear = paycrypto::primitives::tdes_decrypt_cbc(
                data.expose(),
                &[0; 8],
                &request.encrypted_card_data,
            )
            .map_err(|_| "card data")?;
            let pin = tdes_dukpt::host_working_key(
                &key(BDK),
                &ksn,
                tdes_dukpt::KeyUsage::PinEncryption,
                tdes_dukpt::DataKeyDerivation::OneWay,
            )
            .map_err(|_| "pin key")?;
            (clear, pin, PinBlockFormat::Iso0)
        }
        24 => {
            let ksn = aes_dukpt::Ksn::from_hex(&request.ksn).map_err(|_| "ksn")?;
            let data = aes_dukpt::host_working_key(
                &key(AES_BDK),
                &ksn,
                aes_dukpt::KeyUsage::DataEncrypt,
                aes_dukpt::KeyType::Aes128,
            )
            .map_err(|_| "data key")?;
            let clear = paycrypto::primitives::aes_decrypt_cbc(
                data.expose(),
                &[0; 16],
                &request.encrypted_card_data,
            )
            .map_err(|_| "card data")?;
            let pin = aes_dukpt::host_working_key(
                &key(AES_BDK),
                &ksn,
                aes_dukpt::KeyUsage::PinEncryption,
                aes_dukpt::KeyType::Aes128,
            )
            .map_err(|_| "pin key")?;
            (clear, pin, PinBlockFormat::Iso4)
        }
        _ => return Err("ksn length"),
    };
    let end = track
        .iter()
        .rposition(|byte| *byte != 0)
        .map_or(0, |i| i + 1);
    let track = String::from_utf8(track[..end].to_vec()).map_err(|_| "not ascii")?;
    let pan = Pan::new(track.split(['D', '=']).next().unwrap_or_default()).map_err(|_| "pan")?;
    let pin = if request.encrypted_pin_block.is_empty() {
        None
    } else {
        let block = hex::decode(&request.encrypted_pin_block).map_err(|_| "pin block hex")?;
        Some(
            paycrypto::pin::decrypt_pin_block(format, &pin_key, &block, Some(&pan))
                .map_err(|_| "pin block")?,
        )
    };
    Ok((track, pin))
}

async fn pay(
    State(platform): State<Shared>,
    peer: Option<Extension<PeerCertificate>>,
    body: String,
) -> Response {
    let request: pb::PaymentRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(_) => return error(StatusCode::BAD_REQUEST, "bad_request", "not a payment"),
    };
    if request.idempotency_key.is_empty() {
        return error(StatusCode::BAD_REQUEST, "bad_request", "no idempotency key");
    }
    {
        let mut platform = platform.lock().unwrap();
        platform.bodies.push(body.clone());
        platform.peer_serial = peer.map(|Extension(peer)| peer.verified.serial.to_string());
        if let Some((first, answer)) = platform.by_key.get(&request.idempotency_key) {
            if *first != request {
                return error(StatusCode::CONFLICT, "conflict", "another payment");
            }
            return Json(answer.clone()).into_response();
        }
    }
    let (track, pin) = match decipher(&request) {
        Ok(clear) => clear,
        Err(why) => return error(StatusCode::BAD_REQUEST, "bad_request", why),
    };
    let pan = Pan::new(track.split(['D', '=']).next().unwrap()).unwrap();
    let payment_id = format!("p-{}", request.idempotency_key);
    let mut response = pb::PaymentResponse {
        payment_id: payment_id.clone(),
        masked_pan: pan.masked(),
        amount_minor: request.amount_minor,
        currency: request.currency.clone(),
        ..pb::PaymentResponse::default()
    };
    let code: [u8; 2] = if request.amount_minor > 100_000 {
        *b"51"
    } else {
        *b"00"
    };
    let tag91 = if request.emv_data.is_empty() {
        None
    } else {
        issuer_answer(
            &issuer(TEST_IMK_HEX),
            &pan,
            &request.pan_sequence_number,
            &request.emv_data,
            code,
        )
        .await
    };
    let verified = request.emv_data.is_empty() || tag91.is_some();
    if verified && code == *b"00" {
        response.approved = true;
        response.status = pb::PaymentStatus::Approved.into();
        response.response_code = "00".into();
        response.auth_code = "A1B2C3".into();
    } else {
        response.status = pb::PaymentStatus::Declined.into();
        response.decline_reason = pb::DeclineReason::IssuerDeclined.into();
        response.response_code = if verified { "51" } else { "05" }.into();
    }
    response.issuer_emv_data = tag91.unwrap_or_default();
    let mut platform = platform.lock().unwrap();
    platform.authorizations += 1;
    platform.pins.push(pin);
    platform.by_key.insert(
        request.idempotency_key.clone(),
        (request.clone(), response.clone()),
    );
    platform.by_id.insert(payment_id, response.clone());
    Json(response).into_response()
}

async fn reverse(
    State(platform): State<Shared>,
    Path(payment_id): Path<String>,
    Json(body): Json<pb::ReversalRequestBody>,
) -> Response {
    let mut platform = platform.lock().unwrap();
    let Some(answer) = platform.by_id.get_mut(&payment_id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such payment");
    };
    if body.terminal_id.is_empty() {
        return error(StatusCode::BAD_REQUEST, "bad_request", "no terminal id");
    }
    answer.status = pb::PaymentStatus::Reversed.into();
    Json(answer.clone()).into_response()
}

async fn status(
    State(platform): State<Shared>,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut platform = platform.lock().unwrap();
    platform.bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    match platform.by_id.get(&payment_id) {
        Some(answer) => Json(answer.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such payment"),
    }
}

/// Serves the stand-in: over mTLS trusting `vendor` when given (PED listener), else over
/// server-authenticated TLS (SoftPOS). Returns its base URL and server root (DER).
async fn serve(
    platform: Shared,
    vendor: Option<&ManufacturerCa>,
    cancel: &CancellationToken,
) -> (String, Vec<u8>) {
    let (chain, key) = device_identity::self_signed(&["localhost"]).unwrap();
    let server_root = chain[0].to_vec();
    let (config, trust) = match vendor {
        Some(vendor) => {
            let trust = device_identity::TrustStore::new();
            trust.add_ca(
                device_identity::ManufacturerCa::from_der(
                    vendor.certificate_der(),
                    chrono::Utc::now(),
                )
                .unwrap(),
            );
            (
                device_identity::mtls_server_config(chain, key, trust.clone()).unwrap(),
                Some(trust),
            )
        }
        None => (device_identity::server_config(chain, key).unwrap(), None),
    };
    let router = Router::new()
        .route("/v1/payments", post(pay))
        .route("/v1/payments/{payment_id}", get(status))
        .route("/v1/payments/{payment_id}/reversal", post(reverse))
        .with_state(platform);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(device_identity::serve(
        listener,
        Arc::new(config),
        trust,
        router,
        cancel.clone().cancelled_owned(),
    ));
    (format!("https://localhost:{port}"), server_root)
}

fn ped(vendor: &ManufacturerCa, server_root: Vec<u8>) -> Terminal {
    let identity = vendor.issue(&[0x7E, 0x21], DeviceKeyKind::P256).unwrap();
    let mut terminal = Terminal::new(TerminalConfig {
        terminal_id: "t-1".to_owned(),
        identity,
        tms_url: "https://localhost:1".to_owned(),
        ki_url: "https://localhost:1".to_owned(),
        server_roots: vec![server_root],
        kdh_trust: Vec::new(),
        parameter_verifying_key: None,
    })
    .unwrap();
    terminal
        .load_initial_key(DukptAlgorithm::Tdes, &key(IPEK), INITIAL_KSN)
        .unwrap();
    terminal
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ped_pays_retries_checks_and_reverses_over_mtls() {
    let vendor = ManufacturerCa::generate("Sim Vendor CA").unwrap();
    let cancel = CancellationToken::new();
    let platform = Shared::default();
    let (url, root) = serve(platform.clone(), Some(&vendor), &cancel).await;

    // Not configured: a typed error, and the counter does not move.
    let mut terminal = ped(&vendor, root.clone());
    let card = test_card("visa").unwrap();
    let payment = Payment::purchase("k-0", 100, "EUR", card.track2.clone());
    assert!(matches!(
        terminal.pay(payment.clone()).await,
        Err(SimError::NotConfigured(_))
    ));
    assert_eq!(terminal.counter(), Some(1));
    let mut terminal = terminal.with_auth_url(&url);

    // A chip payment with a PIN: approved, and the card accepts the issuer's ARPC.
    let mut chip = card.emv_card(1);
    let mut payment = Payment::purchase("k-1", 2_500, "EUR", card.track2.clone());
    payment.pin = Some(card.pin.clone());
    payment.emv = Some(
        chip.generate_ac(
            &EmvTransaction::purchase_today(2_500, 978, 250),
            CardDecision::Arqc,
        )
        .unwrap(),
    );
    let request = terminal.prepare_payment(&payment).unwrap();
    assert_eq!(request.ksn, "FFFF9876543210E00001");
    assert_eq!(terminal.counter(), Some(2), "one KSN for the whole payment");
    let approved = terminal.submit(&request).await.unwrap();
    assert!(approved.approved, "{approved:?}");
    assert_eq!(approved.status(), pb::PaymentStatus::Approved);
    assert_eq!(approved.masked_pan, card.pan().masked());
    assert!(chip.verify_arpc(&approved.issuer_emv_data));
    {
        let platform = platform.lock().unwrap();
        assert_eq!(platform.pins, vec![Some(card.pin.clone())]);
        assert!(platform.peer_serial.is_some(), "the device certificate");
        let body = platform.bodies.last().unwrap();
        assert!(!body.contains(card.pan().expose()), "{body}");
        assert!(!body.contains(card.pin.expose().as_str()), "{body}");
    }

    // The same bytes again: the first answer, no second authorization.
    let again = terminal.resend(&request).await.unwrap();
    assert_eq!(again, approved);
    assert_eq!(platform.lock().unwrap().authorizations, 1);

    // Status, then a reversal.
    let status = terminal.payment_status(&approved.payment_id).await.unwrap();
    assert_eq!(status.status(), pb::PaymentStatus::Approved);
    let reversed = terminal.reverse(&approved.payment_id).await.unwrap();
    assert_eq!(reversed.status(), pb::PaymentStatus::Reversed);

    // A decline is an answer (HTTP 200, approved = false), authenticated for the card.
    let mut big = Payment::purchase("k-2", 250_000, "EUR", card.track2.clone());
    big.emv = Some(
        chip.generate_ac(
            &EmvTransaction::purchase_today(250_000, 978, 250),
            CardDecision::Arqc,
        )
        .unwrap(),
    );
    let declined = terminal.pay(big).await.unwrap();
    assert!(!declined.approved);
    assert_eq!(declined.decline_reason(), pb::DeclineReason::IssuerDeclined);
    assert_eq!(declined.response_code, "51");
    assert_eq!(
        chip.issuer_response_code(&declined.issuer_emv_data),
        Some(*b"51")
    );

    // 4xx: refused with the platform's code; unknown payments too.
    let refused = terminal
        .pay(Payment::purchase("", 100, "EUR", card.track2.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, SimError::Refused { status: 400, code, .. } if code == "bad_request"),
        "{refused}"
    );
    assert!(matches!(
        terminal.payment_status("p-nope").await,
        Err(SimError::Refused { status: 404, .. })
    ));
    assert!(matches!(
        terminal.reverse("../v1").await,
        Err(SimError::InvalidInput(_))
    ));
    let printed = format!("{refused} {terminal:?}");
    assert!(!printed.contains(card.pan().expose()), "{printed}");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ped_certificate_is_required_and_a_softpos_phone_pays_with_its_token() {
    let cancel = CancellationToken::new();
    let platform = Shared::default();
    let (url, root) = serve(platform.clone(), None, &cancel).await;
    let mut phone = SoftPosTerminal::new(SoftPosConfig {
        terminal_id: "phone-1".to_owned(),
        tenant_id: "acme".to_owned(),
        auth_url: url.clone(),
        server_roots: vec![root],
    })
    .unwrap();
    phone
        .load_initial_key(
            DukptAlgorithm::Aes128,
            &key(AES_INITIAL_KEY),
            AES_INITIAL_KEY_ID,
        )
        .unwrap();
    phone.set_attestation_token(TOKEN);
    assert!(!format!("{phone:?}").contains(TOKEN));

    let card = test_card("mastercard-2-series").unwrap();
    let mut chip = card.emv_card(5);
    let mut payment = Payment::purchase("s-1", 1_200, "EUR", card.track2.clone());
    payment.entry_mode = pb::EntryMode::Contactless;
    payment.pin = Some(card.pin.clone());
    payment.emv = Some(
        chip.generate_ac(
            &EmvTransaction::purchase_today(1_200, 978, 250),
            CardDecision::Arqc,
        )
        .unwrap(),
    );
    let answer = phone.pay(payment).await.unwrap();
    assert!(answer.approved, "{answer:?}");
    assert!(chip.verify_arpc(&answer.issuer_emv_data));
    {
        let platform = platform.lock().unwrap();
        assert_eq!(platform.peer_serial, None, "no client certificate");
        let body: serde_json::Value =
            serde_json::from_str(platform.bodies.last().unwrap()).unwrap();
        assert_eq!(body["attestationToken"], TOKEN);
        assert_eq!(body["ksn"], "123456789012345600000001");
        assert_eq!(body["entryMode"], "ENTRY_MODE_CONTACTLESS");
        assert_eq!(platform.pins, vec![Some(card.pin.clone())]);
    }
    let status = phone.payment_status(&answer.payment_id).await.unwrap();
    assert_eq!(status.payment_id, answer.payment_id);
    assert_eq!(platform.lock().unwrap().bearer.as_deref(), Some(TOKEN));
    let reversed = phone.reverse(&answer.payment_id).await.unwrap();
    assert_eq!(reversed.status(), pb::PaymentStatus::Reversed);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ped_listener_refuses_a_device_from_another_vendor() {
    let vendor = ManufacturerCa::generate("Sim Vendor CA").unwrap();
    let other = ManufacturerCa::generate("Other Vendor CA").unwrap();
    let cancel = CancellationToken::new();
    let (url, root) = serve(Shared::default(), Some(&vendor), &cancel).await;
    let mut terminal = ped(&other, root).with_auth_url(url);
    let card = test_card("visa").unwrap();
    let result = terminal
        .pay(Payment::purchase("k-1", 100, "EUR", card.track2.clone()))
        .await;
    assert!(
        matches!(result, Err(SimError::Transport { .. })),
        "{result:?}"
    );
    cancel.cancel();
}
