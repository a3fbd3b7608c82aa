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

use futures::StreamExt;
use pg_copy::{CopyError, Decoder, Row};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::event::{NewEvent, StoredEvent};
use crate::store::{EVENT_COLUMNS, EventStore, to_u64};

/// Events per batch handed over.
const BATCH: usize = 1_024;
/// Batches read ahead of the caller.
const AHEAD: usize = 4;
/// SQLite: events per page read.
const PAGE: u32 = 10_000;
/// Columns of an event row.
const COLUMNS: u16 = 13;

type Batch = Result<Vec<StoredEvent>, StoreError>;

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
    pub async fn next_batch(&mut self) -> Result<Option<Vec<StoredEvent>>, StoreError> {
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
    let mut batch = Vec::with_capacity(BATCH);
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
        if batch.len() >= BATCH
            && sender
                .send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))))
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

fn decode_rows(decoder: &mut Decoder, batch: &mut Vec<StoredEvent>) -> Result<(), StoreError> {
    while let Some(row) = decoder.next_row().map_err(copy_error)? {
        batch.push(event_from_row(&row).map_err(copy_error)?);
    }
    Ok(())
}

fn copy_error(error: CopyError) -> StoreError {
    StoreError::Corrupt(format!("reading the log with COPY: {error}"))
}

/// A row of [`EVENT_COLUMNS`] in its binary COPY form.
fn event_from_row(row: &Row<'_>) -> Result<StoredEvent, CopyError> {
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
    Ok(StoredEvent {
        global_position: unsigned(0)?,
        event: NewEvent {
            event_id: row.text(1)?.to_owned(),
            tenant_id: row.text(2)?.to_owned(),
            aggregate_type: row.text(3)?.to_owned(),
            aggregate_id: row.text(4)?.to_owned(),
            sequence: unsigned(5)?,
            event_type: row.text(6)?.to_owned(),
            event_version: row.text(7)?.to_owned(),
            payload: row.text(8)?.to_owned(),
            metadata: row.text(9)?.to_owned(),
            occurred_at_us: row.int8(10)?,
        },
        previous_hash: hash(11)?,
        hash: hash(12)?,
    })
}

/// SQLite: pages of `read_after`.
async fn page_range(store: EventStore, first: u64, last: u64, sender: mpsc::Sender<Batch>) {
    let mut after = first.saturating_sub(1);
    loop {
        let page = match store.read_after(after, PAGE).await {
            Ok(page) => page,
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        let Some(read) = page.last().map(|event| event.global_position) else {
            return;
        };
        after = read;
        let page: Vec<_> = page
            .into_iter()
            .take_while(|event| event.global_position <= last)
            .collect();
        let complete = after >= last || page.is_empty();
        if !page.is_empty() && sender.send(Ok(page)).await.is_err() {
            return;
        }
        if complete {
            return;
        }
    }
}
