//! `Terminal::receive_key` over HTTP: a stand-in for key-injection's device API (served with
//! `device_identity::serve` over mTLS against the vendor CA, as the real listener is) that
//! answers 404 `not_found` until the key is waiting, then the TR-34 delivery, and checks the
//! confirmation KCV. The device polls, installs, confirms, and transacts on the key; a
//! refused confirmation leaves it without a key; a device not entitled is refused at once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ki::{serve, tdes_platform};
use common::*;
use paycrypto::pin::{Pan, Pin};
use terminal_sim::SimError;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ped_polls_for_its_key_installs_it_confirms_it_and_transacts() {
    let cancel = CancellationToken::new();
    let platform = Arc::new(Mutex::new(tdes_platform(2)));
    let (url, root) = serve(platform.clone(), &cancel).await;
    let pki = pki();
    let mut ped = terminal_at(&pki.ped, pki.rki_ca.certificate_der(), &url, &root);

    let installed = ped
        .receive_key(Instant::now() + Duration::from_secs(20))
        .await
        .expect("key");
    {
        let platform = platform.lock().expect("lock");
        assert_eq!(platform.polls, 3, "two 404s, then the key");
        assert_eq!(
            platform.confirmed_kcv.as_deref(),
            Some(installed.kcv.as_str())
        );
        assert_eq!(
            platform.peer_serial.as_deref(),
            Some("7E01"),
            "over mTLS as the PED"
        );
    }
    assert_eq!(installed.initial_key_id, INITIAL_KSN);
    let block = ped
        .pin_block(
            &Pan::new("4012345678909").expect("pan"),
            &Pin::new("1234").expect("pin"),
        )
        .expect("pin block");
    // ANSI X9.24-1:2009 A.4.2, KSN E00001 (see tests/key_install.rs for the source).
    assert_eq!(
        (block.ksn.as_str(), hex::encode_upper(&block.block).as_str()),
        ("FFFF9876543210E00001", "1B9C1845EB993A7A")
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_confirmation_leaves_the_ped_without_a_key_and_waiting_ends_at_the_deadline() {
    let cancel = CancellationToken::new();
    let mut wrong = tdes_platform(0);
    wrong.expected_kcv = "000000".to_owned();
    let platform = Arc::new(Mutex::new(wrong));
    let (url, root) = serve(platform.clone(), &cancel).await;
    let pki = pki();
    let mut ped = terminal_at(&pki.ped, pki.rki_ca.certificate_der(), &url, &root);
    let error = ped
        .receive_key(Instant::now() + Duration::from_secs(20))
        .await
        .expect_err("kcv refused");
    assert!(
        matches!(error, SimError::Refused { status: 400, ref code, .. } if code == "bad_request"),
        "{error}"
    );
    assert_eq!(ped.counter(), None, "the key was discarded");

    // No key ever waiting: the deadline ends the wait.
    platform.lock().expect("lock").polls_before_key = u32::MAX;
    let started = Instant::now();
    let error = ped
        .receive_key(Instant::now() + Duration::from_millis(700))
        .await
        .expect_err("nothing waiting");
    assert!(matches!(error, SimError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A terminal that is not active is refused at once, without polling.
    platform.lock().expect("lock").inactive = true;
    let started = Instant::now();
    let error = ped
        .receive_key(Instant::now() + Duration::from_secs(20))
        .await
        .expect_err("inactive");
    assert!(
        matches!(error, SimError::Refused { status: 403, .. }),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    cancel.cancel();
}
