//! The simulator over real TCP with the acquirer-link `Link` as its client: rules, reversals,
//! completion advices and their repeats (duplicates recognised), echo, faults (slow, drop, blackhole), MACs, the received record and the admin API; PIN and
//! ARQC checks with clear test keys (published vectors).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use acquirer_link::framing::{Framing, LengthPrefix};
use acquirer_link::profile::{
    self, AuthorizationRequest, EntryMode, PinBlock, RequestKind, Reversal, ReversalReason,
};
use acquirer_link::{Link, LinkConfig, LinkError, LinkState, MacProvider, SoftMac};
use acquirer_sim::issuer::ClearIssuer;
use acquirer_sim::{AcquirerSim, BadMacPolicy, RuleSet, RunningSim, SimConfig};
use chrono::{SubsecRound, Utc};
use iso8583::Spec;
use paycrypto::SecretBytes;
use paycrypto::pin::{Pan, Pin, PinBlockFormat, encrypt_pin_block};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);
/// Bouncy Castle's ISO9797Alg3Mac test key, as the zone MAC key.
const MAC_KEY: &str = "7CA110454A1A6E570131D9619DC1376E";
/// psec's test key, as the zone PIN key (also in the hsm-proxy's tests).
const ZPK: &str = "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB";
/// jPOS JCESecurityModuleTest PVK ("4 times 12345678"): PAN 1234567890123, PVKI 0, PIN
/// 1234 → PVV 1226 (cited in paycrypto's tests/pinver.rs).
const PVK: &str = "12345678123456781234567812345678";
/// pyemv's IMK (tests/test_cvn_hsm.py).
const IMK: &str = "0123456789ABCDEFFEDCBA9876543210";

fn spec() -> Arc<Spec> {
    Arc::new(Spec::builtin("ascii-1987").unwrap())
}

fn framing() -> Framing {
    Framing {
        prefix: LengthPrefix::Binary2,
        header: Vec::new(),
    }
}

fn key(hex: &str) -> SecretBytes {
    SecretBytes::from_hex("key", hex).unwrap()
}

fn soft_mac() -> Arc<dyn MacProvider> {
    Arc::new(SoftMac::new(key(MAC_KEY)).unwrap())
}

fn clear_issuer() -> ClearIssuer {
    ClearIssuer {
        zpk: Some(key(ZPK)),
        pvk: Some(key(PVK)),
        imk_ac: Some(key(IMK)),
    }
}

