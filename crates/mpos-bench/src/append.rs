//! Append throughput: `EventStore::append` against a raw batched `INSERT` of the same rows.
//!
//! The floor writes the same 13 columns, the same values, the same number of rows per
//! transaction (`BEGIN; INSERT … VALUES (…), …; COMMIT`) into a table of the same shape
//! (`es_events`' columns, keys and indexes) in the same database, through the same driver
//! (sqlx `Any`) and, on SQLite, with the same PRAGMAs (WAL, synchronous = FULL). Store and
//! floor alternate within each repetition, so both see the same noise.

use std::time::Instant;

use mpos_es::NewEvent;

use crate::Urls;
use crate::backend::{self, Backend, Opened, RAW_TABLE};
use crate::data::Generator;
use crate::stats::{median, rate};

const COLUMNS: &str = "global_position, event_id, tenant_id, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata, occurred_at_us, previous_hash, hash";

/// Sizes of the append benchmark.
#[derive(Clone, Debug)]
pub struct AppendConfig {
    /// Events written per repetition (by the store, and again by the floor).
    pub events: usize,
    /// Repetitions; the medians are over these.
    pub repetitions: usize,
    /// Events per append (= rows per transaction of the floor).
    pub batches: Vec<usize>,
}

impl AppendConfig {
    /// 2,000 events × 5 repetitions, batches of 1 and 10.
    pub fn full() -> Self {
        Self {
            events: 2_000,
            repetitions: 5,
            batches: vec![1, 10],
        }
    }

    /// 200 events × 3 repetitions (smoke run).
    pub fn quick() -> Self {
        Self {
            events: 200,
            repetitions: 3,
            batches: vec![1, 10],
        }
    }
}

/// Throughputs of one backend and batch size, one value per repetition.
#[derive(Clone, Debug)]
pub struct AppendResult {
    /// The backend.
    pub backend: Backend,
    /// Events per append.
    pub batch: usize,
    /// Events per repetition.
    pub events: usize,
    /// `EventStore::append`, events/s.
    pub store: Vec<f64>,
    /// Raw batched INSERT, events/s.
    pub raw: Vec<f64>,
}

impl AppendResult {
    /// Median store throughput.
    pub fn store_median(&self) -> f64 {
        median(&self.store)
    }
    /// Median floor throughput.
    pub fn raw_median(&self) -> f64 {
        median(&self.raw)
    }
    /// Median of the per-repetition store/floor ratios.
    pub fn ratio(&self) -> f64 {
        let ratios: Vec<f64> = self
            .store
            .iter()
            .zip(&self.raw)
            .map(|(store, raw)| store / raw)
            .collect();
        median(&ratios)
    }
}

/// Runs the append benchmark on each backend.
pub async fn run(
    config: &AppendConfig,
    backends: &[Backend],
    urls: &Urls,
) -> anyhow::Result<Vec<AppendResult>> {
    let mut results = Vec::new();
    for &backend in backends {
        eprintln!("append: {backend} …");
        let opened = backend::open(backend, &urls.postgres, "bench-append").await?;
        let outcome = run_backend(config, backend, &opened).await;
        let closed = opened.close().await;
        results.extend(outcome?);
        closed?;
    }
    Ok(results)
}

async fn run_backend(
    config: &AppendConfig,
    backend: Backend,
    opened: &Opened,
) -> anyhow::Result<Vec<AppendResult>> {
    opened.create_raw_table().await?;
    let mut store_events = Generator::new("store", 100);
    let mut raw_events = Generator::new("raw", 100);
    let mut raw = RawWriter::default();

    // Warm-up (connections, statement caches, the store's head cache, the WAL file).
    for _ in 0..20 {
        opened
            .store
            .append(store_events.batch("acme", 1), None)
            .await?;
        raw.insert(opened, raw_events.batch("acme", 1)).await?;
    }

    let mut results: Vec<AppendResult> = config
        .batches
        .iter()
        .map(|&batch| AppendResult {
            backend,
            batch,
            events: config.events,
            store: Vec::new(),
            raw: Vec::new(),
        })
        .collect();
    for repetition in 0..config.repetitions {
        for result in &mut results {
            let batch = result.batch.max(1);
            let appends = (config.events / batch).max(1);
            let store_batches: Vec<Vec<NewEvent>> = (0..appends)
                .map(|_| store_events.batch("acme", batch))
                .collect();
            let raw_batches: Vec<Vec<NewEvent>> = (0..appends)
                .map(|_| raw_events.batch("acme", batch))
                .collect();
            let written = appends * batch;
            let store_first = repetition % 2 == 0;
            if store_first {
                result
                    .store
                    .push(time_store(opened, store_batches, written).await?);
                result
                    .raw
                    .push(raw.time(opened, raw_batches, written).await?);
            } else {
                result
                    .raw
                    .push(raw.time(opened, raw_batches, written).await?);
                result
                    .store
                    .push(time_store(opened, store_batches, written).await?);
            }
        }
    }
    Ok(results)
}

async fn time_store(
    opened: &Opened,
    batches: Vec<Vec<NewEvent>>,
    written: usize,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    for batch in batches {
        opened.store.append(batch, None).await?;
    }
    Ok(rate(written, start.elapsed()))
}

/// The floor: one transaction with one multi-row INSERT per batch.
#[derive(Debug, Default)]
struct RawWriter {
    position: i64,
}

impl RawWriter {
    async fn time(
        &mut self,
        opened: &Opened,
        batches: Vec<Vec<NewEvent>>,
        written: usize,
    ) -> anyhow::Result<f64> {
        let start = Instant::now();
        for batch in batches {
            self.insert(opened, batch).await?;
        }
        Ok(rate(written, start.elapsed()))
    }

    async fn insert(&mut self, opened: &Opened, batch: Vec<NewEvent>) -> anyhow::Result<()> {
        let sql = insert_sql(batch.len());
        let mut tx = opened.raw.begin().await?;
        let mut query = sqlx::query(&sql);
        for event in batch {
            self.position += 1;
            let mut hash = [0_u8; 32];
            hash[..8].copy_from_slice(&self.position.to_be_bytes());
            let mut previous_hash = [0_u8; 32];
            previous_hash[..8].copy_from_slice(&(self.position - 1).to_be_bytes());
            query = query
                .bind(self.position)
                .bind(event.event_id)
                .bind(event.tenant_id)
                .bind(event.aggregate_type)
                .bind(event.aggregate_id)
                .bind(i64::try_from(event.sequence)?)
                .bind(event.event_type)
                .bind(event.event_version)
                .bind(event.payload)
                .bind(event.metadata)
                .bind(event.occurred_at_us)
                .bind(previous_hash.to_vec())
                .bind(hash.to_vec());
        }
        query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO {RAW_TABLE} ({COLUMNS}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..13 {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * 13 + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}
