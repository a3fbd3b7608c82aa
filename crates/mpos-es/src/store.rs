//! The event store: one service's log in PostgreSQL or SQLite, chosen by URL.
//!
//! Gap safety: every append first updates the single `es_log_head` row, which holds the last
//! position and hash of the log. The row lock (PostgreSQL) or the database write lock (SQLite)
//! is held until commit, so positions are handed out in commit order and the committed
//! positions always form a prefix `1..=N`: a reader asking for "after N" can never skip an
//! event that commits later with a smaller position.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use rusqlite::OptionalExtension;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::Notify;
use url::Url;

use crate::chain::{Checkpoint, event_hash};
use crate::error::StoreError;
use crate::event::{NewEvent, StoredEvent, now_micros};
use crate::range::{EventBatch, TEXT_COLUMNS, TEXT_FIELDS};
use crate::schema;
use crate::sqlite_writer::{SqliteWriter, Write};
use crate::tail::{Horizon, Tail, TailRead};

/// The columns of an event, in the order `decode_event` reads them.
pub(crate) const EVENT_COLUMNS: &str = "global_position, event_id, tenant_id, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata, occurred_at_us, previous_hash, hash";
/// PostgreSQL connections for long ordered reads ([`crate::EventRange`]) per store, besides
/// the pool: audits are rare and each holds one for its whole read.
const LONG_READ_CONNECTIONS: u32 = 2;
/// PostgreSQL connections per store unless the URL says `pool_size`: six services on one
/// server stay well inside PostgreSQL's default `max_connections` of 100 (at 16 each, a
/// loaded deployment ran out of server connections and payments failed after the pool's
/// 5 s wait; docs/benchmarks.md).
const DEFAULT_POOL_SIZE: u32 = 8;
/// The most a URL may ask for.
const MAX_POOL_SIZE: u32 = 64;
/// Rows per INSERT statement (13 parameters each stays far below SQLite's variable limit).
const INSERT_CHUNK: usize = 500;

/// Which database holds the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// PostgreSQL: production.
    Postgres,
    /// SQLite: the embedded default.
    Sqlite,
}

/// A snapshot of an aggregate's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Sequence of the last event folded into the snapshot.
    pub last_sequence: u64,
    /// Increases with every snapshot taken of the aggregate.
    pub snapshot_version: u64,
    /// The aggregate's state as JSON.
    pub payload: String,
}

/// A read-model document (one row of a projection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Id within the projection.
    pub id: String,
    /// The tenant the document belongs to: every query filters on it.
    pub tenant_id: String,
    /// Global position of the last event applied to it.
    pub position: u64,
    /// The document as JSON.
    pub payload: String,
}

/// An append waiting for its turn (PostgreSQL), and who waits for its result.
#[derive(Debug)]
struct QueuedAppend {
    events: Vec<NewEvent>,
    snapshot: Option<Snapshot>,
    answer: tokio::sync::oneshot::Sender<Result<Vec<StoredEvent>, StoreError>>,
}

/// PostgreSQL: the appends waiting, and whether a turn is running to take them.
#[derive(Debug, Default)]
struct AppendQueue {
    waiting: Vec<QueuedAppend>,
    /// A turn task is running; it takes whatever is queued until the queue is empty.
    turn_running: bool,
}

/// One service's event log.
#[derive(Clone, Debug)]
pub struct EventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: BackendKind,
    /// Serves appends; a single connection on SQLite (one writer at a time).
    writer: AnyPool,
    /// Serves reads; on PostgreSQL the same pool as `writer`.
    reader: AnyPool,
    service: String,
    /// Native read-only connections for long reads on SQLite.
    sqlite_reader: Option<Arc<SqliteReader>>,
    /// SQLite: the native writer thread that group-commits every write.
    sqlite_writer: Option<SqliteWriter>,
    /// PostgreSQL: native connections for long ordered reads streamed with `COPY` (an audit
    /// of the whole log), opened when first needed ([`crate::EventRange`]).
    long_reader: Option<sqlx::PgPool>,
    appended: Notify,
    /// The head this process saw last: lets an append skip the locking read when no other
    /// writer intervened (checked in the same statement that moves the head).
    head_cache: Mutex<Option<(u64, [u8; 32])>>,
    /// PostgreSQL: this process's appends, taken by one turn task at a time (ADR 22). They
    /// would queue on the head row's lock in the database anyway; queued here instead, each
    /// finds the head it cached still current, and those queued during a commit go together
    /// in the next one.
    queued: Mutex<AppendQueue>,
    /// Commits that wrote appended events, however many appends each carried (counted by
    /// the SQLite writer thread too).
    append_commits: Arc<std::sync::atomic::AtomicU64>,
    /// The newest events this process appended (see [`EventStore::read_new`]), recorded
    /// in commit order: by the turn task (PostgreSQL) or by the writer thread (SQLite).
    tail: Arc<Mutex<Tail>>,
    /// Opened with [`EventStore::connect_read_only`]: every write is refused, here and by
    /// the database itself.
    read_only: bool,
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// The service's own: creates the schema and runs the migrations.
    ReadWrite,
    /// An auditor's or an operator's look: nothing created, nothing migrated, nothing written.
    ReadOnly,
}

fn install_drivers() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(sqlx::any::install_default_drivers);
}

pub(crate) fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Encoding(format!("{value} does not fit a signed 64-bit column")))
}

pub(crate) fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("negative position or sequence {value}")))
}

fn to_hash(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|bytes| StoreError::Corrupt(format!("hash of {} bytes", bytes.len())))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database_error) => {
            database_error.is_unique_violation()
                || database_error
                    .code()
                    .is_some_and(|code| code == "23505" || code == "2067" || code == "1555")
        }
        _ => false,
    }
}

impl EventStore {
    /// Opens (and creates if needed) the log of `service` at `url`.
    ///
    /// Accepted URLs: `postgres://user@host:port/db[?schema=name][&pool_size=n]` (the schema
    /// is created if missing and used as the search path; `pool_size` connections at most,
    /// 8 unless given) and `sqlite://path/to/file.db` (the file and
    /// its directory are created if missing).
    pub async fn connect(url: &str, service: &str) -> Result<Self, StoreError> {
        Self::open(url, service, Access::ReadWrite).await
    }

    /// Opens the log of `service` at `url` for reading only, as an auditor or an operator
    /// looks at a deployment: no schema is created, no migration runs (so a database role
    /// that may only `SELECT` is enough), and every write is refused with
    /// [`StoreError::ReadOnly`]. The database enforces it too: PostgreSQL sessions start
    /// with `default_transaction_read_only`, SQLite files are opened with `mode=ro`.
    ///
    /// The same URLs as [`EventStore::connect`]; the log must exist (a missing schema, table
    /// or file is [`StoreError::Unavailable`]).
    pub async fn connect_read_only(url: &str, service: &str) -> Result<Self, StoreError> {
        Self::open(url, service, Access::ReadOnly).await
    }

