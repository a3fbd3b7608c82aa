//! One contract, three adapters: the in-process broker, NATS JetStream and Kafka must behave
//! alike. The NATS and Kafka tests run against real servers (`infra/nats.sh`, `infra/kafka.sh`);
//! URLs come from `MPOS_TEST_NATS_URL` and `MPOS_TEST_KAFKA_URL`. Every test uses its own
//! namespace, so tests are isolated from each other and from earlier runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mpos_bus::{
    Bus, BusError, Delivery, EventEnvelope, EventStream, FollowOptions, Message, RequestHandler,
    SubscribeOptions, connect,
};
use mpos_errors::{ErrorCode, ServiceError};

const SERVICE: &str = "terminal-management";

fn namespace() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

fn nats_url(namespace: &str) -> String {
    let base =
        std::env::var("MPOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    format!("{base}?namespace={namespace}")
}

fn kafka_url(namespace: &str) -> String {
    let base = std::env::var("MPOS_TEST_KAFKA_URL")
        .unwrap_or_else(|_| "kafka://127.0.0.1:9092".to_owned());
    format!("{base}?namespace={namespace}")
}

fn memory_url(namespace: &str) -> String {
    format!("memory://{namespace}")
}

async fn bus(url: &str) -> Bus {
    connect(url).await.unwrap_or_else(|error| {
        panic!("cannot connect to {url}: {error} (start the servers with infra/nats.sh and infra/kafka.sh)")
    })
}

/// An envelope with every field set.
fn envelope(index: u64, tenant: &str, aggregate_type: &str) -> EventEnvelope {
    let id = uuid::Uuid::now_v7().to_string();
    let byte = u8::try_from(index % 256).expect("byte");
    EventEnvelope {
        event_id: id.clone(),
        tenant_id: tenant.to_owned(),
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: format!("{aggregate_type}-{}", index % 3),
        sequence: index / 3 + 1,
        global_position: index + 1,
        occurred_at: Some(mpos_proto::timestamp_from_micros(
            1_700_000_000_000_000 + i64::try_from(index).expect("small") * 1_001,
        )),
        event_type: format!("mpos.terminal_management.v1.Event{index}"),
        event_version: "1.0".to_owned(),
        payload: vec![byte, 0, 255, byte.wrapping_add(1)],
        previous_hash: vec![byte.wrapping_sub(1); 32],
        hash: vec![byte; 32],
        correlation_id: format!("corr-{index}"),
        causation_id: format!("cause-{index}"),
        traceparent: format!("00-0af7651916cd43dd8448eb211c80319c-{:016x}-01", index + 1),
        actor: "operator:alice".to_owned(),
        service: SERVICE.to_owned(),
    }
}

fn events(count: u64) -> Vec<EventEnvelope> {
    (0..count)
        .map(|index| {
            let tenant = if index % 2 == 0 { "acme" } else { "globex" };
            let kind = if index % 3 == 0 { "tenant" } else { "terminal" };
            envelope(index, tenant, kind)
        })
        .collect()
}

async fn subscribe(bus: &Bus, durable: &str) -> EventStream {
    bus.subscriber
        .subscribe(SubscribeOptions::new(SERVICE, durable))
        .await
        .expect("subscribe")
}

/// Generous for Kafka's consumer group join; the other adapters answer in milliseconds.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

async fn receive(stream: &mut EventStream) -> Delivery {
    tokio::time::timeout(RECEIVE_TIMEOUT, stream.next())
        .await
        .expect("no delivery in time")
        .expect("stream ended")
        .expect("delivery failed")
}

async fn receive_envelopes(stream: &mut EventStream, count: usize) -> Vec<EventEnvelope> {
    let mut received = Vec::with_capacity(count);
    for _ in 0..count {
        let delivery = receive(stream).await;
        received.push(delivery.envelope.clone());
        delivery.ack().await.expect("ack");
    }
    received
}

async fn assert_quiet(stream: &mut EventStream, wait: Duration) {
    if let Ok(Some(item)) = tokio::time::timeout(wait, stream.next()).await {
        let envelope = item.map(|delivery| delivery.envelope);
        panic!("unexpected delivery: {envelope:?}");
    }
}

/// Publish N envelopes; a durable subscriber receives exactly them, in order, byte-equal.
async fn publish_then_receive_in_order(url: &str) {
    let bus = bus(url).await;
    bus.publisher.check().await.expect("check");
    let sent = events(7);
    bus.publisher.publish(&sent[..3]).await.expect("publish");
    bus.publisher.publish(&sent[3..]).await.expect("publish");
    let mut stream = subscribe(&bus, "all").await;
    let received = receive_envelopes(&mut stream, sent.len()).await;
    assert_eq!(received, sent);
    assert_quiet(&mut stream, Duration::from_millis(500)).await;

    // Live delivery to a waiting subscriber.
    let later = vec![envelope(100, "acme", "terminal")];
    bus.publisher.publish(&later).await.expect("publish");
    assert_eq!(receive_envelopes(&mut stream, 1).await, later);
}

/// Re-publishing the same event ids produces no duplicates (NATS dedup, memory).
async fn republish_is_deduplicated(url: &str) {
    let bus = bus(url).await;
    let sent = events(4);
    bus.publisher.publish(&sent).await.expect("publish");
    bus.publisher.publish(&sent).await.expect("publish again");
    bus.publisher
        .publish(&sent[1..2])
        .await
        .expect("publish one again");
    let fresh = vec![envelope(50, "acme", "tenant")];
    bus.publisher.publish(&fresh).await.expect("publish fresh");
    let mut stream = subscribe(&bus, "dedup").await;
    let received = receive_envelopes(&mut stream, sent.len() + 1).await;
    let expected: Vec<EventEnvelope> = sent.iter().chain(&fresh).cloned().collect();
    assert_eq!(received, expected);
    assert_quiet(&mut stream, Duration::from_millis(500)).await;
}

/// Ack half, drop the stream, subscribe again with the same durable name: only the rest.
async fn durable_resume(url: &str) {
    let bus = bus(url).await;
    let sent = events(6);
    bus.publisher.publish(&sent).await.expect("publish");

    let mut stream = subscribe(&bus, "resume").await;
    assert_eq!(receive_envelopes(&mut stream, 3).await, sent[..3]);
    drop(stream);

    let mut stream = subscribe(&bus, "resume").await;
    assert_eq!(receive_envelopes(&mut stream, 3).await, sent[3..]);
    drop(stream);

    // Another durable name starts from the beginning.
    let mut other = subscribe(&bus, "other").await;
    assert_eq!(receive_envelopes(&mut other, 6).await, sent);
    drop(other);

    let mut stream = subscribe(&bus, "resume").await;
    let more = vec![envelope(60, "acme", "terminal")];
    bus.publisher.publish(&more).await.expect("publish");
    assert_eq!(receive_envelopes(&mut stream, 1).await, more);
    assert_quiet(&mut stream, Duration::from_millis(500)).await;
}

/// Following a stream: from its start, filtered, or only what is published from now on;
/// acknowledging a followed delivery records nothing, so a durable subscriber still gets
/// every event.
async fn follow(url: &str) {
    let bus = bus(url).await;
    let sent = events(6);
    bus.publisher.publish(&sent).await.expect("publish");

    let mut acme = bus
        .subscriber
        .follow(FollowOptions {
            service: SERVICE.to_owned(),
            tenant_id: Some("acme".to_owned()),
            from: mpos_bus::FollowFrom::Start,
            ..FollowOptions::default()
        })
        .await
        .expect("follow from the start");
    let expected: Vec<EventEnvelope> = sent
        .iter()
        .filter(|event| event.tenant_id == "acme")
        .cloned()
        .collect();
    assert_eq!(receive_envelopes(&mut acme, expected.len()).await, expected);
    assert_quiet(&mut acme, Duration::from_millis(500)).await;
    drop(acme);

    // From now on: events published before it started are not delivered. A broker may take a
    // moment to place a new reader at the end, so events are published until one arrives.
    let mut live = bus
        .subscriber
        .follow(FollowOptions {
            service: SERVICE.to_owned(),
            ..FollowOptions::default()
        })
        .await
        .expect("follow from now");
    let mut published = Vec::new();
    let first = loop {
        assert!(published.len() < 60, "nothing followed live");
        let event = envelope(200 + published.len() as u64, "globex", "terminal");
        bus.publisher
            .publish(std::slice::from_ref(&event))
            .await
            .expect("publish");
        published.push(event);
        if let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(500), live.next()).await
        {
            break item.expect("delivery");
        }
    };
    assert!(
        published.contains(&first.envelope),
        "a live follower got an earlier event: {:?}",
        first.envelope
    );
    first.ack().await.expect("ack does nothing");
    drop(live);

    let mut durable = subscribe(&bus, "after-follow").await;
    let received = receive_envelopes(&mut durable, sent.len()).await;
    assert_eq!(received, sent);
}

