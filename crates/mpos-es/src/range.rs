//! A window of the log read ahead, in order, while the caller works on what came before.
//!
//! An audit reads every event once, in order, and spends as long checking each as reading it.
//! Paging with `read_after` alternates the two: the database waits while the caller hashes a
//! page, the caller waits while the database sends the next. [`EventRange`] reads on a task of
//! its own and hands over batches through a short queue, so the two overlap.
//!
//! On PostgreSQL the window is one `COPY (SELECT …) TO STDOUT (FORMAT binary)` on a native
//! connection, decoded by [`pg_copy`]: the server streams the rows without a `SELECT`'s
//! per-row protocol messages, and nothing goes through the `Any` driver's conversion of
//! every value. One statement also reads the whole window in one snapshot. On SQLite the
//! window is read in pages on a blocking thread, as `read_after` reads.
//!
//! A batch ([`EventBatch`]) holds the rows a COPY handed over as they came: the text of a
//! batch's events in one buffer, each event's fields as spans of it. An audit hashes and
//! checks [`EventView`]s borrowed from it, and builds a [`StoredEvent`] only where it needs
//! one; per event, nothing is allocated.

use futures::StreamExt;
use pg_copy::{CopyError, Decoder, Row};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::chain::EventFields;
use crate::error::StoreError;
use crate::event::{NewEvent, StoredEvent};
use crate::store::{EVENT_COLUMNS, EventStore, to_u64};

/// Events per batch handed over.
const BATCH: usize = 1_024;
/// Bytes of text after which a batch is handed over with fewer events (large payloads).
const BATCH_TEXT: usize = 4 << 20;
/// Batches read ahead of the caller.
const AHEAD: usize = 4;
/// SQLite: events per page read.
const PAGE: u32 = 10_000;
/// Columns of an event row.
const COLUMNS: u16 = 13;

type Batch = Result<EventBatch, StoreError>;

/// Text fields of an event, in [`EVENT_COLUMNS`] order: event id, tenant, aggregate type,
/// aggregate id, event type, event version, payload, metadata.
pub(crate) const TEXT_FIELDS: usize = 8;
/// The columns of [`EVENT_COLUMNS`] that hold them.
pub(crate) const TEXT_COLUMNS: [usize; TEXT_FIELDS] = [1, 2, 3, 4, 6, 7, 8, 9];

/// A batch of consecutive events of a range, as the read handed them over: the text fields
/// of every event in one buffer, each event's fixed fields beside the spans of its text.
#[derive(Debug)]
pub struct EventBatch {
    text: Vec<u8>,
    rows: Vec<PackedRow>,
}

/// An event of a packed batch: its fixed-size fields, and where its text fields end in the
/// batch's text (field `i` spans `ends[i - 1]..ends[i]`, the first from `start`).
#[derive(Debug)]
struct PackedRow {
    global_position: u64,
    sequence: u64,
    occurred_at_us: i64,
    previous_hash: [u8; 32],
    hash: [u8; 32],
    start: usize,
    ends: [usize; TEXT_FIELDS],
}

/// One event of a batch, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventView<'a> {
    /// Gap-free position in the service log.
    pub global_position: u64,
    /// The hashed fields.
    pub fields: EventFields<'a>,
    /// Hash of the previous event in the log.
    pub previous_hash: &'a [u8; 32],
    /// Hash of this event's canonical encoding.
    pub hash: &'a [u8; 32],
}

impl EventView<'_> {
    /// The event, owned. Its text must be UTF-8: a COPY of `text` columns is, unless the
    /// database was written around the service.
    pub fn to_stored(&self) -> Result<StoredEvent, StoreError> {
        let text = |bytes: &[u8], what: &str| {
            std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| {
                StoreError::Corrupt(format!(
                    "event at position {}: its {what} is not UTF-8",
                    self.global_position
                ))
            })
        };
        let fields = &self.fields;
        Ok(StoredEvent {
            global_position: self.global_position,
            event: NewEvent {
                event_id: text(fields.event_id, "event id")?,
                tenant_id: text(fields.tenant_id, "tenant")?,
                aggregate_type: text(fields.aggregate_type, "aggregate type")?,
                aggregate_id: text(fields.aggregate_id, "aggregate id")?,
                sequence: fields.sequence,
                event_type: text(fields.event_type, "event type")?,
                event_version: text(fields.event_version, "event version")?,
                payload: text(fields.payload, "payload")?,
                metadata: text(fields.metadata, "metadata")?,
                occurred_at_us: fields.occurred_at_us,
            },
            previous_hash: *self.previous_hash,
            hash: *self.hash,
        })
    }
}

