//! `mposctl inspect`: one aggregate's current state and its full event history, read from the
//! service's log.
//!
//! * against the embedded `mposd`: `--data-dir DIR --service SERVICE` (the log
//!   `DIR/<service>.db`);
//! * against a distributed deployment: `--database URL --service SERVICE` (the service's own
//!   `MPOS_DATABASE_URL`).
//!
//! The state is rebuilt here from the events alone, by the service's own aggregate type (the
//! same `apply` the service runs), never taken from a stored snapshot. A stored snapshot is
//! compared with the state folded up to the snapshot's last event and reported as matching or
//! not: snapshots are outside the hash chain, so one that disagrees with the events it claims
//! to summarize is worth an auditor's attention.
//!
//! Events carry no clear key, PIN block or full PAN by the platform's rule, so neither does
//! their history nor the state folded from them. Nothing is written: an embedded log is only
//! opened if its file exists.

use std::path::PathBuf;

use clap::Args;
use cqrs_es::Aggregate;
use mpos_es::{EventStore, StoredEvent};
use serde_json::{Value, json};

use crate::audit::check_service;
use crate::error::CliError;

type Result<T> = std::result::Result<T, CliError>;

/// One service's log: in an embedded data directory or a database.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// The embedded platform's data directory (`MPOS_DATA_DIR` of `mposd`).
    #[arg(long, value_name = "DIR", conflicts_with = "database")]
    data_dir: Option<PathBuf>,
    /// The service's log in a distributed deployment (its MPOS_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// The service whose log to read, e.g. authorization.
    #[arg(long, value_name = "SERVICE")]
    pub(crate) service: String,
}

impl LogArgs {
    /// The embedded data directory, if named.
    pub(crate) fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// Whether a log was named (`--data-dir` or `--database`).
    pub(crate) fn is_given(&self) -> bool {
        self.data_dir.is_some() || self.database.is_some()
    }

    /// The URL of the log: `DIR/<service>.db` of an embedded data directory (which must
    /// exist: connecting would create an empty one), or the database URL given; the service
    /// must be one of the platform's.
    pub(crate) fn url(&self) -> Result<String> {
        let service = &self.service;
        check_service(service)?;
        match (&self.data_dir, &self.database) {
            (Some(dir), _) => crate::audit::embedded_log(dir, service).map_err(|path| {
                CliError::bad_request(format!(
                    "--data-dir {}: no log of {service} ({} does not exist)",
                    dir.display(),
                    path.display()
                ))
            }),
            (None, Some(url)) => Ok(url.clone()),
            (None, None) => Err(CliError::bad_request(
                "name the log: --data-dir DIR (embedded) or --database URL (distributed)",
            )),
        }
    }
}

/// `mposctl inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The log that holds the aggregate.
    #[command(flatten)]
    log: LogArgs,
    /// The aggregate type, e.g. payment (an unknown one is answered with the service's
    /// types).
    #[arg(long, value_name = "TYPE")]
    aggregate_type: String,
    /// The aggregate id, as it appears in the events' `aggregate_id`.
    #[arg(long, value_name = "ID")]
    aggregate_id: String,
}

/// Folds an aggregate's events into its state as JSON, with the state as it stood after the
/// events up to a sequence (a snapshot's), when one is asked: one pass over the events.
type Fold = fn(&[StoredEvent], Option<u64>) -> std::result::Result<(Value, Option<Value>), String>;

/// One aggregate type of one service: how its events fold into its state.
struct Kind {
    service: &'static str,
    aggregate_type: &'static str,
    fold: Fold,
}

/// Folds `events` into `A`'s state from its default, as JSON.
fn fold_as<A: Aggregate>(
    events: &[StoredEvent],
    snapshot_at: Option<u64>,
) -> std::result::Result<(Value, Option<Value>), String> {
    let json = |state: &A| serde_json::to_value(state).map_err(|error| error.to_string());
    let mut state = A::default();
    let split = snapshot_at
        .map(|sequence| events.partition_point(|stored| stored.event.sequence <= sequence));
    let (before, after) = events.split_at(split.unwrap_or(0));
    mpos_es::fold(&mut state, before).map_err(|error| error.to_string())?;
    let at_snapshot = split.map(|_| json(&state)).transpose()?;
    mpos_es::fold(&mut state, after).map_err(|error| error.to_string())?;
    Ok((json(&state)?, at_snapshot))
}

macro_rules! kind {
    ($service:literal, $type:ty) => {
        Kind {
            service: $service,
            aggregate_type: <$type as Aggregate>::TYPE,
            fold: fold_as::<$type>,
        }
    };
}

