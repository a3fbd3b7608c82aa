//! Replay rate: `ProjectionRunner::rebuild` over a seeded log, against reading the same rows;
//! beside it, on the same log, a fresh copy of the read model replayed in memory
//! (`mpos_es::Replayed`, what `mposctl replay --read-model` does) and the verification of the
//! whole log (`mpos_es::verify`, what `mposctl audit verify` does: every hash, link,
//! sequence and the head).
//!
//! Floors, measured in the same run on the same database:
//! * `read_after`: `EventStore::read_after` in pages of 5,000 (the page size the projection
//!   runner uses), decoding every row into a `StoredEvent` — the rebuild's own read path;
//! * raw `SELECT`: the same query through a raw sqlx `Any` pool, rows fetched but not decoded;
//! * `verify`'s own read: `mpos_es::EventRange` over the whole log (on PostgreSQL one binary
//!   `COPY`), every event decoded, nothing checked;
//! * raw `COPY` (PostgreSQL): the same `COPY` on a native connection, rows framed but not
//!   decoded — what the server sends at most on one connection.

use std::time::Instant;

use mpos_es::{Projection, ProjectionRunner, StoreError, StoredEvent};
use serde::{Deserialize, Serialize};
use sqlx::{Connection as _, Row};

use crate::Urls;
use crate::backend::{self, Backend, Opened};
use crate::data::{AGGREGATE_TYPE, BenchEvent, Generator};
use crate::stats::rate;

/// The page size of `ProjectionRunner::catch_up` (crates/mpos-es/src/projection.rs).
const PAGE: u32 = 5_000;
/// Events per append while seeding.
const SEED_BATCH: usize = 1_000;

/// Sizes of the replay benchmark.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// Events in the log.
    pub events: usize,
    /// Aggregates (= documents of the read model) they are spread over.
    pub aggregates: usize,
    /// Repetitions; the medians are over these.
    pub repetitions: usize,
}

impl ReplayConfig {
    /// 100,000 events over 1,000 aggregates, 5 repetitions.
    pub fn full() -> Self {
        Self {
            events: 100_000,
            aggregates: 1_000,
            repetitions: 5,
        }
    }

    /// 10,000 events over 100 aggregates, 3 repetitions.
    pub fn quick() -> Self {
        Self {
            events: 10_000,
            aggregates: 100,
            repetitions: 3,
        }
    }
}

/// Rates of one backend (events/s), one value per repetition.
#[derive(Clone, Debug)]
pub struct ReplayResult {
    /// The backend.
    pub backend: Backend,
    /// Events in the log.
    pub events: usize,
    /// Aggregates.
    pub aggregates: usize,
    /// `ProjectionRunner::rebuild`.
    pub rebuild: Vec<f64>,
    /// A fresh copy in memory (`Replayed`), read in pages of 5,000.
    pub fresh_copy: Vec<f64>,
    /// `mpos_es::verify` of the whole log.
    pub verify: Vec<f64>,
    /// Floor: `EventStore::read_after` pages.
    pub read_after: Vec<f64>,
    /// Floor: raw `SELECT` pages, not decoded.
    pub raw_select: Vec<f64>,
    /// Floor of `verify`: its own read, `mpos_es::EventRange` over the whole log, every
    /// event decoded and handed over, nothing checked.
    pub read_range: Vec<f64>,
    /// PostgreSQL: the server's `COPY ... (FORMAT binary)` of the whole log on a native
    /// connection, rows framed but no value decoded (what the database sends at most on
    /// one connection). Empty on SQLite.
    pub raw_copy: Vec<f64>,
}

impl ReplayResult {
    /// Median of the per-repetition rebuild/read_after ratios.
    pub fn ratio(&self) -> f64 {
        crate::stats::median_ratio(&self.rebuild, &self.read_after)
    }
}

/// The latest name of every tenant: one document per aggregate.
#[derive(Debug)]
struct LatestNames;

#[derive(Debug, Default, Serialize, Deserialize)]
struct TenantView {
    name: String,
    renames: u64,
    version: u64,
}

impl Projection for LatestNames {
    type View = TenantView;
    fn name(&self) -> &'static str {
        "bench_tenants"
    }
    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        (event.event.aggregate_type == AGGREGATE_TYPE).then(|| event.event.aggregate_id.clone())
    }
    fn apply(&self, view: &mut TenantView, event: &StoredEvent) -> Result<(), StoreError> {
        let BenchEvent::Renamed(renamed) = serde_json::from_str(&event.event.payload)?;
        view.name = renamed.new_name;
        view.renames += 1;
        view.version = event.event.sequence;
        Ok(())
    }
}

