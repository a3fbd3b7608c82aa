//! The outbox relay publishes every committed event at least once — also when the process is
//! killed between commit and publish, or between publish and checkpoint.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mpos_bus::{BusError, EventEnvelope, EventPublisher, SubscribeOptions};
use mpos_es::{EventCodec, EventStore, OutboxRelay, ProtoEvent};
use mpos_proto::terminal_management as pb;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "@type")]
enum TestEvent {
    #[serde(rename = "mpos.terminal_management.v1.TenantCreated")]
    Created(pb::TenantCreated),
}

impl ProtoEvent for TestEvent {
    fn encode_payload(&self) -> Vec<u8> {
        match self {
            Self::Created(message) => prost::Message::encode_to_vec(message),
        }
    }
    fn decode_payload(event_type: &str, payload: &[u8]) -> Result<Self, String> {
        match event_type {
            "mpos.terminal_management.v1.TenantCreated" => {
                <pb::TenantCreated as prost::Message>::decode(payload)
                    .map(Self::Created)
                    .map_err(|error| error.to_string())
            }
            other => Err(format!("unknown event type {other:?}")),
        }
    }
    fn type_names() -> Vec<(&'static str, String)> {
        vec![(
            "mpos.terminal_management.v1.TenantCreated",
            <pb::TenantCreated as prost::Name>::full_name(),
        )]
    }
}

const SERVICE: &str = "outbox-test";
const CHILD_ENV: &str = "MPOS_TEST_OUTBOX_CHILD";

fn codec() -> Arc<EventCodec> {
    Arc::new(EventCodec::new().register::<TestEvent>("counter"))
}

async fn append_created(store: &EventStore, count: u64) {
    for index in 1..=count {
        let created = TestEvent::Created(pb::TenantCreated {
            tenant_id: format!("t{index}"),
            name: format!("T {index}"),
        });
        let payload = serde_json::to_value(&created).expect("json");
        let mut event = common::new_event(&format!("a{index}"), 1, payload);
        event.event_type = "mpos.terminal_management.v1.TenantCreated".into();
        store.append(vec![event], None).await.expect("append");
    }
}

fn nats_url(namespace: &str) -> String {
    let base =
        std::env::var("MPOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    format!("{base}?namespace={namespace}")
}

#[tokio::test]
async fn the_relay_publishes_every_event_once_and_checkpoints() {
    for (backend, test) in common::each_backend(SERVICE).await {
        let bus = mpos_bus::connect(&format!("memory://{}", common::unique_name("relay")))
            .await
            .expect("bus");
        append_created(&test.store, 25).await;
        let relay = OutboxRelay::new(test.store.clone(), bus.publisher.clone(), codec(), "memory")
            .with_batch(10);
        assert_eq!(
            relay.publish_pending().await.expect("relay"),
            25,
            "{backend}"
        );
        assert_eq!(
            relay.publish_pending().await.expect("relay"),
            0,
            "{backend}: nothing twice"
        );
        assert_eq!(
            test.store
                .consumer_position("outbox:memory")
                .await
                .expect("position"),
            25
        );

        let mut stream = bus
            .subscriber
            .subscribe(SubscribeOptions::new(SERVICE, "reader"))
            .await
            .expect("subscribe");
        for position in 1..=25_u64 {
            let delivery = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("in time")
                .expect("open")
                .expect("delivery");
            let envelope = delivery.envelope.clone();
            assert_eq!(envelope.global_position, position, "{backend}");
            assert_eq!(envelope.service, SERVICE);
            assert_eq!(
                envelope.event_type,
                "mpos.terminal_management.v1.TenantCreated"
            );
            let payload: pb::TenantCreated =
                prost::Message::decode(envelope.payload.as_slice()).expect("protobuf");
            assert_eq!(payload.tenant_id, format!("t{position}"));
            assert_eq!(envelope.hash.len(), 32);
            // Back from the bus into the event the log holds: the same payload, hashes,
            // position and metadata.
            let stored = &test.store.read_after(position - 1, 1).await.expect("read")[0];
            let back = codec().stored_from_envelope(&envelope).expect("decode");
            assert_eq!(back.global_position, stored.global_position);
            assert_eq!(back.previous_hash, stored.previous_hash);
            assert_eq!(back.hash, stored.hash);
            let (back_metadata, stored_metadata) = (back.metadata(), stored.metadata());
            assert_eq!(back_metadata.actor, stored_metadata.actor);
            assert_eq!(back_metadata.correlation_id, stored_metadata.correlation_id);
            assert_eq!(back_metadata.causation_id, stored_metadata.causation_id);
            assert_eq!(back_metadata.traceparent, stored_metadata.traceparent);
            // The same payload (PostgreSQL's jsonb keeps its own key order).
            let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).expect("json");
            assert_eq!(json(&back.event.payload), json(&stored.event.payload));
            let mut rest = back.event.clone();
            rest.metadata.clone_from(&stored.event.metadata);
            rest.payload.clone_from(&stored.event.payload);
            assert_eq!(&rest, &stored.event, "{backend}");
            delivery.ack().await.expect("ack");
        }
    }
}

/// A bus payload that is not what its envelope says is refused, not guessed.
#[test]
fn an_envelope_that_does_not_decode_is_refused() {
    let envelope = EventEnvelope {
        aggregate_type: "counter".into(),
        event_type: "mpos.terminal_management.v1.TenantCreated".into(),
        payload: vec![0xff; 7],
        previous_hash: vec![0; 32],
        hash: vec![0; 32],
        ..EventEnvelope::default()
    };
    assert!(codec().stored_from_envelope(&envelope).is_err());
    let unknown = EventEnvelope {
        event_type: "mpos.other.v1.Nothing".into(),
        payload: Vec::new(),
        ..envelope.clone()
    };
    assert!(codec().stored_from_envelope(&unknown).is_err());
    let other_aggregate = EventEnvelope {
        aggregate_type: "stranger".into(),
        ..envelope.clone()
    };
    assert!(codec().stored_from_envelope(&other_aggregate).is_err());
    let short_hash = EventEnvelope {
        payload: Vec::new(),
        hash: vec![0; 31],
        ..envelope
    };
    assert!(codec().stored_from_envelope(&short_hash).is_err());
}

