//! Kafka: one topic per service, the bare event as value, the envelope as CloudEvents headers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use futures::FutureExt;
use futures::future::BoxFuture;
use mpos_errors::ServiceError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{
    Acker, Bus, BusError, Delivery, EventEnvelope, EventPublisher, EventStream, EventSubscriber,
    FollowOptions, SubscribeOptions, followed, kafka_tenant_topic, kafka_topic,
    validate_durable_name,
};

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long librdkafka keeps trying to deliver one message before `publish` fails.
const MESSAGE_TIMEOUT_MS: &str = "15000";
/// Longest a fetch waits at the broker for new records.
const FETCH_WAIT_MAX_MS: &str = "10";

/// CloudEvents binary-mode and extension header names.
pub(crate) mod header {
    pub(crate) const SPECVERSION: &str = "ce_specversion";
    pub(crate) const ID: &str = "ce_id";
    pub(crate) const TYPE: &str = "ce_type";
    pub(crate) const SOURCE: &str = "ce_source";
    pub(crate) const SUBJECT: &str = "ce_subject";
    pub(crate) const TIME: &str = "ce_time";
    pub(crate) const CONTENT_TYPE: &str = "content-type";
    pub(crate) const TRACEPARENT: &str = "traceparent";
    pub(crate) const TENANT_ID: &str = "ce_tenantid";
    pub(crate) const AGGREGATE_TYPE: &str = "ce_aggregatetype";
    pub(crate) const AGGREGATE_ID: &str = "ce_aggregateid";
    pub(crate) const SEQUENCE: &str = "ce_sequence";
    pub(crate) const POSITION: &str = "ce_position";
    pub(crate) const EVENT_VERSION: &str = "ce_eventversion";
    pub(crate) const HASH: &str = "ce_hash";
    pub(crate) const PREVIOUS_HASH: &str = "ce_previoushash";
    pub(crate) const CORRELATION_ID: &str = "ce_correlationid";
    pub(crate) const CAUSATION_ID: &str = "ce_causationid";
    pub(crate) const ACTOR: &str = "ce_actor";
    pub(crate) const SERVICE: &str = "ce_service";
    pub(crate) const TIME_MICROS: &str = "ce_timemicros";
}

/// `MPOS_BUS_KAFKA_DEBUG` (e.g. `cgrp,fetch`) turns on librdkafka debug logging.
trait SetDebug {
    fn set_debug(&mut self) -> &mut Self;
}

impl SetDebug for ClientConfig {
    fn set_debug(&mut self) -> &mut Self {
        match std::env::var("MPOS_BUS_KAFKA_DEBUG") {
            Ok(contexts) if !contexts.is_empty() => self.set("debug", contexts),
            _ => self,
        }
    }
}

pub(crate) async fn connect(
    hosts: &[String],
    namespace: Option<String>,
    tenant_topics: bool,
) -> Result<Bus, BusError> {
    let bootstrap = hosts.join(",");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("client.id", "mpos-bus")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
        .set("linger.ms", "1")
        // One record per batch: tansu 0.6 cannot fetch from an offset inside a batch, so a
        // consumer resuming mid-batch would never see the rest. Publishes stay pipelined.
        .set("batch.num.messages", "1")
        .set_debug()
        .create()
        .map_err(|error| BusError::InvalidUrl(format!("kafka producer config: {error}")))?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("client.id", "mpos-bus-admin")
        .create()
        .map_err(|error| BusError::InvalidUrl(format!("kafka admin config: {error}")))?;
    let bus = KafkaBus {
        inner: Arc::new(Inner {
            bootstrap,
            namespace,
            producer,
            admin,
            topics: Mutex::default(),
            tenant_topics,
        }),
    };
    // Fail fast (and clearly) when no broker answers.
    bus.check().await?;
    tracing::info!(bootstrap = %bus.inner.bootstrap, namespace = ?bus.inner.namespace, "connected to kafka");
    Ok(Bus {
        publisher: Arc::new(bus.clone()),
        subscriber: Arc::new(bus),
        requests: None,
    })
}

struct Inner {
    bootstrap: String,
    namespace: Option<String>,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist.
    topics: Mutex<HashSet<String>>,
    /// Each event also on its tenant's topic; a tenant's subscription reads that topic.
    tenant_topics: bool,
}

