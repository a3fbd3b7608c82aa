//! The payment path with the platform as processes started from the workspace's binaries
//! (`mpos_e2e::processes`): every service its own process over PostgreSQL and NATS, and the
//! one `mposd` process on its embedded defaults; the acquirer simulators as `acquirer-sim`
//! processes. The PED is bound, activated and keyed over the processes' device APIs.
//!
//! `cargo test --workspace` builds the binaries beside the test (every service package has
//! tests of its own); `MPOS_BIN_DIR` names another directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mpos_e2e::processes::Layout;
use mpos_e2e::{Backends, DECLINED_AMOUNT, PED, Platform, TENANT};
use mpos_proto::authorization::{DeclineReason, PaymentStatus};
use serde_json::json;
use terminal_sim::card::{TestCard, test_card, test_cards};
use terminal_sim::emv::{CardDecision, EmvCard, EmvTransaction};
use terminal_sim::payment::Payment;

fn visa() -> TestCard {
    test_card("visa").expect("visa")
}

fn chip(card: &TestCard, key: &str, amount: u64, atc: u16) -> (Payment, EmvCard) {
    let mut emv_card = card.emv_card(atc);
    let emv = emv_card
        .generate_ac(
            &EmvTransaction::purchase_today(amount, 978, 276),
            CardDecision::Arqc,
        )
        .expect("generate ac");
    let mut payment = Payment::purchase(key, amount, "EUR", card.track2.clone());
    payment.pin = Some(card.pin.clone());
    payment.emv = Some(emv);
    (payment, emv_card)
}

/// The full rules of the in-process test: PIN against the PVV, ARQC verified, ARPC answered.
fn checking_rules() -> String {
    mpos_e2e::test_card_rules()
}

/// Every PAN and track 2 of the test cards must be absent from every process's log.
fn assert_no_card_data_in_logs(platform: &Platform) {
    for name in platform.process_names() {
        let log = platform.process_log(name);
        assert!(!log.is_empty(), "{name} wrote no log");
        for card in test_cards() {
            let pan = card.pan().expose();
            assert!(!log.contains(pan), "{name}'s log holds {}'s PAN", card.name);
        }
    }
}

/// The SoftPOS phone, attested with a key of its own, receives its DUKPT key by ECDH to it
/// and pays contactless with online PIN: approved.
async fn softpos_phone_pays(platform: &Platform, idempotency_key: &str) {
    let mut phone = platform.keyed_phone().await;
    let (mut payment, _) = chip(&visa(), idempotency_key, 1_100, 30);
    payment.entry_mode = mpos_proto::authorization::EntryMode::Contactless;
    let response = phone.pay(payment).await.expect("pay");
    assert!(response.approved, "{response:?}");
}

