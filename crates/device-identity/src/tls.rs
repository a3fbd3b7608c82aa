//! rustls server configurations: mTLS for devices, plain TLS for admin listeners.

use std::sync::{Arc, LazyLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::NoServerSessionStorage;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, ServerConfig,
    SignatureScheme,
};

use crate::x509::from_unix_time;
use crate::{Fingerprint, IdentityError, TrustStore};

static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));

/// The crypto provider of every configuration the crate builds: rustls's `ring` provider (no C
/// toolchain needed), with its default cipher suites, key exchange groups and signature
/// algorithms.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::clone(&PROVIDER)
}

/// The ALPN protocols the listeners offer: HTTP/2, then HTTP/1.1.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn config_error(error: rustls::Error) -> IdentityError {
    IdentityError::Config {
        reason: error.to_string(),
    }
}

/// A TLS server configuration (TLS 1.2 and 1.3) that asks for no client certificate: for admin
/// and other listeners whose callers authenticate otherwise.
pub fn server_config(
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, IdentityError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(server_chain, server_key)
        .map_err(config_error)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A TLS server configuration (TLS 1.2 and 1.3) that requires a device certificate and verifies
/// it with [`TrustStore::verify`] against the store's contents at handshake time: CAs and CRLs
/// registered while the server runs apply to the next handshake, without a restart.
///
/// Devices whose certificate is missing, unknown, expired, revoked or not for client
/// authentication fail the handshake with the matching TLS alert. Session resumption is off,
/// so every connection is a full handshake and its certificate is verified afresh. Serve it with
/// [`crate::serve`], passing the same store, to give handlers the [`crate::PeerCertificate`].
pub fn mtls_server_config(
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
    trust: TrustStore,
) -> Result<ServerConfig, IdentityError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(Arc::new(DeviceCertVerifier { trust }))
        .with_single_cert(server_chain, server_key)
        .map_err(config_error)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    // A resumed session skips the client certificate verifier; without resumption every
    // connection's certificate is verified against the store as it is now. (The builder's
    // ticketer already produces no TLS 1.2 tickets.)
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A self-signed server certificate and its key (ECDSA P-256) for `hostnames` (DNS names or
/// IP addresses), made with rcgen.
///
/// For development and the embedded default only: no client can verify it without being told
/// to trust this very certificate. Production listeners use a certificate from a real CA.
pub fn self_signed(
    hostnames: &[&str],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), IdentityError> {
    let names: Vec<String> = hostnames.iter().map(|name| (*name).to_owned()).collect();
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|error| IdentityError::Config {
            reason: format!("self-signed certificate: {error}"),
        })?;
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    Ok((vec![certified.cert.der().clone()], key))
}

/// Requires a client certificate and verifies it against the current trust store.
#[derive(Debug)]
struct DeviceCertVerifier {
    trust: TrustStore,
}

impl ClientCertVerifier for DeviceCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: the store changes at run time and a terminal holds a single certificate.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        match self.trust.verify(&chain, from_unix_time(now)) {
            Ok(device) => {
                tracing::debug!(
                    serial = %device.serial,
                    ca = %device.ca_fingerprint,
                    "device certificate accepted"
                );
                Ok(ClientCertVerified::assertion())
            }
            Err(error) => {
                tracing::info!(
                    fingerprint = %Fingerprint::of_der(end_entity.as_ref()),
                    %error,
                    "device certificate refused"
                );
                Err(to_rustls(error))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &PROVIDER.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &PROVIDER.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        PROVIDER
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls error (and so the TLS alert) for a refused device certificate.
fn to_rustls(error: IdentityError) -> rustls::Error {
    let certificate_error = match error {
        IdentityError::UnknownIssuer
        | IdentityError::CaExpired { .. }
        | IdentityError::CaNotYetValid { .. } => CertificateError::UnknownIssuer,
        IdentityError::Expired { .. } => CertificateError::Expired,
        IdentityError::NotYetValid { .. } => CertificateError::NotValidYet,
        IdentityError::Revoked { .. } => CertificateError::Revoked,
        IdentityError::BadSignature { .. } => CertificateError::BadSignature,
        IdentityError::NotAClientCertificate | IdentityError::NotAnEndEntity => {
            CertificateError::InvalidPurpose
        }
        IdentityError::Pem { .. }
        | IdentityError::Malformed { .. }
        | IdentityError::TooLarge { .. } => CertificateError::BadEncoding,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(certificate_error)
}

/// A TLS server's certificate chain and private key.
pub struct ServerIdentity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for ServerIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl ServerIdentity {
    /// Reads the chain and the key from PEM files.
    pub fn from_pem_files(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Self, IdentityError> {
        use rustls::pki_types::pem::PemObject;
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| IdentityError::Config {
                reason: format!(
                    "{}: not a PEM file of certificates: {error}",
                    cert.display()
                ),
            })?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|error| IdentityError::Config {
            reason: format!(
                "{}: not a PEM file with a private key: {error}",
                key.display()
            ),
        })?;
        Ok(Self { chain, key })
    }

    /// The identity named by two variables holding PEM file paths (the chain, the key):
    /// both or neither (`None`).
    pub fn from_vars(
        vars: &mpos_config::Vars,
        cert_var: &str,
        key_var: &str,
    ) -> Result<Option<Self>, mpos_config::ConfigError> {
        match (vars.optional_path(cert_var)?, vars.optional_path(key_var)?) {
            (Some(cert), Some(key)) => {
                Self::from_pem_files(std::path::Path::new(&cert), std::path::Path::new(&key))
                    .map(Some)
                    .map_err(|error| {
                        mpos_config::ConfigError::invalid(
                            cert_var,
                            "PEM files of the certificate chain and its key",
                            &error.to_string(),
                        )
                    })
            }
            (None, None) => Ok(None),
            _ => Err(mpos_config::ConfigError::missing(
                key_var,
                &format!("both {cert_var} and {key_var}, or neither"),
            )),
        }
    }

    /// `identity`, or a self-signed certificate for localhost (with a warning: not for
    /// production).
    pub fn or_self_signed(identity: Option<&Self>, api: &str) -> Result<Self, IdentityError> {
        match identity {
            Some(identity) => Ok(identity.clone()),
            None => {
                tracing::warn!(
                    api,
                    "tls uses a self-signed certificate: not for production"
                );
                let (chain, key) = self_signed(&["localhost", "127.0.0.1"])?;
                Ok(Self { chain, key })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_makes_a_usable_server_config() {
        let (chain, key) = self_signed(&["localhost", "127.0.0.1"]).expect("self-signed");
        assert_eq!(chain.len(), 1);
        let config = server_config(chain, key).expect("config");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_a_config_error() {
        let (chain, _) = self_signed(&["localhost"]).expect("self-signed");
        let (_, other_key) = self_signed(&["localhost"]).expect("self-signed");
        let error = mtls_server_config(chain, other_key, TrustStore::new()).expect_err("mismatch");
        assert!(matches!(error, IdentityError::Config { .. }), "{error}");
    }
}
