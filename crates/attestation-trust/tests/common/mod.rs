//! A real HTTPS server serving a status list (axum over rustls, with a certificate from a
//! CA made here with rcgen), and attestation chains built under roots made here.

#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use android_attestation::{KEY_DESCRIPTION_OID, read_pem_chain};
use attestation_trust::{Source, TrustConfig};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use device_identity::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    SerialNumber, date_time_ymd,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// 2030-01-01T00:00:00Z, inside the validity of the chains built here.
pub const NOW: i64 = 1_893_456_000;

/// The serial of the intermediate of the chains built here, as the status list writes it.
pub const INTERMEDIATE_SERIAL_HEX: &str = "8f0102";
const INTERMEDIATE_SERIAL: [u8; 3] = [0x8f, 0x01, 0x02];

/// The path the server serves the list at.
pub const LIST_PATH: &str = "/attestation/status";

/// A status list JSON with these serials REVOKED.
pub fn status_list(serials: &[&str]) -> Vec<u8> {
    let entries: serde_json::Map<String, serde_json::Value> = serials
        .iter()
        .map(|serial| {
            (
                (*serial).to_owned(),
                serde_json::json!({"status": "REVOKED", "reason": "KEY_COMPROMISE"}),
            )
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "entries": entries })).expect("json")
}

/// What the server answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// Stream the body in pieces without a Content-Length.
    pub chunked: bool,
}

#[derive(Clone)]
struct ServerState {
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicUsize>,
}

/// An HTTPS server on 127.0.0.1 with a certificate from its own CA.
pub struct TestServer {
    pub url: String,
    pub ca_pem: Vec<u8>,
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Serves `body` with status 200 at [`LIST_PATH`].
    pub async fn start(body: Vec<u8>) -> TestServer {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Test Status List CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");

        let server_key = KeyPair::generate().expect("key");
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let server = server_params
            .signed_by(&server_key, &Issuer::from_params(&ca_params, &ca_key))
            .expect("server certificate");

        let chain = vec![server.der().clone(), ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
        let tls = device_identity::server_config(
            chain.into_iter().map(CertificateDer::into_owned).collect(),
            key,
        )
        .expect("tls config");

        let reply = Arc::new(Mutex::new(Reply {
            status: 200,
            body,
            chunked: false,
        }));
        let hits = Arc::new(AtomicUsize::new(0));
        let router = Router::new()
            .route(LIST_PATH, get(serve_list))
            .with_state(ServerState {
                reply: Arc::clone(&reply),
                hits: Arc::clone(&hits),
            });
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(device_identity::serve(
            listener,
            Arc::new(tls),
            None,
            router,
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            url: format!("https://127.0.0.1:{port}{LIST_PATH}"),
            ca_pem: ca.pem().into_bytes(),
            reply,
            hits,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Answers `status` with `body` from now on.
    pub fn set(&self, status: u16, body: Vec<u8>) {
        *self.reply.lock().expect("lock") = Reply {
            status,
            body,
            chunked: false,
        };
    }

    /// Answers 200 with `body` streamed without a Content-Length from now on.
    pub fn set_chunked(&self, body: Vec<u8>) {
        *self.reply.lock().expect("lock") = Reply {
            status: 200,
            body,
            chunked: true,
        };
    }

    /// How many requests were served.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops the server: its port refuses connections afterwards.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops")
                .expect("server task")
                .expect("server");
        }
    }

    /// A configuration trusting this server's CA, with the list at this server and `anchors`.
    pub fn config(&self, anchors: Source) -> TrustConfig {
        let mut config = TrustConfig::new(anchors, Some(Source::Url(self.url.clone())));
        config.extra_ca_pem = Some(self.ca_pem.clone());
        config.fetch_timeout = Duration::from_secs(5);
        config
    }
}

async fn serve_list(State(state): State<ServerState>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let reply = state.reply.lock().expect("lock").clone();
    let status = StatusCode::from_u16(reply.status).expect("status");
    if reply.chunked {
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            reply.body.chunks(256).map(|c| Ok(c.to_vec())).collect();
        let body = Body::from_stream(futures::stream::iter(pieces));
        return (status, body).into_response();
    }
    (status, reply.body).into_response()
}

/// A 127.0.0.1 URL whose port refuses connections (bound, then released).
pub async fn closed_url() -> String {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("https://127.0.0.1:{port}{LIST_PATH}")
}

// ---- Attestation chains ----

/// `crates/android-attestation/tests/data/testdata`.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../android-attestation/tests/data/testdata")
}

/// A fixture chain rooted at Google's EC root (2026).
pub fn fixture_chain() -> Vec<Vec<u8>> {
    read_pem_chain(fixture_dir().join("tegu/sdk36/TEE_EC_2026_ROOT.pem")).expect("PEM chain")
}

/// A time inside every certificate's validity: the latest notBefore + 1 s.
pub fn time_inside(chain: &[Vec<u8>]) -> i64 {
    chain
        .iter()
        .map(|der| {
            let (_, cert) = X509Certificate::from_der(der).expect("certificate");
            cert.validity().not_before.timestamp()
        })
        .max()
        .expect("certificates")
        + 1
}

/// The OID arcs of the key attestation extension.
fn key_description_arcs() -> Vec<u64> {
    KEY_DESCRIPTION_OID
        .split('.')
        .map(|arc| arc.parse().expect("arc"))
        .collect()
}

/// The raw key attestation extension of the fixture leaf.
fn fixture_extension() -> Vec<u8> {
    let chain = fixture_chain();
    let (_, cert) = X509Certificate::from_der(&chain[0]).expect("certificate");
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == KEY_DESCRIPTION_OID)
        .map(|e| e.value.to_vec())
        .expect("fixture leaf has the extension")
}

fn params(common_name: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.not_before = date_time_ymd(2025, 1, 1);
    params.not_after = date_time_ymd(2035, 1, 1);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params
}

/// A root, and an attestation chain (leaf with the fixture's key attestation extension,
/// intermediate with serial [`INTERMEDIATE_SERIAL_HEX`]) under it.
pub struct TestPki {
    /// The root certificate, PEM.
    pub root_pem: String,
    /// The root certificate, DER.
    pub root_der: Vec<u8>,
    /// Leaf and intermediate, DER (the root is the anchor, not in the chain).
    pub chain: Vec<Vec<u8>>,
}

impl TestPki {
    pub fn build(root_name: &str) -> TestPki {
        let root_key = KeyPair::generate().expect("key");
        let root_params = params(root_name, true);
        let root = root_params.self_signed(&root_key).expect("root");

        let intermediate_key = KeyPair::generate().expect("key");
        let mut intermediate_params = params("Test Attestation Intermediate", true);
        intermediate_params.serial_number = Some(SerialNumber::from_slice(&INTERMEDIATE_SERIAL));
        let intermediate = intermediate_params
            .signed_by(
                &intermediate_key,
                &Issuer::from_params(&root_params, &root_key),
            )
            .expect("intermediate");

        let leaf_key = KeyPair::generate().expect("key");
        let mut leaf_params = params("Android Keystore Key", false);
        leaf_params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &key_description_arcs(),
                fixture_extension(),
            ));
        let leaf = leaf_params
            .signed_by(
                &leaf_key,
                &Issuer::from_params(&intermediate_params, &intermediate_key),
            )
            .expect("leaf");

        TestPki {
            root_pem: root.pem(),
            root_der: root.der().to_vec(),
            chain: vec![leaf.der().to_vec(), intermediate.der().to_vec()],
        }
    }
}

/// Hex SHA-256, as the snapshot names anchors.
pub fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(der))
}
