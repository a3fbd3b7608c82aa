//! The mTLS listener with real TLS over loopback: rcgen CAs and device certificates, a
//! tokio-rustls client speaking HTTP/1.1 (and HTTP/2 through hyper's client).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::{Extension, Json, Router};
use common::{TestCa, TestDevice};
use device_identity::{PeerCertificate, ServeOptions, TrustStore};
use rcgen::date_time_ymd;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// A running mTLS server.
struct Server {
    addr: SocketAddr,
    server_certificate: CertificateDer<'static>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn whoami(
    Extension(peer): Extension<PeerCertificate>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "serial": peer.verified.serial,
        "ca": peer.verified.ca_fingerprint,
        "fingerprint": peer.verified.fingerprint,
        "chain_length": peer.chain.len(),
        "remote_is_loopback": remote.ip().is_loopback(),
    }))
}

impl Server {
    async fn start(trust: TrustStore) -> Self {
        Self::start_with(trust, ServeOptions::default()).await
    }

    async fn start_with(trust: TrustStore, options: ServeOptions) -> Self {
        let (chain, key) =
            device_identity::self_signed(&["localhost"]).expect("server certificate");
        let server_certificate = chain[0].clone();
        let config =
            device_identity::mtls_server_config(chain, key, trust.clone()).expect("config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = Router::new().route("/whoami", get(whoami));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(device_identity::serve_with(
            listener,
            Arc::new(config),
            Some(trust),
            router,
            async move {
                let _ = stopped.await;
            },
            options,
        ));
        Self {
            addr,
            server_certificate,
            stop: Some(stop),
            task,
        }
    }

    fn client_config(
        &self,
        device: Option<&TestDevice>,
        intermediates: &[CertificateDer<'static>],
    ) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.server_certificate.clone()).expect("root");
        let builder = ClientConfig::builder_with_provider(device_identity::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        match device {
            None => builder.with_no_client_auth(),
            Some(device) => {
                let mut chain = vec![device.der.clone()];
                chain.extend(intermediates.iter().cloned());
                builder
                    .with_client_auth_cert(chain, device.key())
                    .expect("client certificate")
            }
        }
    }

    /// `GET /whoami` over HTTP/1.1 as `device`.
    async fn whoami(&self, device: Option<&TestDevice>) -> Result<serde_json::Value, Refusal> {
        self.whoami_with(self.client_config(device, &[])).await
    }

    async fn whoami_with(&self, config: ClientConfig) -> Result<serde_json::Value, Refusal> {
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(Refusal::from_io)?;
        // In TLS 1.3 the client's handshake completes before the server has checked its
        // certificate: a refusal arrives as an alert on the first read.
        tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(Refusal::from_io)?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response)
            .await
            .map_err(Refusal::from_io)?;
        let text = String::from_utf8(response).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").ok_or(Refusal::Closed)?;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        Ok(serde_json::from_str(body).expect("json body"))
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server result");
    }
}

/// How the server refused a client.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// The server sent this TLS alert.
    Alert(AlertDescription),
    /// The server closed the connection without a response.
    Closed,
    /// Another I/O error.
    Other(String),
}

impl Refusal {
    fn from_io(error: std::io::Error) -> Self {
        let rustls_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match rustls_error {
            Some(rustls::Error::AlertReceived(alert)) => Self::Alert(*alert),
            _ if matches!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ) =>
            {
                Self::Closed
            }
            _ => Self::Other(error.to_string()),
        }
    }
}

fn trust_for(cas: &[&TestCa]) -> TrustStore {
    TrustStore::with(cas.iter().map(|ca| ca.manufacturer_ca()).collect(), vec![]).expect("store")
}

#[tokio::test]
async fn a_registered_device_is_served_and_the_handler_sees_its_serial() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x01, 0xa2, 0xb3]);
    let server = Server::start(trust_for(&[&ca])).await;
    let body = server.whoami(Some(&device)).await.expect("served");
    assert_eq!(body["serial"], "01A2B3");
    assert_eq!(body["ca"], ca.manufacturer_ca().fingerprint().to_string());
    assert_eq!(
        body["fingerprint"],
        device.certificate().fingerprint().to_string()
    );
    assert_eq!(body["chain_length"], 1);
    assert_eq!(body["remote_is_loopback"], true);
    server.stop().await;
}