impl EventBatch {
    /// An empty batch with room for `events` events of `text` bytes of text.
    pub(crate) fn with_capacity(events: usize, text: usize) -> Self {
        Self {
            text: Vec::with_capacity(text),
            rows: Vec::with_capacity(events),
        }
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Position of the last event.
    pub fn last_position(&self) -> Option<u64> {
        self.rows.last().map(|row| row.global_position)
    }

    /// The `index`th event of the batch.
    pub fn get(&self, index: usize) -> Option<EventView<'_>> {
        let row = self.rows.get(index)?;
        let mut start = row.start;
        let mut fields = [&[][..]; TEXT_FIELDS];
        for (field, &end) in fields.iter_mut().zip(&row.ends) {
            *field = self.text.get(start..end)?;
            start = end;
        }
        let [
            event_id,
            tenant_id,
            aggregate_type,
            aggregate_id,
            event_type,
            event_version,
            payload,
            metadata,
        ] = fields;
        Some(EventView {
            global_position: row.global_position,
            fields: EventFields {
                event_id,
                tenant_id,
                aggregate_type,
                aggregate_id,
                sequence: row.sequence,
                event_type,
                event_version,
                payload,
                metadata,
                occurred_at_us: row.occurred_at_us,
            },
            previous_hash: &row.previous_hash,
            hash: &row.hash,
        })
    }

    /// The events in order, borrowed.
    pub fn iter(&self) -> impl Iterator<Item = EventView<'_>> {
        (0..self.len()).map_while(|index| self.get(index))
    }

    /// The events, owned.
    pub fn into_events(self) -> Result<Vec<StoredEvent>, StoreError> {
        self.iter().map(|view| view.to_stored()).collect()
    }

    /// Keeps the events up to position `last`.
    pub(crate) fn truncate_after(&mut self, last: u64) {
        let keep = self
            .rows
            .iter()
            .take_while(|row| row.global_position <= last)
            .count();
        if let Some(row) = self.rows.get(keep) {
            self.text.truncate(row.start);
        }
        self.rows.truncate(keep);
    }

    /// Appends an event: its fixed fields, and its text fields copied into the batch's text
    /// (`text` in [`TEXT_COLUMNS`] order).
    pub(crate) fn push(
        &mut self,
        global_position: u64,
        sequence: u64,
        occurred_at_us: i64,
        text: [&[u8]; TEXT_FIELDS],
        previous_hash: [u8; 32],
        hash: [u8; 32],
    ) {
        let start = self.text.len();
        let mut ends = [start; TEXT_FIELDS];
        for (end, field) in ends.iter_mut().zip(text) {
            self.text.extend_from_slice(field);
            *end = self.text.len();
        }
        self.rows.push(PackedRow {
            global_position,
            sequence,
            occurred_at_us,
            previous_hash,
            hash,
            start,
            ends,
        });
    }

    /// Appends a row of [`EVENT_COLUMNS`] in its binary COPY form.
    fn push_row(&mut self, row: &Row<'_>) -> Result<(), CopyError> {
        let hash = |column: usize| -> Result<[u8; 32], CopyError> {
            row.bytes(column)?.try_into().map_err(|_| CopyError::Value {
                column,
                what: "a hash is 32 bytes",
            })
        };
        let unsigned = |column: usize| -> Result<u64, CopyError> {
            to_u64(row.int8(column)?).map_err(|_| CopyError::Value {
                column,
                what: "a position or sequence is not negative",
            })
        };
        let mut text = [&[][..]; TEXT_FIELDS];
        for (field, column) in text.iter_mut().zip(TEXT_COLUMNS) {
            *field = row.bytes(column)?;
        }
        self.push(
            unsigned(0)?,
            unsigned(5)?,
            row.int8(10)?,
            text,
            hash(11)?,
            hash(12)?,
        );
        Ok(())
    }

    /// Whether the batch is due to be handed over.
    fn is_full(&self) -> bool {
        self.rows.len() >= BATCH || self.text.len() >= BATCH_TEXT
    }
}