    async fn open(url: &str, service: &str, access: Access) -> Result<Self, StoreError> {
        install_drivers();
        let parsed = Url::parse(url).map_err(|error| {
            StoreError::InvalidUrl(format!("{error}: expected postgres://… or sqlite://…"))
        })?;
        let store = match parsed.scheme() {
            "postgres" | "postgresql" => Self::connect_postgres(parsed, service, access).await?,
            "sqlite" => Self::connect_sqlite(url, service, access).await?,
            other => {
                return Err(StoreError::InvalidUrl(format!(
                    "unsupported scheme {other:?}: expected postgres:// or sqlite://"
                )));
            }
        };
        if access == Access::ReadOnly {
            store.check_log().await?;
        }
        Ok(store)
    }

    /// A read-only store's check that the log is there and readable.
    async fn check_log(&self) -> Result<(), StoreError> {
        for table in ["es_events", "es_log_head", "es_chain_checkpoints"] {
            sqlx::query(&format!("SELECT 1 FROM {table} LIMIT 1"))
                .fetch_optional(&self.inner.reader)
                .await
                .map_err(|error| {
                    StoreError::Unavailable(format!(
                        "no readable event log of {} here ({table}): {error}",
                        self.inner.service
                    ))
                })?;
        }
        Ok(())
    }