async fn sim(rules: &str, mac: Option<Arc<dyn MacProvider>>) -> RunningSim {
    let mut config = SimConfig::new(spec(), framing());
    config.rules = RuleSet::from_json(rules).unwrap();
    config.mac = mac;
    config.issuer = Some(Arc::new(clear_issuer()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    AcquirerSim::start(config, listener).unwrap()
}

async fn link(sim: &RunningSim, mac: Option<Arc<dyn MacProvider>>) -> (Link, CancellationToken) {
    let mut config = LinkConfig::new("sim", sim.addr().to_string(), spec(), framing());
    config.response_timeout = Duration::from_millis(300);
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(100);
    config.echo_interval = Duration::ZERO;
    if let Some(mac) = mac {
        config = config.with_mac(mac);
    }
    let cancel = CancellationToken::new();
    let link = Link::start(config, cancel.clone());
    assert!(link.wait_for(LinkState::Connected, WAIT).await);
    (link, cancel)
}

fn purchase(stan: u32, pan: &str, amount: u64) -> AuthorizationRequest {
    let at = Utc::now().trunc_subsecs(0);
    AuthorizationRequest {
        kind: RequestKind::Purchase,
        pan: Pan::new(pan).unwrap(),
        expiry: Some("2812".into()),
        track2: None,
        pan_sequence: Some("000".into()),
        amount_minor: amount,
        currency_numeric: "978".into(),
        stan,
        rrn: format!("{stan:012}"),
        transmitted_at: at,
        local_at: at.naive_utc(),
        mcc: "5999".into(),
        entry_mode: EntryMode::Chip,
        pin_capable: true,
        pin_block: None,
        icc_data: None,
        terminal_id: "TERM0001".into(),
        merchant_id: "MERCHANT0000001".into(),
        acquirer_institution_id: "12345678".into(),
        original: None,
        auth_code: None,
    }
}

async fn authorize(
    link: &Link,
    request: &AuthorizationRequest,
) -> Result<profile::AuthorizationResponse, LinkError> {
    let answer = link.exchange(profile::to_message(request)?).await?;
    profile::response_from_message(&answer)
}

const RULES: &str = r#"{
  "rules": [
    { "name": "stolen range", "when": { "pan_range": ["5100000000", "5100009999"] }, "then": { "decline": "14" } },
    { "name": "too much", "when": { "amount_min": 100000 }, "then": { "decline": "51" } }
  ]
}"#;

#[tokio::test]
async fn approves_and_declines_by_amount_and_pan_range() {
    let sim = sim(RULES, None).await;
    let (link, cancel) = link(&sim, None).await;
    let approved = authorize(&link, &purchase(1, "4761739001010010", 1_000))
        .await
        .unwrap();
    assert!(approved.approved());
    assert_eq!(approved.mti, "0210");
    assert_eq!(approved.stan, 1);
    assert_eq!(approved.auth_code.as_ref().map(String::len), Some(6));
    let big = authorize(&link, &purchase(2, "4761739001010010", 100_000))
        .await
        .unwrap();
    assert_eq!(big.response_code, "51");
    assert!(!big.approved() && big.auth_code.is_none());
    let stolen = authorize(&link, &purchase(3, "5100001234567899", 1_000))
        .await
        .unwrap();
    assert_eq!(stolen.response_code, "14");
    let received = sim.received();
    assert_eq!(received.count("0200"), 3);
    let codes: Vec<_> = received
        .messages
        .iter()
        .map(|m| m.response_code.clone().unwrap())
        .collect();
    assert_eq!(codes, vec!["00", "51", "14"]);
    assert_eq!(received.messages[2].pan_last4.as_deref(), Some("7899"));
    assert_eq!(received.messages[1].amount_minor, Some(100_000));
    let json = serde_json::to_string(&received).unwrap();
    assert!(!json.contains("510000123456"), "no full PAN in the record");
    cancel.cancel();
    sim.shutdown().await;
}

#[tokio::test]
async fn reversals_are_answered_and_recorded() {
    let sim = sim("{}", Some(soft_mac())).await;
    let (link, cancel) = link(&sim, Some(soft_mac())).await;
    let original = purchase(10, "4761739001010010", 2_500);
    for repeat in [false, true] {
        let reversal = Reversal {
            reason: ReversalReason::Timeout,
            stan: 11,
            transmitted_at: Utc::now().trunc_subsecs(0),
            repeat,
        };
        let answer = link
            .exchange(profile::reversal_message(&original, &reversal).unwrap())
            .await
            .unwrap();
        let answer = profile::response_from_message(&answer).unwrap();
        assert_eq!(
            (
                answer.mti.as_str(),
                answer.response_code.as_str(),
                answer.stan
            ),
            ("0410", "00", 11)
        );
    }
    let received = sim.received();
    assert_eq!(received.count("0400"), 1);
    assert_eq!(received.count("0401"), 1);
    assert_eq!(
        received.count("0200"),
        0,
        "the acquirer never saw the authorisation"
    );
    assert_eq!(received.messages[0].rrn.as_deref(), Some("000000000010"));
    cancel.cancel();
}

#[tokio::test]
async fn a_reversal_without_card_data_is_matched_to_its_original() {
    let sim = sim("{}", Some(soft_mac())).await;
    let (link, cancel) = link(&sim, Some(soft_mac())).await;
    let original = purchase(20, "4761739001010010", 4_200);
    assert!(authorize(&link, &original).await.unwrap().approved());
    // What the routing service keeps in its log: no PAN, no MCC, no entry mode.
    let mut kept = profile::OriginalTransaction::from(&original);
    kept.mcc = None;
    kept.entry_mode = None;
    for (stan, repeat) in [(21, false), (22, true)] {
        let reversal = Reversal {
            reason: ReversalReason::Timeout,
            stan,
            transmitted_at: Utc::now().trunc_subsecs(0),
            repeat,
        };
        let message = profile::reversal_message_for(&kept, &reversal).unwrap();
        assert!(message.get_text(2).is_none() && message.get_text(35).is_none());
        let answer =
            profile::response_from_message(&link.exchange(message).await.unwrap()).unwrap();
        assert_eq!(
            (answer.mti.as_str(), answer.response_code.as_str()),
            ("0410", "00")
        );
    }
    let received = sim.received();
    assert_eq!(received.count("0200"), 1);
    assert_eq!(received.count("0400"), 1);
    assert_eq!(received.count("0401"), 1);
    let authorisation = received.messages.iter().find(|m| m.mti == "0200").unwrap();
    for reversal in received
        .messages
        .iter()
        .filter(|m| m.mti.starts_with("040"))
    {
        assert_eq!(reversal.reverses, Some(authorisation.seq));
        assert_eq!(reversal.pan_last4, None, "no card data in a reversal");
        assert_eq!(reversal.rrn.as_deref(), Some("000000000020"));
    }
    cancel.cancel();
    sim.shutdown().await;
}

fn completion(stan: u32, preauthorization_stan: u32) -> AuthorizationRequest {
    let mut request = purchase(stan, "4761739001010010", 3_300);
    request.kind = RequestKind::Completion;
    request.auth_code = Some("A1B2C3".into());
    request.original = Some(profile::OriginalData {
        mti: "0100".into(),
        stan: preauthorization_stan,
        transmitted_at: request.transmitted_at - chrono::Duration::hours(1),
        acquirer_id: "12345678".into(),
    });
    request
}

#[tokio::test]
async fn a_repeated_advice_is_acknowledged_as_a_duplicate_not_a_second_capture() {
    let sim = sim("{}", Some(soft_mac())).await;
    let (link, cancel) = link(&sim, Some(soft_mac())).await;
    let advice = completion(30, 29);
    let answer = authorize(&link, &advice).await.unwrap();
    assert_eq!(
        (answer.mti.as_str(), answer.response_code.as_str()),
        ("0230", "00")
    );
    // Its repeat, from what the routing service keeps (no card data), twice.
    let kept = profile::OriginalTransaction::from(&advice);
    for _ in 0..2 {
        let message =
            profile::advice_repeat_message(&kept, advice.original.as_ref().unwrap()).unwrap();
        let answer =
            profile::response_from_message(&link.exchange(message).await.unwrap()).unwrap();
        assert_eq!(
            (
                answer.mti.as_str(),
                answer.response_code.as_str(),
                answer.stan
            ),
            ("0230", "00", 30)
        );
    }
    // A repeat of an advice never received here is its first capture.
    let unseen = completion(40, 39);
    let message = profile::advice_repeat_message(
        &profile::OriginalTransaction::from(&unseen),
        unseen.original.as_ref().unwrap(),
    )
    .unwrap();
    let answer = profile::response_from_message(&link.exchange(message).await.unwrap()).unwrap();
    assert_eq!(answer.response_code, "00");
    // Another advice completing the first pre-authorisation again (same field 90) is a
    // duplicate too.
    let again = completion(50, 29);
    assert_eq!(authorize(&link, &again).await.unwrap().response_code, "00");

    let received = sim.received();
    assert_eq!(received.count("0220"), 2);
    assert_eq!(received.count("0221"), 3);
    let first = &received.messages[0];
    assert_eq!(first.mti, "0220");
    assert_eq!(first.repeats, None);
    for repeat in &received.messages[1..3] {
        assert_eq!(repeat.mti, "0221");
        assert_eq!(repeat.repeats, Some(first.seq), "a duplicate of the 0220");
        assert_eq!(repeat.pan_last4, None, "no card data in a repeat");
        assert_eq!(repeat.approval_code.as_deref(), Some("A1B2C3"));
        assert_eq!(repeat.original_data, first.original_data);
    }
    assert_eq!(received.messages[3].repeats, None);
    assert_eq!(received.messages[4].repeats, Some(first.seq));
    let captured: Vec<Option<u32>> = received.captures().iter().map(|m| m.stan).collect();
    assert_eq!(captured, [Some(30), Some(40)]);
    cancel.cancel();
    sim.shutdown().await;
}

#[tokio::test]
async fn echo_and_sign_on_are_answered() {
    let sim = sim("{}", Some(soft_mac())).await;
    let (link, cancel) = link(&sim, Some(soft_mac())).await;
    for code in [profile::NetworkCode::Echo, profile::NetworkCode::SignOn] {
        let answer = link
            .exchange(profile::network_message(code, 77, Utc::now()).unwrap())
            .await
            .unwrap();
        let answer = profile::response_from_message(&answer).unwrap();
        assert_eq!(answer.mti, "0810");
        assert_eq!(answer.response_code, "00");
        assert_eq!(answer.network_code, Some(code));
    }
    assert_eq!(sim.received().count("0800"), 2);
    cancel.cancel();
}

#[tokio::test]
async fn slow_answers_time_out_and_blackholes_never_answer() {
    let sim = sim("{}", None).await;
    let (link, cancel) = link(&sim, None).await;
    sim.set_delay(Some("0200"), Duration::from_millis(600));
    assert!(matches!(
        authorize(&link, &purchase(1, "4761739001010010", 1)).await,
        Err(LinkError::Timeout)
    ));
    // Other MTIs are not delayed.
    let echo = link
        .exchange(profile::echo_message(2, Utc::now()).unwrap())
        .await;
    assert!(echo.is_ok());
    sim.set_delay(Some("0200"), Duration::ZERO);
    sim.set_blackhole(None, true);
    assert!(matches!(
        authorize(&link, &purchase(3, "4761739001010010", 1)).await,
        Err(LinkError::Timeout)
    ));
    sim.clear_faults();
    assert!(
        authorize(&link, &purchase(4, "4761739001010010", 1))
            .await
            .unwrap()
            .approved()
    );
    let received = sim.received();
    assert_eq!(
        received.count("0200"),
        3,
        "a blackholed request is still received"
    );
    assert_eq!(received.messages[2].response_code, None);
    cancel.cancel();
}

#[tokio::test]
async fn dropped_connections_are_reestablished_by_the_link() {
    let sim = sim("{}", None).await;
    let (link, cancel) = link(&sim, None).await;
    assert!(
        authorize(&link, &purchase(1, "4761739001010010", 1))
            .await
            .unwrap()
            .approved()
    );
    sim.refuse_connections(true);
    sim.drop_connections();
    assert!(link.wait_for(LinkState::Connecting, WAIT).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every new connection is closed at once: nothing gets through.
    let refused = authorize(&link, &purchase(2, "4761739001010010", 1)).await;
    assert!(
        matches!(refused, Err(LinkError::Unavailable(_) | LinkError::Timeout)),
        "{refused:?}"
    );
    sim.refuse_connections(false);
    assert!(link.wait_for(LinkState::Connected, WAIT).await);
    assert!(
        authorize(&link, &purchase(3, "4761739001010010", 1))
            .await
            .unwrap()
            .approved()
    );
    cancel.cancel();
}

#[tokio::test]
async fn bad_macs_get_96_or_nothing() {
    let other: Arc<dyn MacProvider> = Arc::new(SoftMac::new(key(IMK)).unwrap());
    // The sim answers 96 under its own key: the link refuses that answer's MAC.
    let sim_96 = sim("{}", Some(soft_mac())).await;
    let (client, cancel) = link(&sim_96, Some(other.clone())).await;
    assert!(matches!(
        authorize(&client, &purchase(1, "4761739001010010", 1)).await,
        Err(LinkError::BadMac)
    ));
    assert_eq!(
        sim_96.received().messages[0].response_code.as_deref(),
        Some("96")
    );
    cancel.cancel();
    // Dropping: the link times out.
    let mut config = SimConfig::new(spec(), framing());
    config.mac = Some(soft_mac());
    config.bad_mac = BadMacPolicy::Drop;
    let sim_drop =
        AcquirerSim::start(config, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let (link, cancel) = link(&sim_drop, Some(other)).await;
    assert!(matches!(
        authorize(&link, &purchase(1, "4761739001010010", 1)).await,
        Err(LinkError::Timeout)
    ));
    cancel.cancel();
}

fn iso0(pin: &str, pan: &str) -> PinBlock {
    let block = encrypt_pin_block(
        PinBlockFormat::Iso0,
        &key(ZPK),
        &Pin::new(pin).unwrap(),
        Some(&Pan::new(pan).unwrap()),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    PinBlock::new(block.try_into().unwrap())
}

pub const PIN_RULES: &str = r#"{
  "cards": [{ "pan": "1234567890123", "pvv": "1226", "pvki": 0 }],
  "rules": [{ "name": "pin", "then": "verify_pin" }]
}"#;

#[tokio::test]
async fn pin_verification_with_clear_keys() {
    let sim = sim(PIN_RULES, None).await;
    let (link, cancel) = link(&sim, None).await;
    let mut request = purchase(1, "1234567890123", 500);
    request.pin_block = Some(iso0("1234", "1234567890123"));
    assert!(authorize(&link, &request).await.unwrap().approved());
    request.stan = 2;
    request.rrn = "000000000002".into();
    request.pin_block = Some(iso0("1235", "1234567890123"));
    assert_eq!(
        authorize(&link, &request).await.unwrap().response_code,
        "55"
    );
    // No PVV on file, no PIN block: 55 too.
    let mut unknown = purchase(3, "4761739001010010", 500);
    unknown.pin_block = Some(iso0("1234", "4761739001010010"));
    assert_eq!(
        authorize(&link, &unknown).await.unwrap().response_code,
        "55"
    );
    assert_eq!(
        authorize(&link, &purchase(4, "1234567890123", 500))
            .await
            .unwrap()
            .response_code,
        "55"
    );
    cancel.cancel();
}

/// pyemv tests/test_cvn_hsm.py `test_visa_cvn18` (cited in paycrypto's tests/emv.rs): IMK
/// 0123456789ABCDEFFEDCBA9876543210, PAN 1234567890123456, PSN 00, EMV common session key
/// from ATC 001C, ARQC over 9F02 000000004000, 9F03 000000000000, 9F1A 0124, 95 8000048000,
/// 5F2A 0124, 9A 191105, 9C 01, 9F37 52BF4585, 82 1800, 9F36 001C, 9F10 06011203A0B800 →
/// 7A788EA6B8A3E733.
pub fn pyemv_icc(arqc: &str) -> Vec<u8> {
    hex::decode(
        format!(
            "9F0206000000004000 9F0306000000000000 9F1A020124 95058000048000 5F2A020124 \
             9A03191105 9C0101 9F370452BF4585 82021800 9F3602001C 9F100706011203A0B800 9F2608{arqc}"
        )
        .replace(' ', ""),
    )
    .unwrap()
}

pub fn expected_arpc(arc: &[u8; 2]) -> Vec<u8> {
    use paycrypto::emv::{
        SessionKeyDerivation, arpc_method1, derive_ac_session_key, derive_icc_mk_option_a,
    };
    let mk = derive_icc_mk_option_a(
        &key(IMK),
        &Pan::new("1234567890123456").unwrap(),
        Some("00"),
    )
    .unwrap();
    let sk =
        derive_ac_session_key(&mk, SessionKeyDerivation::EmvCsk { atc: [0x00, 0x1C] }).unwrap();
    let arqc: [u8; 8] = hex::decode("7A788EA6B8A3E733").unwrap().try_into().unwrap();
    let mut tag91 = vec![0x91, 0x0A];
    tag91.extend_from_slice(&arpc_method1(&sk, &arqc, arc).unwrap());
    tag91.extend_from_slice(arc);
    tag91
}

pub const ARQC_RULES: &str = r#"{
  "rules": [
    { "name": "chip", "then": { "verify_arqc": { "failure_code": "N7" } } },
    { "name": "too much", "when": { "amount_min": 100000 }, "then": { "decline": "51" } }
  ]
}"#;

#[tokio::test]
async fn arqc_verification_with_clear_keys() {
    let sim = sim(ARQC_RULES, Some(soft_mac())).await;
    let (link, cancel) = link(&sim, Some(soft_mac())).await;
    let mut request = purchase(1, "1234567890123456", 4_000);
    request.icc_data = Some(pyemv_icc("7A788EA6B8A3E733"));
    let approved = authorize(&link, &request).await.unwrap();
    assert!(approved.approved(), "{approved:?}");
    assert_eq!(approved.icc_data, Some(expected_arpc(b"00")));
    // A decline is authenticated too: ARC = 51.
    request.stan = 2;
    request.rrn = "000000000002".into();
    request.amount_minor = 100_000;
    let declined = authorize(&link, &request).await.unwrap();
    assert_eq!(declined.response_code, "51");
    assert_eq!(declined.icc_data, Some(expected_arpc(b"51")));
    // A wrong cryptogram: the rule's failure code, no issuer data.
    request.stan = 3;
    request.rrn = "000000000003".into();
    request.amount_minor = 4_000;
    request.icc_data = Some(pyemv_icc("7A788EA6B8A3E734"));
    let refused = authorize(&link, &request).await.unwrap();
    assert_eq!(refused.response_code, "N7");
    assert_eq!(refused.icc_data, None);
    cancel.cancel();
}

#[tokio::test]
async fn admin_api_drives_the_same_controls() {
    let sim = sim("{}", None).await;
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", admin.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(acquirer_sim::admin::serve(
        admin,
        sim.controls(),
        stop.clone(),
    ));
    let (link, cancel) = link(&sim, None).await;
    let http = reqwest::Client::new();
    assert!(
        authorize(&link, &purchase(1, "4761739001010010", 1))
            .await
            .unwrap()
            .approved()
    );
    let received: serde_json::Value = http
        .get(format!("{base}/v1/received"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(received["counts"]["0200"], 1);
    assert_eq!(received["messages"][0]["pan_last4"], "0010");
    assert_eq!(received["messages"][0]["stan"], 1);
    let status = http
        .post(format!("{base}/v1/faults/blackhole"))
        .json(&serde_json::json!({ "on": true, "mti": "0200" }))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());
    assert!(matches!(
        authorize(&link, &purchase(2, "4761739001010010", 1)).await,
        Err(LinkError::Timeout)
    ));
    assert!(
        http.delete(format!("{base}/v1/faults"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    http.post(format!("{base}/v1/faults/drop-connections"))
        .send()
        .await
        .unwrap();
    assert!(link.wait_for(LinkState::Connected, WAIT).await);
    let mut approved = false;
    for stan in 3..50 {
        if let Ok(answer) = authorize(&link, &purchase(stan, "4761739001010010", 1)).await {
            approved = answer.approved();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(approved);
    assert!(
        http.delete(format!("{base}/v1/received"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert_eq!(sim.received().count("0200"), 0);
    stop.cancel();
    server.await.unwrap().unwrap();
    cancel.cancel();
}
