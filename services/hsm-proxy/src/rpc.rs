//! The hsm-proxy on NATS request-reply: subject `mpos.hsm-proxy.v1.<Operation>`, protobuf
//! bodies of `mpos.hsm.v1`, errors as the shared error code in the reply headers. Servers
//! share the load in the queue group `hsm-proxy`. [`HsmClient`] is the typed caller side.
//!
//! Card data can travel sealed ([`crate::sealing`]): requests with `sealed_pan` or
//! `sealed_message` are opened into their clear form before the engine runs, and a
//! `DecryptData` with `reply_key` has its plaintext sealed after it; the `*_sealed` methods
//! of [`HsmClient`] are the caller's side.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mpos_bus::{BusError, Message, RequestHandler, RequestReply, ServeHandle};
use mpos_errors::{ErrorCode, ServiceError};
use mpos_proto::common as common_pb;
use mpos_proto::hsm as pb;
use mpos_seal::{PublicKey, Sealed, Sealer};
use zeroize::{Zeroize, Zeroizing};

use crate::engine::{Caller, Hsm};
use crate::sealing::{DECRYPT_DATA_PLAINTEXT, SealedInput, Sealing, UNKNOWN_SEALING_KEY};

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

/// What [`HsmClient::decrypt_card_data_sealed`] answers: the opened plaintext and the card
/// token computed with it. `Debug` shows neither.
pub struct DecryptedCard {
    /// The clear data, wiped on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The card's keyed token (HMAC-SHA-256 of the PAN); empty without `card_token_key`.
    pub card_token: Vec<u8>,
}

impl std::fmt::Debug for DecryptedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptedCard")
            .field(
                "plaintext",
                &format_args!("<{} bytes>", self.plaintext.len()),
            )
            .field(
                "card_token",
                &format_args!("<{} bytes>", self.card_token.len()),
            )
            .finish()
    }
}

/// A request id for a sealed request whose caller left it empty: a UUIDv7.
fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether the hsm-proxy refused a sealed field because it does not hold the key it was
/// sealed to (it restarted, or rotated its key twice since the key was fetched).
pub fn is_unknown_sealing_key(error: &ServiceError) -> bool {
    error.code == ErrorCode::Conflict && error.message.contains(UNKNOWN_SEALING_KEY)
}

/// A local sealing failure (the operating system's generator, a bogus hsm-proxy key), with
/// the code [`mpos_seal::SealError::code`] gives it. Never carries the clear value.
fn local_seal_error(error: mpos_seal::SealError) -> BusError {
    BusError::Rejected(ServiceError::new(
        error.code(),
        format!("cannot seal for the hsm-proxy: {error}"),
    ))
}