    /// Refuses a write on a store opened with [`EventStore::connect_read_only`].
    fn writable(&self) -> Result<(), StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly(format!(
                "the event log of {} was opened read-only",
                self.inner.service
            )));
        }
        Ok(())
    }

    async fn connect_postgres(
        mut url: Url,
        service: &str,
        access: Access,
    ) -> Result<Self, StoreError> {
        let schema = url
            .query_pairs()
            .find(|(key, _)| key == "schema")
            .map(|(_, value)| value.into_owned());
        let pool_size = match url.query_pairs().find(|(key, _)| key == "pool_size") {
            None => DEFAULT_POOL_SIZE,
            Some((_, value)) => value
                .parse::<u32>()
                .ok()
                .filter(|size| (1..=MAX_POOL_SIZE).contains(size))
                .ok_or_else(|| {
                    StoreError::InvalidUrl(format!(
                        "pool_size {value:?}: expected a number of connections from 1 to {MAX_POOL_SIZE}"
                    ))
                })?,
        };
        let other_pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| key != "schema" && key != "pool_size")
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        url.set_query(None);
        if !other_pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(other_pairs);
        }
        let mut session_options: Vec<String> = Vec::new();
        if access == Access::ReadOnly {
            session_options.push("-c default_transaction_read_only=on".to_owned());
        }
        if let Some(schema) = &schema {
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(StoreError::InvalidUrl(format!(
                    "schema {schema:?}: expected letters, digits and underscores"
                )));
            }
            session_options.push(format!("-c search_path={schema}"));
        }
        if let Some(schema) = schema.as_ref().filter(|_| access == Access::ReadWrite) {
            let bootstrap = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url.as_str())
                .await?;
            bootstrap
                .execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
                .await?;
            bootstrap.close().await;
        }
        if !session_options.is_empty() {
            url.query_pairs_mut()
                .append_pair("options", &session_options.join(" "));
        }
        let options: AnyConnectOptions = url.as_str().parse()?;
        let long_reads: sqlx::postgres::PgConnectOptions = url.as_str().parse()?;
        let long_reader = sqlx::postgres::PgPoolOptions::new()
            .max_connections(LONG_READ_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(long_reads);
        let pool = AnyPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(5))
            // No ping before every query: it was one more round trip to PostgreSQL for each
            // read and each commit (a third of them on the payment path, docs/benchmarks.md).
            // A connection that broke (a server restart) fails its next query, which sqlx
            // then closes; the caller's error is retryable (503) and the pool opens a new
            // one. Connections idle for a minute are closed before they go stale.
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        let mut store = Self::from_pools(BackendKind::Postgres, pool.clone(), pool, service);
        if let Some(inner) = Arc::get_mut(&mut store.inner) {
            inner.long_reader = Some(long_reader);
            inner.read_only = access == Access::ReadOnly;
        }
        if access == Access::ReadWrite {
            store.migrate().await?;
        }
        Ok(store)
    }

    async fn connect_sqlite(url: &str, service: &str, access: Access) -> Result<Self, StoreError> {
        let path = url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap_or_default();
        if path.is_empty() || path.starts_with(':') {
            return Err(StoreError::InvalidUrl(
                "sqlite needs a file path (sqlite://path/to/file.db): readers and the writer share it".into(),
            ));
        }
        if access == Access::ReadOnly {
            if !std::path::Path::new(path).is_file() {
                return Err(StoreError::Unavailable(format!(
                    "no event log of {service} at {path}"
                )));
            }
            return Self::connect_sqlite_read_only(url, path, service).await;
        }
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Unavailable(format!("creating {}: {error}", parent.display()))
            })?;
        }
        let url = if url.contains("mode=") {
            url.to_owned()
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        let options: AnyConnectOptions = url.parse()?;
        let pool = |connections: u32| {
            AnyPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(30))
                // A local file: a ping before every query is a round trip to sqlx's worker
                // thread for nothing.
                .test_before_acquire(false)
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        let writer = pool(1).await?;
        let reader = pool(4).await?;
        // The schema before the writer thread: it writes to the tables.
        let mut store = Self::from_pools(BackendKind::Sqlite, writer, reader, service);
        store.migrate().await?;
        let sqlite_writer = SqliteWriter::start(
            path,
            service,
            store.inner.tail.clone(),
            store.inner.append_commits.clone(),
        )?;
        if let Some(inner) = Arc::get_mut(&mut store.inner) {
            inner.sqlite_reader = Some(Arc::new(SqliteReader::new(path)));
            inner.sqlite_writer = Some(sqlite_writer);
        }
        Ok(store)
    }

    /// A SQLite log opened with `mode=ro`: no writer thread, no PRAGMA that writes.
    async fn connect_sqlite_read_only(
        url: &str,
        path: &str,
        service: &str,
    ) -> Result<Self, StoreError> {
        let base = url.split('?').next().unwrap_or(url);
        let options: AnyConnectOptions = format!("{base}?mode=ro").parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection.execute("PRAGMA busy_timeout = 10000;").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let mut store = Self::from_pools(BackendKind::Sqlite, pool.clone(), pool, service);
        if let Some(inner) = Arc::get_mut(&mut store.inner) {
            inner.sqlite_reader = Some(Arc::new(SqliteReader::new(path)));
            inner.read_only = true;
        }
        Ok(store)
    }

    fn from_pools(kind: BackendKind, writer: AnyPool, reader: AnyPool, service: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                writer,
                reader,
                service: service.to_owned(),
                sqlite_reader: None,
                sqlite_writer: None,
                long_reader: None,
                appended: Notify::new(),
                head_cache: Mutex::new(None),
                queued: Mutex::new(AppendQueue::default()),
                append_commits: Arc::new(std::sync::atomic::AtomicU64::new(0)),
                tail: Arc::new(Mutex::new(Tail::default())),
                read_only: false,
            }),
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.inner.writer.begin().await?;
        let statements = match self.inner.kind {
            BackendKind::Postgres => {
                // Serialise concurrent first starts of several replicas.
                tx.execute("SELECT pg_advisory_xact_lock(7302915004)")
                    .await?;
                schema::POSTGRES
            }
            BackendKind::Sqlite => schema::SQLITE,
        };
        for statement in statements {
            tx.execute(*statement).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The backend holding the log.
    pub fn kind(&self) -> BackendKind {
        self.inner.kind
    }

    /// The service whose log this is.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// Resolves after the next append by this process (relays wait on it instead of polling).
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.appended.notified()
    }

    /// A round trip to the database, for readiness checks.
    pub async fn check(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.inner.reader).await?;
        Ok(())
    }

    /// Appends events atomically (all or none) and, optionally, replaces an aggregate snapshot
    /// in the same transaction. Returns them with their positions and hashes.
    ///
    /// A sequence already taken for an aggregate is a [`StoreError::Conflict`].
    pub async fn append(
        &self,
        events: Vec<NewEvent>,
        snapshot: Option<Snapshot>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.writable()?;
        if events.is_empty() && snapshot.is_none() {
            return Ok(Vec::new());
        }
        let stored = match &self.inner.sqlite_writer {
            Some(writer) => writer.write(Write::Append { events, snapshot }).await?,
            None => self.append_sqlx(events, snapshot).await?,
        };
        if !stored.is_empty() {
            // The events are in the tail already: a woken relay finds them there.
            self.inner.appended.notify_waiters();
            for event in &stored {
                metrics::counter!("mpos_events_appended_total",
                    "service" => self.inner.service.clone(), "aggregate_type" => event.event.aggregate_type.clone())
                .increment(1);
            }
        }
        Ok(stored)
    }

    /// How many commits wrote appended events since this store was opened, however many
    /// appends each carried (PostgreSQL: ADR 22; SQLite: ADR 12): appends over commits is how
    /// well concurrent appends were grouped.
    pub fn append_commits(&self) -> u64 {
        self.inner
            .append_commits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`EventStore::append`] on PostgreSQL (ADR 22): the append is queued, and the turn task
    /// (started if none runs) takes every append queued meanwhile. Appends without a snapshot
    /// on the head this process left are committed together, in queue order, in one statement
    /// (all or none); if that statement is refused (a conflict, a head another writer moved)
    /// each is appended on its own, so that each is answered its own result. The turn is a
    /// task of its own: an append whose caller gives up still commits or fails whole, never
    /// half-way through someone else's batch.
    async fn append_sqlx(
        &self,
        events: Vec<NewEvent>,
        snapshot: Option<Snapshot>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let start_turn = {
            let mut queue = self
                .inner
                .queued
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.waiting.push(QueuedAppend {
                events,
                snapshot,
                answer,
            });
            !std::mem::replace(&mut queue.turn_running, true)
        };
        if start_turn {
            let store = self.clone();
            tokio::spawn(async move { store.append_turn().await });
        }
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the append's turn ended without it".into()))?
    }

    /// The turn: appends everything queued, a batch at a time, until the queue is empty.
    async fn append_turn(&self) {
        loop {
            let mut batch = self.next_batch();
            if batch.len() > 1 {
                self.append_together(batch).await;
                continue;
            }
            let Some(queued) = batch.pop() else { return };
            let result = self.append_in_turn(queued.events, queued.snapshot).await;
            // A caller that gave up still had its append done.
            let _ = queued.answer.send(result);
        }
    }

    /// The next appends to commit together, in queue order: those without a snapshot, up to
    /// [`INSERT_CHUNK`] events in all, while this process knows the head; otherwise the first
    /// alone. Empty when nothing is queued, and then the turn ends (under the same lock as
    /// the appends that would start the next one).
    fn next_batch(&self) -> Vec<QueuedAppend> {
        let mut queue = self
            .inner
            .queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if queue.waiting.is_empty() {
            queue.turn_running = false;
            return Vec::new();
        }
        let head_known = self
            .inner
            .head_cache
            .lock()
            .map(|cache| cache.is_some())
            .unwrap_or(false);
        let mut take = 0;
        let mut events = 0;
        for append in &queue.waiting {
            let joinable = head_known
                && append.snapshot.is_none()
                && !append.events.is_empty()
                && events + append.events.len() <= INSERT_CHUNK;
            if !joinable {
                break;
            }
            events += append.events.len();
            take += 1;
        }
        queue.waiting.drain(..take.max(1)).collect()
    }

    /// Commits `batch` (two or more appends without a snapshot) in one statement on the
    /// cached head; if it is refused, appends each on its own.
    async fn append_together(&self, batch: Vec<QueuedAppend>) {
        let cached = self.inner.head_cache.lock().ok().and_then(|cache| *cache);
        if let Some((cached_position, cached_hash)) = cached {
            let all: Vec<NewEvent> = batch
                .iter()
                .flat_map(|append| append.events.iter().cloned())
                .collect();
            let (stored, new_head) = chain_events(all, cached_position, cached_hash);
            match self
                .append_at_cached_head(&stored, cached_position, cached_hash, new_head)
                .await
            {
                Ok(true) => {
                    self.committed(&stored, new_head);
                    let mut rest = stored.into_iter();
                    for append in batch {
                        let own: Vec<StoredEvent> =
                            rest.by_ref().take(append.events.len()).collect();
                        let _ = append.answer.send(Ok(own));
                    }
                    return;
                }
                // The head moved, or one append conflicts: each on its own below.
                Ok(false) | Err(StoreError::Conflict { .. }) => {}
                Err(error) => {
                    for append in batch {
                        let _ = append.answer.send(Err(error.clone()));
                    }
                    return;
                }
            }
        }
        for append in batch {
            let result = self.append_in_turn(append.events, append.snapshot).await;
            let _ = append.answer.send(result);
        }
    }

    /// After a commit that wrote `stored`, in the turn task (one commit at a time): counts
    /// it, caches the head it left and records the events in the tail, in commit order.
    fn committed(&self, stored: &[StoredEvent], new_head: [u8; 32]) {
        let Some(last) = stored.last() else { return };
        self.inner
            .append_commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut cache) = self.inner.head_cache.lock() {
            *cache = Some((last.global_position, new_head));
        }
        self.inner
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(stored);
    }

    /// One append, in this process's turn: one transaction, the head row serialising writers
    /// of other processes.
    async fn append_in_turn(
        &self,
        events: Vec<NewEvent>,
        snapshot: Option<Snapshot>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let count = u64::try_from(events.len()).unwrap_or(u64::MAX);
        let cached = *self
            .inner
            .head_cache
            .lock()
            .map_err(|_| StoreError::Corrupt("head cache poisoned".into()))?;
        // The common case on PostgreSQL: this process wrote the head, no snapshot is due. One
        // autocommit statement moves the head (if it is still where this process left it)
        // and inserts the events: one round trip instead of BEGIN, UPDATE, INSERT, COMMIT.
        if let Some((cached_position, cached_hash)) = cached
            && snapshot.is_none()
            && self.inner.kind == BackendKind::Postgres
            && events.len() <= INSERT_CHUNK
        {
            let (stored, new_head) = chain_events(events.clone(), cached_position, cached_hash);
            if self
                .append_at_cached_head(&stored, cached_position, cached_hash, new_head)
                .await?
            {
                self.committed(&stored, new_head);
                return Ok(stored);
            }
        }
        let mut tx = self.inner.writer.begin().await?;
        let mut chained: Option<(Vec<StoredEvent>, [u8; 32])> = None;
        if let Some((cached_position, cached_hash)) = cached {
            let (stored, new_head) = chain_events(events.clone(), cached_position, cached_hash);
            let moved = sqlx::query(
                "UPDATE es_log_head SET position = position + $1, head_hash = $2 \
                 WHERE id = 1 AND position = $3 AND head_hash = $4 RETURNING position",
            )
            .bind(to_i64(count)?)
            .bind(new_head.to_vec())
            .bind(to_i64(cached_position)?)
            .bind(cached_hash.to_vec())
            .fetch_optional(&mut *tx)
            .await?;
            if moved.is_some() {
                chained = Some((stored, new_head));
            }
        }
        let (stored, new_head) = match chained {
            Some(chained) => chained,
            None => {
                // Another writer moved the head (or this is our first append): lock and read it.
                let row = sqlx::query(
                    "UPDATE es_log_head SET position = position WHERE id = 1 RETURNING position, head_hash",
                )
                .fetch_one(&mut *tx)
                .await?;
                let head_position = to_u64(row.try_get::<i64, _>(0)?)?;
                let head_hash = to_hash(row.try_get::<Vec<u8>, _>(1)?)?;
                let (stored, new_head) = chain_events(events, head_position, head_hash);
                sqlx::query("UPDATE es_log_head SET position = $1, head_hash = $2 WHERE id = 1")
                    .bind(to_i64(head_position + count)?)
                    .bind(new_head.to_vec())
                    .execute(&mut *tx)
                    .await?;
                (stored, new_head)
            }
        };

        for chunk in stored.chunks(INSERT_CHUNK) {
            let sql = insert_sql(chunk.len());
            let query = bind_events(sqlx::query(&sql), chunk)?;
            if let Err(error) = query.execute(&mut *tx).await {
                return Err(insert_error(error, chunk));
            }
        }

        if let Some(snapshot) = snapshot {
            sqlx::query(
                "INSERT INTO es_snapshots (aggregate_type, aggregate_id, last_sequence, snapshot_version, payload) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET \
                 last_sequence = excluded.last_sequence, snapshot_version = excluded.snapshot_version, \
                 payload = excluded.payload",
            )
            .bind(snapshot.aggregate_type)
            .bind(snapshot.aggregate_id)
            .bind(to_i64(snapshot.last_sequence)?)
            .bind(to_i64(snapshot.snapshot_version)?)
            .bind(snapshot.payload)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.committed(&stored, new_head);
        Ok(stored)
    }

    /// PostgreSQL: moves the head from where this process left it and inserts `stored` in
    /// one autocommit statement; `false` (nothing written) when another writer moved the
    /// head meanwhile. The head's row lock serializes it with every other append, exactly as
    /// the transaction does, so positions still become visible in order (ADR 2).
    async fn append_at_cached_head(
        &self,
        stored: &[StoredEvent],
        cached_position: u64,
        cached_hash: [u8; 32],
        new_head: [u8; 32],
    ) -> Result<bool, StoreError> {
        let count = u64::try_from(stored.len()).unwrap_or(u64::MAX);
        let sql = format!(
            "WITH head AS (UPDATE es_log_head SET position = position + $1, head_hash = $2 \
             WHERE id = 1 AND position = $3 AND head_hash = $4 RETURNING position) \
             INSERT INTO es_events ({EVENT_COLUMNS}) SELECT * FROM (VALUES {}) AS rows \
             WHERE EXISTS (SELECT 1 FROM head)",
            values_sql(stored.len(), 4)
        );
        let query = sqlx::query(&sql)
            .bind(to_i64(count)?)
            .bind(new_head.to_vec())
            .bind(to_i64(cached_position)?)
            .bind(cached_hash.to_vec());
        match bind_events(query, stored)?
            .execute(&self.inner.writer)
            .await
        {
            Ok(done) => Ok(done.rows_affected() == count),
            Err(error) => Err(insert_error(error, stored)),
        }
    }

    /// Events after `position`, in position order, at most `limit`, for relays and projection
    /// runners: taken from memory when this process appended them recently, else read from
    /// the log. With [`Horizon::Appended`], nothing is looked for after this process's last
    /// append (no read of the log to find that nothing follows). The log's rows never change,
    /// so the events are the ones [`EventStore::read_after`] returns; that one always reads
    /// the log, as the audit must.
    pub async fn read_new(
        &self,
        position: u64,
        limit: u32,
        horizon: Horizon,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let known = self
            .inner
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .after(position, limit);
        match known {
            TailRead::Events(events) => {
                metrics::counter!("mpos_events_read_from_memory_total", "service" => self.inner.service.clone())
                    .increment(u64::try_from(events.len()).unwrap_or(0));
                Ok(events)
            }
            TailRead::AtEnd if horizon == Horizon::Appended => Ok(Vec::new()),
            TailRead::AtEnd | TailRead::Unknown => self.read_after(position, limit).await,
        }
    }

    /// Events after `position`, in position order, at most `limit`, as the log holds them.
    pub async fn read_after(
        &self,
        position: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if self.inner.kind == BackendKind::Sqlite {
            return self.read_after_sqlite(position, limit).await;
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM es_events WHERE global_position > $1 ORDER BY global_position LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(to_i64(position)?)
            .bind(i64::from(limit))
            .fetch_all(&self.inner.reader)
            .await?;
        rows.iter().map(decode_event).collect()
    }

    /// SQLite: read on a blocking thread through a native read-only connection. sqlx hands
    /// SQLite rows one by one from its worker thread to the async task, which caps long reads
    /// (replays, relays catching up, audits) far below what SQLite delivers (ADR 6).
    async fn read_after_sqlite(
        &self,
        position: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let reader = self.sqlite_reader()?;
        let after = to_i64(position)?;
        tokio::task::spawn_blocking(move || reader.read_after(after, i64::from(limit)))
            .await
            .map_err(|error| StoreError::Unavailable(format!("sqlite reader task: {error}")))?
    }

    /// SQLite: up to `limit` events after `position` as one batch, read natively, their text
    /// copied into one buffer, nothing allocated per event: the pages of an audit (PostgreSQL
    /// reads its audits with COPY, [`crate::EventRange`]).
    pub(crate) async fn read_batch_after(
        &self,
        position: u64,
        limit: u32,
    ) -> Result<EventBatch, StoreError> {
        let reader = self.sqlite_reader()?;
        let after = to_i64(position)?;
        tokio::task::spawn_blocking(move || reader.read_batch_after(after, i64::from(limit)))
            .await
            .map_err(|error| StoreError::Unavailable(format!("sqlite reader task: {error}")))?
    }

    /// The native SQLite reader (every SQLite store has one).
    fn sqlite_reader(&self) -> Result<Arc<SqliteReader>, StoreError> {
        self.inner
            .sqlite_reader
            .clone()
            .ok_or_else(|| StoreError::Corrupt("sqlite store without a reader".into()))
    }

    /// Events of one aggregate with a sequence greater than `after_sequence`, in order.
    pub async fn read_aggregate(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if let Some(reader) = &self.inner.sqlite_reader {
            let after = to_i64(after_sequence)?;
            return reader.point(|connection| {
                let mut statement = connection
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM es_events WHERE aggregate_type = ?1 \
                         AND aggregate_id = ?2 AND sequence > ?3 ORDER BY sequence"
                    ))
                    .map_err(sqlite_error)?;
                let mut rows = statement
                    .query(rusqlite::params![aggregate_type, aggregate_id, after])
                    .map_err(sqlite_error)?;
                let mut events = Vec::new();
                while let Some(row) = rows.next().map_err(sqlite_error)? {
                    events.push(native_event(row)?);
                }
                Ok(events)
            });
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM es_events WHERE aggregate_type = $1 AND aggregate_id = $2 \
             AND sequence > $3 ORDER BY sequence"
        );
        let rows = sqlx::query(&sql)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(to_i64(after_sequence)?)
            .fetch_all(&self.inner.reader)
            .await?;
        rows.iter().map(decode_event).collect()
    }

    /// Every event of an aggregate type, in position order.
    pub async fn read_aggregate_type(
        &self,
        aggregate_type: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM es_events WHERE aggregate_type = $1 ORDER BY global_position"
        );
        let rows = sqlx::query(&sql)
            .bind(aggregate_type)
            .fetch_all(&self.inner.reader)
            .await?;
        rows.iter().map(decode_event).collect()
    }

    /// The last position and hash of the log, as the head row records them.
    pub async fn head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        let row = sqlx::query("SELECT position, head_hash FROM es_log_head WHERE id = 1")
            .fetch_one(&self.inner.reader)
            .await?;
        Ok((
            to_u64(row.try_get::<i64, _>(0)?)?,
            to_hash(row.try_get::<Vec<u8>, _>(1)?)?,
        ))
    }

    /// The position of the event whose stored hash is `hash`, if any.
    pub async fn position_of_hash(&self, hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT global_position FROM es_events WHERE hash = $1 LIMIT 1")
            .bind(hash.to_vec())
            .fetch_optional(&self.inner.reader)
            .await?;
        row.map(|row| to_u64(row.try_get::<i64, _>(0)?)).transpose()
    }

    /// The positions of the first and the last event that occurred within
    /// `[from_us, to_us]` (microseconds since the Unix epoch), for an audit of a time window;
    /// `None` when no event did.
    pub async fn positions_between(
        &self,
        from_us: i64,
        to_us: i64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(global_position), MAX(global_position) FROM es_events \
             WHERE occurred_at_us >= $1 AND occurred_at_us <= $2",
        )
        .bind(from_us)
        .bind(to_us)
        .fetch_one(&self.inner.reader)
        .await?;
        match (
            row.try_get::<Option<i64>, _>(0)?,
            row.try_get::<Option<i64>, _>(1)?,
        ) {
            (Some(first), Some(last)) => Ok(Some((to_u64(first)?, to_u64(last)?))),
            _ => Ok(None),
        }
    }

    /// Whether some aggregate's stream has a hole (its events are not numbered 1..=count).
    pub async fn has_sequence_gap(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT aggregate_type, aggregate_id FROM es_events \
             GROUP BY aggregate_type, aggregate_id HAVING COUNT(*) <> MAX(sequence) OR MIN(sequence) <> 1) gaps",
        )
        .fetch_one(&self.inner.reader)
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// An aggregate's latest snapshot and the events after it, in sequence order, as of one
    /// moment (on PostgreSQL one statement: what loading an aggregate reads).
    pub async fn load_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<(Option<Snapshot>, Vec<StoredEvent>), StoreError> {
        if self.inner.sqlite_reader.is_some() {
            // In process, and one writer: two point reads see one state unless an append
            // came between them, which only adds events after the snapshot's.
            let snapshot = self.snapshot(aggregate_type, aggregate_id).await?;
            let after = snapshot.as_ref().map_or(0, |s| s.last_sequence);
            let events = self
                .read_aggregate(aggregate_type, aggregate_id, after)
                .await?;
            return Ok((snapshot, events));
        }
        // Built once: it is read on every command.
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let columns = EVENT_COLUMNS
                .split(", ")
                .map(|column| format!("e.{}", column.trim()))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT s.last_sequence, s.snapshot_version, s.payload, {columns} \
                 FROM (SELECT 1) AS one \
                 LEFT JOIN es_snapshots s ON s.aggregate_type = $1 AND s.aggregate_id = $2 \
                 LEFT JOIN es_events e ON e.aggregate_type = $1 AND e.aggregate_id = $2 \
                 AND e.sequence > COALESCE(s.last_sequence, 0) \
                 ORDER BY e.sequence"
            )
        });
        let rows = sqlx::query(SQL.as_str())
            .bind(aggregate_type)
            .bind(aggregate_id)
            .fetch_all(&self.inner.reader)
            .await?;
        let mut snapshot = None;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if snapshot.is_none()
                && let Some(last_sequence) = row.try_get::<Option<i64>, _>(0)?
            {
                snapshot = Some(Snapshot {
                    aggregate_type: aggregate_type.to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    last_sequence: to_u64(last_sequence)?,
                    snapshot_version: to_u64(row.try_get::<i64, _>(1)?)?,
                    payload: row.try_get::<String, _>(2)?,
                });
            }
            if row.try_get::<Option<i64>, _>(3)?.is_some() {
                events.push(decode_event_at(row, 3)?);
            }
        }
        Ok((snapshot, events))
    }

    /// The latest snapshot of an aggregate.
    pub async fn snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<Snapshot>, StoreError> {
        if let Some(reader) = &self.inner.sqlite_reader {
            let found = reader.point(|connection| {
                connection
                    .prepare_cached(
                        "SELECT last_sequence, snapshot_version, payload FROM es_snapshots \
                         WHERE aggregate_type = ?1 AND aggregate_id = ?2",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_row(rusqlite::params![aggregate_type, aggregate_id], |row| {
                                Ok((
                                    row.get::<_, i64>(0)?,
                                    row.get::<_, i64>(1)?,
                                    row.get::<_, String>(2)?,
                                ))
                            })
                            .optional()
                    })
                    .map_err(sqlite_error)
            })?;
            return found
                .map(|(last_sequence, snapshot_version, payload)| {
                    Ok(Snapshot {
                        aggregate_type: aggregate_type.to_owned(),
                        aggregate_id: aggregate_id.to_owned(),
                        last_sequence: to_u64(last_sequence)?,
                        snapshot_version: to_u64(snapshot_version)?,
                        payload,
                    })
                })
                .transpose();
        }
        let row = sqlx::query(
            "SELECT last_sequence, snapshot_version, payload FROM es_snapshots \
             WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.inner.reader)
        .await?;
        row.map(|row| {
            Ok(Snapshot {
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                last_sequence: to_u64(row.try_get::<i64, _>(0)?)?,
                snapshot_version: to_u64(row.try_get::<i64, _>(1)?)?,
                payload: row.try_get::<String, _>(2)?,
            })
        })
        .transpose()
    }

    /// The stored position of a consumer (outbox relay, projection); 0 if it never ran.
    pub async fn consumer_position(&self, name: &str) -> Result<u64, StoreError> {
        if let Some(reader) = &self.inner.sqlite_reader {
            let position = reader.point(|connection| {
                connection
                    .prepare_cached("SELECT position FROM es_consumer_positions WHERE name = ?1")
                    .and_then(|mut statement| {
                        statement
                            .query_row(rusqlite::params![name], |row| row.get::<_, i64>(0))
                            .optional()
                    })
                    .map_err(sqlite_error)
            })?;
            return position.map_or(Ok(0), to_u64);
        }
        let row = sqlx::query("SELECT position FROM es_consumer_positions WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.inner.reader)
            .await?;
        row.map_or(Ok(0), |row| to_u64(row.try_get::<i64, _>(0)?))
    }

    /// Records that a consumer has handled everything up to `position`.
    pub async fn set_consumer_position(&self, name: &str, position: u64) -> Result<(), StoreError> {
        self.writable()?;
        if let Some(writer) = &self.inner.sqlite_writer {
            writer
                .write(Write::ConsumerPosition {
                    name: name.to_owned(),
                    position,
                })
                .await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO es_consumer_positions (name, position, updated_at_us) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at_us = excluded.updated_at_us",
        )
        .bind(name)
        .bind(to_i64(position)?)
        .bind(now_micros())
        .execute(&self.inner.writer)
        .await?;
        Ok(())
    }

    /// Stores a signed checkpoint.
    pub async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.writable()?;
        if let Some(writer) = &self.inner.sqlite_writer {
            writer.write(Write::Checkpoint(checkpoint.clone())).await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO es_chain_checkpoints (position, head_hash, signed_at_us, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (position) DO NOTHING",
        )
        .bind(to_i64(checkpoint.position)?)
        .bind(checkpoint.head_hash.to_vec())
        .bind(checkpoint.signed_at_us)
        .bind(checkpoint.key_id.clone())
        .bind(checkpoint.signature.to_vec())
        .execute(&self.inner.writer)
        .await?;
        Ok(())
    }

    /// Every stored checkpoint, in position order.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, head_hash, signed_at_us, key_id, signature FROM es_chain_checkpoints ORDER BY position",
        )
        .fetch_all(&self.inner.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let signature = row.try_get::<Vec<u8>, _>(4)?;
                Ok(Checkpoint {
                    service: self.inner.service.clone(),
                    position: to_u64(row.try_get::<i64, _>(0)?)?,
                    head_hash: to_hash(row.try_get::<Vec<u8>, _>(1)?)?,
                    signed_at_us: row.try_get::<i64, _>(2)?,
                    key_id: row.try_get::<String, _>(3)?,
                    signature: <[u8; 64]>::try_from(signature).map_err(|_| {
                        StoreError::Corrupt("checkpoint signature is not 64 bytes".into())
                    })?,
                })
            })
            .collect()
    }

    /// The documents of a projection with the given ids.
    pub async fn documents(
        &self,
        projection: &str,
        ids: &[String],
    ) -> Result<Vec<Document>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(INSERT_CHUNK) {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|index| format!("${}", index + 2))
                .collect();
            let sql = format!(
                "SELECT document_id, tenant_id, position, payload FROM es_documents \
                 WHERE projection = $1 AND document_id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(projection);
            for id in chunk {
                query = query.bind(id.clone());
            }
            for row in query.fetch_all(&self.inner.reader).await? {
                found.push(decode_document(&row)?);
            }
        }
        Ok(found)
    }

    /// One document, visible only to its own tenant.
    pub async fn document(
        &self,
        projection: &str,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<Document>, StoreError> {
        if let Some(reader) = &self.inner.sqlite_reader {
            let found = reader.point(|connection| {
                connection
                    .prepare_cached(
                        "SELECT document_id, tenant_id, position, payload FROM es_documents \
                         WHERE projection = ?1 AND tenant_id = ?2 AND document_id = ?3",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_row(rusqlite::params![projection, tenant_id, id], |row| {
                                Ok((
                                    row.get::<_, String>(0)?,
                                    row.get::<_, String>(1)?,
                                    row.get::<_, i64>(2)?,
                                    row.get::<_, String>(3)?,
                                ))
                            })
                            .optional()
                    })
                    .map_err(sqlite_error)
            })?;
            return found
                .map(|(id, tenant_id, position, payload)| {
                    Ok(Document {
                        id,
                        tenant_id,
                        position: to_u64(position)?,
                        payload,
                    })
                })
                .transpose();
        }
        let row = sqlx::query(
            "SELECT document_id, tenant_id, position, payload FROM es_documents \
             WHERE projection = $1 AND tenant_id = $2 AND document_id = $3",
        )
        .bind(projection)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.inner.reader)
        .await?;
        row.as_ref().map(decode_document).transpose()
    }

    /// The documents of a projection, of one tenant or (`None`, platform operators only) all,
    /// ordered by id.
    pub async fn list_documents(
        &self,
        projection: &str,
        tenant_id: Option<&str>,
    ) -> Result<Vec<Document>, StoreError> {
        let rows = match tenant_id {
            Some(tenant_id) => {
                sqlx::query(
                    "SELECT document_id, tenant_id, position, payload FROM es_documents \
                     WHERE projection = $1 AND tenant_id = $2 ORDER BY document_id",
                )
                .bind(projection)
                .bind(tenant_id)
                .fetch_all(&self.inner.reader)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT document_id, tenant_id, position, payload FROM es_documents \
                     WHERE projection = $1 ORDER BY document_id",
                )
                .bind(projection)
                .fetch_all(&self.inner.reader)
                .await?
            }
        };
        rows.iter().map(decode_document).collect()
    }

    /// At most `limit` documents of one tenant in a projection, the most recently changed
    /// (highest position) first: the newest entries of a list that grows, such as payments.
    pub async fn recent_documents(
        &self,
        projection: &str,
        tenant_id: &str,
        limit: u32,
    ) -> Result<Vec<Document>, StoreError> {
        let rows = sqlx::query(
            "SELECT document_id, tenant_id, position, payload FROM es_documents \
             WHERE projection = $1 AND tenant_id = $2 \
             ORDER BY position DESC, document_id LIMIT $3",
        )
        .bind(projection)
        .bind(tenant_id)
        .bind(i64::from(limit))
        .fetch_all(&self.inner.reader)
        .await?;
        rows.iter().map(decode_document).collect()
    }

    /// Writes changed documents and moves the projection's checkpoint from `from_position` to
    /// `to_position`, in one transaction, so a read model is always exactly as of its
    /// checkpoint. If another runner moved the checkpoint first, nothing is written and the
    /// result is [`StoreError::Conflict`]: the caller reloads and retries.
    pub async fn commit_documents(
        &self,
        projection: &str,
        documents: &[Document],
        consumer: &str,
        from_position: u64,
        to_position: u64,
    ) -> Result<(), StoreError> {
        self.commit_document_changes(
            projection,
            documents,
            &[],
            consumer,
            from_position,
            to_position,
        )
        .await
    }

    /// [`EventStore::commit_documents`] that also removes the documents `removed` (by id),
    /// in the same transaction.
    pub async fn commit_document_changes(
        &self,
        projection: &str,
        documents: &[Document],
        removed: &[String],
        consumer: &str,
        from_position: u64,
        to_position: u64,
    ) -> Result<(), StoreError> {
        self.writable()?;
        if let Some(writer) = &self.inner.sqlite_writer {
            writer
                .write(Write::CommitDocuments {
                    projection: projection.to_owned(),
                    documents: documents.to_vec(),
                    removed: removed.to_vec(),
                    consumer: consumer.to_owned(),
                    from: from_position,
                    to: to_position,
                })
                .await?;
            return Ok(());
        }
        // Without documents the checkpoint's move is the whole commit: one statement, no
        // transaction around it.
        if documents.is_empty() && removed.is_empty() {
            let mut connection = self.inner.writer.acquire().await?;
            return advance_checkpoint(&mut connection, consumer, from_position, to_position).await;
        }
        let mut tx = self.inner.writer.begin().await?;
        advance_checkpoint(&mut tx, consumer, from_position, to_position).await?;
        upsert_documents(&mut tx, projection, documents).await?;
        for chunk in removed.chunks(INSERT_CHUNK) {
            let ids: Vec<String> = (0..chunk.len())
                .map(|index| format!("${}", index + 2))
                .collect();
            let sql = format!(
                "DELETE FROM es_documents WHERE projection = $1 AND document_id IN ({})",
                ids.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(projection);
            for id in chunk {
                query = query.bind(id.clone());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes documents of a projection that has no checkpoint (state kept beside the log
    /// rather than derived from it, e.g. a wrapped key waiting for its device).
    pub async fn put_documents(
        &self,
        projection: &str,
        documents: &[Document],
    ) -> Result<(), StoreError> {
        self.writable()?;
        if let Some(writer) = &self.inner.sqlite_writer {
            writer
                .write(Write::PutDocuments {
                    projection: projection.to_owned(),
                    documents: documents.to_vec(),
                })
                .await?;
            return Ok(());
        }
        let mut tx = self.inner.writer.begin().await?;
        upsert_documents(&mut tx, projection, documents).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops a read model and its checkpoint (before a rebuild).
    pub async fn drop_documents(&self, projection: &str, consumer: &str) -> Result<(), StoreError> {
        self.writable()?;
        if let Some(writer) = &self.inner.sqlite_writer {
            writer
                .write(Write::DropDocuments {
                    projection: projection.to_owned(),
                    consumer: consumer.to_owned(),
                })
                .await?;
            return Ok(());
        }
        let mut tx = self.inner.writer.begin().await?;
        sqlx::query("DELETE FROM es_documents WHERE projection = $1")
            .bind(projection)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM es_consumer_positions WHERE name = $1")
            .bind(consumer)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.reader.close().await;
    }
}

/// Assigns positions and hashes to events following a head.
pub(crate) fn chain_events(
    events: Vec<NewEvent>,
    head_position: u64,
    head_hash: [u8; 32],
) -> (Vec<StoredEvent>, [u8; 32]) {
    let mut previous_hash = head_hash;
    let mut stored = Vec::with_capacity(events.len());
    for (offset, event) in (1_u64..).zip(events) {
        let hash = event_hash(&event, &previous_hash);
        stored.push(StoredEvent {
            global_position: head_position + offset,
            event,
            previous_hash,
            hash,
        });
        previous_hash = hash;
    }
    (stored, previous_hash)
}

fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO es_events ({EVENT_COLUMNS}) VALUES {}",
        values_sql(rows, 0)
    )
}

/// `($n, …), (…)`: `rows` rows of the 13 event columns, numbered from `$offset + 1`.
fn values_sql(rows: usize, offset: usize) -> String {
    let mut sql = String::new();
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
            sql.push_str(&(offset + row * 13 + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

/// Binds the 13 columns of each event, in [`values_sql`]'s order.
fn bind_events<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    events: &[StoredEvent],
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>, StoreError> {
    for event in events {
        query = query
            .bind(to_i64(event.global_position)?)
            .bind(event.event.event_id.clone())
            .bind(event.event.tenant_id.clone())
            .bind(event.event.aggregate_type.clone())
            .bind(event.event.aggregate_id.clone())
            .bind(to_i64(event.event.sequence)?)
            .bind(event.event.event_type.clone())
            .bind(event.event.event_version.clone())
            .bind(event.event.payload.clone())
            .bind(event.event.metadata.clone())
            .bind(event.event.occurred_at_us)
            .bind(event.previous_hash.to_vec())
            .bind(event.hash.to_vec());
    }
    Ok(query)
}

/// An insert's failure: a sequence already taken is the typed conflict.
fn insert_error(error: sqlx::Error, events: &[StoredEvent]) -> StoreError {
    if is_unique_violation(&error)
        && let Some(first) = events.first()
    {
        return StoreError::Conflict {
            aggregate_type: first.event.aggregate_type.clone(),
            aggregate_id: first.event.aggregate_id.clone(),
            sequence: first.event.sequence,
        };
    }
    error.into()
}

fn decode_event(row: &AnyRow) -> Result<StoredEvent, StoreError> {
    decode_event_at(row, 0)
}

impl EventStore {
    /// PostgreSQL's pool for long ordered reads, `None` on SQLite.
    pub(crate) fn long_reader(&self) -> Option<&sqlx::PgPool> {
        self.inner.long_reader.as_ref()
    }
}

/// The event in [`EVENT_COLUMNS`] order from column `at` on.
fn decode_event_at(row: &AnyRow, at: usize) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        global_position: to_u64(row.try_get::<i64, _>(at)?)?,
        event: NewEvent {
            event_id: row.try_get(at + 1)?,
            tenant_id: row.try_get(at + 2)?,
            aggregate_type: row.try_get(at + 3)?,
            aggregate_id: row.try_get(at + 4)?,
            sequence: to_u64(row.try_get::<i64, _>(at + 5)?)?,
            event_type: row.try_get(at + 6)?,
            event_version: row.try_get(at + 7)?,
            payload: row.try_get(at + 8)?,
            metadata: row.try_get(at + 9)?,
            occurred_at_us: row.try_get(at + 10)?,
        },
        previous_hash: to_hash(row.try_get::<Vec<u8>, _>(at + 11)?)?,
        hash: to_hash(row.try_get::<Vec<u8>, _>(at + 12)?)?,
    })
}

fn decode_document(row: &AnyRow) -> Result<Document, StoreError> {
    Ok(Document {
        id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        position: to_u64(row.try_get::<i64, _>(2)?)?,
        payload: row.try_get(3)?,
    })
}

/// Read-only native SQLite connections, used on blocking threads.
#[derive(Debug)]
struct SqliteReader {
    path: std::path::PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

pub(crate) fn sqlite_error(error: rusqlite::Error) -> StoreError {
    match error {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(error.to_string())
        }
        _ => StoreError::Unavailable(error.to_string()),
    }
}

impl SqliteReader {
    fn new(path: &str) -> Self {
        Self {
            path: std::path::PathBuf::from(path),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        let connection = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_error)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(sqlite_error)?;
        Ok(connection)
    }

    /// A read on a pooled connection, on the caller's thread. Async callers use it for point
    /// reads (by key or index: microseconds, and WAL readers never wait for the writer): a
    /// hand-off to another thread and back would cost more than the read (ADR 12). Long
    /// reads call it from a blocking thread (ADR 6).
    fn point<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .idle
            .lock()
            .map_err(|_| StoreError::Corrupt("sqlite reader poisoned".into()))?
            .pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_READERS
        {
            idle.push(connection);
        }
        result
    }

    fn read_after(&self, after: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        self.point(|connection| Self::query(connection, after, limit))
    }

    /// [`Self::read_after`] into one batch: each value read where SQLite holds it and copied
    /// into the batch, no event built.
    fn read_batch_after(&self, after: i64, limit: i64) -> Result<EventBatch, StoreError> {
        self.point(|connection| {
            let capacity = usize::try_from(limit).unwrap_or(0).min(10_000);
            let mut batch = EventBatch::with_capacity(capacity, capacity * 512);
            Self::each_after(connection, after, limit, |row| push_native(&mut batch, row))?;
            Ok(batch)
        })
    }

    fn query(
        connection: &rusqlite::Connection,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(10_000));
        Self::each_after(connection, after, limit, |row| {
            events.push(native_event(row)?);
            Ok(())
        })?;
        Ok(events)
    }

    /// Hands each of up to `limit` event rows after position `after` to `on_row`, in order.
    fn each_after(
        connection: &rusqlite::Connection,
        after: i64,
        limit: i64,
        mut on_row: impl FnMut(&rusqlite::Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM es_events WHERE global_position > ?1 ORDER BY global_position LIMIT ?2"
            ))
            .map_err(sqlite_error)?;
        let mut rows = statement
            .query(rusqlite::params![after, limit])
            .map_err(sqlite_error)?;
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            on_row(row)?;
        }
        Ok(())
    }
}