#[tokio::test]
async fn every_service_as_its_own_process_on_postgres_and_nats() {
    let Some(backends) = Backends::postgres_and_nats() else {
        eprintln!(
            "skipped: MPOS_TEST_POSTGRES_URL and MPOS_TEST_NATS_URL name the PostgreSQL and NATS to run on"
        );
        return;
    };
    let mut platform =
        Platform::start_processes(Layout::PerService, Some(backends), &checking_rules()).await;
    assert_eq!(platform.process_names().len(), 8);
    let mut terminal = platform.provision().await;

    // Approved: the issuer simulator (its own process) verifies PIN and ARQC through the
    // hsm-proxy (its own process) over NATS; the card accepts the ARPC.
    let (payment, card) = chip(&visa(), "approved-1", 1_000, 10);
    let request = terminal.prepare_payment(&payment).expect("request");
    let approved = terminal.submit(&request).await.expect("pay");
    assert!(approved.approved, "{approved:?}");
    assert_eq!(approved.acquirer_id, "acq-a");
    assert!(card.verify_arpc(&approved.issuer_emv_data), "{approved:?}");
    let recorded = platform.payment(&approved.payment_id).await;
    assert_eq!(recorded["status"], "PAYMENT_STATUS_APPROVED", "{recorded}");

    // Declined by the issuer.
    let (payment, _) = chip(&visa(), "declined-1", DECLINED_AMOUNT, 11);
    let response = terminal.pay(payment).await.expect("pay");
    assert!(!response.approved);
    assert_eq!(response.decline_reason(), DeclineReason::IssuerDeclined);
    assert_eq!(response.response_code, "51");

    // The same request again gets the recorded answer.
    let again = terminal.resend(&request).await.expect("again");
    assert!(again.approved, "{again:?}");
    assert_eq!(again.payment_id, approved.payment_id);
    assert_eq!(again.auth_code, approved.auth_code);

    // The SoftPOS phone receives its key from key-injection's own TLS listener (the token
    // checked with the keys fetched from attestation's process) and pays.
    softpos_phone_pays(&platform, "phone-1").await;

    // Acquirer A's process killed: routing falls back to B.
    platform.kill("acquirer-sim-a").await;
    let (payment, card) = chip(&visa(), "fallback-1", 1_500, 12);
    let response = terminal.pay(payment).await.expect("pay");
    assert!(response.approved, "{response:?}");
    assert_eq!(response.acquirer_id, "acq-b");
    assert!(card.verify_arpc(&response.issuer_emv_data));
    let exchange = platform.exchange(&response.payment_id).await.to_string();
    assert!(
        exchange.contains("acq-a") && exchange.contains("acq-b"),
        "{exchange}"
    );

    // The PED suspended in terminal-management: authorization, which remembers a terminal's
    // facts between payments, reads them again once its feed brings the change over NATS.
    platform
        .call(
            reqwest::Method::POST,
            &format!(
                "{}/v1/tenants/{TENANT}/terminals/{PED}/suspend",
                platform.tm_api
            ),
            Some(json!({"reason": "lost in the shop"})),
        )
        .await;
    platform.wait_for_feeds().await;
    let (payment, _) = chip(&visa(), "after-suspension-1", 1_000, 13);
    let response = terminal.pay(payment).await.expect("pay");
    assert!(!response.approved, "{response:?}");
    assert_eq!(
        response.decline_reason(),
        DeclineReason::TerminalNotActive,
        "{response:?}"
    );

    assert_no_card_data_in_logs(&platform);
    platform.stop().await;
}

#[tokio::test]
async fn mposd_as_one_process_on_its_embedded_defaults() {
    // The simulators run beside mposd without its in-process bus: no PIN or ARQC checks.
    let rules = json!({"rules": [
        {"name": "declined amount", "when": {"amount_min": DECLINED_AMOUNT, "amount_max": DECLINED_AMOUNT}, "then": {"decline": "51"}},
        {"name": "the rest", "when": {}, "then": "approve"}
    ]})
    .to_string();
    let platform = Platform::start_processes(Layout::Mposd, None, &rules).await;
    assert_eq!(platform.process_names().len(), 3);
    let mut terminal = platform.provision().await;

    let (payment, _) = chip(&visa(), "approved-1", 1_000, 10);
    let response = terminal.pay(payment).await.expect("pay");
    assert!(response.approved, "{response:?}");
    assert_eq!(response.status(), PaymentStatus::Approved);
    assert_eq!(response.acquirer_id, "acq-a");

    let (payment, _) = chip(&visa(), "declined-1", DECLINED_AMOUNT, 11);
    let response = terminal.pay(payment).await.expect("pay");
    assert_eq!(response.decline_reason(), DeclineReason::IssuerDeclined);

    // The SoftPOS phone receives its key on key-injection's local listener and pays.
    softpos_phone_pays(&platform, "phone-1").await;

    // More PEDs, keyed through mposd's one device listener, pay too.
    let mut more = platform.add_peds(3, 3).await;
    for (index, ped) in more.iter_mut().enumerate() {
        let (payment, _) = chip(&visa(), &format!("more-{index}"), 700, 20);
        let response = ped.pay(payment).await.expect("pay");
        assert!(response.approved, "{response:?}");
    }

    assert_no_card_data_in_logs(&platform);
    platform.stop().await;
}
