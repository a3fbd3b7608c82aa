//! NATS: JetStream for events, core NATS request-reply for the hot path.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::{Acker as JsAcker, PublishMessage};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use mpos_errors::{ErrorCode, ServiceError};
use mpos_proto::Message as _;

use crate::{
    Acker, Bus, BusError, Delivery, ERROR_CODE_HEADER, ERROR_MESSAGE_HEADER, EventEnvelope,
    EventPublisher, EventStream, EventSubscriber, FollowOptions, Message, RequestHandler,
    RequestReply, ServeHandle, SubscribeOptions, event_subject, event_subject_prefix,
    filter_subject, followed, stream_name, validate_durable_name, with_namespace,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
const ACK_WAIT: Duration = Duration::from_secs(30);
const BATCH: usize = 256;

pub(crate) async fn connect(
    hosts: &[String],
    namespace: Option<String>,
    login: crate::NatsLogin,
) -> Result<Bus, BusError> {
    let addresses: Vec<String> = hosts.iter().map(|host| format!("nats://{host}")).collect();
    let mut options = async_nats::ConnectOptions::new()
        .name("mpos-bus")
        .connection_timeout(CONNECT_TIMEOUT);
    if let Some((user, password)) = login.user {
        options = options.user_and_password(user, password);
    }
    if let Some(prefix) = login.inbox_prefix {
        options = options.custom_inbox_prefix(prefix);
    }
    let client = options.connect(addresses.clone()).await.map_err(|error| {
        BusError::Unavailable(format!("cannot connect to nats at {addresses:?}: {error}"))
    })?;
    tracing::info!(servers = ?addresses, namespace = ?namespace, "connected to nats");
    let jetstream = jetstream::new(client.clone());
    let bus = NatsBus {
        inner: Arc::new(Inner {
            client,
            jetstream,
            namespace,
            streams: Mutex::default(),
        }),
    };
    Ok(Bus {
        publisher: Arc::new(bus.clone()),
        subscriber: Arc::new(bus.clone()),
        requests: Some(Arc::new(bus)),
    })
}

struct Inner {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    namespace: Option<String>,
    /// Streams known to exist.
    streams: Mutex<HashSet<String>>,
}

#[derive(Clone)]
struct NatsBus {
    inner: Arc<Inner>,
}

impl fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBus")
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, error: impl fmt::Display) -> BusError {
    BusError::Unavailable(format!("{what}: {error}"))
}

impl NatsBus {
    fn namespace(&self) -> Option<&str> {
        self.inner.namespace.as_deref()
    }

    fn stream_known(&self, name: &str) -> bool {
        self.inner
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name)
    }

    fn set_stream_known(&self, name: &str, known: bool) {
        let mut streams = self
            .inner
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known {
            streams.insert(name.to_owned());
        } else {
            streams.remove(name);
        }
    }

    /// Creates the service's stream if absent; returns its name.
    async fn ensure_stream(&self, service: &str) -> Result<String, BusError> {
        let name = stream_name(self.namespace(), service);
        if self.stream_known(&name) {
            return Ok(name);
        }
        let config = StreamConfig {
            name: name.clone(),
            subjects: vec![format!(
                "{}.>",
                event_subject_prefix(self.namespace(), service)
            )],
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        self.inner
            .jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|error| unavailable(&format!("cannot create stream {name}"), error))?;
        tracing::debug!(stream = %name, "stream ready");
        self.set_stream_known(&name, true);
        Ok(name)
    }

    async fn publish_once(&self, events: &[EventEnvelope]) -> Result<(), PublishFailure> {
        let mut services: Vec<&str> = Vec::new();
        for envelope in events {
            if !services.contains(&envelope.service.as_str()) {
                services.push(&envelope.service);
            }
        }
        for service in services {
            self.ensure_stream(service)
                .await
                .map_err(PublishFailure::Other)?;
        }
        let mut acks = Vec::with_capacity(events.len());
        for envelope in events {
            let subject = event_subject(self.namespace(), envelope);
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", envelope.event_id.as_str());
            headers.insert("Content-Type", "application/protobuf");
            if !envelope.traceparent.is_empty() {
                headers.insert("traceparent", envelope.traceparent.as_str());
            }
            let message = PublishMessage::build()
                .payload(Bytes::from(envelope.encode_to_vec()))
                .headers(headers);
            let ack = self
                .inner
                .jetstream
                .send_publish(subject.clone(), message)
                .await
                .map_err(|error| {
                    PublishFailure::Other(unavailable(
                        &format!("cannot publish to {subject}"),
                        error,
                    ))
                })?;
            acks.push((subject, envelope, ack));
        }
        for (subject, envelope, ack) in acks {
            match ack.await {
                Ok(ack) => {
                    tracing::debug!(
                        subject = %subject,
                        event_id = %envelope.event_id,
                        stream_sequence = ack.sequence,
                        duplicate = ack.duplicate,
                        "published event"
                    );
                }
                Err(error) => {
                    use async_nats::jetstream::context::PublishErrorKind;
                    return Err(match error.kind() {
                        PublishErrorKind::StreamNotFound => PublishFailure::NoStream(subject),
                        PublishErrorKind::TimedOut => PublishFailure::Other(BusError::Timeout(
                            format!("no publish ack for {subject}: {error}"),
                        )),
                        _ => PublishFailure::Other(unavailable(
                            &format!("publish to {subject} failed"),
                            error,
                        )),
                    });
                }
            }
        }
        Ok(())
    }
}

