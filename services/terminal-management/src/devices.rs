//! Device identity: manufacturer CAs and device certificates (being wired to
//! `crates/device-identity`).

use mpos_errors::ServiceError;
use mpos_proto::terminal_management as pb;

/// The platform's trust in manufacturer CAs.
#[derive(Debug, Default)]
pub struct Devices;

impl Devices {
    /// The binding a PED's device certificate (PEM) gives.
    pub fn binding_from_pem(&self, _pem: &str) -> Result<pb::DeviceBinding, ServiceError> {
        Err(ServiceError::bad_request(
            "certificate_pem: no manufacturer CA is registered",
        ))
    }
}
