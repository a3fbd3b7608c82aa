//! SQLite writes: one native connection on its own thread writes for the whole store and
//! commits every write queued meanwhile in one transaction (group commit, ADR 12).
//!
//! SQLite has a single writer and, with `synchronous = FULL`, one fsync per commit. Written
//! one transaction per append through sqlx (a round trip to sqlx's worker thread per
//! statement), concurrent commands queue behind each other's fsync. Here each queued write
//! runs inside its own savepoint of the shared transaction, so a write that fails (a
//! sequence conflict, a moved checkpoint) is rolled back alone and answered its own error,
//! while the others commit together; nobody is answered before the commit is durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::chain::Checkpoint;
use crate::error::StoreError;
use crate::event::{NewEvent, StoredEvent, now_micros};
use crate::store::{Document, Snapshot, chain_events, sqlite_error, to_i64};
use crate::tail::Tail;

/// Writes queued before the writer stops to commit.
const QUEUE: usize = 4096;
/// Writes committed together at most.
const BATCH: usize = 512;

/// A write to the log's database.
#[derive(Debug)]
pub(crate) enum Write {
    /// Events (and optionally a snapshot), chained after the head.
    Append {
        events: Vec<NewEvent>,
        snapshot: Option<Snapshot>,
    },
    /// Documents written and removed, and a projection checkpoint moved from `from` to `to`.
    CommitDocuments {
        projection: String,
        documents: Vec<Document>,
        removed: Vec<String>,
        consumer: String,
        from: u64,
        to: u64,
    },
    /// Documents of a projection without a checkpoint.
    PutDocuments {
        projection: String,
        documents: Vec<Document>,
    },
    /// A read model and its checkpoint, dropped.
    DropDocuments {
        projection: String,
        consumer: String,
    },
    /// A consumer's position.
    ConsumerPosition { name: String, position: u64 },
    /// A signed checkpoint of the chain.
    Checkpoint(Checkpoint),
}

type Reply = oneshot::Sender<Result<Vec<StoredEvent>, StoreError>>;

/// The log's last position and hash.
type Head = (u64, [u8; 32]);

/// The handle of the writer thread; the thread stops when every handle is gone.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    jobs: mpsc::Sender<(Write, Reply)>,
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

impl SqliteWriter {
    /// Opens the writer connection to the database at `path` (the schema exists) and starts
    /// its thread.
    /// Every committed append is recorded in `tail`, in commit order, before it is answered.
    pub(crate) fn start(
        path: &str,
        service: &str,
        tail: Arc<Mutex<Tail>>,
        append_commits: Arc<AtomicU64>,
    ) -> Result<Self, StoreError> {
        let connection = Connection::open(path).map_err(sqlite_error)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(sqlite_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(sqlite_error)?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name(format!("sqlite-writer-{service}"))
            .spawn(move || run(connection, queue, &tail, &append_commits))
            .map_err(|error| StoreError::Unavailable(format!("sqlite writer thread: {error}")))?;
        Ok(Self { jobs })
    }

    /// Queues a write and waits until it is committed (or refused).
    pub(crate) async fn write(&self, write: Write) -> Result<Vec<StoredEvent>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((write, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the sqlite writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the sqlite writer stopped".into()))?
    }
}

fn run(
    mut connection: Connection,
    mut queue: mpsc::Receiver<(Write, Reply)>,
    tail: &Mutex<Tail>,
    append_commits: &AtomicU64,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (writes, replies): (Vec<Write>, Vec<Reply>) = batch.into_iter().unzip();
        let results = commit_batch(&mut connection, writes);
        {
            let mut tail = tail
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for stored in results.iter().flatten() {
                tail.record(stored);
            }
        }
        if results.iter().flatten().any(|stored| !stored.is_empty()) {
            append_commits.fetch_add(1, Ordering::Relaxed);
        }
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have given up waiting; the write stands either way.
            let _ = reply.send(result);
        }
    }
}