/// Runs the replay benchmark on each backend.
pub async fn run(
    config: &ReplayConfig,
    backends: &[Backend],
    urls: &Urls,
) -> anyhow::Result<Vec<ReplayResult>> {
    let mut results = Vec::new();
    for &backend in backends {
        eprintln!(
            "replay: {backend}: seeding {} events over {} aggregates …",
            config.events, config.aggregates
        );
        let opened = backend::open(backend, &urls.postgres, "bench-replay").await?;
        let outcome = run_backend(config, backend, &opened).await;
        let closed = opened.close().await;
        results.push(outcome?);
        closed?;
    }
    Ok(results)
}

async fn run_backend(
    config: &ReplayConfig,
    backend: Backend,
    opened: &Opened,
) -> anyhow::Result<ReplayResult> {
    seed(config, opened).await?;
    eprintln!("replay: {backend}: rebuilding …");
    let runner = ProjectionRunner::new(opened.store.clone(), LatestNames);
    // Warm-up: one unmeasured pass of each (page cache, statement caches).
    runner.rebuild().await?;
    read_all(opened).await?;
    raw_select_all(opened).await?;

    let mut result = ReplayResult {
        backend,
        events: config.events,
        aggregates: config.aggregates,
        rebuild: Vec::new(),
        fresh_copy: Vec::new(),
        verify: Vec::new(),
        read_after: Vec::new(),
        raw_select: Vec::new(),
        read_range: Vec::new(),
        raw_copy: Vec::new(),
    };
    for _ in 0..config.repetitions {
        let start = Instant::now();
        let replayed = runner.rebuild().await?;
        result
            .rebuild
            .push(rate(usize::try_from(replayed)?, start.elapsed()));
        anyhow::ensure!(
            usize::try_from(replayed)? == config.events,
            "rebuild replayed {replayed} events, expected {}",
            config.events
        );

        let start = Instant::now();
        let copied = fresh_copy(opened).await?;
        result.fresh_copy.push(rate(copied, start.elapsed()));

        let start = Instant::now();
        let report = mpos_es::verify(&opened.store, &[]).await?;
        result.verify.push(rate(
            usize::try_from(report.events_checked)?,
            start.elapsed(),
        ));
        anyhow::ensure!(
            report.is_intact() && usize::try_from(report.events_checked)? == config.events,
            "verify: {report:?}"
        );

        let start = Instant::now();
        let read = read_all(opened).await?;
        result.read_after.push(rate(read, start.elapsed()));

        let start = Instant::now();
        let read = raw_select_all(opened).await?;
        result.raw_select.push(rate(read, start.elapsed()));

        let start = Instant::now();
        let read = read_range(opened).await?;
        result.read_range.push(rate(read, start.elapsed()));
        anyhow::ensure!(read == config.events, "the range read {read} events");

        if let Some(url) = opened.postgres_url() {
            let mut connection = sqlx::postgres::PgConnection::connect(&url).await?;
            let start = Instant::now();
            let read = raw_copy(&mut connection).await?;
            result.raw_copy.push(rate(read, start.elapsed()));
            anyhow::ensure!(read == config.events, "the raw COPY read {read} rows");
            connection.close().await?;
        }
    }
    let documents = opened
        .store
        .list_documents("bench_tenants", Some("acme"))
        .await?;
    anyhow::ensure!(
        documents.len() == config.aggregates.min(config.events),
        "the rebuilt read model has {} documents, expected {}",
        documents.len(),
        config.aggregates
    );
    Ok(result)
}

/// Appends `config.events` events over `config.aggregates` aggregates.
async fn seed(config: &ReplayConfig, opened: &Opened) -> anyhow::Result<()> {
    let mut generator = Generator::new("tenant", config.aggregates);
    let mut seeded = 0;
    while seeded < config.events {
        let count = SEED_BATCH.min(config.events - seeded);
        let events = (0..count)
            .flat_map(|_| generator.batch("acme", 1))
            .collect();
        opened.store.append(events, None).await?;
        seeded += count;
    }
    Ok(())
}

/// A fresh copy of the read model, replayed in memory from the log read in pages; the events
/// applied.
async fn fresh_copy(opened: &Opened) -> anyhow::Result<usize> {
    use mpos_es::ReplayedReadModel as _;
    let mut copy = mpos_es::Replayed::new(LatestNames);
    let read = read_pages(opened, |events| Ok(copy.apply(events)?)).await?;
    anyhow::ensure!(!copy.documents()?.is_empty(), "the fresh copy is empty");
    Ok(read)
}

/// The whole log through `EventRange`, as `verify` reads it; the events read.
async fn read_range(opened: &Opened) -> anyhow::Result<usize> {
    let mut range = mpos_es::EventRange::new(&opened.store, 1, u64::MAX);
    let mut read = 0;
    while let Some(batch) = range.next_batch().await? {
        read += batch.len();
    }
    Ok(read)
}