/// The events at positions `first..=last` of a log, in order, read ahead in batches.
#[derive(Debug)]
pub struct EventRange {
    batches: mpsc::Receiver<Batch>,
    reader: Option<JoinHandle<()>>,
}

impl EventRange {
    /// Starts reading `first..=last` of `store` (`last` = `u64::MAX`: to the end of the log
    /// as it is when the read starts).
    pub fn new(store: &EventStore, first: u64, last: u64) -> Self {
        let (sender, batches) = mpsc::channel(AHEAD);
        let reader = match store.long_reader() {
            Some(pool) => tokio::spawn(copy_range(pool.clone(), first, last, sender)),
            None => tokio::spawn(page_range(store.clone(), first, last, sender)),
        };
        Self {
            batches,
            reader: Some(reader),
        }
    }

    /// The next batch, `None` once the window is read. An error ends the range.
    pub async fn next_batch(&mut self) -> Result<Option<EventBatch>, StoreError> {
        if let Some(batch) = self.batches.recv().await {
            return batch.map(Some);
        }
        // The reader hung up: it finished, or it failed without a word (a panic).
        match self.reader.take() {
            Some(reader) => reader
                .await
                .map(|()| None)
                .map_err(|error| StoreError::Unavailable(format!("log reader task: {error}"))),
            None => Ok(None),
        }
    }
}

/// PostgreSQL: one `COPY` of the window, decoded as it streams.
async fn copy_range(pool: sqlx::PgPool, first: u64, last: u64, sender: mpsc::Sender<Batch>) {
    if let Err(error) = copy_into(&pool, first, last, &sender).await {
        let _ = sender.send(Err(error)).await;
    }
}

async fn copy_into(
    pool: &sqlx::PgPool,
    first: u64,
    last: u64,
    sender: &mpsc::Sender<Batch>,
) -> Result<(), StoreError> {
    let (first, last) = (
        i64::try_from(first).unwrap_or(i64::MAX),
        i64::try_from(last).unwrap_or(i64::MAX),
    );
    // Both bounds are integers formatted here: COPY takes no bind parameters.
    let statement = format!(
        "COPY (SELECT {EVENT_COLUMNS} FROM es_events WHERE global_position >= {first} \
         AND global_position <= {last} ORDER BY global_position) TO STDOUT (FORMAT binary)"
    );
    let mut connection = pool.acquire().await?;
    let mut stream = connection.copy_out_raw(&statement).await?;
    let mut decoder = Decoder::new(COLUMNS);
    let mut batch = EventBatch::with_capacity(BATCH, BATCH * 512);
    let mut finished = false;
    let outcome = loop {
        let Some(chunk) = stream.next().await else {
            finished = true;
            break decoder.finish().map_err(copy_error);
        };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => break Err(error.into()),
        };
        decoder.push(&chunk);
        if let Err(error) = decode_rows(&mut decoder, &mut batch) {
            break Err(error);
        }
        if batch.is_full()
            && sender
                .send(Ok(std::mem::replace(
                    &mut batch,
                    EventBatch::with_capacity(BATCH, BATCH * 512),
                )))
                .await
                .is_err()
        {
            // The caller stopped reading (it found what it looked for).
            break Ok(());
        }
    };
    drop(stream);
    if !finished {
        // A COPY left half read would be drained by the connection's next user: close it.
        connection.close_on_drop();
    }
    outcome?;
    if !batch.is_empty() {
        let _ = sender.send(Ok(batch)).await;
    }
    Ok(())
}

fn decode_rows(decoder: &mut Decoder, batch: &mut EventBatch) -> Result<(), StoreError> {
    while let Some(row) = decoder.next_row().map_err(copy_error)? {
        batch.push_row(&row).map_err(copy_error)?;
    }
    Ok(())
}

fn copy_error(error: CopyError) -> StoreError {
    StoreError::Corrupt(format!("reading the log with COPY: {error}"))
}