/// Filters by tenant, by aggregate type, by event type and by several.
async fn filters(url: &str) {
    const SHARED: &str = "mpos.terminal_management.v1.Shared";
    let bus = bus(url).await;
    let mut sent = events(9);
    sent.push(envelope(9, "", "tenant"));
    // Two events of one type, of two tenants.
    sent[2].event_type = SHARED.to_owned();
    sent[5].event_type = SHARED.to_owned();
    bus.publisher.publish(&sent).await.expect("publish");

    let cases: [(Option<&str>, Option<&str>, Option<&str>); 6] = [
        (Some("acme"), None, None),
        (None, Some("terminal"), None),
        (Some("globex"), Some("tenant"), None),
        (Some(""), None, None),
        (None, None, Some(SHARED)),
        (Some("acme"), None, Some(SHARED)),
    ];
    for (number, (tenant, kind, event_type)) in cases.into_iter().enumerate() {
        let options = SubscribeOptions {
            tenant_id: tenant.map(str::to_owned),
            aggregate_type: kind.map(str::to_owned),
            event_type: event_type.map(str::to_owned),
            ..SubscribeOptions::new(SERVICE, format!("filter-{number}"))
        };
        let expected: Vec<EventEnvelope> = sent
            .iter()
            .filter(|event| options.matches(event))
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert!(expected.len() < sent.len());
        let mut stream = bus.subscriber.subscribe(options).await.expect("subscribe");
        let received = receive_envelopes(&mut stream, expected.len()).await;
        assert_eq!(
            received, expected,
            "tenant {tenant:?}, aggregate type {kind:?}, event type {event_type:?}"
        );
        assert_quiet(&mut stream, Duration::from_millis(300)).await;
    }
}