#[derive(Clone)]
struct KafkaBus {
    inner: Arc<Inner>,
}

impl fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBus")
            .field("bootstrap", &self.inner.bootstrap)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, error: impl fmt::Display) -> BusError {
    BusError::Unavailable(format!("{what}: {error}"))
}

impl KafkaBus {
    fn topic_known(&self, topic: &str) -> bool {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(topic)
    }

    /// The topic a subscription or follower of `service` reads: with tenant topics and a
    /// tenant filter, that tenant's topic; else the service's.
    fn read_topic(&self, service: &str, tenant_id: Option<&str>) -> String {
        match tenant_id {
            Some(tenant) if self.inner.tenant_topics => {
                kafka_tenant_topic(self.inner.namespace.as_deref(), service, tenant)
            }
            _ => kafka_topic(self.inner.namespace.as_deref(), service),
        }
    }

    /// Creates `topic` if absent; returns its name.
    async fn ensure(&self, topic: String) -> Result<String, BusError> {
        if self.topic_known(&topic) {
            return Ok(topic);
        }
        let options = AdminOptions::new()
            .operation_timeout(Some(ADMIN_TIMEOUT))
            .request_timeout(Some(ADMIN_TIMEOUT));
        let new_topic = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
        let results = self
            .inner
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|error| unavailable(&format!("cannot create topic {topic}"), error))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(unavailable(&format!("cannot create topic {name}"), code));
                }
            }
        }
        tracing::debug!(topic = %topic, "topic ready");
        self.inner
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.clone());
        Ok(topic)
    }
}

/// The CloudEvents binary-mode headers of an envelope on Kafka, with extensions that carry
/// every envelope field (the record's value is the payload alone). Public as
/// `mpos_bus::kafka_headers`, so that the integrator documentation is generated from them.
pub fn envelope_headers(envelope: &EventEnvelope) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (header::SPECVERSION, "1.0".to_owned()),
        (header::ID, envelope.event_id.clone()),
        (header::TYPE, envelope.event_type.clone()),
        (header::SOURCE, format!("/mpos/{}", envelope.service)),
        (
            header::SUBJECT,
            format!("{}/{}", envelope.aggregate_type, envelope.aggregate_id),
        ),
        (header::CONTENT_TYPE, "application/protobuf".to_owned()),
    ];
    if let Some(occurred_at) = &envelope.occurred_at {
        let micros = mpos_proto::timestamp_to_micros(occurred_at);
        if let Some(time) = DateTime::from_timestamp_micros(micros) {
            headers.push((
                header::TIME,
                time.to_rfc3339_opts(SecondsFormat::Micros, true),
            ));
        }
        headers.push((header::TIME_MICROS, micros.to_string()));
    }
    if !envelope.traceparent.is_empty() {
        headers.push((header::TRACEPARENT, envelope.traceparent.clone()));
    }
    headers.extend([
        (header::TENANT_ID, envelope.tenant_id.clone()),
        (header::AGGREGATE_TYPE, envelope.aggregate_type.clone()),
        (header::AGGREGATE_ID, envelope.aggregate_id.clone()),
        (header::SEQUENCE, envelope.sequence.to_string()),
        (header::POSITION, envelope.global_position.to_string()),
        (header::EVENT_VERSION, envelope.event_version.clone()),
        (header::HASH, hex::encode(&envelope.hash)),
        (header::PREVIOUS_HASH, hex::encode(&envelope.previous_hash)),
        (header::CORRELATION_ID, envelope.correlation_id.clone()),
        (header::CAUSATION_ID, envelope.causation_id.clone()),
        (header::ACTOR, envelope.actor.clone()),
        (header::SERVICE, envelope.service.clone()),
    ]);
    headers
}

