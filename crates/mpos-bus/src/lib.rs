//! The ports through which services talk, and their adapters.
//!
//! * [`EventPublisher`] / [`EventSubscriber`]: domain events in [`EventEnvelope`]s, one
//!   append-only stream per service, durable consumers, de-duplication by event id.
//! * [`RequestReply`]: the synchronous hot path between services.
//!
//! [`connect`] picks the adapter from a URL:
//!
//! | URL | adapter |
//! |---|---|
//! | `memory://` or `memory://<name>` | in-process broker, shared per name within a process |
//! | `nats://[user:password@]host:port[?namespace=x][&inbox_prefix=p]` | NATS JetStream + core NATS request-reply |
//! | `kafka://host:port[,host2:port][?namespace=x][&tenant_topics=true]` | Kafka (no request-reply) |
//!
//! See `docs/bus.md` for subjects, stream names, topics and headers.

mod kafka;
mod memory;
mod nats;
mod scoping;

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use futures::future::BoxFuture;
use mpos_errors::{ErrorCode, ServiceError};

pub use kafka::envelope_headers as kafka_headers;
pub use mpos_proto::common::EventEnvelope;
pub use scoping::{
    Allow, KafkaAcl, NatsPermissions, kafka_tenant_acls, nats_tenant_permissions,
    tenant_consumer_name, tenant_inbox_prefix,
};

/// Request and reply header carrying the [`ErrorCode::as_str`] of a handler error.
pub const ERROR_CODE_HEADER: &str = "Mpos-Error-Code";
/// Request and reply header carrying the message of a handler error.
pub const ERROR_MESSAGE_HEADER: &str = "Mpos-Error-Message";
/// The subject token used for events without a tenant (platform-level events).
pub const PLATFORM_TENANT: &str = "_platform";

/// What can go wrong talking to the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus URL is malformed or uses an unknown scheme.
    #[error("invalid bus url: {0}")]
    InvalidUrl(String),
    /// The broker cannot be reached or failed; retry later.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The broker or the responder did not answer in time.
    #[error("bus timeout: {0}")]
    Timeout(String),
    /// The responder answered with an error.
    #[error("request rejected: {0}")]
    Rejected(ServiceError),
    /// A message on the bus could not be decoded.
    #[error("undecodable bus message: {0}")]
    Decode(String),
    /// The adapter does not support the operation.
    #[error("unsupported by this bus: {0}")]
    Unsupported(String),
}

impl BusError {
    /// The shared error code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidUrl(_) | Self::Decode(_) | Self::Unsupported(_) => ErrorCode::BadRequest,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::Rejected(error) => error.code,
        }
    }
}

impl From<BusError> for ServiceError {
    fn from(error: BusError) -> Self {
        match error {
            BusError::Rejected(error) => error,
            other => ServiceError::new(other.code(), other.to_string()),
        }
    }
}

/// Publishes domain events to the service's event stream.
#[async_trait::async_trait]
pub trait EventPublisher: Send + Sync + fmt::Debug {
    /// Publishes in order; returns only when the broker durably accepted every event
    /// (JetStream PubAck / Kafka delivery report). Re-publishing an event id is harmless.
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError>;
    /// Cheap reachability check used by /readyz.
    async fn check(&self) -> Result<(), BusError>;
}

/// What to subscribe to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// The service whose event stream to read, e.g. `terminal-management`.
    pub service: String,
    /// The durable consumer name; its position survives restarts.
    pub durable_name: String,
    /// Only events of this tenant (`""` or [`PLATFORM_TENANT`]: platform events).
    pub tenant_id: Option<String>,
    /// Only events of this aggregate type.
    pub aggregate_type: Option<String>,
    /// Only events of this type (the full protobuf name, e.g.
    /// `mpos.routing.v1.ReversalAcknowledged`). On NATS the broker filters by the subject's
    /// last token (the name after the last `.`), so a follower of one event type is not sent
    /// the others.
    pub event_type: Option<String>,
}