/// SQLite: pages read as batches on a blocking thread.
async fn page_range(store: EventStore, first: u64, last: u64, sender: mpsc::Sender<Batch>) {
    let mut after = first.saturating_sub(1);
    loop {
        let mut page = match store.read_batch_after(after, PAGE).await {
            Ok(page) => page,
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        let Some(read) = page.last_position() else {
            return;
        };
        after = read;
        page.truncate_after(last);
        let complete = after >= last || page.is_empty();
        if !page.is_empty() && sender.send(Ok(page)).await.is_err() {
            return;
        }
        if complete {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::event_hash;
    use crate::chain::tests::event;

    /// A binary COPY stream (PostgreSQL's documented format) of rows of [`EVENT_COLUMNS`].
    fn copy_stream(rows: &[[Vec<u8>; 13]]) -> Vec<u8> {
        let mut stream = pg_copy::SIGNATURE.to_vec();
        stream.extend_from_slice(&[0; 8]);
        for row in rows {
            stream.extend_from_slice(&13i16.to_be_bytes());
            for field in row {
                let length = i32::try_from(field.len()).expect("short field");
                stream.extend_from_slice(&length.to_be_bytes());
                stream.extend_from_slice(field);
            }
        }
        stream.extend_from_slice(&(-1i16).to_be_bytes());
        stream
    }

    fn row_of(position: i64, event: &NewEvent, previous_hash: [u8; 32]) -> [Vec<u8>; 13] {
        let text = |value: &str| value.as_bytes().to_vec();
        [
            position.to_be_bytes().to_vec(),
            text(&event.event_id),
            text(&event.tenant_id),
            text(&event.aggregate_type),
            text(&event.aggregate_id),
            i64::try_from(event.sequence)
                .expect("small")
                .to_be_bytes()
                .to_vec(),
            text(&event.event_type),
            text(&event.event_version),
            text(&event.payload),
            text(&event.metadata),
            event.occurred_at_us.to_be_bytes().to_vec(),
            previous_hash.to_vec(),
            event_hash(event, &previous_hash).to_vec(),
        ]
    }

    fn decode(stream: &[u8], chunk: usize) -> Result<EventBatch, CopyError> {
        let mut decoder = Decoder::new(COLUMNS);
        let mut batch = EventBatch::with_capacity(BATCH, BATCH * 512);
        for piece in stream.chunks(chunk) {
            decoder.push(piece);
            while let Some(row) = decoder.next_row()? {
                batch.push_row(&row)?;
            }
        }
        decoder.finish()?;
        Ok(batch)
    }

    #[test]
    fn a_packed_batch_gives_back_the_events_and_their_hashes() {
        let first = event(1, r#"{"name":"Zoë 🧾"}"#);
        let second = event(2, "");
        let first_hash = event_hash(&first, &[0; 32]);
        let stream = copy_stream(&[row_of(1, &first, [0; 32]), row_of(2, &second, first_hash)]);
        // Chunks of every size, rows split anywhere.
        for chunk in [1, 7, 64, stream.len()] {
            let batch = decode(&stream, chunk).expect("decoded");
            assert_eq!(batch.len(), 2);
            for view in batch.iter() {
                assert_eq!(view.fields.hash(view.previous_hash), *view.hash);
            }
            let events = batch.into_events().expect("events");
            assert_eq!(events[0].event, first);
            assert_eq!(events[1].event, second);
            assert_eq!(events[1].global_position, 2);
            assert_eq!(events[1].previous_hash, first_hash);
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_hashed_as_stored_and_refused_as_an_event() {
        let plain = event(1, "{}");
        let mut row = row_of(1, &plain, [0; 32]);
        // A payload byte no UTF-8 text holds, hashed as the row stores it.
        row[8] = b"{\"a\":\"\xff\"}".to_vec();
        let batch = decode(&copy_stream(&[row]), 16).expect("decoded");
        let view = batch.get(0).expect("one row");
        assert_eq!(view.fields.payload, b"{\"a\":\"\xff\"}");
        assert_ne!(view.fields.hash(view.previous_hash), *view.hash);
        assert!(matches!(
            view.to_stored(),
            Err(StoreError::Corrupt(message)) if message.contains("payload is not UTF-8")
        ));
    }

    #[test]
    fn a_malformed_row_is_refused() {
        let mut row = row_of(1, &event(1, "{}"), [0; 32]);
        row[12] = vec![0; 31];
        assert_eq!(
            decode(&copy_stream(&[row]), 64).err(),
            Some(CopyError::Value {
                column: 12,
                what: "a hash is 32 bytes"
            })
        );
        let mut row = row_of(1, &event(1, "{}"), [0; 32]);
        row[0] = (-5i64).to_be_bytes().to_vec();
        assert!(matches!(
            decode(&copy_stream(&[row]), 64),
            Err(CopyError::Value { column: 0, .. })
        ));
    }
}