/// Rebuilds an envelope from its headers and the bare event.
pub(crate) fn envelope_from_headers(
    headers: &HashMap<String, String>,
    payload: &[u8],
) -> Result<EventEnvelope, BusError> {
    let text = |name: &str| headers.get(name).cloned().unwrap_or_default();
    let number = |name: &str| -> Result<u64, BusError> {
        match headers.get(name) {
            None => Ok(0),
            Some(value) => value
                .parse()
                .map_err(|_| BusError::Decode(format!("header {name} is not a number: {value:?}"))),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, BusError> {
        match headers.get(name) {
            None => Ok(Vec::new()),
            Some(value) => hex::decode(value)
                .map_err(|_| BusError::Decode(format!("header {name} is not hex: {value:?}"))),
        }
    };
    let event_id = text(header::ID);
    if event_id.is_empty() {
        return Err(BusError::Decode(
            "kafka record has no ce_id header; not an mpos event".to_owned(),
        ));
    }
    let occurred_at = if let Some(micros) = headers.get(header::TIME_MICROS) {
        let micros = micros.parse::<i64>().map_err(|_| {
            BusError::Decode(format!(
                "header {} is not a number: {micros:?}",
                header::TIME_MICROS
            ))
        })?;
        Some(mpos_proto::timestamp_from_micros(micros))
    } else if let Some(time) = headers.get(header::TIME) {
        let time = DateTime::parse_from_rfc3339(time).map_err(|error| {
            BusError::Decode(format!("header {} is not RFC 3339: {error}", header::TIME))
        })?;
        Some(mpos_proto::timestamp_from_micros(time.timestamp_micros()))
    } else {
        None
    };
    Ok(EventEnvelope {
        event_id,
        tenant_id: text(header::TENANT_ID),
        aggregate_type: text(header::AGGREGATE_TYPE),
        aggregate_id: text(header::AGGREGATE_ID),
        sequence: number(header::SEQUENCE)?,
        global_position: number(header::POSITION)?,
        occurred_at,
        event_type: text(header::TYPE),
        event_version: text(header::EVENT_VERSION),
        payload: payload.to_vec(),
        previous_hash: bytes(header::PREVIOUS_HASH)?,
        hash: bytes(header::HASH)?,
        correlation_id: text(header::CORRELATION_ID),
        causation_id: text(header::CAUSATION_ID),
        traceparent: text(header::TRACEPARENT),
        actor: text(header::ACTOR),
        service: text(header::SERVICE),
    })
}

fn record_headers(message: &OwnedMessage) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            if let Some(value) = header.value {
                map.insert(
                    header.key.to_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                );
            }
        }
    }
    map
}

#[async_trait::async_trait]
impl EventPublisher for KafkaBus {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        let namespace = self.inner.namespace.as_deref();
        // Each event's topics: its service's, and with tenant topics its tenant's too.
        let mut routes: Vec<(&EventEnvelope, String)> = Vec::with_capacity(events.len());
        for envelope in events {
            routes.push((envelope, kafka_topic(namespace, &envelope.service)));
            if self.inner.tenant_topics {
                routes.push((
                    envelope,
                    kafka_tenant_topic(namespace, &envelope.service, &envelope.tenant_id),
                ));
            }
        }
        for (_, topic) in &routes {
            self.ensure(topic.clone()).await?;
        }
        let mut pending = VecDeque::with_capacity(routes.len());
        for (envelope, topic) in &routes {
            let (envelope, topic) = (*envelope, topic.as_str());
            let mut headers = OwnedHeaders::new_with_capacity(20);
            for (name, value) in envelope_headers(envelope) {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_str()),
                });
            }
            let mut record = FutureRecord::to(topic)
                .key(envelope.aggregate_id.as_str())
                .payload(envelope.payload.as_slice())
                .headers(headers);
            if let Some(occurred_at) = &envelope.occurred_at {
                record = record.timestamp(mpos_proto::timestamp_to_micros(occurred_at) / 1_000);
            }
            loop {
                match self.inner.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push_back((topic, envelope, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        // Wait for the oldest delivery to make room in the producer queue.
                        let Some((oldest, envelope, delivery)) = pending.pop_front() else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        delivered(oldest, envelope, delivery.await)?;
                    }
                    Err((error, _)) => {
                        return Err(unavailable(&format!("cannot publish to {topic}"), error));
                    }
                }
            }
        }
        for (topic, envelope, delivery) in pending {
            delivered(topic, envelope, delivery.await)?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), BusError> {
        let producer = self.inner.producer.clone();
        let bootstrap = self.inner.bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, CHECK_TIMEOUT)
                .map(|_| ())
                .map_err(|error| {
                    unavailable(&format!("kafka at {bootstrap} does not answer"), error)
                })
        })
        .await
        .map_err(|error| unavailable("kafka check task failed", error))?
    }
}