impl SubscribeOptions {
    /// All events of a service for a durable consumer.
    pub fn new(service: impl Into<String>, durable_name: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            durable_name: durable_name.into(),
            tenant_id: None,
            aggregate_type: None,
            event_type: None,
        }
    }

    /// Whether the broker is asked to filter at all.
    pub fn is_filtered(&self) -> bool {
        self.tenant_id.is_some() || self.aggregate_type.is_some() || self.event_type.is_some()
    }

    /// Whether an envelope passes the tenant, aggregate type and event type filters.
    pub fn matches(&self, envelope: &EventEnvelope) -> bool {
        self.tenant_id
            .as_deref()
            .is_none_or(|tenant| tenant_token(tenant) == tenant_token(&envelope.tenant_id))
            && self
                .aggregate_type
                .as_deref()
                .is_none_or(|kind| subject_token(kind) == subject_token(&envelope.aggregate_type))
            && self
                .event_type
                .as_deref()
                .is_none_or(|event_type| event_type == envelope.event_type)
    }
}

/// What to follow ([`EventSubscriber::follow`]): a service's events, filtered as a
/// subscription is, with no durable position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowOptions {
    /// The service whose event stream to follow.
    pub service: String,
    /// Only events of this tenant (as [`SubscribeOptions::tenant_id`]).
    pub tenant_id: Option<String>,
    /// Only events of this aggregate type.
    pub aggregate_type: Option<String>,
    /// Only events of this type (the full protobuf name).
    pub event_type: Option<String>,
    /// Where in the stream to start.
    pub from: FollowFrom,
}

/// Where a follower starts reading a stream ([`FollowOptions::from`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FollowFrom {
    /// The events published from now on.
    #[default]
    Now,
    /// The start of the stream.
    Start,
    /// The first events published at or after this time, in microseconds since the Unix
    /// epoch: on Kafka each partition's offset for that time (`offsets_for_times`), on NATS
    /// the stream's messages from that time, in memory the events that occurred from then.
    /// An event is published after it occurred, so no event that occurred at or after the
    /// time is skipped.
    Time(i64),
    /// From this position of the stream on: on Kafka this offset of every partition, on NATS
    /// this stream sequence, in memory this index of the service's log (from 0).
    Offset(u64),
}

impl FollowOptions {
    /// The same filters as subscription options (the durable name unused).
    fn filters(&self) -> SubscribeOptions {
        SubscribeOptions {
            service: self.service.clone(),
            durable_name: String::new(),
            tenant_id: self.tenant_id.clone(),
            aggregate_type: self.aggregate_type.clone(),
            event_type: self.event_type.clone(),
        }
    }
}

/// Subscribes to a service's event stream.
#[async_trait::async_trait]
pub trait EventSubscriber: Send + Sync + fmt::Debug {
    /// Durable subscription from the start of the service's stream, resuming where the durable name left off.
    async fn subscribe(&self, options: SubscribeOptions) -> Result<EventStream, BusError>;

    /// Follows a service's stream without a durable position, for operators and tools
    /// (`mposctl events tail`): nothing is recorded on the broker, a delivery needs no
    /// acknowledgement (acknowledging it does nothing), and dropping the stream leaves
    /// nothing to resume. On NATS, a stream that does not exist yet is
    /// `BusError::Unavailable`.
    async fn follow(&self, options: FollowOptions) -> Result<EventStream, BusError>;
}

/// The acknowledgement of a followed delivery: there is nothing to record.
#[derive(Debug)]
struct Unrecorded;

impl Acker for Unrecorded {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A delivery of a followed stream.
fn followed(envelope: EventEnvelope) -> Delivery {
    Delivery::new(envelope, Box::new(Unrecorded))
}

/// The deliveries of a subscription, in stream order.
///
/// Dropping the stream ends the subscription; deliveries not acknowledged by then are
/// delivered again to the next subscription of the same durable name.
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Result<Delivery, BusError>> + Send>>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    /// A stream from an adapter's stream of deliveries.
    pub fn new(inner: impl Stream<Item = Result<Delivery, BusError>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(inner),
        }
    }

    /// The next delivery; waits until one is available. `None` when the subscription ended.
    ///
    /// An `Err` item is a transient failure (broker unreachable, undecodable record); the
    /// stream keeps going, so callers log it and call `next` again.
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        futures::StreamExt::next(&mut self.inner).await
    }
}

impl Stream for EventStream {
    type Item = Result<Delivery, BusError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Acknowledges one delivery to the adapter it came from.
pub trait Acker: Send + fmt::Debug {
    /// Acknowledges the delivery.
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>>;
}

/// One event delivered to a subscriber; acknowledge it with [`Delivery::ack`] once handled.
#[derive(Debug)]
pub struct Delivery {
    /// The event.
    pub envelope: EventEnvelope,
    acker: Box<dyn Acker>,
}

impl Delivery {
    /// A delivery with the adapter's acknowledgement handle.
    pub fn new(envelope: EventEnvelope, acker: Box<dyn Acker>) -> Self {
        Self { envelope, acker }
    }

