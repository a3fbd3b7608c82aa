//! Outbox publish lag: a paced writer appends to the store, `OutboxRelay::run` publishes, a
//! subscriber measures `receive time − envelope.occurred_at`.
//!
//! Floor, measured in the same run on the same broker: the same envelopes (built by
//! `StoredEvent::to_envelope` and the same codec) published straight to the bus at the same
//! pace — `publish` of the tick's envelopes, with `occurred_at` = just before the publish —
//! and received by the same kind of subscriber: the bare publish → receive round trip, without
//! the store and the relay.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use mpos_bus::{BusError, Delivery, EventEnvelope, EventPublisher, SubscribeOptions};
use mpos_es::{OutboxRelay, StoredEvent, now_micros};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::Urls;
use crate::backend::{self, Backend};
use crate::data::{self, Generator};
use crate::stats::{median, percentile, rate};

const WARMUP_TENANT: &str = "warmup";
const WARMUP_EVENTS: usize = 10;
/// How long the subscriber may take to join (a new Kafka consumer group takes seconds).
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after the writer stopped the last events may take to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The relay's poll interval (it also wakes on every append of this process).
const RELAY_POLL: Duration = Duration::from_secs(1);

/// A broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusKind {
    /// NATS JetStream.
    Nats,
    /// Kafka API (tansu locally).
    Kafka,
}

impl std::fmt::Display for BusKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nats => "NATS",
            Self::Kafka => "Kafka",
        })
    }
}

/// Sizes of the outbox benchmark.
#[derive(Clone, Debug)]
pub struct OutboxConfig {
    /// Events per second the writer appends.
    pub rate: usize,
    /// The writer's tick: `rate × tick` events are appended per tick, one per append.
    pub tick: Duration,
    /// How long the writer runs per repetition.
    pub duration: Duration,
    /// Repetitions; the medians are over these.
    pub repetitions: usize,
    /// The store series: which backend the relay reads from, and events per append.
    pub series: Vec<(Backend, usize)>,
}

impl OutboxConfig {
    /// 2,000 events/s (20 every 10 ms) for 10 s, 3 repetitions: SQLite one event per append,
    /// SQLite and PostgreSQL ten events per append.
    pub fn full() -> Self {
        Self {
            rate: 2_000,
            tick: Duration::from_millis(10),
            duration: Duration::from_secs(10),
            repetitions: 3,
            series: vec![
                (Backend::Sqlite, 1),
                (Backend::Sqlite, 10),
                (Backend::Postgres, 10),
            ],
        }
    }

    /// 2,000 events/s for 2 s, once, SQLite, one event per append.
    pub fn quick() -> Self {
        Self {
            duration: Duration::from_secs(2),
            repetitions: 1,
            series: vec![(Backend::Sqlite, 1)],
            ..Self::full()
        }
    }

    /// Events per tick.
    pub fn per_tick(&self) -> usize {
        let per_tick = self.rate as f64 * self.tick.as_secs_f64();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let per_tick = per_tick.round().max(1.0) as usize;
        per_tick
    }

    fn ticks(&self) -> u32 {
        let ticks = self.duration.as_secs_f64() / self.tick.as_secs_f64();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ticks = ticks.round().max(1.0) as u32;
        ticks
    }
}

/// The lags of one run.
#[derive(Clone, Debug)]
pub struct LagRun {
    /// Events written (measured ones; warm-up excluded).
    pub sent: usize,
    /// Distinct events received.
    pub received: usize,
    /// Achieved write rate, events/s.
    pub write_rate: f64,
    /// Median lag, µs.
    pub p50_us: u64,
    /// 99th percentile lag, µs.
    pub p99_us: u64,
    /// Largest lag, µs.
    pub max_us: u64,
    /// Publish calls (relay passes that found events; one per tick for the floor).
    pub publishes: usize,
}

impl LagRun {
    fn new(sent: usize, write_rate: f64, mut lags: Vec<u64>, publishes: usize) -> Self {
        lags.sort_unstable();
        Self {
            publishes,
            sent,
            received: lags.len(),
            write_rate,
            p50_us: percentile(&lags, 50.0),
            p99_us: percentile(&lags, 99.0),
            max_us: lags.last().copied().unwrap_or(0),
        }
    }
}