enum PublishFailure {
    /// The stream disappeared (deleted behind our back): recreate and retry.
    NoStream(String),
    Other(BusError),
}

#[async_trait::async_trait]
impl EventPublisher for NatsBus {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        match self.publish_once(events).await {
            Ok(()) => Ok(()),
            Err(PublishFailure::Other(error)) => Err(error),
            Err(PublishFailure::NoStream(subject)) => {
                tracing::warn!(subject = %subject, "stream missing, recreating and publishing again");
                self.inner
                    .streams
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
                // Every event carries Nats-Msg-Id, so publishing the batch again is harmless.
                self.publish_once(events)
                    .await
                    .map_err(|failure| match failure {
                        PublishFailure::Other(error) => error,
                        PublishFailure::NoStream(subject) => {
                            BusError::Unavailable(format!("no stream accepts {subject}"))
                        }
                    })
            }
        }
    }

    async fn check(&self) -> Result<(), BusError> {
        // A round trip to the JetStream API: proves the connection and that JetStream is on.
        let request = async_nats::Request::new()
            .payload(Bytes::new())
            .timeout(Some(CHECK_TIMEOUT));
        let reply = self
            .inner
            .client
            .send_request("$JS.API.INFO", request)
            .await
            .map_err(|error| match error.kind() {
                async_nats::client::RequestErrorKind::TimedOut => {
                    BusError::Timeout(format!("nats did not answer within {CHECK_TIMEOUT:?}"))
                }
                _ => unavailable("nats jetstream check failed", error),
            })?;
        let body = String::from_utf8_lossy(&reply.payload);
        if body.contains("\"error\"") {
            return Err(BusError::Unavailable(format!(
                "nats jetstream check failed: {body}"
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventSubscriber for NatsBus {
    async fn subscribe(&self, options: SubscribeOptions) -> Result<EventStream, BusError> {
        validate_durable_name(&options.durable_name)?;
        let name = self.ensure_stream(&options.service).await?;
        let filter_subject = if options.is_filtered() {
            filter_subject(self.namespace(), &options)
        } else {
            String::new()
        };
        let config = pull::Config {
            durable_name: Some(options.durable_name.clone()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            filter_subject: filter_subject.clone(),
            ..Default::default()
        };
        let consumer: jetstream::consumer::PullConsumer = self
            .inner
            .jetstream
            .create_consumer_on_stream(config, name.as_str())
            .await
            .map_err(|error| {
                unavailable(
                    &format!("cannot create consumer {} on {name}", options.durable_name),
                    error,
                )
            })?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .messages()
            .await
            .map_err(|error| unavailable("cannot pull messages", error))?;
        tracing::debug!(stream = %name, durable = %options.durable_name, filter = %filter_subject, "subscribed");
        let pending = Pending {
            messages: Some(messages),
        };
        Ok(EventStream::new(futures::stream::unfold(
            pending,
            |mut pending| async move {
                let messages = pending.messages.as_mut()?;
                let item = messages.next().await?;
                Some((deliver(item), pending))
            },
        )))
    }

    async fn follow(&self, options: FollowOptions) -> Result<EventStream, BusError> {
        let name = stream_name(self.namespace(), &options.service);
        let stream = self
            .inner
            .jetstream
            .get_stream(name.as_str())
            .await
            .map_err(|error| unavailable(&format!("no stream {name}"), error))?;
        let filters = options.filters();
        let filter_subject = if filters.is_filtered() {
            filter_subject(self.namespace(), &filters)
        } else {
            String::new()
        };
        // An ordered consumer: ephemeral, unacknowledged, recreated by the client from the
        // last sequence seen if the server loses it; the server forgets it once unused.
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter_subject.clone(),
                deliver_policy: deliver_policy(options.from)?,
                ..Default::default()
            })
            .await
            .map_err(|error| unavailable(&format!("cannot follow {name}"), error))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|error| unavailable(&format!("cannot follow {name}"), error))?;
        tracing::debug!(stream = %name, filter = %filter_subject, "following");
        Ok(EventStream::new(messages.map(|item| {
            let message = item.map_err(|error| unavailable("cannot receive events", error))?;
            let envelope = EventEnvelope::decode(message.payload.as_ref()).map_err(|error| {
                BusError::Decode(format!(
                    "message on {} is not an EventEnvelope: {error}",
                    message.subject
                ))
            })?;
            Ok(followed(envelope))
        })))
    }
}

fn deliver(
    item: Result<jetstream::Message, async_nats::jetstream::consumer::pull::MessagesError>,
) -> Result<Delivery, BusError> {
    let message = item.map_err(|error| unavailable("cannot receive events", error))?;
    let (message, acker) = message.split();
    let envelope = EventEnvelope::decode(message.payload.as_ref()).map_err(|error| {
        BusError::Decode(format!(
            "message on {} is not an EventEnvelope: {error}",
            message.subject
        ))
    })?;
    Ok(Delivery::new(envelope, Box::new(NatsAcker(acker))))
}

/// The pull stream; on drop, messages pulled but never handed out are NAKed in order, so that
/// the next subscription of the durable name gets them right away instead of after `ack_wait`.
struct Pending {
    messages: Option<pull::Stream>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(mut messages) = self.messages.take() else {
            return;
        };
        let mut undelivered = Vec::new();
        while let Some(Some(item)) = messages.next().now_or_never() {
            if let Ok(message) = item {
                undelivered.push(message.split().1);
            }
        }
        drop(messages);
        if undelivered.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            for acker in undelivered {
                if let Err(error) = acker.ack_with(AckKind::Nak(None)).await {
                    tracing::debug!(error = %error, "cannot nak undelivered event");
                }
            }
        });
    }
}

