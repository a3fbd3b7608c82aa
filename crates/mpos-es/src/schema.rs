//! The event log's tables: the same shape on PostgreSQL and SQLite.

/// Statements creating the schema on PostgreSQL, in order.
pub(crate) const POSTGRES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS es_events (
        global_position BIGINT PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL,
        aggregate_type TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        event_type TEXT NOT NULL,
        event_version TEXT NOT NULL,
        payload TEXT NOT NULL,
        metadata TEXT NOT NULL,
        occurred_at_us BIGINT NOT NULL,
        previous_hash BYTEA NOT NULL,
        hash BYTEA NOT NULL,
        CONSTRAINT es_events_stream_sequence UNIQUE (aggregate_type, aggregate_id, sequence)
    )",
    "CREATE INDEX IF NOT EXISTS es_events_tenant ON es_events (tenant_id, global_position)",
    "CREATE TABLE IF NOT EXISTS es_log_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        position BIGINT NOT NULL,
        head_hash BYTEA NOT NULL
    )",
    "INSERT INTO es_log_head (id, position, head_hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'))
        ON CONFLICT (id) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS es_snapshots (
        aggregate_type TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        last_sequence BIGINT NOT NULL,
        snapshot_version BIGINT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id)
    )",
    "CREATE TABLE IF NOT EXISTS es_chain_checkpoints (
        position BIGINT PRIMARY KEY,
        head_hash BYTEA NOT NULL,
        signed_at_us BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        signature BYTEA NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS es_consumer_positions (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL,
        updated_at_us BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS es_documents (
        projection TEXT NOT NULL,
        document_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (projection, document_id)
    )",
    "CREATE INDEX IF NOT EXISTS es_documents_tenant ON es_documents (projection, tenant_id, document_id)",
    "CREATE INDEX IF NOT EXISTS es_documents_recent ON es_documents (projection, tenant_id, position)",
];

/// Statements creating the schema on SQLite, in order.
pub(crate) const SQLITE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS es_events (
        global_position INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL,
        aggregate_type TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        event_version TEXT NOT NULL,
        payload TEXT NOT NULL,
        metadata TEXT NOT NULL,
        occurred_at_us INTEGER NOT NULL,
        previous_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        CONSTRAINT es_events_stream_sequence UNIQUE (aggregate_type, aggregate_id, sequence)
    )",
    "CREATE INDEX IF NOT EXISTS es_events_tenant ON es_events (tenant_id, global_position)",
    "CREATE TABLE IF NOT EXISTS es_log_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        position INTEGER NOT NULL,
        head_hash BLOB NOT NULL
    )",
    "INSERT INTO es_log_head (id, position, head_hash) VALUES (1, 0, zeroblob(32))
        ON CONFLICT (id) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS es_snapshots (
        aggregate_type TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        last_sequence INTEGER NOT NULL,
        snapshot_version INTEGER NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id)
    )",
    "CREATE TABLE IF NOT EXISTS es_chain_checkpoints (
        position INTEGER PRIMARY KEY,
        head_hash BLOB NOT NULL,
        signed_at_us INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        signature BLOB NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS es_consumer_positions (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        updated_at_us INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS es_documents (
        projection TEXT NOT NULL,
        document_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (projection, document_id)
    )",
    "CREATE INDEX IF NOT EXISTS es_documents_tenant ON es_documents (projection, tenant_id, document_id)",
    "CREATE INDEX IF NOT EXISTS es_documents_recent ON es_documents (projection, tenant_id, position)",
];