fn delivered(
    topic: &str,
    envelope: &EventEnvelope,
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<(), BusError> {
    match result {
        Ok(Ok(delivery)) => {
            tracing::debug!(
                topic = %topic,
                event_id = %envelope.event_id,
                partition = delivery.partition,
                offset = delivery.offset,
                "published event"
            );
            Ok(())
        }
        Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _))) => {
            Err(BusError::Timeout(format!(
                "kafka did not acknowledge event {} on {topic}",
                envelope.event_id
            )))
        }
        Ok(Err((error, _))) => Err(unavailable(&format!("cannot publish to {topic}"), error)),
        Err(_) => Err(BusError::Unavailable(
            "kafka producer shut down before delivery".to_owned(),
        )),
    }
}

#[async_trait::async_trait]
impl EventSubscriber for KafkaBus {
    async fn subscribe(&self, options: SubscribeOptions) -> Result<EventStream, BusError> {
        validate_durable_name(&options.durable_name)?;
        let topic = self
            .ensure(self.read_topic(&options.service, options.tenant_id.as_deref()))
            .await?;
        let group = match self.inner.namespace.as_deref() {
            Some(namespace) => format!("{namespace}.{}", options.durable_name),
            None => options.durable_name.clone(),
        };
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.inner.bootstrap)
            .set("client.id", "mpos-bus-consumer")
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Bounds how long the broker holds a fetch without new data. librdkafka's 500 ms
            // default makes tansu 0.6 answer every fetch after >= 250 ms even when records are
            // waiting (it sleeps half the wait before looking); consumers here follow live
            // event streams, so a short wait is the right trade.
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
            .set_debug()
            .create()
            .map_err(|error| unavailable("cannot create kafka consumer", error))?;
        consumer
            .subscribe(&[topic.as_str()])
            .map_err(|error| unavailable(&format!("cannot subscribe to {topic}"), error))?;
        tracing::debug!(topic = %topic, group = %group, "subscribed");
        Ok(Subscription {
            consumer: Some(Arc::new(consumer)),
            options,
            recorded: true,
        }
        .into_stream())
    }

    async fn follow(&self, options: FollowOptions) -> Result<EventStream, BusError> {
        let topic = self.read_topic(&options.service, options.tenant_id.as_deref());
        let bootstrap = self.inner.bootstrap.clone();
        let from = options.from;
        let consumer = {
            let topic = topic.clone();
            tokio::task::spawn_blocking(move || follower(&bootstrap, &topic, from))
                .await
                .map_err(|error| unavailable("follow task failed", error))??
        };
        tracing::debug!(topic = %topic, ?from, "following");
        Ok(Subscription {
            consumer: Some(Arc::new(consumer)),
            options: options.filters(),
            recorded: false,
        }
        .into_stream())
    }
}

/// Reads every partition of `topic` from where `from` says (its start, its end, an offset,
/// or the offsets of a time), assigned rather than subscribed, so it joins no consumer
/// group: no offset is committed and the broker keeps no state for the reader. (librdkafka
/// wants a `group.id` all the same; a fresh one is never joined.)
fn follower(
    bootstrap: &str,
    topic: &str,
    from: crate::FollowFrom,
) -> Result<StreamConsumer, BusError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "mpos-bus-follower")
        .set(
            "group.id",
            format!("mpos-follow-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
        .set_debug()
        .create()
        .map_err(|error| unavailable("cannot create kafka consumer", error))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
        .map_err(|error| unavailable(&format!("no topic {topic}"), error))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic && found.error().is_none())
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect();
    if partitions.is_empty() {
        return Err(BusError::Unavailable(format!("no topic {topic}")));
    }
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let offset = match from {
            crate::FollowFrom::Start => Offset::Beginning,
            crate::FollowFrom::Now => Offset::End,
            crate::FollowFrom::Offset(offset) => {
                Offset::Offset(i64::try_from(offset).unwrap_or(i64::MAX))
            }
            // Milliseconds, as offsets_for_times takes them; answered below.
            crate::FollowFrom::Time(micros) => Offset::Offset(micros.div_euclid(1_000)),
        };
        assignment
            .add_partition_offset(topic, partition, offset)
            .map_err(|error| unavailable("cannot build the assignment", error))?;
    }
    if let crate::FollowFrom::Time(_) = from {
        // Each partition's first offset whose timestamp is at or after the time (the end
        // when none is).
        assignment = consumer
            .offsets_for_times(assignment, ADMIN_TIMEOUT)
            .map_err(|error| unavailable(&format!("cannot find the offsets of {topic}"), error))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| unavailable(&format!("cannot read {topic}"), error))?;
    Ok(consumer)
}

