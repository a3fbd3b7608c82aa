//! The device's HTTPS clients: rustls with only the given server roots trusted (no built-in
//! web PKI); a PED presents its device certificate as the TLS client identity
//! ([`device_client`]), a SoftPOS phone has none and authenticates each request with its
//! attestation token instead ([`server_auth_client`]).

use std::time::Duration;

use zeroize::Zeroizing;

use crate::{DeviceIdentity, SimError};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An mTLS client presenting `identity` and trusting only `server_roots` (DER).
pub fn device_client(
    identity: &DeviceIdentity,
    server_roots: &[Vec<u8>],
) -> Result<reqwest::Client, SimError> {
    if server_roots.is_empty() {
        return Err(SimError::InvalidInput(
            "at least one server root certificate is needed".to_owned(),
        ));
    }
    let key = identity.private_key_pem()?;
    let mut bundle = Zeroizing::new(Vec::with_capacity(
        identity.certificate_pem().len() + key.len() + 1,
    ));
    bundle.extend_from_slice(identity.certificate_pem().as_bytes());
    bundle.push(b'\n');
    bundle.extend_from_slice(key.as_bytes());
    let tls_identity = reqwest::Identity::from_pem(&bundle)
        .map_err(|error| SimError::pki(format!("client identity: {error}")))?;
    let builder = base_builder().identity(tls_identity);
    with_roots(builder, server_roots)
}

/// A TLS client without a client certificate (server authentication only), trusting only
/// `server_roots` (DER): what a SoftPOS phone uses.
pub fn server_auth_client(server_roots: &[Vec<u8>]) -> Result<reqwest::Client, SimError> {
    if server_roots.is_empty() {
        return Err(SimError::InvalidInput(
            "at least one server root certificate is needed".to_owned(),
        ));
    }
    with_roots(base_builder(), server_roots)
}

/// Whether `url` is plain HTTP to this machine's loopback interface (`mposd`'s local
/// listeners).
pub fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// A SoftPOS phone's client for `urls`: [`server_auth_client`], or, when every URL is plain
/// HTTP to the loopback interface (a phone simulated beside `mposd`, whose listeners are
/// local), a client that also speaks plain HTTP.
pub fn phone_client(server_roots: &[Vec<u8>], urls: &[&str]) -> Result<reqwest::Client, SimError> {
    if !urls.is_empty() && urls.iter().all(|url| is_loopback_http(url)) {
        return base_builder()
            .https_only(false)
            .build()
            .map_err(|error| SimError::pki(format!("client: {error}")));
    }
    server_auth_client(server_roots)
}

fn base_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .https_only(true)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("mpos-terminal-sim/", env!("CARGO_PKG_VERSION")))
}

fn with_roots(
    mut builder: reqwest::ClientBuilder,
    server_roots: &[Vec<u8>],
) -> Result<reqwest::Client, SimError> {
    for root in server_roots {
        let certificate = reqwest::Certificate::from_der(root)
            .map_err(|error| SimError::pki(format!("server root: {error}")))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build()
        .map_err(|error| SimError::pki(format!("https client: {error}")))
}

#[cfg(test)]
mod loopback_tests {
    use super::is_loopback_http;

    #[test]
    fn only_plain_http_to_the_loopback_interface_is_loopback_http() {
        for yes in [
            "http://localhost:8089",
            "http://127.0.0.1:8086/v1/x",
            "http://[::1]:80",
            "http://localhost",
        ] {
            assert!(is_loopback_http(yes), "{yes}");
        }
        for no in [
            "https://localhost:8089",
            "http://example.com",
            "http://localhost.example.com:80",
            "http://127.0.0.2:80",
            "http://user@evil:1",
            "",
        ] {
            assert!(!is_loopback_http(no), "{no}");
        }
    }
}
