//! The hash chain as `docs/events.md` documents it, computed by another implementation:
//! PostgreSQL itself (`pgcrypto`'s SHA-256 over the documented encoding, in SQL). A log
//! written that way, never through this crate's append, must verify as intact, its rows must
//! hash as read (`EventBatch` views) to what the database computed, and one changed byte
//! must be named. An integrator or auditor re-implementing the chain from the document gets
//! what the platform gets.

mod common;

use mpos_es::{EventRange, Tamper, verify};

/// Events written by the SQL below: 3 aggregates, non-ASCII text in some payloads.
const EVENTS: i64 = 3_000;

/// Fills `es_events` and the head row of the schema on the `search_path`: every hash is
/// `sha256(encoding)`, the encoding built field by field as `docs/events.md` lists them.
fn chain_sql() -> String {
    format!(
        r#"
CREATE OR REPLACE FUNCTION pg_temp.field(value bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE AS $$ SELECT int4send(octet_length(value)) || value $$;
DO $$
DECLARE
    previous bytea := decode(repeat('00', 32), 'hex');
    this bytea;
    aggregate text;
    sequence bigint;
    event_id text;
    payload text;
    at_us bigint;
BEGIN
    FOR n IN 1..{EVENTS} LOOP
        aggregate := 'agg-' || (n % 3);
        sequence := (n - 1) / 3 + 1;
        event_id := '01900000-0000-7000-8000-' || lpad(n::text, 12, '0');
        payload := '{{"n":' || n || ',"name":"Zoë 🧾 ' || repeat('x', n % 50) || '"}}';
        at_us := 1796600000000000 + n;
        this := public.digest(
            pg_temp.field(convert_to('mpos-event-v1', 'UTF8'))
            || pg_temp.field(convert_to(event_id, 'UTF8'))
            || pg_temp.field(convert_to('acme', 'UTF8'))
            || pg_temp.field(convert_to('counter', 'UTF8'))
            || pg_temp.field(convert_to(aggregate, 'UTF8'))
            || pg_temp.field(int8send(sequence))
            || pg_temp.field(convert_to('mpos.test.v1.Incremented', 'UTF8'))
            || pg_temp.field(convert_to('1.0', 'UTF8'))
            || pg_temp.field(convert_to(payload, 'UTF8'))
            || pg_temp.field(convert_to('{{"actor":"sql"}}', 'UTF8'))
            || pg_temp.field(int8send(at_us))
            || pg_temp.field(previous),
            'sha256');
        INSERT INTO es_events (global_position, event_id, tenant_id, aggregate_type,
            aggregate_id, sequence, event_type, event_version, payload, metadata,
            occurred_at_us, previous_hash, hash)
        VALUES (n, event_id, 'acme', 'counter', aggregate, sequence,
            'mpos.test.v1.Incremented', '1.0', payload, '{{"actor":"sql"}}', at_us, previous,
            this);
        previous := this;
    END LOOP;
    UPDATE es_log_head SET position = {EVENTS}, head_hash = previous WHERE id = 1;
END $$;
"#
    )
}

/// `CREATE EXTENSION` of one extension by several test processes at once can collide on the
/// catalog's unique index: the loser tries again.
async fn ensure_pgcrypto(test: &common::TestStore) {
    let pool = test.raw().await;
    for attempt in 0..5 {
        match sqlx::query("CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public")
            .execute(&pool)
            .await
        {
            Ok(_) => break,
            Err(error) if attempt < 4 => {
                eprintln!("create extension pgcrypto: {error}; again");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(error) => panic!("create extension pgcrypto (postgresql-contrib): {error}"),
        }
    }
    pool.close().await;
}

#[tokio::test]
async fn a_log_hashed_by_postgresql_from_the_documented_encoding_verifies() {
    let test = common::postgres("svc").await;
    ensure_pgcrypto(&test).await;
    test.execute(&chain_sql()).await;

    let report = verify(&test.store, &[]).await.expect("verify");
    assert_eq!(report.tamper, None, "{report:?}");
    assert_eq!(report.events_checked, EVENTS as u64);
    assert_eq!(report.last_position, EVENTS as u64);

    // Each row, hashed where the read left it, gives the hash PostgreSQL computed.
    let mut range = EventRange::new(&test.store, 1, u64::MAX);
    let mut seen = 0;
    while let Some(batch) = range.next_batch().await.expect("batch") {
        for view in batch.iter() {
            assert_eq!(
                view.fields.hash(view.previous_hash),
                *view.hash,
                "position {}",
                view.global_position
            );
            seen += 1;
        }
    }
    assert_eq!(seen, EVENTS);

    // One byte of one payload changed by the database's owner: named where it happened.
    test.execute("UPDATE es_events SET payload = replace(payload, 'Zoë', 'Zoe') WHERE global_position = 1234")
        .await;
    let report = verify(&test.store, &[]).await.expect("verify");
    assert_eq!(report.tamper, Some(Tamper::Altered { position: 1234 }));
}
