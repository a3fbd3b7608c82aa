//! Routing on NATS request-reply: subjects `mpos.routing.v1.<Operation>` (`Decide`,
//! `Authorize`, `Reverse`, `GetSealingKey`), protobuf bodies of `mpos.routing.v1`, errors as
//! the shared error code in the reply headers (`Mpos-Error-Code`, `Mpos-Error-Message`).
//! Servers share the load in the queue group `routing`. [`RoutingClient`] is the typed caller
//! side: the authorization service seals the card data to routing's key with it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mpos_bus::{BusError, Message, RequestHandler, RequestReply, ServeHandle};
use mpos_errors::{ErrorCode, ServiceError};
use mpos_proto::common as common_pb;
use mpos_proto::routing as pb;
use mpos_seal::{PublicKey, Sealer};
use prost::Message as _;
use zeroize::Zeroizing;

use crate::engine::{Actor, Router};

/// Request header naming the caller for the audit trail (`service:<name>`).
pub const ACTOR_HEADER: &str = "Mpos-Actor";
/// The queue group every routing instance serves in.
pub const QUEUE_GROUP: &str = "routing";

/// Every operation served, by name.
pub const OPERATIONS: &[&str] = &["Decide", "Authorize", "Reverse", "GetSealingKey"];

/// The subject of an operation.
pub fn subject(operation: &str) -> String {
    format!("mpos.{}.v1.{operation}", crate::SERVICE)
}

fn decode<T: prost::Message + Default>(payload: &[u8]) -> Result<T, ServiceError> {
    T::decode(payload).map_err(|_| ServiceError::bad_request("undecodable request body"))
}

fn reply(message: &impl prost::Message) -> Message {
    Message::new(message.encode_to_vec())
}

struct Handler {
    router: Arc<Router>,
    operation: &'static str,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle(&self, request: Message) -> Result<Message, ServiceError> {
        let span = tracing::info_span!("routing request", operation = self.operation);
        if let Some(traceparent) = request.headers.get("traceparent") {
            mpos_telemetry::set_parent_from_traceparent(&span, traceparent);
        }
        tracing::Instrument::instrument(self.dispatch(request), span).await
    }
}

impl Handler {
    async fn dispatch(&self, request: Message) -> Result<Message, ServiceError> {
        let actor = Actor(
            request
                .headers
                .get(ACTOR_HEADER)
                .filter(|actor| !actor.is_empty() && actor.len() <= 200)
                .map_or_else(|| "service:unknown".to_owned(), Clone::clone),
        );
        let router = &self.router;
        let body = &request.payload;
        let message = match self.operation {
            "Decide" => reply(&router.decide(&actor, decode(body)?).await?),
            "Authorize" => reply(&router.authorize(&actor, decode(body)?).await?),
            "Reverse" => reply(&router.reverse(&actor, decode(body)?).await?),
            "GetSealingKey" => reply(&router.sealing_key()),
            other => return Err(ServiceError::not_found(format!("no operation {other}"))),
        };
        Ok(message)
    }
}

/// Serves every operation; dropping the handles stops serving.
pub async fn serve(
    requests: &Arc<dyn RequestReply>,
    router: Arc<Router>,
) -> Result<Vec<ServeHandle>, BusError> {
    let mut handles = Vec::with_capacity(OPERATIONS.len());
    for operation in OPERATIONS {
        let handler = Arc::new(Handler {
            router: router.clone(),
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

/// A typed caller of routing over the bus. Card data is sealed to routing's current sealing
/// key, fetched once and cached; when routing answers that it does not hold that key (it
/// restarted), the key is fetched again and the request sent once more.
#[derive(Clone, Debug)]
pub struct RoutingClient {
    requests: Arc<dyn RequestReply>,
    actor: String,
    timeout: Duration,
    sealer: Arc<Sealer>,
    recipient: Arc<Mutex<Option<PublicKey>>>,
}

impl RoutingClient {
    /// A client acting as `actor` (e.g. `service:authorization`), sealing with `sealer` (the
    /// caller process's own).
    pub fn new(
        requests: Arc<dyn RequestReply>,
        actor: impl Into<String>,
        timeout: Duration,
        sealer: Arc<Sealer>,
    ) -> Self {
        Self {
            requests,
            actor: actor.into(),
            timeout,
            sealer,
            recipient: Arc::new(Mutex::new(None)),
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

    /// Decide: the acquirers for a payment.
    pub async fn decide(
        &self,
        request: &pb::DecideRequest,
    ) -> Result<pb::DecideResponse, BusError> {
        self.call("Decide", request).await
    }

    /// Reverse: queue the reversal of a payment.
    pub async fn reverse(
        &self,
        request: &pb::ReverseRequest,
    ) -> Result<pb::ReverseResponse, BusError> {
        self.call("Reverse", request).await
    }

    /// Routing's current sealing key (cached; `refresh` fetches it again).
    pub async fn sealing_key(&self, refresh: bool) -> Result<PublicKey, BusError> {
        if !refresh
            && let Some(key) = self
                .recipient
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .copied()
        {
            return Ok(key);
        }
        let key: common_pb::SealingKey = self
            .call("GetSealingKey", &pb::GetSealingKeyRequest {})
            .await?;
        let key = PublicKey::try_from(&key)
            .map_err(|error| BusError::Decode(format!("routing's sealing key: {error}")))?;
        *self
            .recipient
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key);
        Ok(key)
    }

    /// Authorize: `card` is sealed to routing (context
    /// `routing.AuthorizeRequest.card` with the payment id) into `sealed_card`; whatever
    /// `request.sealed_card` held is replaced.
    pub async fn authorize(
        &self,
        request: pb::AuthorizeRequest,
        mut card: pb::CardSecrets,
    ) -> Result<pb::AuthorizeResponse, BusError> {
        let plaintext = Zeroizing::new(card.encode_to_vec());
        zeroize::Zeroize::zeroize(&mut card.pan);
        zeroize::Zeroize::zeroize(&mut card.expiry);
        zeroize::Zeroize::zeroize(&mut card.track2);
        let mut request = request;
        let context = crate::card::card_context(&request.payment_id);
        for refresh in [false, true] {
            let recipient = self.sealing_key(refresh).await?;
            let sealed = self
                .sealer
                .seal(&recipient, &context, &plaintext)
                .map_err(|error| BusError::Rejected(error.into()))?;
            request.sealed_card = Some(common_pb::Sealed::from(sealed));
            match self.call("Authorize", &request).await {
                Err(BusError::Rejected(error))
                    if !refresh
                        && error.code == ErrorCode::Conflict
                        && error.message.contains("sealing key") =>
                {
                    tracing::info!("routing's sealing key changed, sealing again");
                }
                result => return result,
            }
        }
        Err(BusError::Rejected(ServiceError::conflict(
            "routing's sealing key changed twice",
        )))
    }
}