/// Medians over the runs of one series, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct LagSummary {
    /// Median over runs of p50, ms.
    pub p50_ms: f64,
    /// Median over runs of p99, ms.
    pub p99_ms: f64,
    /// Largest max over runs, ms.
    pub max_ms: f64,
    /// Median achieved write rate, events/s.
    pub write_rate: f64,
    /// Events written over all runs.
    pub sent: usize,
    /// Events received over all runs.
    pub received: usize,
    /// Publish calls over all runs.
    pub publishes: usize,
}

/// Summarises runs.
pub fn summarize(runs: &[LagRun]) -> LagSummary {
    #[allow(clippy::cast_precision_loss)]
    let ms = |us: u64| us as f64 / 1_000.0;
    LagSummary {
        p50_ms: median(&runs.iter().map(|run| ms(run.p50_us)).collect::<Vec<_>>()),
        p99_ms: median(&runs.iter().map(|run| ms(run.p99_us)).collect::<Vec<_>>()),
        max_ms: runs.iter().map(|run| ms(run.max_us)).fold(0.0, f64::max),
        write_rate: median(&runs.iter().map(|run| run.write_rate).collect::<Vec<_>>()),
        sent: runs.iter().map(|run| run.sent).sum(),
        received: runs.iter().map(|run| run.received).sum(),
        publishes: runs.iter().map(|run| run.publishes).sum(),
    }
}

/// The runs of one broker.
#[derive(Clone, Debug)]
pub struct OutboxResult {
    /// The broker.
    pub bus: BusKind,
    /// Store → relay → broker → subscriber, per series (backend, events per append).
    pub store: Vec<(Backend, usize, Vec<LagRun>)>,
    /// Bare publish → receive.
    pub floor: Vec<LagRun>,
}

/// Runs the outbox benchmark on each broker.
pub async fn run(
    config: &OutboxConfig,
    buses: &[BusKind],
    urls: &Urls,
) -> anyhow::Result<Vec<OutboxResult>> {
    let mut results = Vec::new();
    for &bus in buses {
        let base = match bus {
            BusKind::Nats => &urls.nats,
            BusKind::Kafka => &urls.kafka,
        };
        let namespace = crate::unique("bench");
        let mut services = Vec::new();
        let outcome = run_bus(config, bus, base, &namespace, urls, &mut services).await;
        let cleaned = cleanup(bus, base, &namespace, &services).await;
        results.push(outcome?);
        if let Err(error) = cleaned {
            eprintln!("outbox: {bus}: cleanup of namespace {namespace} failed: {error:#}");
        }
    }
    Ok(results)
}

async fn run_bus(
    config: &OutboxConfig,
    kind: BusKind,
    base: &str,
    namespace: &str,
    urls: &Urls,
    services: &mut Vec<String>,
) -> anyhow::Result<OutboxResult> {
    let bus = mpos_bus::connect(&crate::with_param(base, "namespace", namespace))
        .await
        .with_context(|| format!("connecting to {base} (is it running?)"))?;
    let mut result = OutboxResult {
        bus: kind,
        store: config
            .series
            .iter()
            .map(|&(backend, batch)| (backend, batch, Vec::new()))
            .collect(),
        floor: Vec::new(),
    };
    for repetition in 0..config.repetitions {
        // Rotate the order so that no series always runs first.
        let series = config.series.len() + 1;
        for slot in 0..series {
            let index = (slot + repetition) % series;
            if index == config.series.len() {
                let service = format!("bench-floor-{repetition}");
                services.push(service.clone());
                eprintln!(
                    "outbox: {kind}: bare publish, repetition {} …",
                    repetition + 1
                );
                let run = floor_run(config, kind, &bus, &service).await?;
                result.floor.push(run);
            } else {
                let (backend, batch) = config.series[index];
                let service = format!(
                    "bench-{}-b{batch}-{repetition}",
                    backend.to_string().to_ascii_lowercase()
                );
                services.push(service.clone());
                eprintln!(
                    "outbox: {kind}: {backend} store + relay, {batch} per append, repetition {} …",
                    repetition + 1
                );
                let run = store_run(config, kind, &bus, (backend, batch), &service, urls).await?;
                result.store[index].2.push(run);
            }
        }
    }
    Ok(result)
}

