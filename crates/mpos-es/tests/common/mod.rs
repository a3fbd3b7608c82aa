//! Shared helpers of the kernel's integration tests: fresh stores on real PostgreSQL and
//! SQLite, raw SQL for tampering, and a small aggregate.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use mpos_es::{EventStore, NewEvent, now_micros};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

/// A store on a fresh backend, plus what a test needs to reach its tables directly.
pub struct TestStore {
    pub store: EventStore,
    pub url: String,
    raw_url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// A raw connection to the same tables (for tampering like an attacker with DB access).
    pub async fn raw(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.raw_url)
            .await
            .expect("raw connection")
    }

    pub async fn execute(&self, sql: &str) {
        let pool = self.raw().await;
        pool.execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        pool.close().await;
    }

    /// Another store instance on the same log (like a second process).
    pub async fn reopen(&self) -> EventStore {
        EventStore::connect(&self.url, self.store.service())
            .await
            .expect("reopen")
    }
}

pub fn postgres_base_url() -> String {
    std::env::var("MPOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A fresh PostgreSQL schema.
pub async fn postgres(service: &str) -> TestStore {
    let schema = unique_name("es_test");
    let base = postgres_base_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}schema={schema}");
    let store = EventStore::connect(&url, service)
        .await
        .expect("connect postgres (is it running? infra/postgres.sh)");
    let raw_url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    TestStore {
        store,
        url,
        raw_url,
        _dir: None,
    }
}

/// A fresh SQLite file.
pub async fn sqlite(service: &str) -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let url = format!("sqlite://{}", path.display());
    let store = EventStore::connect(&url, service)
        .await
        .expect("connect sqlite");
    let raw_url = format!("{url}?mode=rw");
    TestStore {
        store,
        url,
        raw_url,
        _dir: Some(dir),
    }
}

/// Both backends, for tests that must hold on each.
pub async fn each_backend(service: &str) -> Vec<(&'static str, TestStore)> {
    vec![
        ("postgres", postgres(service).await),
        ("sqlite", sqlite(service).await),
    ]
}

pub fn new_event(aggregate_id: &str, sequence: u64, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant_id: "acme".into(),
        aggregate_type: "counter".into(),
        aggregate_id: aggregate_id.into(),
        sequence,
        event_type: "mpos.test.v1.Incremented".into(),
        event_version: "1.0".into(),
        payload: payload.to_string(),
        metadata: r#"{"actor":"test"}"#.into(),
        occurred_at_us: now_micros(),
    }
}

/// Appends `count` events to one aggregate, one per transaction.
pub async fn append_many(store: &EventStore, aggregate_id: &str, count: u64) {
    for sequence in 1..=count {
        store
            .append(
                vec![new_event(
                    aggregate_id,
                    sequence,
                    serde_json::json!({"by": sequence}),
                )],
                None,
            )
            .await
            .expect("append");
    }
}