/// Appends an event row (in [`EVENT_COLUMNS`] order) read natively to `batch`, its values
/// copied from where SQLite holds them.
fn push_native(batch: &mut EventBatch, row: &rusqlite::Row<'_>) -> Result<(), StoreError> {
    let value = |index: usize| row.get_ref(index).map_err(sqlite_error);
    let bytes = |index: usize| -> Result<&[u8], StoreError> {
        value(index)?
            .as_bytes()
            .map_err(|error| StoreError::Corrupt(format!("column {index}: {error}")))
    };
    let integer = |index: usize| -> Result<i64, StoreError> {
        value(index)?
            .as_i64()
            .map_err(|error| StoreError::Corrupt(format!("column {index}: {error}")))
    };
    let hash = |index: usize| -> Result<[u8; 32], StoreError> {
        let hash = bytes(index)?;
        <[u8; 32]>::try_from(hash)
            .map_err(|_| StoreError::Corrupt(format!("hash of {} bytes", hash.len())))
    };
    let mut text = [&[][..]; TEXT_FIELDS];
    for (field, column) in text.iter_mut().zip(TEXT_COLUMNS) {
        *field = bytes(column)?;
    }
    batch.push(
        to_u64(integer(0)?)?,
        to_u64(integer(5)?)?,
        integer(10)?,
        text,
        hash(11)?,
        hash(12)?,
    );
    Ok(())
}