async fn store_run(
    config: &OutboxConfig,
    kind: BusKind,
    bus: &mpos_bus::Bus,
    (backend, batch): (Backend, usize),
    service: &str,
    urls: &Urls,
) -> anyhow::Result<LagRun> {
    let opened = backend::open(backend, &urls.postgres, service).await?;
    let outcome: anyhow::Result<LagRun> = async {
        let collector = Collector::start(kind, bus, service).await?;
        let publisher = Arc::new(CountingPublisher::new(bus.publisher.clone()));
        let relay = OutboxRelay::new(
            opened.store.clone(),
            publisher.clone(),
            data::codec(),
            &kind.to_string().to_ascii_lowercase(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let relay = tokio::spawn(relay.run(RELAY_POLL, async move {
            let _ = stopped.await;
        }));

        let mut warmup = Generator::new("warmup", WARMUP_EVENTS);
        for _ in 0..WARMUP_EVENTS {
            opened
                .store
                .append(warmup.batch(WARMUP_TENANT, 1), None)
                .await?;
        }
        collector.wait_warm().await?;

        let mut events = Generator::new("tenant", 100);
        let per_tick = config.per_tick();
        let start = Instant::now();
        let mut sent = 0;
        for tick in 0..config.ticks() {
            tokio::time::sleep_until(start + config.tick * tick).await;
            let mut remaining = per_tick;
            while remaining > 0 {
                let count = batch.clamp(1, remaining);
                opened
                    .store
                    .append(events.batch("acme", count), None)
                    .await?;
                sent += count;
                remaining -= count;
            }
        }
        let write_rate = rate(sent, start.elapsed());
        let lags = collector.finish(sent).await?;
        let _ = stop.send(());
        relay.await.context("relay task")?;
        Ok(LagRun::new(sent, write_rate, lags, publisher.calls()))
    }
    .await;
    let closed = opened.close().await;
    let run = outcome?;
    closed?;
    Ok(run)
}

async fn floor_run(
    config: &OutboxConfig,
    kind: BusKind,
    bus: &mpos_bus::Bus,
    service: &str,
) -> anyhow::Result<LagRun> {
    let codec = data::codec();
    let collector = Collector::start(kind, bus, service).await?;
    let mut position = 0_u64;
    let mut envelopes = |generator: &mut Generator, tenant: &str, count: usize| {
        (0..count)
            .map(|_| {
                position += 1;
                let stored = StoredEvent {
                    global_position: position,
                    event: generator.batch(tenant, 1).remove(0),
                    previous_hash: [0xab; 32],
                    hash: [0xcd; 32],
                };
                Ok(stored.to_envelope(service, codec.encode(&stored)?))
            })
            .collect::<Result<Vec<EventEnvelope>, mpos_es::StoreError>>()
    };

    let mut warmup = Generator::new("warmup", WARMUP_EVENTS);
    bus.publisher
        .publish(&envelopes(&mut warmup, WARMUP_TENANT, WARMUP_EVENTS)?)
        .await?;
    collector.wait_warm().await?;

    let mut events = Generator::new("tenant", 100);
    let per_tick = config.per_tick();
    let start = Instant::now();
    let mut sent = 0;
    for tick in 0..config.ticks() {
        tokio::time::sleep_until(start + config.tick * tick).await;
        let batch = envelopes(&mut events, "acme", per_tick)?;
        bus.publisher.publish(&batch).await?;
        sent += batch.len();
    }
    let write_rate = rate(sent, start.elapsed());
    let lags = collector.finish(sent).await?;
    Ok(LagRun::new(
        sent,
        write_rate,
        lags,
        usize::try_from(config.ticks())? + 1,
    ))
}

/// Counts the relay's publish calls: each is one relay pass that found events, and each such
/// pass also commits the relay's checkpoint.
#[derive(Debug)]
struct CountingPublisher {
    inner: Arc<dyn EventPublisher>,
    calls: AtomicUsize,
}

impl CountingPublisher {
    fn new(inner: Arc<dyn EventPublisher>) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl EventPublisher for CountingPublisher {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.publish(events).await
    }
    async fn check(&self) -> Result<(), BusError> {
        self.inner.check().await
    }
}

/// A subscriber task recording the lag of every measured event. Acknowledgements run in a
/// separate task so that they never delay the next receive: on NATS every delivery is acked
/// (64 concurrently), on Kafka the newest delivery of each burst (acks are cumulative).
struct Collector {
    warm: Arc<AtomicUsize>,
    expected: watch::Sender<Option<usize>>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<u64>>>,
}

impl Collector {
    async fn start(kind: BusKind, bus: &mpos_bus::Bus, service: &str) -> anyhow::Result<Self> {
        let mut stream = bus
            .subscriber
            .subscribe(SubscribeOptions::new(service, format!("lag-{service}")))
            .await?;
        let warm = Arc::new(AtomicUsize::new(0));
        let (expected, mut expected_rx) = watch::channel(None::<usize>);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Delivery>();
        let acker = tokio::spawn(ack_loop(kind, ack_rx));
        let warm_count = warm.clone();
        let task = tokio::spawn(async move {
            let mut lags = Vec::new();
            let mut seen = HashSet::new();
            let mut deadline: Option<Instant> = None;
            loop {
                if let Some(expected) = *expected_rx.borrow_and_update() {
                    if lags.len() >= expected {
                        break;
                    }
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
                    if Instant::now() >= deadline {
                        eprintln!(
                            "outbox: only {} of {expected} events arrived within {DRAIN_TIMEOUT:?}",
                            lags.len()
                        );
                        break;
                    }
                }
                let delivery =
                    match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                        Err(_) => continue,
                        Ok(None) => break,
                        Ok(Some(delivery)) => delivery?,
                    };
                let received = now_micros();
                let envelope = &delivery.envelope;
                if envelope.tenant_id == WARMUP_TENANT {
                    warm_count.fetch_add(1, Ordering::SeqCst);
                } else if seen.insert(envelope.event_id.clone()) {
                    let occurred = envelope
                        .occurred_at
                        .as_ref()
                        .map_or(received, mpos_proto::timestamp_to_micros);
                    lags.push(u64::try_from(received - occurred).unwrap_or(0));
                }
                let _ = ack_tx.send(delivery);
            }
            drop(ack_tx);
            drop(stream);
            let _ = acker.await;
            Ok(lags)
        });
        Ok(Self {
            warm,
            expected,
            task,
        })
    }

    async fn wait_warm(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + WARMUP_TIMEOUT;
        while self.warm.load(Ordering::SeqCst) < WARMUP_EVENTS {
            anyhow::ensure!(
                Instant::now() < deadline && !self.task.is_finished(),
                "the subscriber did not receive the warm-up events within {WARMUP_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    async fn finish(self, sent: usize) -> anyhow::Result<Vec<u64>> {
        let _ = self.expected.send(Some(sent));
        self.task.await.context("subscriber task")?
    }
}

async fn ack_loop(kind: BusKind, mut deliveries: mpsc::UnboundedReceiver<Delivery>) {
    while let Some(first) = deliveries.recv().await {
        let mut burst = vec![first];
        while let Ok(more) = deliveries.try_recv() {
            burst.push(more);
        }
        match kind {
            BusKind::Kafka => {
                if let Some(last) = burst.pop() {
                    let _ = last.ack().await;
                }
            }
            BusKind::Nats => {
                futures::stream::iter(burst)
                    .for_each_concurrent(64, |delivery| async move {
                        let _ = delivery.ack().await;
                    })
                    .await;
            }
        }
    }
}

/// Deletes the streams (NATS) or topics and consumer groups (Kafka) of the namespace.
async fn cleanup(
    kind: BusKind,
    base: &str,
    namespace: &str,
    services: &[String],
) -> anyhow::Result<()> {
    let hosts = crate::hosts_of(base);
    match kind {
        BusKind::Nats => {
            let addresses: Vec<String> = hosts
                .split(',')
                .map(|host| format!("nats://{host}"))
                .collect();
            let client = async_nats::connect(addresses).await?;
            let jetstream = async_nats::jetstream::new(client);
            for service in services {
                let stream = mpos_bus::stream_name(Some(namespace), service);
                if let Err(error) = jetstream.delete_stream(&stream).await {
                    eprintln!("outbox: cannot delete NATS stream {stream}: {error}");
                }
            }
        }
        BusKind::Kafka => {
            use rdkafka::admin::{AdminClient, AdminOptions};
            use rdkafka::client::DefaultClientContext;
            let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &hosts)
                .create()?;
            let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
            let topics: Vec<String> = services
                .iter()
                .map(|service| mpos_bus::kafka_topic(Some(namespace), service))
                .collect();
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            for result in admin.delete_topics(&names, &options).await? {
                if let Err((topic, code)) = result {
                    eprintln!("outbox: cannot delete Kafka topic {topic}: {code}");
                }
            }
            let groups: Vec<String> = services
                .iter()
                .map(|service| format!("{namespace}.lag-{service}"))
                .collect();
            let names: Vec<&str> = groups.iter().map(String::as_str).collect();
            // Not every broker supports DeleteGroups (tansu may not): best effort.
            let _ = admin.delete_groups(&names, &options).await;
        }
    }
    Ok(())
}