struct NatsAcker(JsAcker);

impl fmt::Debug for NatsAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsAcker").finish_non_exhaustive()
    }
}

impl Acker for NatsAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        async move {
            // Double ack: returns once the server recorded the ack, so a restart resumes after it.
            self.0
                .double_ack()
                .await
                .map_err(|error| unavailable("cannot ack event", error))
        }
        .boxed()
    }
}

fn to_header_map(headers: &BTreeMap<String, String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(name.as_str(), value.as_str());
    }
    map
}

fn from_header_map(headers: Option<&HeaderMap>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            if let Some(value) = values.first() {
                map.insert(name.to_string(), value.as_str().to_owned());
            }
        }
    }
    map
}

#[async_trait::async_trait]
impl RequestReply for NatsBus {
    async fn request(
        &self,
        subject: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        use async_nats::client::RequestErrorKind;
        let nats_request = async_nats::Request::new()
            .headers(to_header_map(&request.headers))
            .payload(request.payload)
            .timeout(Some(timeout));
        let reply = self
            .inner
            .client
            .send_request(
                with_namespace(self.namespace(), subject.to_owned()),
                nats_request,
            )
            .await
            .map_err(|error| match error.kind() {
                RequestErrorKind::NoResponders => {
                    BusError::Unavailable(format!("no responder for subject {subject:?}"))
                }
                RequestErrorKind::TimedOut => BusError::Timeout(format!(
                    "no reply on subject {subject:?} within {timeout:?}"
                )),
                RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                    BusError::Rejected(ServiceError::bad_request(format!(
                        "request on {subject:?}: {error}"
                    )))
                }
                RequestErrorKind::Other => unavailable(&format!("request on {subject:?}"), error),
            })?;
        let headers = from_header_map(reply.headers.as_ref());
        if let Some(code) = headers.get(ERROR_CODE_HEADER) {
            let code = code.parse::<ErrorCode>().unwrap_or(ErrorCode::Internal);
            let message = headers
                .get(ERROR_MESSAGE_HEADER)
                .cloned()
                .unwrap_or_default();
            return Err(BusError::Rejected(ServiceError::new(code, message)));
        }
        Ok(Message {
            headers,
            payload: reply.payload,
        })
    }

    async fn serve(
        &self,
        subject: &str,
        queue_group: &str,
        handler: Arc<dyn RequestHandler>,
    ) -> Result<ServeHandle, BusError> {
        let client = self.inner.client.clone();
        // Request subjects live in the bus URL's namespace too, so that two deployments
        // (or two test runs) on one NATS server never answer each other's requests.
        let mut subscriber = client
            .queue_subscribe(
                with_namespace(self.namespace(), subject.to_owned()),
                queue_group.to_owned(),
            )
            .await
            .map_err(|error| {
                BusError::Rejected(ServiceError::bad_request(format!(
                    "cannot serve {subject:?} in queue group {queue_group:?}: {error}"
                )))
            })?;
        // Make sure the server knows the subscription before callers are told it is serving.
        client
            .flush()
            .await
            .map_err(|error| unavailable("cannot register subscription", error))?;
        tracing::info!(subject = %subject, queue_group = %queue_group, "serving requests");
        let served = subject.to_owned();
        let task = tokio::spawn(async move {
            while let Some(request) = subscriber.next().await {
                let Some(reply_to) = request.reply.clone() else {
                    tracing::debug!(subject = %served, "dropped request without reply subject");
                    continue;
                };
                let handler = handler.clone();
                let client = client.clone();
                let served = served.clone();
                tokio::spawn(async move {
                    let message = Message {
                        headers: from_header_map(request.headers.as_ref()),
                        payload: request.payload,
                    };
                    let (headers, payload) = match handler.handle(message).await {
                        Ok(reply) => (to_header_map(&reply.headers), reply.payload),
                        Err(error) => {
                            let mut headers = HeaderMap::new();
                            headers.insert(ERROR_CODE_HEADER, error.code.as_str());
                            // Header values must be one line.
                            let message = error.message.replace(['\r', '\n'], " ");
                            headers.insert(ERROR_MESSAGE_HEADER, message.as_str());
                            (headers, Bytes::new())
                        }
                    };
                    if let Err(error) = client
                        .publish_with_headers(reply_to, headers, payload)
                        .await
                    {
                        tracing::warn!(subject = %served, error = %error, "cannot send reply");
                    }
                });
            }
        });
        let abort = task.abort_handle();
        Ok(ServeHandle::new(move || abort.abort(), Some(task)))
    }
}

/// The ordered consumer's deliver policy for where a follower starts.
fn deliver_policy(from: crate::FollowFrom) -> Result<DeliverPolicy, BusError> {
    Ok(match from {
        crate::FollowFrom::Now => DeliverPolicy::New,
        crate::FollowFrom::Start => DeliverPolicy::All,
        // Stream sequences start at 1.
        crate::FollowFrom::Offset(sequence) => DeliverPolicy::ByStartSequence {
            start_sequence: sequence.max(1),
        },
        crate::FollowFrom::Time(micros) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
                .map_err(|error| {
                    BusError::Unavailable(format!("start time out of range: {error}"))
                })?,
        },
    })
}