/// A typed caller of the hsm-proxy over the bus.
///
/// With a [`Sealer`] ([`HsmClient::with_sealer`]: the caller process's one sealer), the
/// `*_sealed` methods send the PAN or the PAN-bearing MAC message sealed to the hsm-proxy's
/// key, and [`HsmClient::decrypt_data_sealed`] receives the plaintext sealed to the
/// caller's key: neither crosses the bus in clear. The hsm-proxy's key is fetched with
/// `GetSealingKey` on first use and cached (clones share the cache); when the hsm-proxy
/// answers that it does not hold the key a field was sealed to (it restarted), the key is
/// fetched again and the request sealed and sent once more. A request whose `request_id` is
/// empty gets a new UUIDv7.
#[derive(Clone, Debug)]
pub struct HsmClient {
    requests: Arc<dyn RequestReply>,
    actor: String,
    timeout: Duration,
    sealer: Option<Arc<Sealer>>,
    /// The hsm-proxy's public sealing key, once fetched.
    hsm_key: Arc<Mutex<Option<PublicKey>>>,
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
            sealer: None,
            hsm_key: Arc::new(Mutex::new(None)),
        }
    }

    /// The client with the caller process's sealer, for the `*_sealed` methods.
    pub fn with_sealer(mut self, sealer: Arc<Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Whether the client has a sealer (the `*_sealed` methods work).
    pub fn seals(&self) -> bool {
        self.sealer.is_some()
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

    fn sealer(&self) -> Result<&Arc<Sealer>, BusError> {
        self.sealer.as_ref().ok_or_else(|| {
            BusError::Unsupported(
                "sealed calls need the caller's sealer: build the HsmClient with with_sealer"
                    .into(),
            )
        })
    }

    fn cached_hsm_key(&self) -> std::sync::MutexGuard<'_, Option<PublicKey>> {
        // Only a Copy value is stored under the lock; a poisoned lock still holds a whole key.
        self.hsm_key.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hsm-proxy's public sealing key: the cached one, or fetched with `GetSealingKey`
    /// (first use, or `refresh`).
    async fn hsm_key(&self, refresh: bool) -> Result<PublicKey, BusError> {
        let cached = *self.cached_hsm_key();
        if let Some(key) = cached.filter(|_| !refresh) {
            return Ok(key);
        }
        let reply: common_pb::SealingKey = self
            .call("GetSealingKey", &pb::GetSealingKeyRequest {})
            .await?;
        let key = PublicKey::try_from(&reply)
            .map_err(|error| BusError::Decode(format!("GetSealingKey reply: {error}")))?;
        *self.cached_hsm_key() = Some(key);
        tracing::debug!(key_id = %key.key_id(), "fetched the hsm-proxy's sealing key");
        Ok(key)
    }

    /// The hsm-proxy's public sealing key, cached after the first `GetSealingKey`.
    pub async fn hsm_sealing_key(&self) -> Result<PublicKey, BusError> {
        self.hsm_key(false).await
    }

    /// Sends `request` with `clear` sealed to the hsm-proxy's key in its sealed field (its
    /// clear field emptied), fetching the key again and retrying once if the hsm-proxy no
    /// longer holds the cached one.
    async fn call_sealed<Q, R>(
        &self,
        operation: &str,
        mut request: Q,
        clear: &[u8],
    ) -> Result<R, BusError>
    where
        Q: prost::Message + SealedInput,
        R: prost::Message + Default,
    {
        let sealer = self.sealer()?;
        request.wipe_clear();
        if request.request_id().is_empty() {
            *request.request_id_mut() = new_request_id();
        }
        let context = request.seal_context();
        let mut refreshed = false;
        loop {
            let key = self.hsm_key(refreshed).await?;
            let sealed = sealer
                .seal(&key, &context, clear)
                .map_err(local_seal_error)?;
            request.put_sealed(common_pb::Sealed::from(sealed));
            match self.call(operation, &request).await {
                Err(BusError::Rejected(error)) if !refreshed && is_unknown_sealing_key(&error) => {
                    tracing::debug!(
                        operation,
                        "the hsm-proxy's sealing key changed; fetching it again"
                    );
                    refreshed = true;
                }
                result => return result,
            }
        }
    }

    /// DecryptData with the plaintext sealed to this client's key (`reply_key`) rather than
    /// in clear on the bus; returns it opened. Sets `request_id` (a new UUIDv7) if empty.
    pub async fn decrypt_data_sealed(
        &self,
        request: pb::DecryptDataRequest,
    ) -> Result<Zeroizing<Vec<u8>>, BusError> {
        Ok(self.decrypt_card_data_sealed(request).await?.plaintext)
    }

    /// [`HsmClient::decrypt_data_sealed`] that also answers the card token the request asked
    /// for with `card_token_key` (empty when it named none).
    pub async fn decrypt_card_data_sealed(
        &self,
        mut request: pb::DecryptDataRequest,
    ) -> Result<DecryptedCard, BusError> {
        let sealer = self.sealer()?;
        if request.request_id.is_empty() {
            request.request_id = new_request_id();
        }
        request.reply_key = Some(common_pb::SealingKey::from(&sealer.public_key()));
        let mut response: pb::DecryptDataResponse = self.call("DecryptData", &request).await?;
        // Empty when the hsm-proxy sealed the reply; wiped if it did not.
        response.plaintext.zeroize();
        let sealed = response.sealed_plaintext.as_ref().ok_or_else(|| {
            BusError::Decode("DecryptData reply: no sealed plaintext for the reply key".into())
        })?;
        let sealed = Sealed::try_from(sealed).map_err(|error| {
            BusError::Decode(format!("DecryptData reply: sealed plaintext: {error}"))
        })?;
        let plaintext = sealer
            .open(
                &sealed,
                &mpos_seal::context(DECRYPT_DATA_PLAINTEXT, &request.request_id),
            )
            .map_err(|_| {
                BusError::Decode("DecryptData reply: the sealed plaintext does not open".into())
            })?;
        Ok(DecryptedCard {
            plaintext,
            card_token: response.card_token,
        })
    }

    /// TranslatePinData with `pan` sealed to the hsm-proxy (`sealed_pan`; `request.pan` is
    /// not sent).
    pub async fn translate_pin_data_sealed(
        &self,
        request: pb::TranslatePinDataRequest,
        pan: &str,
    ) -> Result<pb::TranslatePinDataResponse, BusError> {
        self.call_sealed("TranslatePinData", request, pan.as_bytes())
            .await
    }

    /// GeneratePinData with `pan` sealed to the hsm-proxy (`sealed_pan`).
    pub async fn generate_pin_data_sealed(
        &self,
        request: pb::GeneratePinDataRequest,
        pan: &str,
    ) -> Result<pb::GeneratePinDataResponse, BusError> {
        self.call_sealed("GeneratePinData", request, pan.as_bytes())
            .await
    }

    /// VerifyPinData with `pan` sealed to the hsm-proxy (`sealed_pan`).
    pub async fn verify_pin_data_sealed(
        &self,
        request: pb::VerifyPinDataRequest,
        pan: &str,
    ) -> Result<pb::VerifyPinDataResponse, BusError> {
        self.call_sealed("VerifyPinData", request, pan.as_bytes())
            .await
    }

    /// GenerateCardValidationData with `pan` sealed to the hsm-proxy (`sealed_pan`).
    pub async fn generate_card_validation_data_sealed(
        &self,
        request: pb::GenerateCardValidationDataRequest,
        pan: &str,
    ) -> Result<pb::GenerateCardValidationDataResponse, BusError> {
        self.call_sealed("GenerateCardValidationData", request, pan.as_bytes())
            .await
    }

    /// VerifyCardValidationData with `pan` sealed to the hsm-proxy (`sealed_pan`).
    pub async fn verify_card_validation_data_sealed(
        &self,
        request: pb::VerifyCardValidationDataRequest,
        pan: &str,
    ) -> Result<pb::VerifyCardValidationDataResponse, BusError> {
        self.call_sealed("VerifyCardValidationData", request, pan.as_bytes())
            .await
    }

    /// VerifyAuthRequestCryptogram with `pan` sealed to the hsm-proxy (`sealed_pan`).
    pub async fn verify_auth_request_cryptogram_sealed(
        &self,
        request: pb::VerifyAuthRequestCryptogramRequest,
        pan: &str,
    ) -> Result<pb::VerifyAuthRequestCryptogramResponse, BusError> {
        self.call_sealed("VerifyAuthRequestCryptogram", request, pan.as_bytes())
            .await
    }

    /// GenerateMac with `message` (e.g. the PAN digits of a card's keyed token) sealed to
    /// the hsm-proxy (`sealed_message`; `request.message` is not sent).
    pub async fn generate_mac_sealed(
        &self,
        request: pb::GenerateMacRequest,
        message: &[u8],
    ) -> Result<pb::GenerateMacResponse, BusError> {
        self.call_sealed("GenerateMac", request, message).await
    }

    /// VerifyMac with `message` sealed to the hsm-proxy (`sealed_message`).
    pub async fn verify_mac_sealed(
        &self,
        request: pb::VerifyMacRequest,
        message: &[u8],
    ) -> Result<pb::VerifyMacResponse, BusError> {
        self.call_sealed("VerifyMac", request, message).await
    }
}