#[tokio::test]
async fn a_device_of_an_unknown_manufacturer_is_refused_at_the_handshake() {
    let ca = TestCa::new("Acme Terminals CA");
    let stranger = TestCa::new("Stranger CA").device(&[1]);
    let server = Server::start(trust_for(&[&ca])).await;
    assert_eq!(
        server.whoami(Some(&stranger)).await,
        Err(Refusal::Alert(AlertDescription::UnknownCA))
    );
    server.stop().await;
}

#[tokio::test]
async fn tls12_refuses_during_the_handshake_itself() {
    let ca = TestCa::new("Acme Terminals CA");
    let stranger = TestCa::new("Stranger CA").device(&[1]);
    let good = ca.device(&[2]);
    let server = Server::start(trust_for(&[&ca])).await;
    let tls12 = |device: &TestDevice| {
        let mut roots = RootCertStore::empty();
        roots.add(server.server_certificate.clone()).expect("root");
        ClientConfig::builder_with_provider(device_identity::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("tls 1.2")
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![device.der.clone()], device.key())
            .expect("client certificate")
    };
    let connector = TlsConnector::from(Arc::new(tls12(&stranger)));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let refused = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect_err("handshake refused");
    assert_eq!(
        Refusal::from_io(refused),
        Refusal::Alert(AlertDescription::UnknownCA)
    );
    assert_eq!(
        server.whoami_with(tls12(&good)).await.expect("served")["serial"],
        "02"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_expired_device_certificate_is_refused() {
    let ca = TestCa::new("Acme Terminals CA");
    let expired = ca.device_with(&[3], |params| {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    });
    let server = Server::start(trust_for(&[&ca])).await;
    assert_eq!(
        server.whoami(Some(&expired)).await,
        Err(Refusal::Alert(AlertDescription::CertificateExpired))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_device_certificate_is_refused() {
    let ca = TestCa::new("Acme Terminals CA");
    let revoked = ca.device(&[0x0b, 0xad]);
    let good = ca.device(&[0x60, 0x0d]);
    let trust = TrustStore::with(
        vec![ca.manufacturer_ca()],
        vec![ca.checked_crl(&[&[0x0b, 0xad]])],
    )
    .expect("store");
    let server = Server::start(trust).await;
    assert_eq!(
        server.whoami(Some(&revoked)).await,
        Err(Refusal::Alert(AlertDescription::CertificateRevoked))
    );
    assert_eq!(
        server.whoami(Some(&good)).await.expect("served")["serial"],
        "600D"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let ca = TestCa::new("Acme Terminals CA");
    let server = Server::start(trust_for(&[&ca])).await;
    assert_eq!(
        server.whoami(None).await,
        Err(Refusal::Alert(AlertDescription::CertificateRequired))
    );
    server.stop().await;
}

#[tokio::test]
async fn changes_to_the_trust_store_apply_to_the_next_handshake() {
    let acme = TestCa::new("Acme Terminals CA");
    let newcomer = TestCa::new("Newcomer Terminals CA");
    let device = newcomer.device(&[0x42]);
    let trust = trust_for(&[&acme]);
    let server = Server::start(trust.clone()).await;
    assert_eq!(
        server.whoami(Some(&device)).await,
        Err(Refusal::Alert(AlertDescription::UnknownCA))
    );

    // An operator registers the manufacturer while the server runs.
    assert!(trust.add_ca(newcomer.manufacturer_ca()));
    let body = server.whoami(Some(&device)).await.expect("now accepted");
    assert_eq!(body["serial"], "42");
    assert_eq!(
        body["ca"],
        newcomer.manufacturer_ca().fingerprint().to_string()
    );

    // Then revokes the device, then withdraws the manufacturer.
    trust
        .set_crl(newcomer.checked_crl(&[&[0x42]]))
        .expect("crl");
    assert_eq!(
        server.whoami(Some(&device)).await,
        Err(Refusal::Alert(AlertDescription::CertificateRevoked))
    );
    assert!(trust.remove_ca(&newcomer.manufacturer_ca().fingerprint()));
    assert_eq!(
        server.whoami(Some(&device)).await,
        Err(Refusal::Alert(AlertDescription::UnknownCA))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_device_may_send_its_intermediate_ca() {
    let root = TestCa::new("Acme Root CA");
    let line = root.intermediate("Acme Line 7 CA");
    let device = line.device(&[7]);
    let server = Server::start(trust_for(&[&root])).await;
    let config = server.client_config(Some(&device), std::slice::from_ref(&line.der));
    let body = server.whoami_with(config).await.expect("served");
    assert_eq!(body["chain_length"], 2);
    assert_eq!(body["ca"], root.manufacturer_ca().fingerprint().to_string());
    server.stop().await;
}

#[tokio::test]
async fn refused_handshakes_garbage_and_idle_clients_do_not_harm_the_server() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[5]);
    let options = ServeOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let server = Server::start_with(trust_for(&[&ca]), options).await;

    // Plain HTTP on the TLS port.
    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buffer))
        .await
        .expect("the server closes a plaintext connection");

    // A client that connects and says nothing is cut at the handshake timeout.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut [0u8; 16]))
        .await
        .expect("the server closes an idle connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // Many refused devices at once.
    let stranger = TestCa::new("Stranger CA").device(&[6]);
    let refusals = futures::future::join_all((0..20).map(|_| server.whoami(Some(&stranger)))).await;
    assert!(refusals.iter().all(Result::is_err));

    // The server still serves.
    assert_eq!(
        server.whoami(Some(&device)).await.expect("served")["serial"],
        "05"
    );
    server.stop().await;
}

#[tokio::test]
async fn http2_is_served_with_the_peer_certificate() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x22]);
    let server = Server::start(trust_for(&[&ca])).await;
    let mut config = server.client_config(Some(&device), &[]);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("https://localhost/whoami")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 64 * 1024)
        .await
        .expect("body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["serial"], "22");
    drop(sender);
    driver.abort();
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let ca = TestCa::new("Acme Terminals CA");
    let server = Server::start(trust_for(&[&ca])).await;
    let addr = server.addr;
    server.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn a_plain_tls_listener_serves_without_a_client_certificate() {
    let (chain, key) = device_identity::self_signed(&["localhost"]).expect("server certificate");
    let server_certificate = chain[0].clone();
    let config = device_identity::server_config(chain, key).expect("config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let router = Router::new().route(
        "/livez",
        get(|peer: Option<Extension<PeerCertificate>>| async move {
            if peer.is_some() { "peer" } else { "ok" }
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(device_identity::serve(
        listener,
        Arc::new(config),
        None,
        router,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut roots = RootCertStore::empty();
    roots.add(server_certificate).expect("root");
    let client = ClientConfig::builder_with_provider(device_identity::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut tls = TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    tls.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");
    let _ = stop.send(());
    task.await.expect("task").expect("serve");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x33]);
    let options = ServeOptions {
        max_connections: 1,
        ..ServeOptions::default()
    };
    let server = Server::start_with(trust_for(&[&ca]), options).await;
    let idle = TcpStream::connect(server.addr).await.expect("connect");
    // Let the server accept the idle connection first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        server.whoami(Some(&device)).await,
        Err(Refusal::Closed | Refusal::Other(_))
    ));
    drop(idle);
    let mut served = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(body) = server.whoami(Some(&device)).await {
            served = Some(body);
            break;
        }
    }
    assert_eq!(
        served.expect("served once the idle client left")["serial"],
        "33"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_not_for_client_authentication_is_refused() {
    let ca = TestCa::new("Acme Terminals CA");
    let server_only = ca.device_with(&[0x44], |params| {
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    });
    let not_yet_valid = ca.device_with(&[0x45], |params| {
        params.not_before = date_time_ymd(2044, 1, 1);
    });
    let server = Server::start(trust_for(&[&ca])).await;
    assert_eq!(
        server.whoami(Some(&server_only)).await,
        Err(Refusal::Alert(AlertDescription::UnsupportedCertificate))
    );
    assert_eq!(
        server.whoami(Some(&not_yet_valid)).await,
        Err(Refusal::Alert(AlertDescription::CertificateExpired))
    );
    server.stop().await;
}

#[tokio::test]
async fn every_connection_is_a_full_handshake_so_revocation_applies_to_returning_devices() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x55]);
    let trust = trust_for(&[&ca]);
    let server = Server::start(trust.clone()).await;
    // One client configuration (and so one session cache) for every connection, as a device
    // keeps.
    let config = Arc::new(server.client_config(Some(&device), &[]));
    let connect = || async {
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        TlsConnector::from(Arc::clone(&config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
    };
    for _ in 0..2 {
        let mut tls = connect().await.expect("handshake");
        assert_eq!(
            tls.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "no session resumption"
        );
        tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut response = String::new();
        tls.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    trust.set_crl(ca.checked_crl(&[&[0x55]])).expect("crl");
    let mut tls = connect().await.expect("client side of the handshake");
    tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    let refused = tls.read_to_end(&mut response).await.expect_err("refused");
    assert_eq!(
        Refusal::from_io(refused),
        Refusal::Alert(AlertDescription::CertificateRevoked)
    );
    server.stop().await;
}
