//! A stand-in for key-injection's device API, served with `device_identity::serve` over mTLS
//! against the vendor CA, as the real listener is: 404 `not_found` until the key is waiting,
//! then the delivery; the confirmation KCV checked.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use device_identity::PeerCertificate;
use mpos_proto::key_injection as ki_pb;
use paycrypto::kcv;
use tokio_util::sync::CancellationToken;

use super::*;

/// What the stand-in answers and what it saw.
#[derive(Default)]
pub struct Platform {
    /// 404s before the key is waiting.
    pub polls_before_key: u32,
    pub polls: u32,
    /// Answer 403 (terminal not active) to every download.
    pub inactive: bool,
    pub delivery: ki_pb::DeviceKeyDelivery,
    /// The KCV the platform computed for the key it exported.
    pub expected_kcv: String,
    pub confirmed_kcv: Option<String>,
    /// The serial of the device certificate the last request came with.
    pub peer_serial: Option<String>,
}

pub type Shared = Arc<Mutex<Platform>>;

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
pub async fn serve(platform: Shared, cancel: &CancellationToken) -> (String, Vec<u8>) {
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

pub fn tdes_platform(polls_before_key: u32) -> Platform {
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