#[tokio::test]
async fn an_unregistered_aggregate_type_stops_the_relay_without_moving_the_checkpoint() {
    let test = common::sqlite(SERVICE).await;
    let bus = mpos_bus::connect(&format!("memory://{}", common::unique_name("relay")))
        .await
        .expect("bus");
    append_created(&test.store, 2).await;
    let relay = OutboxRelay::new(
        test.store.clone(),
        bus.publisher.clone(),
        Arc::new(EventCodec::new()),
        "memory",
    );
    assert!(relay.publish_pending().await.is_err());
    assert_eq!(
        test.store
            .consumer_position("outbox:memory")
            .await
            .expect("position"),
        0
    );
}

/// Forwards to a real publisher and kills the process right after the first batch was
/// acknowledged, before the relay can store its checkpoint.
#[derive(Debug)]
struct DieAfterFirstPublish {
    inner: Arc<dyn EventPublisher>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl EventPublisher for DieAfterFirstPublish {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        self.inner.publish(events).await?;
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            std::process::abort();
        }
        Ok(())
    }
    async fn check(&self) -> Result<(), BusError> {
        self.inner.check().await
    }
}

/// The child half of the crash test: appends 50 events (committed), relays, and is killed
/// after the first 20 are on NATS. Run only by its parent, in a separate process.
#[tokio::test]
#[ignore = "run in a child process by outbox_survives_a_killed_process"]
async fn outbox_crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (store_url, namespace) = spec.split_once('|').expect("spec");
    let store = EventStore::connect(store_url, SERVICE)
        .await
        .expect("store");
    append_created(&store, 50).await;
    let bus = mpos_bus::connect(&nats_url(namespace)).await.expect("nats");
    let publisher = Arc::new(DieAfterFirstPublish {
        inner: bus.publisher.clone(),
        calls: AtomicUsize::new(0),
    });
    let relay = OutboxRelay::new(store, publisher, codec(), "nats").with_batch(20);
    let _ = relay.publish_pending().await;
    unreachable!("the publisher kills the process");
}

#[tokio::test]
async fn outbox_survives_a_killed_process() {
    let test = common::sqlite(SERVICE).await;
    let namespace = common::unique_name("crash");
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "outbox_crash_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{}|{namespace}", test.url))
        .status()
        .expect("spawn child");
    assert!(
        !status.success(),
        "the child must have been killed, got {status:?}"
    );

    // Everything was committed; 20 were published; the checkpoint never moved.
    assert_eq!(test.store.read_after(0, 100).await.expect("read").len(), 50);
    assert_eq!(
        test.store
            .consumer_position("outbox:nats")
            .await
            .expect("position"),
        0
    );

    // A restarted relay publishes from the checkpoint: 20 again (de-duplicated by NATS on the
    // event id) and the 30 that were never published.
    let bus = mpos_bus::connect(&nats_url(&namespace))
        .await
        .expect("nats");
    let relay =
        OutboxRelay::new(test.store.clone(), bus.publisher.clone(), codec(), "nats").with_batch(20);
    assert_eq!(relay.publish_pending().await.expect("relay"), 50);
    assert_eq!(
        test.store
            .consumer_position("outbox:nats")
            .await
            .expect("position"),
        50
    );

    let mut stream = bus
        .subscriber
        .subscribe(SubscribeOptions::new(SERVICE, "auditor"))
        .await
        .expect("subscribe");
    let mut ids = Vec::new();
    while let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_secs(3), stream.next()).await
    {
        let delivery = delivery.expect("delivery");
        ids.push(delivery.envelope.event_id.clone());
        delivery.ack().await.expect("ack");
    }
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 50, "every committed event reached NATS");
    assert_eq!(
        ids.len(),
        50,
        "each exactly once on the stream (Nats-Msg-Id de-duplication)"
    );
    let expected: HashSet<String> = test
        .store
        .read_after(0, 100)
        .await
        .expect("read")
        .into_iter()
        .map(|e| e.event.event_id)
        .collect();
    assert_eq!(distinct, expected.iter().collect());
}

/// The background relay wakes on appends (its poll interval is far longer than the test) and
/// stores its checkpoint at shutdown.
#[tokio::test]
async fn a_running_relay_wakes_on_appends_and_stores_its_checkpoint_at_shutdown() {
    let test = common::sqlite(SERVICE).await;
    let bus = mpos_bus::connect(&format!("memory://{}", common::unique_name("relay")))
        .await
        .expect("bus");
    let relay = OutboxRelay::new(test.store.clone(), bus.publisher.clone(), codec(), "memory");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(Duration::from_secs(60), async move {
        let _ = stopped.await;
    }));
    let mut stream = bus
        .subscriber
        .subscribe(SubscribeOptions::new(SERVICE, "reader"))
        .await
        .expect("subscribe");
    append_created(&test.store, 30).await;
    for position in 1..=30_u64 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("published without waiting for the poll")
            .expect("open")
            .expect("delivery");
        assert_eq!(delivery.envelope.global_position, position);
        delivery.ack().await.expect("ack");
    }
    stop.send(()).expect("stop");
    task.await.expect("relay task");
    assert_eq!(
        test.store
            .consumer_position("outbox:memory")
            .await
            .expect("position"),
        30
    );
}
