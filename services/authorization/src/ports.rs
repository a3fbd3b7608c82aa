//! What the payment path needs from the rest of the platform, as ports: the terminal facts
//! (terminal-management's, key-injection's and attestation's events, followed into this
//! service's projection), the HSM (the hsm-proxy), the router (the routing service) and the
//! attestation token check. The engine ([`crate::engine`]) is written against these; the
//! adapters ([`crate::adapters`]) implement them over the bus and the projections.

use async_trait::async_trait;
use mpos_errors::ServiceError;
use mpos_proto::routing as rpb;
use tms_params::CardToken;
use zeroize::Zeroizing;

use crate::checks::TerminalContext;

/// What kind of device a terminal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A PIN entry device, authenticated by its device certificate (mTLS).
    Ped,
    /// A SoftPOS phone, authenticated by its attestation token.
    SoftPos,
}

/// The DUKPT key a terminal holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalKeyFacts {
    /// The BDK in the hsm-proxy.
    pub bdk: String,
    /// The initial KSN / initial key id of its installed key.
    pub initial_key_id: String,
    /// Revoked.
    pub revoked: bool,
}

/// Everything the payment path knows about a terminal.
#[derive(Clone, Debug)]
pub struct TerminalFacts {
    /// Its kind.
    pub kind: DeviceKind,
    /// SHA-256 of its bound device certificate (PED), lowercase hex.
    pub certificate_sha256: String,
    /// Whether its tenant is suspended.
    pub tenant_suspended: bool,
    /// Its state, estate position and parameters.
    pub context: TerminalContext,
    /// Its DUKPT key, once injected.
    pub key: Option<TerminalKeyFacts>,
}

/// Where the terminal facts come from.
#[async_trait]
pub trait Terminals: Send + Sync {
    /// The terminal a device certificate is bound to: (tenant, terminal id).
    async fn by_certificate(
        &self,
        certificate_sha256: &str,
    ) -> Result<Option<(String, String)>, ServiceError>;

    /// A terminal's facts, `None` when the tenant has no such terminal.
    async fn facts(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Option<TerminalFacts>, ServiceError>;
}

/// Why an HSM operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HsmFailure {
    /// The HSM refused the input (a bad ciphertext, a PIN block that does not decipher): the
    /// payment is declined.
    #[error("refused: {0}")]
    Rejected(String),
    /// The HSM could not be reached or failed: nothing was authorized.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The HSM operations of the payment path. Card data and PANs cross the bus only sealed.
#[async_trait]
pub trait Hsm: Send + Sync {
    /// Deciphers P2PE card data (DUKPT data key, request direction, CBC, zero IV) and, in the
    /// same call, computes the card's keyed token: HMAC-SHA-256 of the PAN digits under the
    /// tenant's card token key in the HSM. The plaintext, and the token.
    async fn decrypt_card_data(
        &self,
        tenant_id: &str,
        bdk: &str,
        ksn: &str,
        ciphertext: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, CardToken), HsmFailure>;
}

/// The routing service.
#[async_trait]
pub trait Router: Send + Sync {
    /// Sends the payment; the card data is sealed to the routing process on the way.
    async fn authorize(
        &self,
        request: rpb::AuthorizeRequest,
        card: rpb::CardSecrets,
    ) -> Result<rpb::AuthorizeResponse, ServiceError>;

    /// Queues a reversal.
    async fn reverse(
        &self,
        request: rpb::ReverseRequest,
    ) -> Result<rpb::ReverseResponse, ServiceError>;
}

/// What a verified attestation token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationPass {
    /// The token's id.
    pub token_id: String,
    /// `allow` or `flag`.
    pub verdict: String,
}

/// The offline check of a SoftPOS attestation token.
pub trait TokenCheck: Send + Sync {
    /// Whether `token` is valid now for `device` of `tenant`; the reason when it is not.
    fn check(
        &self,
        token: &str,
        tenant_id: &str,
        device_id: &str,
        now_unix: u64,
    ) -> Result<AttestationPass, String>;
}