/// The whole log as the server's binary COPY, rows framed (counted) but not decoded.
async fn raw_copy(connection: &mut sqlx::postgres::PgConnection) -> anyhow::Result<usize> {
    use futures::StreamExt as _;
    let mut stream = connection
        .copy_out_raw(
            "COPY (SELECT global_position, event_id, tenant_id, aggregate_type, aggregate_id, \
             sequence, event_type, event_version, payload, metadata, occurred_at_us, \
             previous_hash, hash FROM es_events ORDER BY global_position) TO STDOUT (FORMAT binary)",
        )
        .await?;
    let mut decoder = pg_copy::Decoder::new(13);
    let mut rows = 0;
    while let Some(chunk) = stream.next().await {
        decoder.push(&chunk?);
        while decoder.next_row()?.is_some() {
            rows += 1;
        }
    }
    decoder.finish()?;
    Ok(rows)
}

async fn read_all(opened: &Opened) -> anyhow::Result<usize> {
    read_pages(opened, |_| Ok(())).await
}

/// Reads the whole log in pages of [`PAGE`], handing each to `on_page`; the events read.
async fn read_pages(
    opened: &Opened,
    mut on_page: impl FnMut(&[StoredEvent]) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let mut position = 0;
    let mut read = 0;
    loop {
        let events = opened.store.read_after(position, PAGE).await?;
        let Some(last) = events.last() else { break };
        position = last.global_position;
        read += events.len();
        on_page(&events)?;
    }
    Ok(read)
}

async fn raw_select_all(opened: &Opened) -> anyhow::Result<usize> {
    let sql = "SELECT global_position, event_id, tenant_id, aggregate_type, aggregate_id, sequence, \
         event_type, event_version, payload, metadata, occurred_at_us, previous_hash, hash \
         FROM es_events WHERE global_position > $1 ORDER BY global_position LIMIT $2";
    let mut position = 0_i64;
    let mut read = 0;
    loop {
        let rows = sqlx::query(sql)
            .bind(position)
            .bind(i64::from(PAGE))
            .fetch_all(&opened.raw)
            .await?;
        let Some(last) = rows.last() else { break };
        position = last.try_get::<i64, _>(0)?;
        read += rows.len();
    }
    Ok(read)
}

/// The Kafka replay's rates (events/s), one value per repetition.
#[derive(Clone, Debug)]
pub struct KafkaReplayResult {
    /// Events on the topic.
    pub events: usize,
    /// Partitions of the topic.
    pub partitions: usize,
    /// A fresh copy of the read model folded from the topic (`mposctl replay --read-model
    /// --bus kafka://…`): every delivery decoded back into the log's event, put in log order,
    /// applied; from the first delivery to the last.
    pub fresh_copy: Vec<f64>,
    /// Floor: the same messages consumed raw (same client settings), not decoded.
    pub raw_consume: Vec<f64>,
    /// Until the first delivery (assignment and the first fetch), ms, per repetition.
    pub first_delivery_ms: Vec<f64>,
}

impl KafkaReplayResult {
    /// Median of the per-repetition fresh copy/raw consume ratios.
    pub fn ratio(&self) -> f64 {
        crate::stats::median_ratio(&self.fresh_copy, &self.raw_consume)
    }
}

/// The service whose stream the Kafka replay reads.
const KAFKA_SERVICE: &str = "bench-replay";

/// Replays a read model from Kafka: the log of `config.events` events is published to a fresh
/// topic through the outbox relay (as a service does), then folded from the topic into a
/// fresh copy, against consuming the same messages raw.
pub async fn run_kafka(config: &ReplayConfig, urls: &Urls) -> anyhow::Result<KafkaReplayResult> {
    eprintln!(
        "replay: Kafka: seeding and publishing {} events …",
        config.events
    );
    let opened = backend::open(Backend::Sqlite, &urls.postgres, KAFKA_SERVICE).await?;
    let namespace = crate::unique("bench");
    let outcome = run_kafka_on(config, urls, &opened, &namespace).await;
    if let Err(error) = delete_topic(&urls.kafka, &namespace).await {
        eprintln!("replay: cannot delete the Kafka topic: {error:#}");
    }
    let closed = opened.close().await;
    let result = outcome?;
    closed?;
    Ok(result)
}

