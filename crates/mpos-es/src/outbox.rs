//! The transactional outbox relay: publishes every committed event to a bus, at least once.
//!
//! The log is the outbox: an event is committed exactly when it is in the log, and each relay
//! (one per sink: NATS, Kafka) stores the position up to which the sink has acknowledged
//! everything. The position is stored only after the broker acknowledged the batch, so a
//! crash between commit and publish, or between publish and checkpoint, leads to a re-publish
//! from the last checkpoint; consumers and brokers de-duplicate by event id.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpos_bus::EventPublisher;

use crate::codec::EventCodec;
use crate::error::StoreError;
use crate::event::now_micros;
use crate::store::EventStore;
use crate::tail::Horizon;

/// What stops a relay's pass.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading the log or storing the checkpoint failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker did not acknowledge.
    #[error("publish failed: {0}")]
    Publish(#[from] mpos_bus::BusError),
}

/// Publishes a service log to one sink.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    store: EventStore,
    publisher: Arc<dyn EventPublisher>,
    codec: Arc<EventCodec>,
    sink: String,
    batch: u32,
}

impl OutboxRelay {
    /// A relay named after its `sink` (e.g. `nats`, `kafka`).
    pub fn new(
        store: EventStore,
        publisher: Arc<dyn EventPublisher>,
        codec: Arc<EventCodec>,
        sink: &str,
    ) -> Self {
        Self {
            store,
            publisher,
            codec,
            sink: sink.to_owned(),
            batch: 500,
        }
    }

    /// Events per publish call.
    pub fn with_batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The key of the relay's checkpoint.
    pub fn consumer_name(&self) -> String {
        format!("outbox:{}", self.sink)
    }

    /// Publishes everything after the checkpoint and stores the new checkpoint; returns how
    /// many events were published.
    pub async fn publish_pending(&self) -> Result<u64, RelayError> {
        let mut cursor = self.load_cursor().await?;
        let published = self.publish_from(&mut cursor, Horizon::Log).await?;
        self.persist(&mut cursor).await?;
        Ok(published)
    }

    async fn load_cursor(&self) -> Result<Cursor, StoreError> {
        let position = self.store.consumer_position(&self.consumer_name()).await?;
        Ok(Cursor {
            position,
            persisted: position,
            persisted_at: Instant::now(),
        })
    }

    /// Publishes everything after the cursor up to the `horizon`, moving it; the checkpoint
    /// is not stored.
    async fn publish_from(&self, cursor: &mut Cursor, horizon: Horizon) -> Result<u64, RelayError> {
        let service = self.store.service().to_owned();
        let mut published = 0_u64;
        loop {
            let events = self
                .store
                .read_new(cursor.position, self.batch, horizon)
                .await?;
            let Some(last) = events.last() else { break };
            let last_position = last.global_position;
            let envelopes = events
                .iter()
                .map(|event| Ok(event.to_envelope(&service, self.codec.encode(event)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            self.publisher.publish(&envelopes).await?;
            let now = now_micros();
            let lag = metrics::histogram!("mpos_outbox_lag_seconds", "service" => service.clone(), "sink" => self.sink.clone());
            for event in &events {
                let lag_us = now.saturating_sub(event.event.occurred_at_us).max(0);
                #[allow(clippy::cast_precision_loss)]
                lag.record(lag_us as f64 / 1e6);
            }
            let count = u64::try_from(events.len()).unwrap_or(0);
            metrics::counter!("mpos_outbox_published_total", "service" => service.clone(), "sink" => self.sink.clone())
                .increment(count);
            published += count;
            cursor.position = last_position;
        }
        Ok(published)
    }

    async fn persist(&self, cursor: &mut Cursor) -> Result<(), StoreError> {
        if cursor.position != cursor.persisted {
            self.store
                .set_consumer_position(&self.consumer_name(), cursor.position)
                .await?;
            cursor.persisted = cursor.position;
        }
        cursor.persisted_at = Instant::now();
        Ok(())
    }

    /// Relays until `shutdown` resolves: wakes on appends of this process (and publishes what
    /// it appended, from memory), polls every `poll` for other writers (reading the log to
    /// its end), retries with back-off while the broker or database is down, and
    /// stores its checkpoint at most every [`CHECKPOINT_EVERY`] (and at shutdown): a
    /// checkpoint per pass would cost a commit per append. After a crash the events since
    /// the last stored checkpoint are published again, and de-duplicated by event id.
    pub async fn run(self, poll: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        let mut cursor: Option<Cursor> = None;
        let mut horizon = Horizon::Log;
        loop {
            let appended = self.store.appended();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let pass = async {
                let cursor = match &mut cursor {
                    Some(cursor) => cursor,
                    None => cursor.insert(self.load_cursor().await?),
                };
                self.publish_from(cursor, horizon).await?;
                if cursor.persisted_at.elapsed() >= CHECKPOINT_EVERY {
                    self.persist(cursor).await?;
                }
                Ok::<(), RelayError>(())
            };
            let (wait, healthy) = match pass.await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    (poll.min(CHECKPOINT_EVERY), true)
                }
                Err(error) => {
                    tracing::warn!(sink = %self.sink, %error, retry_in_ms = backoff.as_millis(), "outbox relay failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    (wait, false)
                }
            };
            horizon = tokio::select! {
                () = &mut shutdown => break,
                () = appended, if healthy => Horizon::Appended,
                () = tokio::time::sleep(wait) => Horizon::Log,
            };
        }
        if let Some(cursor) = &mut cursor
            && let Err(error) = self.persist(cursor).await
        {
            tracing::warn!(sink = %self.sink, %error, "storing the outbox checkpoint at shutdown failed");
        }
    }
}

/// Longest time a relay's published position stays unstored.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Where a relay is: published up to `position`, stored up to `persisted`.
#[derive(Debug)]
struct Cursor {
    position: u64,
    persisted: u64,
    persisted_at: Instant,
}
