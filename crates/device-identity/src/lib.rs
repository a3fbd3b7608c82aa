//! Device identity for payment terminals: manufacturer CAs, device certificates, a trust
//! store that changes while the server runs, and an mTLS listener for the device API.
//!
//! * [`ManufacturerCa`] and [`Crl`]: a manufacturer's CA certificate, checked to be a CA within
//!   its validity, and its revocation list, checked to be signed by it.
//! * [`DeviceCertificate`]: a device's certificate, checked to be an end entity usable for TLS
//!   client authentication, with its [`SerialNumber`] and [`Fingerprint`].
//! * [`TrustStore`]: the registered CAs and CRLs (cheap to clone, updated at run time), and
//!   [`TrustStore::verify`], which verifies a presented chain with `rustls-webpki` and names
//!   the device in a [`VerifiedDevice`].
//! * [`parse_bulk_csv`] and [`parse_bulk_json`]: bulk import files of serials and
//!   certificates, with per-row errors ([`bulk`] documents the formats).
//! * [`mtls_server_config`]: a rustls configuration that requires a device certificate and
//!   verifies it against the trust store at each handshake; [`server_config`] for plain TLS;
//!   [`self_signed`] for a development certificate.
//! * [`serve`]: an axum router over TLS (HTTP/1.1 and HTTP/2) where each request carries the
//!   device's [`PeerCertificate`].
//!
//! Conventions: serial numbers are shown in uppercase hex (`openssl x509 -serial`),
//! fingerprints are the SHA-256 of the DER in lowercase hex (`sha256sum`). All cryptography is
//! rustls's `ring` provider.
//!
//! ```no_run
//! # async fn example(ca_pem: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::{Extension, Router, routing::post};
//! use device_identity::{ManufacturerCa, PeerCertificate, TrustStore};
//!
//! let trust = TrustStore::new();
//! trust.add_ca(ManufacturerCa::from_pem(ca_pem, chrono::Utc::now())?);
//! let (chain, key) = device_identity::self_signed(&["localhost"])?;
//! let config = device_identity::mtls_server_config(chain, key, trust.clone())?;
//! let router = Router::new().route(
//!     "/v1/activate",
//!     post(|Extension(peer): Extension<PeerCertificate>| async move {
//!         peer.verified.serial.to_string()
//!     }),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! device_identity::serve(listener, Arc::new(config), Some(trust), router, std::future::pending())
//!     .await?;
//! # Ok(())
//! # }
//! ```

pub mod bulk;
mod ca;
mod device;
mod error;
mod ids;
mod serve;
mod tls;
mod trust;
mod x509;

pub use bulk::{
    BulkError, BulkField, BulkRow, MAX_BULK_INPUT_BYTES, MAX_BULK_ROWS, MAX_REPORTED_ROW_ERRORS,
    RowError, RowProblem, parse_bulk_csv, parse_bulk_json,
};
pub use ca::{Crl, ManufacturerCa};
pub use device::DeviceCertificate;
pub use error::IdentityError;
pub use ids::{Fingerprint, MAX_SERIAL_BYTES, SerialNumber};
pub use serve::{PeerCertificate, ServeOptions, serve, serve_with};
pub use tls::{
    ALPN_PROTOCOLS, ServerIdentity, mtls_server_config, provider, self_signed, server_config,
};
pub use trust::{TrustStore, VerifiedDevice};
pub use x509::{MAX_CERTIFICATE_BYTES, MAX_CRL_BYTES};

/// The rustls and pki-types versions the API uses, for callers that do not depend on them.
pub use rustls;
