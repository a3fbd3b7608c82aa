//! A whole PED session end to end: terminal-management in process over real mTLS (the PED
//! bound by its certificate), key-injection's device API as a stand-in delivering the
//! ANSI X9.24-1:2009 A.4 IPEK in a TR-34 token, then `session::run`: activation, key,
//! parameters, two payments, every step reported in order.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ki::{serve, tdes_platform};
use common::tms::{PARAMETER_SEED, Tms, bind};
use common::*;
use paycrypto::dukpt::tdes::{self, DataKeyDerivation, KeyUsage};
use paycrypto::pin::{Pan, Pin, PinBlockFormat};
use terminal_sim::session::{self, Session};
use terminal_sim::{Terminal, TerminalConfig, Track2};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ped_boots_receives_its_key_installs_parameters_and_pays() {
    let pki = pki();
    let tms = Tms::start().await;
    let operator = tms.estate(&pki.vendor).await;
    bind(&tms, &operator, "t-1", pki.ped.certificate_pem()).await;
    let cancel = CancellationToken::new();
    let platform = Arc::new(Mutex::new(tdes_platform(1)));
    let (ki_url, ki_root) = serve(platform.clone(), &cancel).await;

    let mut terminal = Terminal::new(TerminalConfig {
        terminal_id: "t-1".to_owned(),
        identity: pki.ped.clone(),
        tms_url: tms.device.clone(),
        ki_url,
        server_roots: vec![tms.server_root.clone(), ki_root],
        kdh_trust: pki.rki_ca.certificate_der().to_vec(),
        parameter_verifying_key: Some(
            ed25519_dalek::SigningKey::from_bytes(&PARAMETER_SEED).verifying_key(),
        ),
    })
    .expect("terminal");
    let plan = Session {
        key_wait: Duration::from_secs(20),
        payments: 2,
        pan: Pan::new("4012345678909").expect("pan"),
        pin: Pin::new("1234").expect("pin"),
        track2: Track2::parse("4012345678909D987").expect("track 2"),
    };
    let mut steps = Vec::new();
    session::run(&mut terminal, &plan, |step| steps.push(step.to_json()))
        .await
        .expect("session");

    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(
        names,
        [
            "activate",
            "receive_key",
            "parameters",
            "pin_block",
            "card_data",
            "pin_block",
            "card_data"
        ]
    );
    assert_eq!(steps[0]["state"], "TERMINAL_STATE_ACTIVE");
    assert_eq!(steps[1]["initialKeyId"], INITIAL_KSN);
    assert_eq!(
        platform.lock().expect("lock").confirmed_kcv.as_deref(),
        steps[1]["kcv"].as_str()
    );
    // One DUKPT transaction per payment: its PIN block and card data share the KSN.
    // ANSI X9.24-1:2009 A.4.2 (sources in tests/key_install.rs): the PIN block of E00001, the
    // data request ciphertext of E00002; the rest deciphered on the host side from the BDK.
    assert_eq!(steps[3]["ksn"], "FFFF9876543210E00001");
    assert_eq!(steps[3]["pinBlock"], "1B9C1845EB993A7A");
    assert_eq!(steps[4]["ksn"], "FFFF9876543210E00001");
    assert_eq!(steps[5]["ksn"], "FFFF9876543210E00002");
    assert_eq!(steps[6]["ksn"], "FFFF9876543210E00002");
    assert_eq!(
        steps[6]["ciphertext"],
        "A2B4E70F846E63D68775B7215EB4563DFD3037244C61CC13"
    );
    let host_key = |ksn: &serde_json::Value, usage| {
        tdes::host_working_key(
            &secret(BDK),
            &tdes::Ksn::from_hex(ksn.as_str().expect("ksn")).expect("ksn"),
            usage,
            DataKeyDerivation::OneWay,
        )
        .expect("host key")
    };
    let first_data = host_key(&steps[4]["ksn"], KeyUsage::DataRequest);
    let clear = paycrypto::primitives::tdes_decrypt_cbc(
        first_data.expose(),
        &[0; 8],
        &h(steps[4]["ciphertext"].as_str().expect("ciphertext")),
    )
    .expect("decrypt");
    assert_eq!(&clear[..17], b"4012345678909D987");
    let second_pin = host_key(&steps[5]["ksn"], KeyUsage::PinEncryption);
    let pin = paycrypto::pin::decrypt_pin_block(
        PinBlockFormat::Iso0,
        &second_pin,
        &h(steps[5]["pinBlock"].as_str().expect("pin block")),
        Some(&plan.pan),
    )
    .expect("pin");
    assert_eq!(pin, plan.pin);
    assert_eq!(terminal.counter(), Some(3));
    // Nothing a step reports carries key material or the full PAN.
    let printed = serde_json::to_string(&steps).expect("json");
    for secret_text in [IPEK, BDK, "4012345678909D", "\"4012345678909\""] {
        assert!(!printed.contains(secret_text), "{printed}");
    }
    assert!(printed.contains("401234***8909"));

    // The platform recorded the acknowledged version.
    let (_, status) = tms
        .call(
            &operator,
            reqwest::Method::GET,
            "/v1/tenants/acme/parameter-status",
            None,
        )
        .await;
    assert_eq!(status["upToDate"], 1, "{status}");
    cancel.cancel();
    tms.stop().await;
}
