//! `Terminal::receive_key` over HTTP: a stand-in for key-injection's device API (served with
//! `device_identity::serve` over mTLS against the vendor CA, as the real listener is) that
//! answers 404 `not_found` until the key is waiting, then the TR-34 delivery, and checks the
//! confirmation KCV. The device polls, installs, confirms, and transacts on the key; a
//! refused confirmation leaves it without a key; a device not entitled is refused at once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use common::*;
use device_identity::PeerCertificate;
use mpos_proto::key_injection as ki_pb;
use paycrypto::kcv;
use paycrypto::pin::{Pan, Pin};
use terminal_sim::SimError;
use tokio_util::sync::CancellationToken;

/// What the stand-in answers and what it saw.
#[derive(Default)]
struct Platform {
    /// 404s before the key is waiting.
    polls_before_key: u32,
    polls: u32,
    /// Answer 403 (terminal not active) to every download.
    inactive: bool,
    delivery: ki_pb::DeviceKeyDelivery,
    /// The KCV the platform computed for the key it exported.
    expected_kcv: String,
    confirmed_kcv: Option<String>,
    /// The serial of the device certificate the last request came with.
    peer_serial: Option<String>,
}

type Shared = Arc<Mutex<Platform>>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"code": code, "message": message})),
    )
        .into_response()
}

async fn keys(
    State(platform): State<Shared>,
    Extension(peer): Extension<PeerCertificate>,
    Path(terminal_id): Path<String>,
) -> Response {
    let mut platform = platform.lock().expect("lock");
    platform.peer_serial = Some(peer.verified.serial.to_string());
    if terminal_id != "t-1" {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "not this device's terminal",
        );
    }
    if platform.inactive {
        return error(StatusCode::FORBIDDEN, "forbidden", "the terminal is bound");
    }
    platform.polls += 1;
    if platform.polls <= platform.polls_before_key {
        return error(StatusCode::NOT_FOUND, "not_found", "no key waiting");
    }
    Json(platform.delivery.clone()).into_response()
}

async fn confirm(
    State(platform): State<Shared>,
    Path((_, injection_id)): Path<(String, String)>,
    Json(request): Json<ki_pb::ConfirmInjectionRequest>,
) -> Response {
    let mut platform = platform.lock().expect("lock");
    platform.confirmed_kcv = Some(request.kcv.clone());
    if injection_id != platform.delivery.injection_id {
        return error(StatusCode::NOT_FOUND, "not_found", "no such injection");
    }
    if request.kcv != platform.expected_kcv {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "injection failed: the KCV does not match",
        );
    }
    Json(ki_pb::InjectionResponse {
        injection_id,
        state: ki_pb::InjectionState::Confirmed.into(),
        initial_key_id: platform.delivery.initial_key_id.clone(),
        ..ki_pb::InjectionResponse::default()
    })
    .into_response()
}

/// Serves the stand-in over mTLS; returns its base URL and its server certificate (DER).
async fn serve(platform: Shared, cancel: &CancellationToken) -> (String, Vec<u8>) {
    let trust = device_identity::TrustStore::new();
    trust.add_ca(
        device_identity::ManufacturerCa::from_der(
            pki().vendor.certificate_der(),
            chrono::Utc::now(),
        )
        .expect("vendor ca"),
    );
    let (chain, key) = device_identity::self_signed(&["localhost"]).expect("server certificate");
    let server_root = chain[0].to_vec();
    let config = device_identity::mtls_server_config(chain, key, trust.clone()).expect("tls");
    let router = Router::new()
        .route("/v1/devices/{terminal_id}/keys", get(keys))
        .route(
            "/v1/devices/{terminal_id}/keys/{injection_id}/confirm",
            post(confirm),
        )
        .with_state(platform);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(device_identity::serve(
        listener,
        Arc::new(config),
        Some(trust),
        router,
        cancel.clone().cancelled_owned(),
    ));
    (format!("https://localhost:{port}"), server_root)
}

fn tdes_platform(polls_before_key: u32) -> Platform {
    let pki = pki();
    let ipek = secret(IPEK);
    Platform {
        polls_before_key,
        delivery: delivery(
            ki_pb::DukptAlgorithm::Tdes,
            INITIAL_KSN,
            token(&pki.kdh, pki.ped.certificate_der(), &ipek, TDES_HEADER),
        ),
        expected_kcv: kcv::tdes_kcv(&ipek).expect("kcv").to_hex(),
        ..Platform::default()
    }
}

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