/// Applies every write in its own savepoint of one transaction and commits once; a failed
/// commit fails them all.
fn commit_batch(
    connection: &mut Connection,
    writes: Vec<Write>,
) -> Vec<Result<Vec<StoredEvent>, StoreError>> {
    let count = writes.len();
    let everyone = |error: StoreError| (0..count).map(|_| Err(error.clone())).collect();
    let tx = match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => return everyone(sqlite_error(error)),
    };
    let head = tx
        .query_row(
            "SELECT position, head_hash FROM es_log_head WHERE id = 1",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )
        .map_err(sqlite_error)
        .and_then(|(position, hash)| {
            let position = u64::try_from(position)
                .map_err(|_| StoreError::Corrupt(format!("negative head position {position}")))?;
            let hash = <[u8; 32]>::try_from(hash).map_err(|hash| {
                StoreError::Corrupt(format!("head hash of {} bytes", hash.len()))
            })?;
            Ok((position, hash))
        });
    let mut head = match head {
        Ok(head) => head,
        Err(error) => return everyone(error),
    };
    let mut results = Vec::with_capacity(count);
    for write in writes {
        // Savepoint statements prepared once (rusqlite's `Savepoint` parses them each time).
        let result =
            statement(&tx, "SAVEPOINT mpos_write").and_then(|()| match apply(&tx, write, head) {
                Ok((stored, moved)) => {
                    statement(&tx, "RELEASE mpos_write")?;
                    head = moved;
                    Ok(stored)
                }
                Err(error) => {
                    statement(&tx, "ROLLBACK TO mpos_write")?;
                    statement(&tx, "RELEASE mpos_write")?;
                    Err(error)
                }
            });
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(error) => everyone(sqlite_error(error)),
    }
}

/// Runs a statement without parameters, prepared once per connection.
fn statement(connection: &Connection, sql: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(|_| ())
        .map_err(sqlite_error)
}

/// One write inside its savepoint; returns the events appended (none for other writes) and
/// the head after it.
fn apply(
    connection: &Connection,
    write: Write,
    head: Head,
) -> Result<(Vec<StoredEvent>, Head), StoreError> {
    match write {
        Write::Append { events, snapshot } => append(connection, events, snapshot, head),
        Write::CommitDocuments {
            projection,
            documents,
            removed,
            consumer,
            from,
            to,
        } => {
            connection
                .prepare_cached(
                    "INSERT INTO es_consumer_positions (name, position, updated_at_us) \
                     VALUES (?1, 0, ?2) ON CONFLICT (name) DO NOTHING",
                )
                .and_then(|mut statement| statement.execute(params![consumer, now_micros()]))
                .map_err(sqlite_error)?;
            let (to_position, from_position) = (to_i64(to)?, to_i64(from)?);
            let moved = connection
                .prepare_cached(
                    "UPDATE es_consumer_positions SET position = ?1, updated_at_us = ?2 \
                     WHERE name = ?3 AND position = ?4",
                )
                .and_then(|mut statement| {
                    statement.execute(params![to_position, now_micros(), consumer, from_position])
                })
                .map_err(sqlite_error)?;
            if moved != 1 {
                return Err(StoreError::Conflict {
                    aggregate_type: "checkpoint".into(),
                    aggregate_id: consumer,
                    sequence: from,
                });
            }
            upsert_documents(connection, &projection, &documents)?;
            let mut remove = connection
                .prepare_cached(
                    "DELETE FROM es_documents WHERE projection = ?1 AND document_id = ?2",
                )
                .map_err(sqlite_error)?;
            for id in &removed {
                remove
                    .execute(params![projection, id])
                    .map_err(sqlite_error)?;
            }
            Ok((Vec::new(), head))
        }
        Write::PutDocuments {
            projection,
            documents,
        } => {
            upsert_documents(connection, &projection, &documents)?;
            Ok((Vec::new(), head))
        }
        Write::DropDocuments {
            projection,
            consumer,
        } => {
            connection
                .execute(
                    "DELETE FROM es_documents WHERE projection = ?1",
                    params![projection],
                )
                .map_err(sqlite_error)?;
            connection
                .execute(
                    "DELETE FROM es_consumer_positions WHERE name = ?1",
                    params![consumer],
                )
                .map_err(sqlite_error)?;
            Ok((Vec::new(), head))
        }
        Write::ConsumerPosition { name, position } => {
            let position = to_i64(position)?;
            connection
                .prepare_cached(
                    "INSERT INTO es_consumer_positions (name, position, updated_at_us) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                     updated_at_us = excluded.updated_at_us",
                )
                .and_then(|mut statement| {
                    statement.execute(params![name, position, now_micros()])
                })
                .map_err(sqlite_error)?;
            Ok((Vec::new(), head))
        }
        Write::Checkpoint(checkpoint) => {
            connection
                .execute(
                    "INSERT INTO es_chain_checkpoints (position, head_hash, signed_at_us, key_id, signature) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (position) DO NOTHING",
                    params![
                        to_i64(checkpoint.position)?,
                        checkpoint.head_hash.to_vec(),
                        checkpoint.signed_at_us,
                        checkpoint.key_id,
                        checkpoint.signature.to_vec()
                    ],
                )
                .map_err(sqlite_error)?;
            Ok((Vec::new(), head))
        }
    }
}

