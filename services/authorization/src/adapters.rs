//! The ports over the bus: the hsm-proxy ([`HsmPort`]) and the routing service
//! ([`RoutingPort`]), every cardholder-data field sealed between the processes (ADR 15).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hsm_proxy::rpc::HsmClient;
use mpos_bus::{BusError, RequestReply};
use mpos_errors::{ErrorCode, ServiceError};
use mpos_proto::hsm as hpb;
use mpos_proto::routing as rpb;
use mpos_seal::Sealer;
use routing::rpc::RoutingClient;
use tms_params::CardToken;
use zeroize::Zeroizing;

use crate::ports::{Hsm, HsmFailure, Router};

/// Who the calls come from (`Mpos-Actor`).
const ACTOR: &str = "service:authorization";

fn failure(operation: &str, error: &BusError) -> HsmFailure {
    match error.code() {
        ErrorCode::BadRequest => HsmFailure::Rejected(format!("{operation}: {error}")),
        _ => HsmFailure::Unavailable(format!("{operation}: {error}")),
    }
}

/// The hsm-proxy over the bus.
#[derive(Clone, Debug)]
pub struct HsmPort {
    client: HsmClient,
    card_token_key: String,
}

impl HsmPort {
    /// A port over `requests`, sealing with `sealer`; `card_token_key` names the tenants'
    /// card token key (HMAC-SHA-256, M7).
    pub fn new(
        requests: Arc<dyn RequestReply>,
        sealer: Arc<Sealer>,
        card_token_key: String,
        timeout: Duration,
    ) -> Self {
        Self {
            client: HsmClient::new(requests, ACTOR, timeout).with_sealer(sealer),
            card_token_key,
        }
    }
}

fn dukpt(ksn: &str, direction: hpb::DukptDirection) -> hpb::Dukpt {
    hpb::Dukpt {
        ksn: ksn.to_owned(),
        direction: direction.into(),
        ..hpb::Dukpt::default()
    }
}

#[async_trait]
impl Hsm for HsmPort {
    async fn decrypt_card_data(
        &self,
        tenant_id: &str,
        bdk: &str,
        ksn: &str,
        ciphertext: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, CardToken), HsmFailure> {
        let request = hpb::DecryptDataRequest {
            tenant_id: tenant_id.to_owned(),
            encryption: Some(hpb::Encryption {
                key: bdk.to_owned(),
                mode: hpb::CipherMode::Cbc.into(),
                iv: Vec::new(),
                dukpt: Some(dukpt(ksn, hpb::DukptDirection::Request)),
            }),
            ciphertext: ciphertext.to_vec(),
            // P2PE decrypt and tokenize in one request (ADR 24).
            card_token_key: self.card_token_key.clone(),
            ..hpb::DecryptDataRequest::default()
        };
        let decrypted = self
            .client
            .decrypt_card_data_sealed(request)
            .await
            .map_err(|error| failure("DecryptData", &error))?;
        let token = CardToken::from_slice(&decrypted.card_token).map_err(|_| {
            HsmFailure::Unavailable("DecryptData: the card token is not a 32-byte HMAC".into())
        })?;
        Ok((decrypted.plaintext, token))
    }
}

/// The routing service over the bus.
#[derive(Clone, Debug)]
pub struct RoutingPort {
    client: RoutingClient,
}

impl RoutingPort {
    /// A port over `requests`, sealing card data with `sealer`.
    pub fn new(requests: Arc<dyn RequestReply>, sealer: Arc<Sealer>, timeout: Duration) -> Self {
        Self {
            client: RoutingClient::new(requests, ACTOR, timeout, sealer),
        }
    }
}

fn routing_error(error: BusError) -> ServiceError {
    match error {
        BusError::Rejected(error) => error,
        other => ServiceError::new(other.code(), other.to_string()),
    }
}

#[async_trait]
impl Router for RoutingPort {
    async fn authorize(
        &self,
        request: rpb::AuthorizeRequest,
        card: rpb::CardSecrets,
    ) -> Result<rpb::AuthorizeResponse, ServiceError> {
        self.client
            .authorize(request, card)
            .await
            .map_err(routing_error)
    }

    async fn reverse(
        &self,
        request: rpb::ReverseRequest,
    ) -> Result<rpb::ReverseResponse, ServiceError> {
        self.client.reverse(&request).await.map_err(routing_error)
    }
}
