//! The hsm-proxy on NATS request-reply: subject `mpos.hsm-proxy.v1.<Operation>`, protobuf
//! bodies of `mpos.hsm.v1`, errors as the shared error code in the reply headers. Servers
//! share the load in the queue group `hsm-proxy`. [`HsmClient`] is the typed caller side.
//!
//! Card data can travel sealed ([`crate::sealing`]): requests with `sealed_pan` or
//! `sealed_message` are opened into their clear form before the engine runs, and a
//! `DecryptData` with `reply_key` has its plaintext sealed after it.

use std::sync::Arc;
use std::time::Duration;

use mpos_bus::{BusError, Message, RequestHandler, RequestReply, ServeHandle};
use mpos_errors::ServiceError;
use mpos_proto::hsm as pb;

use crate::engine::{Caller, Hsm};
use crate::sealing::{SealedInput, Sealing};

/// Request header naming the caller for the audit trail (`service:<name>`).
pub const ACTOR_HEADER: &str = "Mpos-Actor";
/// The queue group every hsm-proxy instance serves in.
pub const QUEUE_GROUP: &str = "hsm-proxy";

/// Every operation served, by name.
pub const OPERATIONS: &[&str] = &[
    "GetSealingKey",
    "CreateKey",
    "ImportKey",
    "ExportKey",
    "GetKey",
    "GetPublicKey",
    "ListKeys",
    "SetAlias",
    "RemoveAlias",
    "StartKeyUsage",
    "StopKeyUsage",
    "DeleteKey",
    "RestoreKey",
    "EncryptData",
    "DecryptData",
    "ReEncryptData",
    "TranslatePinData",
    "GeneratePinData",
    "VerifyPinData",
    "GenerateCardValidationData",
    "VerifyCardValidationData",
    "VerifyAuthRequestCryptogram",
    "GenerateMac",
    "VerifyMac",
];

/// The subject of an operation.
pub fn subject(operation: &str) -> String {
    format!("mpos.{}.v1.{operation}", crate::SERVICE)
}

fn decode<T: prost::Message + Default>(payload: &[u8]) -> Result<T, ServiceError> {
    T::decode(payload)
        .map_err(|error| ServiceError::bad_request(format!("undecodable request body: {error}")))
}

fn reply(message: &impl prost::Message) -> Message {
    Message::new(message.encode_to_vec())
}

struct Handler {
    hsm: Arc<Hsm>,
    sealing: Arc<Sealing>,
    operation: &'static str,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle(&self, request: Message) -> Result<Message, ServiceError> {
        // A span per request, continuing the caller's trace (W3C traceparent header).
        let span = tracing::info_span!("hsm request", operation = self.operation);
        if let Some(traceparent) = request.headers.get("traceparent") {
            mpos_telemetry::set_parent_from_traceparent(&span, traceparent);
        }
        tracing::Instrument::instrument(self.dispatch(request), span).await
    }
}

impl Handler {
    /// Decodes a request that may carry a sealed field, and opens it (the "unseal" step).
    fn unseal<Q: prost::Message + Default + SealedInput>(
        &self,
        payload: &[u8],
    ) -> Result<Q, ServiceError> {
        let mut request = decode(payload)?;
        self.sealing.unseal(&mut request)?;
        Ok(request)
    }