/// Native read-only connections kept open between reads.
const IDLE_READERS: usize = 8;

/// An event row (in [`EVENT_COLUMNS`] order) read natively.
fn native_event(row: &rusqlite::Row<'_>) -> Result<StoredEvent, StoreError> {
    let hash = |index: usize| -> Result<[u8; 32], StoreError> {
        let bytes = row
            .get_ref(index)
            .map_err(sqlite_error)?
            .as_blob()
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        <[u8; 32]>::try_from(bytes)
            .map_err(|_| StoreError::Corrupt(format!("hash of {} bytes", bytes.len())))
    };
    let text = |index: usize| -> Result<String, StoreError> {
        row.get::<_, String>(index).map_err(sqlite_error)
    };
    let integer = |index: usize| -> Result<i64, StoreError> {
        row.get::<_, i64>(index).map_err(sqlite_error)
    };
    Ok(StoredEvent {
        global_position: to_u64(integer(0)?)?,
        event: NewEvent {
            event_id: text(1)?,
            tenant_id: text(2)?,
            aggregate_type: text(3)?,
            aggregate_id: text(4)?,
            sequence: to_u64(integer(5)?)?,
            event_type: text(6)?,
            event_version: text(7)?,
            payload: text(8)?,
            metadata: text(9)?,
            occurred_at_us: integer(10)?,
        },
        previous_hash: hash(11)?,
        hash: hash(12)?,
    })
}

