//! The simulated PED against an in-process terminal-management over real mTLS: a manufacturer
//! CA registered by the operator, the PED bound by its certificate, first boot, a signed
//! parameter download verified on the device and its acknowledgement recorded by the
//! platform.

mod common;

use std::time::{Duration, Instant};

use common::tms::{PARAMETER_SEED, Tms, bind};
use terminal_sim::{DeviceKeyKind, ManufacturerCa, SimError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_ped_activates_over_mtls_and_installs_signed_parameters() {
    let tms = Tms::start().await;
    let vendor = ManufacturerCa::generate("Sim Vendor Device CA").expect("ca");
    let key = tms.estate(&vendor).await;
    let preloaded = ed25519_dalek::SigningKey::from_bytes(&PARAMETER_SEED).verifying_key();

    // An RSA PED (TR-34 capable) and a P-256 PED (ECDH capable) both authenticate.
    let rsa = vendor
        .issue(&[0x5A, 0x01], DeviceKeyKind::Rsa2048)
        .expect("rsa device");
    let ec = vendor
        .issue(&[0x5A, 0x02], DeviceKeyKind::P256)
        .expect("ec device");
    bind(&tms, &key, "t-1", rsa.certificate_pem()).await;
    bind(&tms, &key, "t-2", ec.certificate_pem()).await;

    let mut t1 = tms.terminal("t-1", rsa, Some(preloaded));
    let state = t1.activate().await.expect("activate");
    assert_eq!(
        (
            state.tenant_id.as_str(),
            state.terminal_id.as_str(),
            state.state.as_str()
        ),
        ("acme", "t-1", "TERMINAL_STATE_ACTIVE")
    );
    assert_eq!(
        state.activation_method,
        "ACTIVATION_METHOD_DEVICE_CERTIFICATE"
    );
    // A second boot changes nothing.
    assert_eq!(t1.activate().await.expect("again"), state);

    let installed = t1.download_parameters().await.expect("parameters");
    assert!(installed.version > 0);
    assert_eq!(installed.status.installed_version, installed.version);
    assert!(!installed.status.behind);
    assert_eq!(installed.set.terminal_id, "t-1");
    let values = installed
        .set
        .parameters
        .as_ref()
        .and_then(|p| p.values.as_ref())
        .expect("values");
    assert_eq!(values.merchant_category_code.as_deref(), Some("5411"));
    assert_eq!(t1.installed_parameter_version(), installed.version);

    // The platform records the acknowledgement.
    let (status, body) = tms
        .call(
            &key,
            reqwest::Method::GET,
            "/v1/tenants/acme/parameter-status",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let t1_status = body["terminals"]
        .as_array()
        .expect("terminals")
        .iter()
        .find(|terminal| terminal["terminalId"] == "t-1")
        .expect("t-1")
        .clone();
    assert_eq!(
        t1_status["installedVersion"].as_str(),
        Some(installed.version.to_string().as_str()),
        "{body}"
    );

    // The EC device fetches the key from the platform (no preloaded key) and works too.
    let mut t2 = tms.terminal("t-2", ec, None);
    t2.activate().await.expect("activate t-2");
    let installed = t2.download_parameters().await.expect("parameters t-2");
    assert_eq!(installed.set.terminal_id, "t-2");
    assert!(!installed.key_id.is_empty());

    // The device has no key yet: no PIN block.
    assert!(matches!(
        t2.pin_block(
            &paycrypto::pin::Pan::new("4012345678909").expect("pan"),
            &paycrypto::pin::Pin::new("1234").expect("pin")
        ),
        Err(SimError::NoKey)
    ));
    tms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ped_refuses_parameters_under_another_key_and_the_platform_refuses_strangers() {
    let tms = Tms::start().await;
    let vendor = ManufacturerCa::generate("Sim Vendor Device CA").expect("ca");
    let key = tms.estate(&vendor).await;
    let device = vendor
        .issue(&[0x5B, 0x01], DeviceKeyKind::P256)
        .expect("device");
    bind(&tms, &key, "t-1", device.certificate_pem()).await;

    // A device preloaded with another signing key refuses the set and acknowledges nothing.
    let wrong = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let mut terminal = tms.terminal("t-1", device.clone(), Some(wrong));
    terminal.activate().await.expect("activate");
    let error = terminal.download_parameters().await.expect_err("wrong key");
    assert!(matches!(error, SimError::Parameters(_)), "{error}");
    assert_eq!(terminal.installed_parameter_version(), 0);
    let (_, body) = tms
        .call(
            &key,
            reqwest::Method::GET,
            "/v1/tenants/acme/parameter-status",
            None,
        )
        .await;
    assert!(body["upToDate"].as_u64().is_none(), "{body}");

    // A device configured for another terminal than it is bound to stops at activation.
    let mut confused = tms.terminal("t-9", device, None);
    let error = confused.activate().await.expect_err("other terminal");
    assert!(matches!(error, SimError::Protocol { .. }), "{error}");

    // An unbound device of the trusted vendor: refused by the API.
    let unbound = vendor
        .issue(&[0x5B, 0x02], DeviceKeyKind::P256)
        .expect("device");
    let mut stranger = tms.terminal("t-2", unbound, None);
    let error = stranger.activate().await.expect_err("unbound");
    assert!(
        matches!(error, SimError::Refused { status: 403, ref code, .. } if code == "forbidden"),
        "{error}"
    );
    // A device of an unregistered vendor: no TLS session at all.
    let rogue = ManufacturerCa::generate("Rogue CA")
        .expect("rogue ca")
        .issue(&[0x5B, 0x03], DeviceKeyKind::P256)
        .expect("rogue device");
    let mut rogue = tms.terminal("t-3", rogue, None);
    let error = rogue.activate().await.expect_err("unknown vendor");
    assert!(matches!(error, SimError::Transport { .. }), "{error}");
    // No key-injection is listening here: waiting for a key ends with the platform's answer.
    let error = terminal
        .receive_key(Instant::now() + Duration::from_secs(2))
        .await
        .expect_err("no key-injection");
    assert!(
        matches!(error, SimError::Refused { .. } | SimError::Timeout { .. }),
        "{error}"
    );
    tms.stop().await;
}