    /// Acknowledges the event: the durable consumer will not see it again.
    ///
    /// On Kafka acknowledgement is cumulative (it commits the offset after this event).
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }
}

/// A request or reply: headers plus an opaque (usually protobuf) body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Header names and values (one value per name).
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub payload: bytes::Bytes,
}

impl Message {
    /// A message with a body and no headers.
    pub fn new(payload: impl Into<bytes::Bytes>) -> Self {
        Self {
            headers: BTreeMap::new(),
            payload: payload.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

/// Answers requests on a subject.
#[async_trait::async_trait]
pub trait RequestHandler: Send + Sync {
    /// Handles one request; an error is returned to the requester as [`BusError::Rejected`].
    async fn handle(&self, request: Message) -> Result<Message, ServiceError>;
}

/// Synchronous request-reply between services.
#[async_trait::async_trait]
pub trait RequestReply: Send + Sync + fmt::Debug {
    /// Sends a request and waits for its reply.
    ///
    /// A handler error comes back as [`BusError::Rejected`] (carried in the reply headers
    /// `Mpos-Error-Code` and `Mpos-Error-Message`); no responder is
    /// [`BusError::Unavailable`]; no reply within `timeout` is [`BusError::Timeout`].
    async fn request(
        &self,
        subject: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BusError>;

    /// Serves requests on `subject`; servers in the same `queue_group` share the load.
    async fn serve(
        &self,
        subject: &str,
        queue_group: &str,
        handler: Arc<dyn RequestHandler>,
    ) -> Result<ServeHandle, BusError>;
}

/// Serving requests; stops on drop or [`ServeHandle::stop`].
pub struct ServeHandle {
    stop: Option<Box<dyn FnOnce() + Send + Sync>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for ServeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeHandle")
            .field("serving", &self.stop.is_some())
            .finish()
    }
}

impl ServeHandle {
    /// A handle that runs `stop` once and then waits for `task` (if any) to end.
    pub fn new(
        stop: impl FnOnce() + Send + Sync + 'static,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self {
            stop: Some(Box::new(stop)),
            task,
        }
    }

    /// Stops serving and waits until the server loop has ended.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(task) = self.task.take() {
            // A cancelled task is the normal way to end; nothing to report.
            let _ = task.await;
        }
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// The bus ports of one connection.
#[derive(Clone, Debug)]
pub struct Bus {
    /// Publishes events.
    pub publisher: Arc<dyn EventPublisher>,
    /// Subscribes to events.
    pub subscriber: Arc<dyn EventSubscriber>,
    /// Request-reply; `None` when the adapter has none (Kafka).
    pub requests: Option<Arc<dyn RequestReply>>,
}

const ACCEPTED_URLS: &str = "accepted: memory://[name], \
     nats://[user:password@]host:port[?namespace=x][&inbox_prefix=p], \
     kafka://host:port[,host:port][?namespace=x][&tenant_topics=true]";

/// How a NATS connection authenticates and where its replies go: from the URL's user
/// information and its `inbox_prefix` parameter (a tenant's integrator may subscribe to its
/// own inboxes only).
#[derive(Clone, Default)]
struct NatsLogin {
    user: Option<(String, String)>,
    inbox_prefix: Option<String>,
}

impl fmt::Debug for NatsLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsLogin")
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

/// `url` with the password of its user information hidden, for messages.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((user, hosts)) => {
                    let user = user.split_once(':').map_or(user, |(name, _)| name);
                    format!("{scheme}://{user}:***@{hosts}{tail}")
                }
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// Connects to the bus named by `url` (see the crate documentation for the URL forms).
pub async fn connect(url: &str) -> Result<Bus, BusError> {
    // Messages name the URL with its password hidden.
    let shown = redacted(url);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| BusError::InvalidUrl(format!("{shown:?} has no scheme; {ACCEPTED_URLS}")))?;
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority.trim_end_matches('/'), Some(query)),
        None => (rest.trim_end_matches('/'), None),
    };
    let (namespace, extra) = parse_query(&shown, query, scheme)?;
    let (user, authority) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (Some(parse_user(&shown, user)?), hosts),
        None => (None, authority),
    };
    match scheme {
        "memory" if user.is_none() => Ok(memory::connect(authority, namespace.as_deref())),
        "nats" => {
            let hosts = parse_hosts(&shown, authority)?;
            let inbox_prefix = extra.inbox_prefix;
            nats::connect(&hosts, namespace, NatsLogin { user, inbox_prefix }).await
        }
        "kafka" if user.is_none() => {
            let hosts = parse_hosts(&shown, authority)?;
            kafka::connect(&hosts, namespace, extra.tenant_topics).await
        }
        "memory" | "kafka" => Err(BusError::InvalidUrl(format!(
            "{shown:?}: user information is accepted for nats only"
        ))),
        other => Err(BusError::InvalidUrl(format!(
            "unknown scheme {other:?} in {shown:?}; {ACCEPTED_URLS}"
        ))),
    }
}