fn append(
    connection: &Connection,
    events: Vec<NewEvent>,
    snapshot: Option<Snapshot>,
    (position, previous_hash): Head,
) -> Result<(Vec<StoredEvent>, Head), StoreError> {
    let (stored, new_hash) = chain_events(events, position, previous_hash);
    let new_position = stored
        .last()
        .map_or(position, |event| event.global_position);
    {
        let mut insert = connection
            .prepare_cached(
                "INSERT INTO es_events (global_position, event_id, tenant_id, aggregate_type, \
                 aggregate_id, sequence, event_type, event_version, payload, metadata, \
                 occurred_at_us, previous_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .map_err(sqlite_error)?;
        for stored in &stored {
            let event = &stored.event;
            let inserted = insert.execute(params![
                to_i64(stored.global_position)?,
                event.event_id,
                event.tenant_id,
                event.aggregate_type,
                event.aggregate_id,
                to_i64(event.sequence)?,
                event.event_type,
                event.event_version,
                event.payload,
                event.metadata,
                event.occurred_at_us,
                stored.previous_hash.as_slice(),
                stored.hash.as_slice(),
            ]);
            match inserted {
                Ok(_) => {}
                Err(error) if is_unique_violation(&error) => {
                    return Err(StoreError::Conflict {
                        aggregate_type: event.aggregate_type.clone(),
                        aggregate_id: event.aggregate_id.clone(),
                        sequence: event.sequence,
                    });
                }
                Err(error) => return Err(sqlite_error(error)),
            }
        }
    }
    if !stored.is_empty() {
        let head_position = to_i64(new_position)?;
        connection
            .prepare_cached("UPDATE es_log_head SET position = ?1, head_hash = ?2 WHERE id = 1")
            .and_then(|mut statement| {
                statement.execute(params![head_position, new_hash.as_slice()])
            })
            .map_err(sqlite_error)?;
    }
    if let Some(snapshot) = snapshot {
        let last_sequence = to_i64(snapshot.last_sequence)?;
        let snapshot_version = to_i64(snapshot.snapshot_version)?;
        connection
            .prepare_cached(
                "INSERT INTO es_snapshots (aggregate_type, aggregate_id, last_sequence, \
                 snapshot_version, payload) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET \
                 last_sequence = excluded.last_sequence, \
                 snapshot_version = excluded.snapshot_version, payload = excluded.payload",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    snapshot.aggregate_type,
                    snapshot.aggregate_id,
                    last_sequence,
                    snapshot_version,
                    snapshot.payload
                ])
            })
            .map_err(sqlite_error)?;
    }
    Ok((stored, (new_position, new_hash)))
}

fn upsert_documents(
    connection: &Connection,
    projection: &str,
    documents: &[Document],
) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare_cached(
            "INSERT INTO es_documents (projection, document_id, tenant_id, position, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (projection, document_id) DO UPDATE SET \
             tenant_id = excluded.tenant_id, position = excluded.position, payload = excluded.payload",
        )
        .map_err(sqlite_error)?;
    for document in documents {
        statement
            .execute(params![
                projection,
                document.id,
                document.tenant_id,
                to_i64(document.position)?,
                document.payload
            ])
            .map_err(sqlite_error)?;
    }
    Ok(())
}