struct Subscription {
    /// `Some` until dropped; closing a consumer blocks, so it is closed on a blocking thread.
    consumer: Option<Arc<StreamConsumer>>,
    options: SubscribeOptions,
    /// Whether acknowledgements commit offsets (a durable subscription) or do nothing (a
    /// followed topic, read without a consumer group).
    recorded: bool,
}

impl Subscription {
    fn into_stream(self) -> EventStream {
        EventStream::new(futures::stream::unfold(self, |subscription| async move {
            let item = subscription.next().await?;
            Some((item, subscription))
        }))
    }

    async fn next(&self) -> Option<Result<Delivery, BusError>> {
        let consumer = self.consumer.as_ref()?;
        loop {
            let message = match consumer.recv().await {
                Ok(message) => message.detach(),
                Err(error) => return Some(Err(unavailable("cannot receive events", error))),
            };
            let envelope = match envelope_from_headers(
                &record_headers(&message),
                message.payload().unwrap_or_default(),
            ) {
                Ok(envelope) => envelope,
                Err(error) => return Some(Err(error)),
            };
            if !self.options.matches(&envelope) {
                continue;
            }
            if !self.recorded {
                return Some(Ok(followed(envelope)));
            }
            let acker = KafkaAcker {
                consumer: consumer.clone(),
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
            };
            return Some(Ok(Delivery::new(envelope, Box::new(acker))));
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn_blocking(move || drop(consumer));
        }
    }
}

struct KafkaAcker {
    consumer: Arc<StreamConsumer>,
    topic: String,
    partition: i32,
    offset: i64,
}

impl fmt::Debug for KafkaAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaAcker")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Acker for KafkaAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        async move {
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(&self.topic, self.partition, Offset::Offset(self.offset + 1))
                .map_err(|error| unavailable("cannot build offset list", error))?;
            let consumer = self.consumer.clone();
            tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
                .await
                .map_err(|error| unavailable("commit task failed", error))?
                .map_err(|error| match error {
                    KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress) => {
                        BusError::Rejected(ServiceError::conflict(
                            "consumer group is rebalancing; the event will be delivered again",
                        ))
                    }
                    error => unavailable("cannot commit offset", error),
                })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_every_field() {
        let envelope = EventEnvelope {
            event_id: "0190f5a0-0000-7000-8000-000000000001".into(),
            tenant_id: "acme".into(),
            aggregate_type: "terminal".into(),
            aggregate_id: "t-1".into(),
            sequence: 3,
            global_position: 42,
            occurred_at: Some(mpos_proto::timestamp_from_micros(1_700_000_000_123_456)),
            event_type: "mpos.terminal_management.v1.TerminalRegistered".into(),
            event_version: "1.0".into(),
            payload: vec![1, 2, 3],
            previous_hash: vec![0; 32],
            hash: vec![0xab; 32],
            correlation_id: "c".into(),
            causation_id: "d".into(),
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            actor: "operator:alice".into(),
            service: "terminal-management".into(),
        };
        let headers: HashMap<String, String> = envelope_headers(&envelope)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        assert_eq!(headers["ce_time"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(headers["ce_subject"], "terminal/t-1");
        assert_eq!(headers["ce_source"], "/mpos/terminal-management");
        let back = envelope_from_headers(&headers, &[1, 2, 3]).expect("decode");
        assert_eq!(back, envelope);
    }
}