#[derive(Debug)]
struct Echo;

#[async_trait::async_trait]
impl RequestHandler for Echo {
    async fn handle(&self, request: Message) -> Result<Message, ServiceError> {
        let mut reply = Message::new(request.payload.clone()).with_header("Echoed", "yes");
        if let Some(value) = request.headers.get("X-Request") {
            reply = reply.with_header("X-Request", value.clone());
        }
        Ok(reply)
    }
}

#[derive(Debug)]
struct Refuse;

#[async_trait::async_trait]
impl RequestHandler for Refuse {
    async fn handle(&self, _request: Message) -> Result<Message, ServiceError> {
        Err(ServiceError::conflict(
            "terminal t-1 is already active\nsecond line",
        ))
    }
}

#[derive(Debug)]
struct Slow;

#[async_trait::async_trait]
impl RequestHandler for Slow {
    async fn handle(&self, request: Message) -> Result<Message, ServiceError> {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(request)
    }
}

async fn request_reply(url: &str, namespace: &str) {
    let bus = bus(url).await;
    let requests = bus.requests.clone().expect("request-reply");
    let subject = |name: &str| format!("{namespace}.mpos.test.v1.{name}");
    let timeout = Duration::from_secs(2);

    let echo = requests
        .serve(&subject("echo"), "test", Arc::new(Echo))
        .await
        .expect("serve");
    // A second server in the same queue group shares the load.
    let echo2 = requests
        .serve(&subject("echo"), "test", Arc::new(Echo))
        .await
        .expect("serve");
    for round in 0..4 {
        let request = Message::new(format!("ping {round}")).with_header("X-Request", "42");
        let reply = requests
            .request(&subject("echo"), request, timeout)
            .await
            .expect("reply");
        assert_eq!(reply.payload, format!("ping {round}").as_bytes());
        assert_eq!(reply.headers.get("Echoed").map(String::as_str), Some("yes"));
        assert_eq!(
            reply.headers.get("X-Request").map(String::as_str),
            Some("42")
        );
    }

    let _refuse = requests
        .serve(&subject("refuse"), "test", Arc::new(Refuse))
        .await
        .expect("serve");
    match requests
        .request(&subject("refuse"), Message::new("x"), timeout)
        .await
    {
        Err(BusError::Rejected(error)) => {
            assert_eq!(error.code, ErrorCode::Conflict);
            assert!(
                error.message.starts_with("terminal t-1 is already active"),
                "{error}"
            );
        }
        other => panic!("expected rejected, got {other:?}"),
    }

    let started = Instant::now();
    match requests
        .request(&subject("nobody"), Message::new("x"), timeout)
        .await
    {
        Err(error @ BusError::Unavailable(_)) => assert_eq!(error.code(), ErrorCode::Unavailable),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < timeout,
        "no responder must not wait for the timeout"
    );

    let _slow = requests
        .serve(&subject("slow"), "test", Arc::new(Slow))
        .await
        .expect("serve");
    let started = Instant::now();
    match requests
        .request(
            &subject("slow"),
            Message::new("x"),
            Duration::from_millis(200),
        )
        .await
    {
        Err(error @ BusError::Timeout(_)) => assert_eq!(error.code(), ErrorCode::Timeout),
        other => panic!("expected timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // Once every server stopped, nobody answers.
    echo.stop().await;
    drop(echo2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match requests
            .request(&subject("echo"), Message::new("x"), timeout)
            .await
        {
            Err(BusError::Unavailable(_)) => break,
            other if Instant::now() > deadline => panic!("still served: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn assert_unavailable_quickly(url: &str) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(15), async {
        let bus = connect(url).await?;
        bus.publisher.check().await
    })
    .await
    .expect("connect or check hangs");
    match result {
        Err(error @ BusError::Unavailable(_)) => {
            assert_eq!(error.code(), ErrorCode::Unavailable);
        }
        other => panic!("expected unavailable for {url}, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

mod memory {
    use super::*;

    #[tokio::test]
    async fn publish_then_receive_in_order() {
        super::publish_then_receive_in_order(&memory_url(&namespace())).await;
    }

    #[tokio::test]
    async fn republish_is_deduplicated() {
        super::republish_is_deduplicated(&memory_url(&namespace())).await;
    }

    #[tokio::test]
    async fn durable_resume() {
        super::durable_resume(&memory_url(&namespace())).await;
    }

    #[tokio::test]
    async fn filters() {
        super::filters(&memory_url(&namespace())).await;
    }

    #[tokio::test]
    async fn follow() {
        super::follow(&memory_url(&namespace())).await;
    }

    #[tokio::test]
    async fn request_reply() {
        let namespace = namespace();
        super::request_reply(&memory_url(&namespace), &namespace).await;
    }

    #[tokio::test]
    async fn the_same_name_is_the_same_broker() {
        let name = namespace();
        let first = bus(&memory_url(&name)).await;
        let second = bus(&memory_url(&name)).await;
        let other = bus(&memory_url(&namespace())).await;
        let sent = events(2);
        first.publisher.publish(&sent).await.expect("publish");
        let mut stream = subscribe(&second, "shared").await;
        assert_eq!(receive_envelopes(&mut stream, 2).await, sent);
        let mut elsewhere = subscribe(&other, "shared").await;
        assert_quiet(&mut elsewhere, Duration::from_millis(100)).await;
    }
}

mod nats {
    use super::*;

    async fn delete_stream(namespace: &str) {
        let url = nats_url(namespace);
        let address = url
            .trim_start_matches("nats://")
            .split('?')
            .next()
            .expect("address")
            .to_owned();
        if let Ok(client) = async_nats::connect(address).await {
            let jetstream = async_nats::jetstream::new(client);
            let _ = jetstream
                .delete_stream(mpos_bus::stream_name(Some(namespace), SERVICE))
                .await;
        }
    }

    #[tokio::test]
    async fn publish_then_receive_in_order() {
        let namespace = namespace();
        super::publish_then_receive_in_order(&nats_url(&namespace)).await;
        delete_stream(&namespace).await;
    }

    #[tokio::test]
    async fn republish_is_deduplicated() {
        let namespace = namespace();
        super::republish_is_deduplicated(&nats_url(&namespace)).await;
        delete_stream(&namespace).await;
    }

    #[tokio::test]
    async fn durable_resume() {
        let namespace = namespace();
        super::durable_resume(&nats_url(&namespace)).await;
        delete_stream(&namespace).await;
    }

    #[tokio::test]
    async fn filters() {
        let namespace = namespace();
        super::filters(&nats_url(&namespace)).await;
        delete_stream(&namespace).await;
    }

    #[tokio::test]
    async fn follow() {
        let namespace = namespace();
        super::follow(&nats_url(&namespace)).await;
        delete_stream(&namespace).await;
    }

    #[tokio::test]
    async fn following_a_stream_that_does_not_exist_is_unavailable() {
        let bus = bus(&nats_url(&namespace())).await;
        let error = bus
            .subscriber
            .follow(FollowOptions {
                service: SERVICE.to_owned(),
                ..FollowOptions::default()
            })
            .await
            .expect_err("no stream yet");
        assert_eq!(error.code(), ErrorCode::Unavailable, "{error}");
    }

    #[tokio::test]
    async fn request_reply() {
        let namespace = namespace();
        super::request_reply(&nats_url(&namespace), &namespace).await;
    }

    /// Two deployments on one NATS server, each in its namespace, serve the same subject in
    /// the same queue group: each one's requests reach only its own servers.
    #[tokio::test]
    async fn request_subjects_live_in_the_namespace() {
        struct Named(String);
        #[async_trait::async_trait]
        impl RequestHandler for Named {
            async fn handle(&self, _: Message) -> Result<Message, ServiceError> {
                Ok(Message::new(self.0.clone()))
            }
        }
        let names = [namespace(), namespace()];
        let mut buses = Vec::new();
        let mut handles = Vec::new();
        for name in &names {
            let bus = bus(&nats_url(name)).await;
            let requests = bus.requests.clone().expect("request-reply");
            handles.push(
                requests
                    .serve("mpos.test.v1.who", "test", Arc::new(Named(name.clone())))
                    .await
                    .expect("serve"),
            );
            buses.push(requests);
        }
        for _ in 0..10 {
            for (requests, name) in buses.iter().zip(&names) {
                let reply = requests
                    .request(
                        "mpos.test.v1.who",
                        Message::new("?"),
                        Duration::from_secs(2),
                    )
                    .await
                    .expect("reply");
                assert_eq!(reply.payload, name.as_bytes());
            }
        }
        drop(handles);
    }

    #[tokio::test]
    async fn a_deleted_stream_is_recreated_on_publish() {
        let namespace = namespace();
        let bus = bus(&nats_url(&namespace)).await;
        bus.publisher.publish(&events(1)).await.expect("publish");
        delete_stream(&namespace).await;
        let sent = events(2);
        bus.publisher.publish(&sent).await.expect("publish again");
        let mut stream = subscribe(&bus, "after-delete").await;
        assert_eq!(receive_envelopes(&mut stream, 2).await, sent);
        delete_stream(&namespace).await;
    }

    #[tokio::test]
    async fn unreachable_is_unavailable() {
        assert_unavailable_quickly("nats://127.0.0.1:1").await;
    }
}

mod kafka {
    use std::collections::HashSet;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message as _};

    use super::*;

    #[tokio::test]
    async fn publish_then_receive_in_order() {
        super::publish_then_receive_in_order(&kafka_url(&namespace())).await;
    }

    #[tokio::test]
    async fn durable_resume() {
        super::durable_resume(&kafka_url(&namespace())).await;
    }

    #[tokio::test]
    async fn filters() {
        super::filters(&kafka_url(&namespace())).await;
    }

    #[tokio::test]
    async fn follow() {
        super::follow(&kafka_url(&namespace())).await;
    }

    #[tokio::test]
    async fn has_no_request_reply() {
        let bus = bus(&kafka_url(&namespace())).await;
        assert!(bus.requests.is_none());
    }

    /// Kafka does not deduplicate re-published events; every record carries the event id in
    /// `ce_id`, by which consumers deduplicate.
    #[tokio::test]
    async fn republished_events_carry_their_id_for_consumer_dedup() {
        let namespace = namespace();
        let bus = bus(&kafka_url(&namespace)).await;
        let sent = events(3);
        bus.publisher.publish(&sent).await.expect("publish");
        bus.publisher.publish(&sent).await.expect("publish again");
        let mut stream = subscribe(&bus, "dedup").await;
        let received = receive_envelopes(&mut stream, 6).await;
        let mut seen = HashSet::new();
        let deduplicated: Vec<EventEnvelope> = received
            .into_iter()
            .filter(|event| seen.insert(event.event_id.clone()))
            .collect();
        assert_eq!(deduplicated, sent);

        // The raw records: bare event as value, aggregate id as key, CloudEvents headers.
        let bootstrap = kafka_url(&namespace)
            .trim_start_matches("kafka://")
            .split('?')
            .next()
            .expect("bootstrap")
            .to_owned();
        let topic = mpos_bus::kafka_topic(Some(&namespace), SERVICE);
        let first = sent[0].clone();
        let record = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", format!("{namespace}.raw"))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()
                .expect("consumer");
            consumer.subscribe(&[topic.as_str()]).expect("subscribe");
            let deadline = Instant::now() + RECEIVE_TIMEOUT;
            while Instant::now() < deadline {
                if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                    return message.expect("record").detach();
                }
            }
            panic!("no raw record");
        })
        .await
        .expect("raw consumer");
        assert_eq!(record.key(), Some(first.aggregate_id.as_bytes()));
        assert_eq!(record.payload(), Some(first.payload.as_slice()));
        let headers = record.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|header| header.key == name)
                .and_then(|header| header.value)
                .map(|value| String::from_utf8_lossy(value).into_owned())
        };
        assert_eq!(header("ce_id").as_deref(), Some(first.event_id.as_str()));
        assert_eq!(header("ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(
            header("ce_type").as_deref(),
            Some(first.event_type.as_str())
        );
        assert_eq!(
            header("ce_source").as_deref(),
            Some("/mpos/terminal-management")
        );
        assert_eq!(
            header("ce_subject"),
            Some(format!("{}/{}", first.aggregate_type, first.aggregate_id))
        );
        assert_eq!(
            header("ce_time").as_deref(),
            Some("2023-11-14T22:13:20.000000Z")
        );
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/protobuf")
        );
        assert_eq!(
            header("traceparent").as_deref(),
            Some(first.traceparent.as_str())
        );
        assert_eq!(header("ce_tenantid").as_deref(), Some("acme"));
    }

    #[tokio::test]
    async fn unreachable_is_unavailable() {
        assert_unavailable_quickly("kafka://127.0.0.1:1").await;
    }
}

#[tokio::test]
async fn bad_urls_are_invalid() {
    for url in [
        "amqp://localhost:5672",
        "nats:/x",
        "kafka://no-port",
        "memory",
    ] {
        match connect(url).await {
            Err(error @ BusError::InvalidUrl(_)) => {
                assert_eq!(error.code(), ErrorCode::BadRequest);
                assert!(error.to_string().contains("nats://"), "{error}");
            }
            other => panic!("{url}: expected invalid url, got {other:?}"),
        }
    }
}