async fn run_kafka_on(
    config: &ReplayConfig,
    urls: &Urls,
    opened: &Opened,
    namespace: &str,
) -> anyhow::Result<KafkaReplayResult> {
    seed(config, opened).await?;
    let bus = mpos_bus::connect(&crate::with_param(&urls.kafka, "namespace", namespace)).await?;
    let relay = mpos_es::OutboxRelay::new(
        opened.store.clone(),
        bus.publisher.clone(),
        crate::data::codec(),
        "kafka",
    )
    .with_batch(1_000);
    let mut published = 0_u64;
    while published < u64::try_from(config.events)? {
        let sent = relay.publish_pending().await?;
        anyhow::ensure!(sent > 0, "the relay published nothing after {published}");
        published += sent;
    }
    let topic = mpos_bus::kafka_topic(Some(namespace), KAFKA_SERVICE);
    let bootstrap = crate::hosts_of(&urls.kafka);
    // The live read model, for the copy to equal.
    let runner = ProjectionRunner::new(opened.store.clone(), LatestNames);
    runner.rebuild().await?;
    let live = runner.digest().await?;

    eprintln!("replay: Kafka: folding from {topic} …");
    let mut result = KafkaReplayResult {
        events: config.events,
        partitions: 0,
        fresh_copy: Vec::new(),
        raw_consume: Vec::new(),
        first_delivery_ms: Vec::new(),
    };
    // Warm-up: one unmeasured pass of each.
    kafka_fresh_copy(&bus, config.events).await?;
    raw_consume(&bootstrap, &topic, config.events).await?;
    for _ in 0..config.repetitions {
        let (copy, first, rate_copy) = kafka_fresh_copy(&bus, config.events).await?;
        anyhow::ensure!(
            copy == live,
            "the copy folded from Kafka differs from the live read model"
        );
        result.fresh_copy.push(rate_copy);
        result.first_delivery_ms.push(first);
        let (partitions, rate_raw) = raw_consume(&bootstrap, &topic, config.events).await?;
        result.partitions = partitions;
        result.raw_consume.push(rate_raw);
    }
    Ok(result)
}

/// Folds the topic into a fresh copy as `mposctl replay --read-model --bus` does; its digest,
/// the ms until the first delivery and the rate from the first delivery to the last.
async fn kafka_fresh_copy(
    bus: &mpos_bus::Bus,
    events: usize,
) -> anyhow::Result<(String, f64, f64)> {
    use mpos_es::ReplayedReadModel as _;
    let codec = crate::data::codec();
    let asked = Instant::now();
    let mut stream = bus
        .subscriber
        .follow(mpos_bus::FollowOptions {
            service: KAFKA_SERVICE.to_owned(),
            tenant_id: None,
            aggregate_type: None,
            event_type: None,
            from: mpos_bus::FollowFrom::Start,
        })
        .await?;
    let mut copy = mpos_es::Replayed::new(LatestNames);
    let mut order = mpos_es::InOrder::default();
    let mut started = None;
    let target = u64::try_from(events)?;
    while order.folded() < target {
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
            .await
            .map_err(|_| anyhow::anyhow!("no delivery for 30 s at {}", order.folded()))?
            .ok_or_else(|| anyhow::anyhow!("the stream ended at {}", order.folded()))??;
        started.get_or_insert_with(Instant::now);
        let released = order.push(codec.stored_from_envelope(&delivery.envelope)?);
        if !released.is_empty() {
            copy.apply(&released)?;
        }
    }
    let started = started.unwrap_or(asked);
    let rate = rate(events, started.elapsed());
    let first = started.duration_since(asked).as_secs_f64() * 1_000.0;
    Ok((mpos_es::digest_documents(&copy.documents()?), first, rate))
}

/// Consumes `events` messages of every partition of `topic` from its start, as the
/// follower's client is set up, without decoding them; the partitions and the rate from the
/// first message to the last.
async fn raw_consume(bootstrap: &str, topic: &str, events: usize) -> anyhow::Result<(usize, f64)> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("bench-raw"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), std::time::Duration::from_secs(5))?;
    let mut assignment = TopicPartitionList::new();
    let mut partitions = 0;
    for found in metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic)
    {
        for partition in found.partitions() {
            assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
            partitions += 1;
        }
    }
    consumer.assign(&assignment)?;
    let mut started = None;
    let mut bytes = 0_usize;
    for _ in 0..events {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), consumer.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no message for 30 s"))??;
        started.get_or_insert_with(Instant::now);
        bytes += message.payload().map_or(0, <[u8]>::len);
    }
    anyhow::ensure!(bytes > 0, "the messages were empty");
    let started = started.unwrap_or_else(Instant::now);
    Ok((partitions, rate(events, started.elapsed())))
}

async fn delete_topic(kafka: &str, namespace: &str) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let bootstrap = crate::hosts_of(kafka);
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let options = AdminOptions::new().request_timeout(Some(std::time::Duration::from_secs(5)));
    let topic = mpos_bus::kafka_topic(Some(namespace), KAFKA_SERVICE);
    admin.delete_topics(&[topic.as_str()], &options).await?;
    Ok(())
}
