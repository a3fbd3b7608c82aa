//! What several of `mposctl`'s test files share: running it, a PostgreSQL log in a schema of
//! its own, a routing rule set, and every event type of the platform.

#![allow(dead_code)] // each test file uses its part

use std::process::Command;

use cqrs_es::Aggregate;
use mpos_es::ProtoEvent;
use mpos_proto::routing as pb;
use serde_json::Value;

/// Runs `mposctl`; its exit status and the JSON object it printed.
pub(crate) fn mposctl(args: &[&str]) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_mposctl"))
        .args(args)
        .output()
        .expect("run mposctl");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("not one JSON object ({error}): {stdout:?}"));
    (output.status.code().unwrap_or(-1), json)
}

/// A PostgreSQL log in a fresh schema of the test server (`MPOS_TEST_POSTGRES_URL`).
pub(crate) struct PgLog {
    /// The server, without the schema.
    pub(crate) base: String,
    /// The schema, e.g. `audit_…`.
    pub(crate) schema: String,
    /// The log's URL, as a service's `MPOS_DATABASE_URL` names it.
    pub(crate) url: String,
}

impl PgLog {
    /// A fresh schema whose name starts with `prefix`.
    pub(crate) fn new(prefix: &str) -> Self {
        let base = std::env::var("MPOS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let schema = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}schema={schema}");
        Self { base, schema, url }
    }

    /// Drops the schema.
    pub(crate) async fn drop_schema(&self) {
        let pool = sqlx::PgPool::connect(&self.base)
            .await
            .expect("raw postgres");
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&pool)
            .await
            .expect("drop");
        pool.close().await;
    }
}

/// A rule set that routes every payment to `acquirers`, in that order.
pub(crate) fn rules(acquirers: &[&str]) -> pb::RuleSet {
    pb::RuleSet {
        rules: vec![pb::Rule {
            id: "all".into(),
            enabled: true,
            conditions: Some(pb::Conditions::default()),
            route: Some(pb::Route {
                kind: Some(pb::route::Kind::Priority(pb::PriorityRoute {
                    acquirer_ids: acquirers.iter().map(|id| (*id).to_owned()).collect(),
                })),
            }),
            ..pb::Rule::default()
        }],
        default_route: None,
    }
}

/// The event types of an aggregate: its service, its type, and each event's protobuf name.
pub(crate) fn events_of<A: Aggregate>(
    service: &'static str,
) -> (&'static str, &'static str, Vec<String>)
where
    A::Event: ProtoEvent,
{
    let names = <A::Event as ProtoEvent>::type_names()
        .into_iter()
        .map(|(name, _)| name.to_owned())
        .collect();
    (service, A::TYPE, names)
}

/// Every event type of the six services.
pub(crate) fn every_event_type() -> Vec<(&'static str, &'static str, Vec<String>)> {
    vec![
        events_of::<terminal_management::tenant::Tenant>("terminal-management"),
        events_of::<terminal_management::estate::EstateNode>("terminal-management"),
        events_of::<terminal_management::manufacturer::ManufacturerCa>("terminal-management"),
        events_of::<terminal_management::terminal::Terminal>("terminal-management"),
        events_of::<hsm_proxy::key::Key>("hsm-proxy"),
        events_of::<hsm_proxy::health::BackendHealth>("hsm-proxy"),
        events_of::<key_injection::bdk::Bdk>("key-injection"),
        events_of::<key_injection::slots::DeviceKeys>("key-injection"),
        events_of::<key_injection::injection::Injection>("key-injection"),
        events_of::<attestation::policy::TenantPolicy>("attestation"),
        events_of::<attestation::device::Device>("attestation"),
        events_of::<routing::rules::TenantRules>("routing"),
        events_of::<routing::acquirer::Acquirer>("routing"),
        events_of::<routing::exchange::Exchange>("routing"),
        events_of::<authorization::payment::Payment>("authorization"),
    ]
}
