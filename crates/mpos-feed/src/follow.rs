//! Following another service's event stream into a projection: documents kept beside the
//! follower's own log, with the stream position they are as of (the checkpoint), so they
//! survive restarts and can be rebuilt by replaying the stream.
//!
//! The events come from the followed service's stream on the bus ([`FeedSource::Bus`]) or,
//! where both run in one process (`mposd`), straight from its log ([`FeedSource::Store`]).
//! A [`Follower`] says which documents each event changes and which work it starts; the work
//! is done before the checkpoint moves, so an event whose work failed is delivered again.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpos_bus::{EventEnvelope, EventSubscriber, SubscribeOptions};
use mpos_errors::ServiceError;
use mpos_es::{Document, EventCodec, EventStore, Horizon, StoreError};
use tokio_util::sync::CancellationToken;

/// Whose stream a feed follows and where it keeps what it made of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedNames {
    /// The followed service, e.g. `terminal-management`: its stream on the bus.
    pub source: &'static str,
    /// The projection holding the documents, in the follower's own store.
    pub projection: &'static str,
    /// The checkpoint: the followed stream's position the documents are as of.
    pub consumer: &'static str,
    /// The durable consumer on the bus.
    pub durable: &'static str,
    /// Only events of this type (full protobuf name), when the follower acts on no other: on
    /// the bus the broker sends only those. Such a feed is *sparse*: the positions it sees
    /// have gaps by design, so it neither waits for missing positions nor skips an event at
    /// or before its checkpoint (a redelivery after a crash may come after later events were
    /// applied). Its follower's work must therefore be idempotent and not depend on order,
    /// and it keeps no documents; the checkpoint is the highest position applied.
    pub event_type: Option<&'static str>,
}

/// Where the followed service's events come from.
#[derive(Clone)]
pub enum FeedSource {
    /// Its stream on the bus (a distributed deployment).
    Bus(Arc<dyn EventSubscriber>),
    /// Its log, read directly (`mposd`, where both run in one process on one machine):
    /// nothing is lost to an in-process bus that a restart empties.
    Store {
        /// The followed service's log.
        store: EventStore,
        /// Its event codec.
        codec: Arc<EventCodec>,
    },
}

impl std::fmt::Debug for FeedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bus(_) => f.write_str("FeedSource::Bus"),
            Self::Store { .. } => f.write_str("FeedSource::Store"),
        }
    }
}

/// The documents written so far in a batch, by id (events of a batch read what earlier ones
/// wrote).
pub type Overlay = HashMap<String, Document>;

/// What an event changes: its documents, and the work it starts under a key.
pub type Applied<W> = (Vec<Document>, Option<(String, W)>);