    async fn dispatch(&self, request: Message) -> Result<Message, ServiceError> {
        // Only control-plane operations record their caller (an event's actor, correlation
        // and trace); the data plane does not pay for it.
        let caller = || {
            let actor = request
                .headers
                .get(ACTOR_HEADER)
                .filter(|actor| !actor.is_empty() && actor.len() <= 200)
                .map_or_else(|| "service:unknown".to_owned(), Clone::clone);
            Caller::new(actor)
        };
        let hsm = &self.hsm;
        let body = &request.payload;
        let message = match self.operation {
            "GetSealingKey" => {
                let _: pb::GetSealingKeyRequest = decode(body)?;
                reply(&self.sealing.sealing_key())
            }
            "CreateKey" => reply(&hsm.create_key(decode(body)?, &caller()).await?),
            "ImportKey" => reply(&hsm.import_key(decode(body)?, &caller()).await?),
            "ExportKey" => reply(&hsm.export_key(decode(body)?, &caller()).await?),
            "GetKey" => reply(&hsm.get_key(&decode(body)?)?),
            "GetPublicKey" => reply(&hsm.get_public_key(&decode(body)?).await?),
            "ListKeys" => reply(&hsm.list_keys(&decode(body)?)?),
            "SetAlias" => reply(&hsm.set_alias(decode(body)?, &caller()).await?),
            "RemoveAlias" => reply(&hsm.remove_alias(decode(body)?, &caller()).await?),
            "StartKeyUsage" => reply(&hsm.start_key_usage(decode(body)?, &caller()).await?),
            "StopKeyUsage" => reply(&hsm.stop_key_usage(decode(body)?, &caller()).await?),
            "DeleteKey" => reply(&hsm.delete_key(decode(body)?, &caller()).await?),
            "RestoreKey" => reply(&hsm.restore_key(decode(body)?, &caller()).await?),
            "EncryptData" => reply(&hsm.encrypt_data(decode(body)?).await?),
            "DecryptData" => {
                let request: pb::DecryptDataRequest = decode(body)?;
                let reply_to = self.sealing.reply_to(&request)?;
                let mut response = hsm.decrypt_data(request).await?;
                if let Some(reply_to) = &reply_to {
                    // The "seal" step: the plaintext leaves only sealed to the caller.
                    self.sealing.seal_plaintext(reply_to, &mut response)?;
                }
                reply(&response)
            }
            "ReEncryptData" => reply(&hsm.re_encrypt_data(decode(body)?).await?),
            "TranslatePinData" => reply(&hsm.translate_pin_data(self.unseal(body)?).await?),
            "GeneratePinData" => reply(&hsm.generate_pin_data(self.unseal(body)?).await?),
            "VerifyPinData" => reply(&hsm.verify_pin_data(self.unseal(body)?).await?),
            "GenerateCardValidationData" => reply(
                &hsm.generate_card_validation_data(self.unseal(body)?)
                    .await?,
            ),
            "VerifyCardValidationData" => {
                reply(&hsm.verify_card_validation_data(self.unseal(body)?).await?)
            }
            "VerifyAuthRequestCryptogram" => reply(
                &hsm.verify_auth_request_cryptogram(self.unseal(body)?)
                    .await?,
            ),
            "GenerateMac" => reply(&hsm.generate_mac(self.unseal(body)?).await?),
            "VerifyMac" => reply(&hsm.verify_mac(self.unseal(body)?).await?),
            other => return Err(ServiceError::not_found(format!("no operation {other}"))),
        };
        Ok(message)
    }
}

/// Serves every operation, opening and sealing card data with `sealing`; dropping the
/// handles stops serving.
pub async fn serve(
    requests: &Arc<dyn RequestReply>,
    hsm: Arc<Hsm>,
    sealing: Arc<Sealing>,
) -> Result<Vec<ServeHandle>, BusError> {
    let mut handles = Vec::with_capacity(OPERATIONS.len());
    for operation in OPERATIONS {
        let handler = Arc::new(Handler {
            hsm: hsm.clone(),
            sealing: sealing.clone(),
            operation,
        });
        handles.push(
            requests
                .serve(&subject(operation), QUEUE_GROUP, handler)
                .await?,
        );
    }
    Ok(handles)
}

/// A typed caller of the hsm-proxy over the bus.
#[derive(Clone, Debug)]
pub struct HsmClient {
    requests: Arc<dyn RequestReply>,
    actor: String,
    timeout: Duration,
}

impl HsmClient {
    /// A client acting as `actor` (e.g. `service:authorization`).
    pub fn new(
        requests: Arc<dyn RequestReply>,
        actor: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            requests,
            actor: actor.into(),
            timeout,
        }
    }

    /// Calls `operation` with `request`; a service error comes back as
    /// [`BusError::Rejected`] with the shared error code.
    pub async fn call<Q: prost::Message, R: prost::Message + Default>(
        &self,
        operation: &str,
        request: &Q,
    ) -> Result<R, BusError> {
        let mut message =
            Message::new(request.encode_to_vec()).with_header(ACTOR_HEADER, self.actor.clone());
        if let Some(traceparent) = mpos_telemetry::current_traceparent() {
            message = message.with_header("traceparent", traceparent);
        }
        let reply = self
            .requests
            .request(&subject(operation), message, self.timeout)
            .await?;
        R::decode(reply.payload.as_ref())
            .map_err(|error| BusError::Decode(format!("{operation} reply: {error}")))
    }

    /// TranslatePinData.
    pub async fn translate_pin_data(
        &self,
        request: &pb::TranslatePinDataRequest,
    ) -> Result<pb::TranslatePinDataResponse, BusError> {
        self.call("TranslatePinData", request).await
    }
}