/// `user:password` of a URL, percent-decoded.
fn parse_user(shown: &str, user: &str) -> Result<(String, String), BusError> {
    let decode = |value: &str| {
        url::form_urlencoded::parse(format!("v={value}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    match user.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            Ok((decode(name), decode(password)))
        }
        _ => Err(BusError::InvalidUrl(format!(
            "{shown:?}: the user information must be user:password"
        ))),
    }
}

/// The adapter-specific parameters of a bus URL.
#[derive(Debug, Default)]
struct Extra {
    /// NATS: where this connection's replies go.
    inbox_prefix: Option<String>,
    /// Kafka: each event also on its tenant's topic, and a tenant's subscription reads it.
    tenant_topics: bool,
}

fn parse_query(
    url: &str,
    query: Option<&str>,
    scheme: &str,
) -> Result<(Option<String>, Extra), BusError> {
    let mut namespace = None;
    let mut extra = Extra::default();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "tenant_topics" if scheme == "kafka" => {
                extra.tenant_topics = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(BusError::InvalidUrl(format!(
                            "tenant_topics {other:?} in {url:?} must be true or false"
                        )));
                    }
                };
            }
            "inbox_prefix" if scheme == "nats" => {
                let valid = !value.is_empty()
                    && value.split('.').all(|token| {
                        !token.is_empty()
                            && token
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    });
                if !valid {
                    return Err(BusError::InvalidUrl(format!(
                        "inbox_prefix {value:?} in {url:?} must be subject tokens of ASCII letters, digits, '-' or '_'"
                    )));
                }
                extra.inbox_prefix = Some(value.into_owned());
            }
            "namespace" => {
                let valid = !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(BusError::InvalidUrl(format!(
                        "namespace {value:?} in {url:?} must be non-empty ASCII letters, digits, '-' or '_'"
                    )));
                }
                namespace = Some(value.into_owned());
            }
            other => {
                return Err(BusError::InvalidUrl(format!(
                    "unknown parameter {other:?} in {url:?}; accepted: namespace, for nats inbox_prefix, for kafka tenant_topics"
                )));
            }
        }
    }
    Ok((namespace, extra))
}

fn parse_hosts(url: &str, authority: &str) -> Result<Vec<String>, BusError> {
    let hosts: Vec<String> = authority.split(',').map(str::to_owned).collect();
    for host in &hosts {
        let valid = host
            .rsplit_once(':')
            .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(BusError::InvalidUrl(format!(
                "{host:?} in {url:?} is not host:port; {ACCEPTED_URLS}"
            )));
        }
    }
    Ok(hosts)
}

/// Durable names become NATS consumer names and Kafka group ids: keep them portable.
fn validate_durable_name(name: &str) -> Result<(), BusError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(BusError::Rejected(ServiceError::bad_request(format!(
            "durable name {name:?} must be non-empty ASCII letters, digits, '-' or '_'"
        ))))
    }
}

/// A subject token: empty becomes `_`, and `.`, `*`, `>` and whitespace become `_`.
fn subject_token(value: &str) -> String {
    if value.is_empty() {
        return "_".to_owned();
    }
    value
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() => '_',
            c => c,
        })
        .collect()
}

/// The subject token of a tenant: [`PLATFORM_TENANT`] for none.
fn tenant_token(tenant_id: &str) -> String {
    if tenant_id.is_empty() {
        PLATFORM_TENANT.to_owned()
    } else {
        subject_token(tenant_id)
    }
}