/// What a feed does with the followed stream's events.
///
/// The methods are `async fn`s in the implementations; their futures are `Send`, so that the
/// feed runs on `tokio::spawn`.
pub trait Follower: Send + Sync + 'static {
    /// The work an event starts beyond its documents.
    type Work: Send;

    /// The documents this event changes (given those written earlier in the batch, `overlay`,
    /// and else the stored ones) and the work it starts, keyed: the work of one key runs in
    /// stream order, that of different keys at once. Unknown events change nothing.
    fn apply(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> impl Future<Output = Result<Applied<Self::Work>, ServiceError>> + Send;

    /// Runs one key's work items of a batch in stream order, before the checkpoint moves
    /// (`overlay`: every document the batch wrote). Idempotent: a batch that failed is
    /// applied again.
    fn work(
        &self,
        overlay: &Overlay,
        key: &str,
        items: Vec<Self::Work>,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;

    /// Called after a batch's documents and checkpoint were committed, with them and the keys
    /// that had work.
    fn committed(
        &self,
        documents: &[Document],
        keys: &[String],
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;
}

/// The first wait after a failure; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// How many events of the followed log one batch reads.
const STORE_BATCH: u32 = 500;

/// How long an out-of-order delivery waits for the events before it (past the broker's
/// redelivery deadline), before it is applied anyway (those events are gone, e.g. trimmed).
const GAP_PATIENCE: Duration = Duration::from_secs(90);

/// How many deliveries that arrived together one batch from the bus takes, at most.
const BUS_BATCH: usize = 256;

/// How many keys' work a batch runs at once.
const BATCH_WORK: usize = 256;

/// Runs the feed: applies the followed service's events from `source` as they come into the
/// projection in `store` (the follower's own), until `cancel`.
pub async fn run<F: Follower>(
    store: EventStore,
    names: FeedNames,
    source: FeedSource,
    follower: Arc<F>,
    cancel: CancellationToken,
) {
    let feed = Feed {
        store,
        names,
        follower,
    };
    match source {
        FeedSource::Bus(subscriber) => feed.run_from_bus(subscriber, cancel).await,
        FeedSource::Store { store, codec } => feed.run_from_store(store, codec, cancel).await,
    }
}

/// A running feed.
struct Feed<F> {
    store: EventStore,
    names: FeedNames,
    follower: Arc<F>,
}

/// Sleeps `retry` unless cancelled first (`false` then).
async fn pause(retry: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(retry) => true,
    }
}

impl<F: Follower> Feed<F> {
    /// Follows the stream on the bus: the events that arrived together in one batch,
    /// acknowledged once applied.
    async fn run_from_bus(&self, subscriber: Arc<dyn EventSubscriber>, cancel: CancellationToken) {
        let source = self.names.source;
        let mut retry = FIRST_RETRY;
        let mut gap_since = None;
        while !cancel.is_cancelled() {
            let options = SubscribeOptions {
                event_type: self.names.event_type.map(str::to_owned),
                ..SubscribeOptions::new(source, self.names.durable)
            };
            let subscription = subscriber.subscribe(options).await;
            let mut stream = match subscription {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, source, "cannot subscribe to the followed events");
                    if !pause(retry, &cancel).await {
                        return;
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    next = stream.next() => next,
                };
                let Some(next) = next else { break };
                let mut deliveries = Vec::new();
                match next {
                    Ok(delivery) => deliveries.push(delivery),
                    Err(error) => {
                        tracing::warn!(%error, source, "followed event not received");
                        continue;
                    }
                }
                // What else has arrived already is applied with it: one commit of the
                // checkpoint for the lot instead of one per event (under load the broker
                // delivers faster than one commit per event keeps up with).
                let mut ended = false;
                // Bounded by items taken, not deliveries kept: a stream that keeps yielding
                // errors must not hold the loop here.
                for _ in 1..BUS_BATCH {
                    match futures::FutureExt::now_or_never(stream.next()) {
                        Some(Some(Ok(delivery))) => deliveries.push(delivery),
                        Some(Some(Err(error))) => {
                            tracing::warn!(%error, source, "followed event not received");
                        }
                        Some(None) => {
                            ended = true;
                            break;
                        }
                        None => break,
                    }
                }
                match self.handle_deliveries(deliveries, &mut gap_since).await {
                    Ok(()) => retry = FIRST_RETRY,
                    Err(()) => {
                        if !pause(retry, &cancel).await {
                            return;
                        }
                        retry = (retry * 2).min(MAX_RETRY);
                        break;
                    }
                }
                if ended {
                    break;
                }
            }
        }
    }

    /// Applies deliveries from the bus: the run of them that follows the checkpoint (and
    /// duplicates of events before it) in one batch, acknowledged once committed; any after
    /// a gap one by one, each waiting for the events before it. `Err` after a failure (the
    /// failed ones are not acknowledged: they come again with the next subscription).
    async fn handle_deliveries(
        &self,
        mut deliveries: Vec<mpos_bus::Delivery>,
        gap_since: &mut Option<Instant>,
    ) -> Result<(), ()> {
        let source = self.names.source;
        deliveries.sort_by_key(|delivery| delivery.envelope.global_position);
        if self.names.event_type.is_some() {
            return self.handle_sparse(deliveries).await;
        }
        let mut rest = deliveries.into_iter().peekable();
        while let Some(first) = rest.next() {
            // The followed log has no gaps: an event past the next position was delivered
            // before some unacknowledged ones (after a crash, the broker redelivers those
            // only when their acknowledgement deadline passes). Leave it unacknowledged
            // until they come, unless they never do.
            let checkpoint = match self.in_order(&first.envelope, gap_since).await {
                Ok(Some(checkpoint)) => checkpoint,
                Ok(None) => {
                    drop(first);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(error = %error.message, source, "cannot read the feed position");
                    return Err(());
                }
            };
            let mut run = vec![first];
            let mut end = checkpoint.max(run[0].envelope.global_position);
            while let Some(next) = rest.next_if(|next| next.envelope.global_position <= end + 1) {
                end = end.max(next.envelope.global_position);
                run.push(next);
            }
            self.apply_and_ack(checkpoint, run).await?;
        }
        Ok(())
    }

    /// Applies deliveries of a sparse feed (one event type): all of them, whatever the
    /// checkpoint, acknowledged once committed.
    async fn handle_sparse(&self, deliveries: Vec<mpos_bus::Delivery>) -> Result<(), ()> {
        let checkpoint = match self.store.consumer_position(self.names.consumer).await {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                tracing::warn!(%error, source = self.names.source, "cannot read the feed position");
                return Err(());
            }
        };
        self.apply_and_ack(checkpoint, deliveries).await
    }

    /// Applies `deliveries` as one batch after `checkpoint` and acknowledges them once
    /// committed; `Err` (none acknowledged: they come again) when the batch failed.
    async fn apply_and_ack(
        &self,
        checkpoint: u64,
        deliveries: Vec<mpos_bus::Delivery>,
    ) -> Result<(), ()> {
        let source = self.names.source;
        let envelopes: Vec<EventEnvelope> = deliveries
            .iter()
            .map(|delivery| delivery.envelope.clone())
            .collect();
        if let Err(error) = self.handle_batch(checkpoint, &envelopes).await {
            let first_event_type = envelopes
                .first()
                .map_or("", |first| first.event_type.as_str());
            tracing::warn!(error = %error.message, source, events = envelopes.len(), first_event_type, "followed events not applied; retrying");
            return Err(());
        }
        for delivery in deliveries {
            if let Err(error) = delivery.ack().await {
                tracing::warn!(%error, source, "cannot acknowledge a followed event");
            }
        }
        Ok(())
    }

    /// Reads the followed log after the checkpoint, as it grows.
    async fn run_from_store(
        &self,
        followed: EventStore,
        codec: Arc<EventCodec>,
        cancel: CancellationToken,
    ) {
        let source = self.names.source;
        let mut retry = FIRST_RETRY;
        // After a wake by an append, what it appended is taken from memory and the followed
        // log is not read to its end; the periodic pass reads it (ADR 18).
        let mut horizon = Horizon::Log;
        while !cancel.is_cancelled() {
            // Registered before the read, so that an append during it is not missed.
            let appended = followed.appended();
            let checkpoint = match self.store.consumer_position(self.names.consumer).await {
                Ok(checkpoint) => checkpoint,
                Err(error) => {
                    tracing::warn!(%error, source, "cannot read the feed position");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            };
            let events = match followed.read_new(checkpoint, STORE_BATCH, horizon).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, source, "cannot read the followed log");
                    horizon = Horizon::Log;
                    tokio::time::sleep(retry).await;
                    continue;
                }
            };
            let mut envelopes = Vec::with_capacity(events.len());
            for stored in &events {
                match codec.encode(stored) {
                    Ok(payload) => envelopes.push(stored.to_envelope(source, payload)),
                    Err(error) => {
                        tracing::warn!(%error, source, position = stored.global_position, "followed event not encodable; skipped");
                    }
                }
            }
            if let Err(error) = self.handle_batch(checkpoint, &envelopes).await {
                tracing::warn!(error = %error.message, source, events = envelopes.len(), "followed events not applied; retrying");
                horizon = Horizon::Log;
                if !pause(retry, &cancel).await {
                    return;
                }
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
            retry = FIRST_RETRY;
            if events.is_empty() {
                horizon = tokio::select! {
                    () = cancel.cancelled() => return,
                    () = appended => Horizon::Appended,
                    () = tokio::time::sleep(Duration::from_secs(1)) => Horizon::Log,
                };
            }
        }
    }

    /// The feed's position if the delivery is the next event of the stream (or a duplicate,
    /// or one whose predecessors waited long enough); `None` while it must wait.
    async fn in_order(
        &self,
        envelope: &EventEnvelope,
        gap_since: &mut Option<Instant>,
    ) -> Result<Option<u64>, ServiceError> {
        let checkpoint = self.store.consumer_position(self.names.consumer).await?;
        if envelope.global_position <= checkpoint.saturating_add(1) {
            *gap_since = None;
            return Ok(Some(checkpoint));
        }
        let since = *gap_since.get_or_insert_with(Instant::now);
        if since.elapsed() < GAP_PATIENCE {
            return Ok(None);
        }
        tracing::error!(
            source = self.names.source,
            from = checkpoint + 1,
            to = envelope.global_position - 1,
            "followed events never arrived; continuing without them"
        );
        *gap_since = None;
        Ok(Some(checkpoint))
    }

    /// Applies events in stream order: their documents (each event reads what the ones
    /// before it wrote), then their work — one key's in order, different keys' at once — and
    /// then the documents with the position of the last, in one transaction. Work is
    /// idempotent: a batch that failed half-way is applied again. `checkpoint` is the
    /// position the batch follows (moved by compare-and-set: another instance's progress
    /// wins). Events at or before it (duplicates, redeliveries) are skipped, except on a
    /// sparse feed, which applies every event it is given and moves the checkpoint to the
    /// highest position.
    async fn handle_batch(
        &self,
        checkpoint: u64,
        envelopes: &[EventEnvelope],
    ) -> Result<(), ServiceError> {
        let follower = &*self.follower;
        let sparse = self.names.event_type.is_some();
        let mut overlay = Overlay::new();
        let mut work: BTreeMap<String, Vec<F::Work>> = BTreeMap::new();
        let mut last = checkpoint;
        let mut applied = 0_usize;
        for envelope in envelopes {
            if !sparse && envelope.global_position <= last {
                continue;
            }
            let (documents, next) = follower.apply(&overlay, envelope).await?;
            for document in documents {
                overlay.insert(document.id.clone(), document);
            }
            if let Some((key, item)) = next {
                work.entry(key).or_default().push(item);
            }
            last = last.max(envelope.global_position);
            applied += 1;
        }
        if applied == 0 {
            return Ok(());
        }
        let keys: Vec<String> = work.keys().cloned().collect();
        let written = &overlay;
        let results: Vec<Result<(), ServiceError>> =
            futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
                futures::stream::iter(
                    work.into_iter().map(|(key, items)| async move {
                        follower.work(written, &key, items).await
                    }),
                ),
                BATCH_WORK,
            ))
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        let documents: Vec<Document> = overlay.into_values().collect();
        if last == checkpoint && documents.is_empty() {
            // A sparse feed's redeliveries: the work is done, the checkpoint stays.
            return follower.committed(&documents, &keys).await;
        }
        match self
            .store
            .commit_documents(
                self.names.projection,
                &documents,
                self.names.consumer,
                checkpoint,
                last,
            )
            .await
        {
            Ok(()) => {}
            // Another instance moved the position meanwhile: what it applied stays.
            Err(StoreError::Conflict { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        follower.committed(&documents, &keys).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mpos_bus::{Acker, BusError, Delivery, EventStream};
    use mpos_es::{NewEvent, ProtoEvent, now_micros};

    use super::*;
    use crate::testing::{envelope, sqlite};

    const NAMES: FeedNames = FeedNames {
        source: "followed",
        projection: "test-projection",
        consumer: "test-feed",
        durable: "test",
        event_type: None,
    };

    /// Keeps one document, `log`, with every position applied in order (read from the batch's
    /// overlay, else the store); each event's work is keyed by its aggregate id.
    #[derive(Debug)]
    struct Recorder {
        store: EventStore,
        /// Work attempts still to fail.
        failing: AtomicUsize,
        /// Every work call: key and items.
        worked: Mutex<Vec<(String, Vec<u64>)>>,
        /// Every `committed` call's keys.
        committed: Mutex<Vec<Vec<String>>>,
    }

    impl Recorder {
        fn new(store: EventStore, failing: usize) -> Self {
            Self {
                store,
                failing: AtomicUsize::new(failing),
                worked: Mutex::new(Vec::new()),
                committed: Mutex::new(Vec::new()),
            }
        }

        fn worked(&self) -> Vec<(String, Vec<u64>)> {
            let mut worked = self.worked.lock().unwrap().clone();
            worked.sort();
            worked
        }
    }

    impl Follower for Recorder {
        type Work = u64;

        async fn apply(
            &self,
            overlay: &Overlay,
            envelope: &EventEnvelope,
        ) -> Result<Applied<u64>, ServiceError> {
            let current = match overlay.get("log") {
                Some(document) => Some(document.clone()),
                None => self
                    .store
                    .documents(NAMES.projection, &["log".to_owned()])
                    .await?
                    .into_iter()
                    .next(),
            };
            let mut log: Vec<u64> = current
                .map(|document| serde_json::from_str(&document.payload).unwrap())
                .unwrap_or_default();
            log.push(envelope.global_position);
            let document = Document {
                id: "log".to_owned(),
                tenant_id: String::new(),
                position: envelope.global_position,
                payload: serde_json::to_string(&log).unwrap(),
            };
            Ok((
                vec![document],
                Some((envelope.aggregate_id.clone(), envelope.global_position)),
            ))
        }

        async fn work(
            &self,
            overlay: &Overlay,
            key: &str,
            items: Vec<u64>,
        ) -> Result<(), ServiceError> {
            assert!(
                overlay.contains_key("log"),
                "the work sees the batch's documents"
            );
            self.worked.lock().unwrap().push((key.to_owned(), items));
            let failing = self
                .failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                });
            match failing {
                Ok(_) => Err(ServiceError::unavailable("work failed")),
                Err(_) => Ok(()),
            }
        }

        async fn committed(
            &self,
            _documents: &[Document],
            keys: &[String],
        ) -> Result<(), ServiceError> {
            self.committed.lock().unwrap().push(keys.to_vec());
            Ok(())
        }
    }

    fn feed(store: &EventStore, follower: &Arc<Recorder>) -> Feed<Recorder> {
        Feed {
            store: store.clone(),
            names: NAMES,
            follower: follower.clone(),
        }
    }

    fn event(position: u64) -> EventEnvelope {
        let key = if position % 2 == 1 { "odd" } else { "even" };
        envelope(position, "acme", key, "test.Happened", Vec::new())
    }

    async fn log(store: &EventStore) -> Vec<u64> {
        store
            .documents(NAMES.projection, &["log".to_owned()])
            .await
            .unwrap()
            .first()
            .map(|document| serde_json::from_str(&document.payload).unwrap())
            .unwrap_or_default()
    }

    async fn wait_for_checkpoint(store: &EventStore, position: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.consumer_position(NAMES.consumer).await.unwrap() < position {
            assert!(
                Instant::now() < deadline,
                "the feed did not reach {position}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_batch_applies_events_in_order_and_moves_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let follower = Arc::new(Recorder::new(store.clone(), 0));
        let events: Vec<EventEnvelope> = (1..=5).map(event).collect();

        feed(&store, &follower)
            .handle_batch(0, &events)
            .await
            .unwrap();

        assert_eq!(log(&store).await, vec![1, 2, 3, 4, 5]);
        assert_eq!(store.consumer_position(NAMES.consumer).await.unwrap(), 5);
        assert_eq!(
            follower.worked(),
            vec![
                ("even".to_owned(), vec![2, 4]),
                ("odd".to_owned(), vec![1, 3, 5])
            ]
        );
        assert_eq!(
            *follower.committed.lock().unwrap(),
            vec![vec!["even".to_owned(), "odd".to_owned()]]
        );
    }

    #[tokio::test]
    async fn a_batch_whose_work_fails_commits_nothing_and_is_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let follower = Arc::new(Recorder::new(store.clone(), 1));
        let events: Vec<EventEnvelope> = (1..=3).map(event).collect();

        let failed = feed(&store, &follower).handle_batch(0, &events).await;
        assert!(failed.is_err());
        assert_eq!(log(&store).await, Vec::<u64>::new());
        assert_eq!(store.consumer_position(NAMES.consumer).await.unwrap(), 0);
        assert!(follower.committed.lock().unwrap().is_empty());

        feed(&store, &follower)
            .handle_batch(0, &events)
            .await
            .unwrap();
        assert_eq!(log(&store).await, vec![1, 2, 3]);
        assert_eq!(store.consumer_position(NAMES.consumer).await.unwrap(), 3);
        // Each key's work ran once per attempt (idempotent work is applied again).
        let worked = follower.worked();
        assert_eq!(worked.len(), 4, "{worked:?}");
        assert_eq!(follower.committed.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn duplicates_and_old_positions_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let follower = Arc::new(Recorder::new(store.clone(), 0));
        let feed = feed(&store, &follower);
        feed.handle_batch(0, &[event(1), event(2), event(3)])
            .await
            .unwrap();

        // Redelivered events before the checkpoint, and a duplicate within the batch.
        feed.handle_batch(3, &[event(2), event(3), event(4), event(4)])
            .await
            .unwrap();
        assert_eq!(log(&store).await, vec![1, 2, 3, 4]);
        assert_eq!(store.consumer_position(NAMES.consumer).await.unwrap(), 4);

        // Nothing new: nothing is worked or committed.
        feed.handle_batch(4, &[event(3), event(4)]).await.unwrap();
        assert_eq!(log(&store).await, vec![1, 2, 3, 4]);
        assert_eq!(follower.committed.lock().unwrap().len(), 2);
        assert_eq!(
            follower.worked(),
            vec![
                ("even".to_owned(), vec![2]),
                ("even".to_owned(), vec![4]),
                ("odd".to_owned(), vec![1, 3]),
            ]
        );

        // A stale checkpoint loses to the committed one: nothing is written twice.
        feed.handle_batch(3, &[event(4), event(5)]).await.unwrap();
        assert_eq!(log(&store).await, vec![1, 2, 3, 4]);
        assert_eq!(store.consumer_position(NAMES.consumer).await.unwrap(), 4);

        // On the bus: the next event and duplicates go on, one past a gap waits.
        let mut gap_since = None;
        assert_eq!(
            feed.in_order(&event(4), &mut gap_since).await.unwrap(),
            Some(4)
        );
        assert_eq!(
            feed.in_order(&event(5), &mut gap_since).await.unwrap(),
            Some(4)
        );
        assert_eq!(
            feed.in_order(&event(7), &mut gap_since).await.unwrap(),
            None
        );
        assert!(gap_since.is_some());
        assert_eq!(
            feed.in_order(&event(5), &mut gap_since).await.unwrap(),
            Some(4)
        );
        assert!(gap_since.is_none());
    }

    /// The payload of the followed log's test events.
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Note {
        text: String,
    }

    impl ProtoEvent for Note {
        fn encode_payload(&self) -> Vec<u8> {
            self.text.as_bytes().to_vec()
        }

        fn decode_payload(_: &str, payload: &[u8]) -> Result<Self, String> {
            String::from_utf8(payload.to_vec())
                .map(|text| Self { text })
                .map_err(|error| error.to_string())
        }

        fn type_names() -> Vec<(&'static str, String)> {
            Vec::new()
        }
    }

    async fn append_notes(store: &EventStore, from: u64, to: u64) {
        let events = (from..=to)
            .map(|sequence| NewEvent {
                event_id: format!("00000000-0000-7000-8000-{sequence:012}"),
                tenant_id: "acme".to_owned(),
                aggregate_type: "note".to_owned(),
                aggregate_id: if sequence % 2 == 1 { "odd" } else { "even" }.to_owned(),
                sequence: sequence.div_ceil(2),
                event_type: "test.Noted".to_owned(),
                event_version: "1.0".to_owned(),
                payload: serde_json::json!({ "text": format!("note {sequence}") }).to_string(),
                metadata: "{}".to_owned(),
                occurred_at_us: now_micros(),
            })
            .collect();
        store.append(events, None).await.unwrap();
    }

    #[tokio::test]
    async fn a_store_source_is_followed_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let followed = sqlite(&dir, "followed").await;
        append_notes(&followed, 1, 3).await;
        // The first batch's work fails once: the batch is read and applied again.
        let follower = Arc::new(Recorder::new(store.clone(), 1));
        let cancel = CancellationToken::new();
        let source = FeedSource::Store {
            store: followed.clone(),
            codec: Arc::new(EventCodec::new().register::<Note>("note")),
        };
        let running = tokio::spawn(run(
            store.clone(),
            NAMES,
            source,
            follower.clone(),
            cancel.clone(),
        ));

        wait_for_checkpoint(&store, 3).await;
        assert_eq!(log(&store).await, vec![1, 2, 3]);
        append_notes(&followed, 4, 6).await;
        wait_for_checkpoint(&store, 6).await;
        assert_eq!(log(&store).await, vec![1, 2, 3, 4, 5, 6]);
        let committed = follower.committed.lock().unwrap().len();
        assert!(committed >= 2, "{committed} commits");

        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
    }

    /// A durable consumer: each subscription delivers the events not acknowledged yet, in
    /// order, then waits.
    #[derive(Debug)]
    struct FakeBus {
        events: Vec<EventEnvelope>,
        acked: Arc<Mutex<BTreeSet<usize>>>,
        subscriptions: AtomicUsize,
    }

    impl FakeBus {
        fn new(events: Vec<EventEnvelope>) -> Arc<Self> {
            Arc::new(Self {
                events,
                acked: Arc::new(Mutex::new(BTreeSet::new())),
                subscriptions: AtomicUsize::new(0),
            })
        }

        /// Waits until `count` deliveries are acknowledged.
        async fn wait_for_acks(&self, count: usize) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.acked.lock().unwrap().len() < count {
                assert!(
                    Instant::now() < deadline,
                    "not every delivery was acknowledged"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Runs the feed from `bus` until the token is cancelled.
    fn follow_bus(
        store: &EventStore,
        follower: &Arc<Recorder>,
        bus: &Arc<FakeBus>,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let cancel = CancellationToken::new();
        let running = tokio::spawn(run(
            store.clone(),
            NAMES,
            FeedSource::Bus(bus.clone()),
            follower.clone(),
            cancel.clone(),
        ));
        (cancel, running)
    }

    #[derive(Debug)]
    struct FakeAck {
        index: usize,
        acked: Arc<Mutex<BTreeSet<usize>>>,
    }

    impl Acker for FakeAck {
        fn ack(self: Box<Self>) -> futures::future::BoxFuture<'static, Result<(), BusError>> {
            self.acked.lock().unwrap().insert(self.index);
            Box::pin(async { Ok(()) })
        }
    }

    #[async_trait::async_trait]
    impl EventSubscriber for FakeBus {
        async fn follow(&self, _: mpos_bus::FollowOptions) -> Result<EventStream, BusError> {
            Err(BusError::Unsupported(
                "the feed subscribes, it never follows".into(),
            ))
        }

        async fn subscribe(&self, options: SubscribeOptions) -> Result<EventStream, BusError> {
            assert_eq!(options, SubscribeOptions::new("followed", "test"));
            self.subscriptions.fetch_add(1, Ordering::SeqCst);
            let acked = self.acked.lock().unwrap().clone();
            let deliveries: Vec<Result<Delivery, BusError>> = self
                .events
                .iter()
                .enumerate()
                .filter(|(index, _)| !acked.contains(index))
                .map(|(index, envelope)| {
                    let acker = FakeAck {
                        index,
                        acked: self.acked.clone(),
                    };
                    Ok(Delivery::new(envelope.clone(), Box::new(acker)))
                })
                .collect();
            Ok(EventStream::new(futures::StreamExt::chain(
                futures::stream::iter(deliveries),
                futures::stream::pending(),
            )))
        }
    }

    #[tokio::test]
    async fn a_bus_source_acknowledges_applied_events_and_redelivers_failed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        // The second event's work fails once; the third is delivered twice.
        let follower = Arc::new(Recorder::new(store.clone(), 0));
        let bus = FakeBus::new(vec![event(1), event(2), event(3), event(3), event(4)]);
        feed(&store, &follower)
            .handle_batch(0, &[event(1)])
            .await
            .unwrap();
        follower.failing.store(1, Ordering::SeqCst);
        let (cancel, running) = follow_bus(&store, &follower, &bus);

        wait_for_checkpoint(&store, 4).await;
        bus.wait_for_acks(5).await;
        assert_eq!(log(&store).await, vec![1, 2, 3, 4]);
        assert!(bus.subscriptions.load(Ordering::SeqCst) >= 2);
        // The deliveries that arrived together (2, 3, 3 again, 4) are one batch, its
        // duplicate skipped; the failure of one key's work fails the batch, which comes
        // again whole (work is idempotent), so the other key's work runs twice too.
        assert_eq!(
            follower.worked(),
            vec![
                ("even".to_owned(), vec![2, 4]),
                ("even".to_owned(), vec![2, 4]),
                ("odd".to_owned(), vec![1]),
                ("odd".to_owned(), vec![3]),
                ("odd".to_owned(), vec![3]),
            ]
        );

        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
    }

    /// A sparse feed (one event type; its positions have gaps by design) applies every
    /// delivery: it waits for no missing position, and a redelivery older than its
    /// checkpoint (after a crash, the broker redelivers unacknowledged events after later
    /// ones) is applied too, its work being idempotent. The checkpoint is the highest
    /// position applied; every delivery is acknowledged once committed.
    #[tokio::test]
    async fn a_sparse_feed_applies_every_delivery_whatever_its_position() {
        const SPARSE: FeedNames = FeedNames {
            event_type: Some("test.Happened"),
            ..NAMES
        };
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let follower = Arc::new(Recorder::new(store.clone(), 0));
        let feed = Feed {
            store: store.clone(),
            names: SPARSE,
            follower: follower.clone(),
        };
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let deliver = |index: usize, position: u64| {
            Delivery::new(
                event(position),
                Box::new(FakeAck {
                    index,
                    acked: acked.clone(),
                }),
            )
        };
        let checkpoint = || store.consumer_position(SPARSE.consumer);

        // Positions 3 and 9 of the followed log: no wait for 1, 2 or 4 to 8.
        feed.handle_deliveries(vec![deliver(0, 9), deliver(1, 3)], &mut None)
            .await
            .unwrap();
        assert_eq!(checkpoint().await.unwrap(), 9);
        assert_eq!(follower.worked(), vec![("odd".to_owned(), vec![3, 9])]);
        // 5, redelivered after 9 was applied, and 9 again: applied, the checkpoint stays.
        feed.handle_deliveries(vec![deliver(2, 5), deliver(3, 9)], &mut None)
            .await
            .unwrap();
        assert_eq!(checkpoint().await.unwrap(), 9);
        assert_eq!(
            follower.worked(),
            vec![
                ("odd".to_owned(), vec![3, 9]),
                ("odd".to_owned(), vec![5, 9]),
            ]
        );
        assert_eq!(*acked.lock().unwrap(), BTreeSet::from([0, 1, 2, 3]));
    }

    /// Deliveries that arrive together out of order are applied in stream order; one after a
    /// gap is left unacknowledged (the broker redelivers it) while the events before it are
    /// missing.
    #[tokio::test]
    async fn deliveries_arriving_together_are_applied_in_order_up_to_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let follower = Arc::new(Recorder::new(store.clone(), 0));
        // 5 and 6 are missing: 7 waits for them.
        let bus = FakeBus::new(vec![event(3), event(1), event(7), event(2), event(4)]);
        let (cancel, running) = follow_bus(&store, &follower, &bus);
        wait_for_checkpoint(&store, 4).await;
        bus.wait_for_acks(4).await;
        assert_eq!(log(&store).await, vec![1, 2, 3, 4]);
        assert_eq!(
            *bus.acked.lock().unwrap(),
            BTreeSet::from([0, 1, 3, 4]),
            "7 (index 2) stays unacknowledged"
        );
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
    }
}
