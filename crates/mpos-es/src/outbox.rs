//! The transactional outbox relay: publishes every committed event to a bus, at least once.
//!
//! The log is the outbox: an event is committed exactly when it is in the log, and each relay
//! (one per sink: NATS, Kafka) stores the position up to which the sink has acknowledged
//! everything. The position is stored only after the broker acknowledged the batch, so a
//! crash between commit and publish, or between publish and checkpoint, leads to a re-publish
//! from the last checkpoint; consumers and brokers de-duplicate by event id.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mpos_bus::EventPublisher;

use crate::codec::EventCodec;
use crate::error::StoreError;
use crate::event::now_micros;
use crate::store::EventStore;

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

    /// Publishes everything after the checkpoint; returns how many events were published.
    pub async fn publish_pending(&self) -> Result<u64, RelayError> {
        let consumer = self.consumer_name();
        let service = self.store.service().to_owned();
        let mut position = self.store.consumer_position(&consumer).await?;
        let mut published = 0_u64;
        loop {
            let events = self.store.read_after(position, self.batch).await?;
            let Some(last) = events.last() else { break };
            let last_position = last.global_position;
            let envelopes = events
                .iter()
                .map(|event| Ok(event.to_envelope(&service, self.codec.encode(event)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            self.publisher.publish(&envelopes).await?;
            let now = now_micros();
            for event in &events {
                let lag_us = now.saturating_sub(event.event.occurred_at_us).max(0);
                #[allow(clippy::cast_precision_loss)]
                metrics::histogram!("mpos_outbox_lag_seconds", "service" => service.clone(), "sink" => self.sink.clone())
                    .record(lag_us as f64 / 1e6);
            }
            let count = u64::try_from(events.len()).unwrap_or(0);
            metrics::counter!("mpos_outbox_published_total", "service" => service.clone(), "sink" => self.sink.clone())
                .increment(count);
            self.store
                .set_consumer_position(&consumer, last_position)
                .await?;
            published += count;
            position = last_position;
        }
        Ok(published)
    }

    /// Relays until `shutdown` resolves: wakes on appends of this process, polls every `poll`
    /// for other writers, and retries with back-off while the broker or database is down.
    pub async fn run(self, poll: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let appended = self.store.appended();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let wait = match self.publish_pending().await {
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    poll
                }
                Err(error) => {
                    tracing::warn!(sink = %self.sink, %error, retry_in_ms = backoff.as_millis(), "outbox relay failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = appended, if wait == poll => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