fn with_namespace(namespace: Option<&str>, name: String) -> String {
    match namespace {
        Some(namespace) => format!("{namespace}.{name}"),
        None => name,
    }
}

/// The subject prefix of a service's events: `[<ns>.]mpos.events.<service>`.
fn event_subject_prefix(namespace: Option<&str>, service: &str) -> String {
    with_namespace(namespace, format!("mpos.events.{}", subject_token(service)))
}

/// The NATS subject of an event:
/// `[<ns>.]mpos.events.<service>.<tenant or "_platform">.<aggregate_type>.<event name>`, the
/// event name being its protobuf type's last component (`ReversalAcknowledged` for
/// `mpos.routing.v1.ReversalAcknowledged`).
///
/// Characters that are special in NATS subjects (`.`, `*`, `>`, whitespace) become `_`.
pub fn event_subject(namespace: Option<&str>, envelope: &EventEnvelope) -> String {
    format!(
        "{}.{}.{}.{}",
        event_subject_prefix(namespace, &envelope.service),
        tenant_token(&envelope.tenant_id),
        subject_token(&envelope.aggregate_type),
        event_token(&envelope.event_type)
    )
}

/// The subject token of an event type: the name after its last `.`.
fn event_token(event_type: &str) -> String {
    subject_token(event_type.rsplit('.').next().unwrap_or(event_type))
}

/// The NATS filter subject of `options` (whatever is not filtered is `*`).
fn filter_subject(namespace: Option<&str>, options: &SubscribeOptions) -> String {
    let token =
        |value: Option<&str>, token: fn(&str) -> String| value.map_or("*".to_owned(), token);
    format!(
        "{}.{}.{}.{}",
        event_subject_prefix(namespace, &options.service),
        token(options.tenant_id.as_deref(), tenant_token),
        token(options.aggregate_type.as_deref(), subject_token),
        token(options.event_type.as_deref(), event_token)
    )
}