/// Every aggregate type of the six services.
fn kinds() -> [Kind; 15] {
    [
        kind!("terminal-management", terminal_management::tenant::Tenant),
        kind!(
            "terminal-management",
            terminal_management::estate::EstateNode
        ),
        kind!(
            "terminal-management",
            terminal_management::manufacturer::ManufacturerCa
        ),
        kind!(
            "terminal-management",
            terminal_management::terminal::Terminal
        ),
        kind!("hsm-proxy", hsm_proxy::key::Key),
        kind!("hsm-proxy", hsm_proxy::health::BackendHealth),
        kind!("key-injection", key_injection::bdk::Bdk),
        kind!("key-injection", key_injection::slots::DeviceKeys),
        kind!("key-injection", key_injection::injection::Injection),
        kind!("attestation", attestation::policy::TenantPolicy),
        kind!("attestation", attestation::device::Device),
        kind!("routing", routing::rules::TenantRules),
        kind!("routing", routing::acquirer::Acquirer),
        kind!("routing", routing::exchange::Exchange),
        kind!("authorization", authorization::payment::Payment),
    ]
}

/// Runs `mposctl inspect`.
pub(crate) fn run(args: &InspectArgs) -> Result<Value> {
    let url = args.log.url()?;
    let service = &args.log.service;
    let kinds = kinds();
    let Some(kind) = kinds
        .iter()
        .find(|kind| kind.service == *service && kind.aggregate_type == args.aggregate_type)
    else {
        let known: Vec<&str> = kinds
            .iter()
            .filter(|kind| kind.service == *service)
            .map(|kind| kind.aggregate_type)
            .collect();
        return Err(CliError::bad_request(format!(
            "--aggregate-type {:?}: {} has no such aggregate (it has {})",
            args.aggregate_type,
            service,
            known.join(", ")
        )));
    };
    if args.aggregate_id.is_empty() {
        return Err(CliError::bad_request("--aggregate-id is empty"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::failed(format!("cannot start the runtime: {error}")))?;
    let (events, snapshot) = runtime.block_on(read(service, &url, kind, args))?;
    if events.is_empty() {
        return Err(CliError::not_found(format!(
            "{}: no {} aggregate {:?} in the log",
            service, args.aggregate_type, args.aggregate_id
        )));
    }
    let snapshot_at = snapshot.as_ref().map(|snapshot| snapshot.last_sequence);
    let (state, at_snapshot) = (kind.fold)(&events, snapshot_at).map_err(|error| {
        CliError::failed(format!(
            "{}: the events of {} {:?} do not fold: {error}",
            service, args.aggregate_type, args.aggregate_id
        ))
    })?;
    let snapshot = match snapshot {
        None => Value::Null,
        Some(snapshot) => {
            let stored = serde_json::from_str::<Value>(&snapshot.payload).ok();
            json!({
                "last_sequence": snapshot.last_sequence,
                "snapshot_version": snapshot.snapshot_version,
                "matches_events": at_snapshot.is_some() && at_snapshot == stored,
            })
        }
    };
    let first = &events[0].event;
    let version = events.last().map_or(0, |event| event.event.sequence);
    Ok(json!({
        "service": service,
        "aggregate_type": args.aggregate_type,
        "aggregate_id": args.aggregate_id,
        "tenant_id": first.tenant_id,
        "version": version,
        "state": state,
        "snapshot": snapshot,
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    }))
}

/// The aggregate's events and its stored snapshot, if any.
async fn read(
    service: &str,
    url: &str,
    kind: &Kind,
    args: &InspectArgs,
) -> Result<(Vec<StoredEvent>, Option<mpos_es::Snapshot>)> {
    let store = EventStore::connect_read_only(url, service)
        .await
        .map_err(|error| CliError::unavailable(format!("{service}: {error}")))?;
    let failed = |error: mpos_es::StoreError| CliError::failed(format!("{service}: {error}"));
    let result = async {
        let events = store
            .read_aggregate(kind.aggregate_type, &args.aggregate_id, 0)
            .await
            .map_err(failed)?;
        let snapshot = store
            .snapshot(kind.aggregate_type, &args.aggregate_id)
            .await
            .map_err(failed)?;
        Ok((events, snapshot))
    }
    .await;
    store.close().await;
    result
}

/// One event of the history: where it stands in the log, what it is, and its content.
pub(crate) fn event_json(stored: &StoredEvent) -> Value {
    let event = &stored.event;
    let occurred_at = chrono::DateTime::from_timestamp_micros(event.occurred_at_us)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    json!({
        "global_position": stored.global_position,
        "sequence": event.sequence,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "occurred_at": occurred_at,
        "payload": serde_json::from_str::<Value>(&event.payload)
            .unwrap_or_else(|_| Value::String(event.payload.clone())),
        "metadata": serde_json::from_str::<Value>(&event.metadata)
            .unwrap_or_else(|_| Value::String(event.metadata.clone())),
        "hash": hex::encode(stored.hash),
    })
}