/// Moves consumer `consumer`'s checkpoint from `from_position` to `to_position` (PostgreSQL):
/// one `UPDATE` where it still is at `from_position`; the row is created only from position
/// 0. Anything else — another runner moved it — is [`StoreError::Conflict`].
async fn advance_checkpoint(
    connection: &mut sqlx::AnyConnection,
    consumer: &str,
    from_position: u64,
    to_position: u64,
) -> Result<(), StoreError> {
    let conflict = || StoreError::Conflict {
        aggregate_type: "checkpoint".into(),
        aggregate_id: consumer.to_owned(),
        sequence: from_position,
    };
    let moved = sqlx::query(
        "UPDATE es_consumer_positions SET position = $1, updated_at_us = $2 \
         WHERE name = $3 AND position = $4",
    )
    .bind(to_i64(to_position)?)
    .bind(now_micros())
    .bind(consumer)
    .bind(to_i64(from_position)?)
    .execute(&mut *connection)
    .await?;
    if moved.rows_affected() == 1 {
        return Ok(());
    }
    if from_position != 0 {
        return Err(conflict());
    }
    let created = sqlx::query(
        "INSERT INTO es_consumer_positions (name, position, updated_at_us) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(consumer)
    .bind(to_i64(to_position)?)
    .bind(now_micros())
    .execute(&mut *connection)
    .await?;
    if created.rows_affected() == 1 {
        Ok(())
    } else {
        Err(conflict())
    }
}

/// Inserts or replaces documents of a projection inside a transaction.
async fn upsert_documents(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    projection: &str,
    documents: &[Document],
) -> Result<(), StoreError> {
    for chunk in documents.chunks(INSERT_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|index| {
                let base = index * 4 + 2;
                format!(
                    "($1, ${}, ${}, ${}, ${})",
                    base,
                    base + 1,
                    base + 2,
                    base + 3
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO es_documents (projection, document_id, tenant_id, position, payload) VALUES {} \
                 ON CONFLICT (projection, document_id) DO UPDATE SET tenant_id = excluded.tenant_id, \
                 position = excluded.position, payload = excluded.payload",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(projection);
        for document in chunk {
            query = query
                .bind(document.id.clone())
                .bind(document.tenant_id.clone())
                .bind(to_i64(document.position)?)
                .bind(document.payload.clone());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