/// The JetStream stream of a service: `[<NS>_]MPOS_EVENTS_<SERVICE>` in upper case, `-` and `.` as `_`.
pub fn stream_name(namespace: Option<&str>, service: &str) -> String {
    let upper = |value: &str| -> String {
        value
            .chars()
            .map(|c| match c {
                '-' | '.' | '*' | '>' => '_',
                c if c.is_whitespace() => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect()
    };
    match namespace {
        Some(namespace) => format!("{}_MPOS_EVENTS_{}", upper(namespace), upper(service)),
        None => format!("MPOS_EVENTS_{}", upper(service)),
    }
}

/// The Kafka topic of one tenant's events of a service, `[<ns>.]mpos.<service>.events.v1.<tenant>`
/// (with `tenant_topics=true` in the bus URL): what a tenant's integrator may be given to
/// read under a topic ACL.
pub fn kafka_tenant_topic(namespace: Option<&str>, service: &str, tenant_id: &str) -> String {
    format!(
        "{}.{}",
        kafka_topic(namespace, service),
        tenant_token(tenant_id)
    )
}

/// The Kafka topic of a service's events: `[<ns>.]mpos.<service>.events.v1`.
pub fn kafka_topic(namespace: Option<&str>, service: &str) -> String {
    with_namespace(namespace, format!("mpos.{service}.events.v1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(tenant: &str, kind: &str) -> EventEnvelope {
        EventEnvelope {
            service: "terminal-management".into(),
            tenant_id: tenant.into(),
            aggregate_type: kind.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_follow_the_documented_patterns() {
        let mut terminal = envelope("acme", "terminal");
        terminal.event_type = "mpos.terminal_management.v1.TerminalActivated".into();
        assert_eq!(
            event_subject(None, &terminal),
            "mpos.events.terminal-management.acme.terminal.TerminalActivated"
        );
        assert_eq!(
            event_subject(Some("t1"), &envelope("", "tenant")),
            "t1.mpos.events.terminal-management._platform.tenant._"
        );
        assert_eq!(
            event_subject(None, &envelope("a.b*", "x y")),
            "mpos.events.terminal-management.a_b_.x_y._"
        );
        let options = SubscribeOptions {
            event_type: Some("mpos.routing.v1.ReversalAcknowledged".into()),
            ..SubscribeOptions::new("routing", "d")
        };
        assert_eq!(
            filter_subject(Some("t1"), &options),
            "t1.mpos.events.routing.*.*.ReversalAcknowledged"
        );
        let options = SubscribeOptions {
            tenant_id: Some("acme".into()),
            ..SubscribeOptions::new("routing", "d")
        };
        assert_eq!(
            filter_subject(None, &options),
            "mpos.events.routing.acme.*.*"
        );
        assert_eq!(
            stream_name(None, "terminal-management"),
            "MPOS_EVENTS_TERMINAL_MANAGEMENT"
        );
        assert_eq!(
            stream_name(Some("ab-1"), "hsm-proxy"),
            "AB_1_MPOS_EVENTS_HSM_PROXY"
        );
        assert_eq!(
            kafka_topic(None, "terminal-management"),
            "mpos.terminal-management.events.v1"
        );
        assert_eq!(kafka_topic(Some("ns"), "x"), "ns.mpos.x.events.v1");
    }

    #[test]
    fn filters_compare_subject_tokens() {
        let options = SubscribeOptions {
            tenant_id: Some(PLATFORM_TENANT.into()),
            ..SubscribeOptions::new("terminal-management", "d")
        };
        assert!(options.matches(&envelope("", "tenant")));
        assert!(!options.matches(&envelope("acme", "tenant")));
        let options = SubscribeOptions {
            aggregate_type: Some("terminal".into()),
            ..SubscribeOptions::new("terminal-management", "d")
        };
        assert!(options.matches(&envelope("acme", "terminal")));
        assert!(!options.matches(&envelope("acme", "tenant")));
        let options = SubscribeOptions {
            event_type: Some("mpos.routing.v1.ReversalAcknowledged".into()),
            ..SubscribeOptions::new("routing", "d")
        };
        let mut acknowledged = envelope("acme", "exchange");
        acknowledged.event_type = "mpos.routing.v1.ReversalAcknowledged".into();
        assert!(options.matches(&acknowledged));
        acknowledged.event_type = "mpos.routing.v1.RouteDecided".into();
        assert!(!options.matches(&acknowledged));
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            BusError::InvalidUrl(String::new()).code(),
            ErrorCode::BadRequest
        );
        assert_eq!(
            BusError::Decode(String::new()).code(),
            ErrorCode::BadRequest
        );
        assert_eq!(
            BusError::Unsupported(String::new()).code(),
            ErrorCode::BadRequest
        );
        assert_eq!(
            BusError::Unavailable(String::new()).code(),
            ErrorCode::Unavailable
        );
        assert_eq!(BusError::Timeout(String::new()).code(), ErrorCode::Timeout);
        assert_eq!(
            BusError::Rejected(ServiceError::conflict("x")).code(),
            ErrorCode::Conflict
        );
    }

    #[tokio::test]
    async fn bad_urls_are_rejected_with_the_accepted_schemes() {
        for url in [
            "",
            "localhost:4222",
            "redis://x:1",
            "nats://",
            "nats://host",
            "nats://host:port",
            "kafka://a:1,b",
            "nats://h:1?namespace=a.b",
            "nats://h:1?foo=bar",
        ] {
            let error = connect(url).await.expect_err(url);
            assert!(matches!(error, BusError::InvalidUrl(_)), "{url}: {error}");
        }
        let error = connect("redis://x:1").await.expect_err("redis");
        assert!(error.to_string().contains("memory://"), "{error}");
        // Credentials: nats only, user:password, and never echoed.
        for url in [
            "kafka://u:secret-pw@h:1",
            "memory://u:secret-pw@x",
            "nats://u@h:1",
            "nats://:secret-pw@h:1",
            "nats://u:secret-pw@h",
            "nats://u:secret-pw@h:1?inbox_prefix=a..b",
            "nats://u:secret-pw@h:1?inbox_prefix=a>",
            "kafka://h:1?inbox_prefix=x",
        ] {
            let error = connect(url).await.expect_err(url);
            assert!(matches!(error, BusError::InvalidUrl(_)), "{url}: {error}");
            assert!(!error.to_string().contains("secret-pw"), "{url}: {error}");
        }
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            redacted("nats://acme:p%40ss@h:1,h2:2?namespace=x"),
            "nats://acme:***@h:1,h2:2?namespace=x"
        );
        assert_eq!(redacted("nats://h:1"), "nats://h:1");
        assert_eq!(
            parse_user("x", "acme:p%40ss").expect("user"),
            ("acme".to_owned(), "p@ss".to_owned())
        );
    }
}
