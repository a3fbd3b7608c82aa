//! `mposctl replay --output FILE`: a service's events, read from its log in position order,
//! written as JSON lines for an auditor — filtered by tenant, aggregate, event type and time —
//! with the SHA-256 of the file written, so the auditor can show that the file they hold is
//! the one produced.
//!
//! * against the embedded `mposd`: `--data-dir DIR --service SERVICE`;
//! * against a distributed deployment: `--database URL --service SERVICE`.
//!
//! Each line is one event as `inspect` prints it, with its service, tenant and aggregate. The
//! log is read in pages of [`PAGE`] events, so a long log is never held in memory. When
//! standard error is a terminal, a progress bar there shows the events read against the log's
//! head (stdout keeps the one JSON summary). Nothing is written to the log; an embedded log is
//! only opened if its file exists.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mpos_es::{EventStore, StoredEvent};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::CliError;

type Result<T> = std::result::Result<T, CliError>;

/// Events read from the log per statement.
const PAGE: u32 = 5_000;

/// `mposctl replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The log to replay.
    #[command(flatten)]
    log: crate::inspect::LogArgs,
    /// Replay the service's stream on a broker instead of its log: nats://host:port or
    /// kafka://host:port, as the deployment's bus URL (with its ?namespace=…).
    #[arg(long, value_name = "URL")]
    bus: Option<String>,
    /// Only the events at or after this position of the service's log (on a broker, the
    /// position each event carries).
    #[arg(long, value_name = "N")]
    from_position: Option<u64>,
    /// From a broker: start at this position of the stream instead of its start — on Kafka
    /// this offset of every partition of the topic, on NATS this stream sequence. (With
    /// --from alone, a broker is read from that time on.)
    #[arg(long, value_name = "OFFSET", requires = "bus")]
    from_offset: Option<u64>,
    /// From a broker: stop once no event arrived for this many seconds (the end of the
    /// stream as far as the reader can tell).
    #[arg(long, value_name = "SECONDS", default_value_t = 3, requires = "bus")]
    idle_exit: u64,
    /// The JSON-lines file to write (created; an existing file is refused): the events, or
    /// with --read-model the fresh copies' documents.
    #[arg(long, value_name = "FILE", required_unless_present = "read_model")]
    output: Option<PathBuf>,
    /// Replay the log (or with --bus the broker's stream) into a fresh copy of this read
    /// model of the service (`all`: each of them) and compare it with the live one: both
    /// digests; exit status 1 if they differ. With --bus and no log, the copy's digest alone.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = ["from_position", "from_offset", "tenant", "aggregate_type", "aggregate_id", "event_type", "from", "to"]
    )]
    read_model: Option<String>,
    /// With --read-model naming a read model the service keeps of another service's stream
    /// (auth-tms, auth-ki, routing-tms, att-tms, ki-tms, tm-attestation): that service's log,
    /// its MPOS_DATABASE_URL (with --data-dir, found there).
    #[arg(long, value_name = "URL", requires = "read_model")]
    source_database: Option<String>,
    /// Only this tenant's events.
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// Only events of this aggregate type, e.g. payment.
    #[arg(long, value_name = "TYPE")]
    aggregate_type: Option<String>,
    /// Only the events of this aggregate (its id, as in the events' aggregate_id).
    #[arg(long, value_name = "ID")]
    aggregate_id: Option<String>,
    /// Only events of this type, its full protobuf name.
    #[arg(long, value_name = "TYPE")]
    event_type: Option<String>,
    /// Only the events that occurred at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = crate::audit::parse_time)]
    from: Option<i64>,
    /// Only the events that occurred at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = crate::audit::parse_time)]
    to: Option<i64>,
}

/// What the filters look at, from a stored event or an envelope.
struct Facts<'a> {
    tenant_id: &'a str,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    event_type: &'a str,
    occurred_at_us: i64,
    position: u64,
}

impl ReplayArgs {
    /// Whether an event passes every filter given.
    fn matches(&self, event: &Facts<'_>) -> bool {
        self.tenant
            .as_ref()
            .is_none_or(|tenant| tenant == event.tenant_id)
            && self
                .aggregate_type
                .as_ref()
                .is_none_or(|kind| kind == event.aggregate_type)
            && self
                .aggregate_id
                .as_ref()
                .is_none_or(|id| id == event.aggregate_id)
            && self
                .event_type
                .as_ref()
                .is_none_or(|kind| kind == event.event_type)
            && self.from.is_none_or(|from| event.occurred_at_us >= from)
            && self.to.is_none_or(|to| event.occurred_at_us <= to)
            && self
                .from_position
                .is_none_or(|first| event.position >= first)
    }
}

fn stored_facts(stored: &StoredEvent) -> Facts<'_> {
    let event = &stored.event;
    Facts {
        tenant_id: &event.tenant_id,
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        event_type: &event.event_type,
        occurred_at_us: event.occurred_at_us,
        position: stored.global_position,
    }
}

fn envelope_facts(envelope: &mpos_bus::EventEnvelope) -> Facts<'_> {
    Facts {
        tenant_id: &envelope.tenant_id,
        aggregate_type: &envelope.aggregate_type,
        aggregate_id: &envelope.aggregate_id,
        event_type: &envelope.event_type,
        occurred_at_us: envelope
            .occurred_at
            .as_ref()
            .map_or(0, mpos_proto::timestamp_to_micros),
        position: envelope.global_position,
    }
}

/// Runs `mposctl replay`.
pub(crate) fn run(args: &ReplayArgs) -> Result<Value> {
    if let Some(name) = &args.read_model {
        if let Some(bus) = &args.bus {
            crate::audit::check_service(&args.log.service)?;
            crate::events::check_bus_url(bus)?;
            let log = if args.log.is_given() {
                Some(args.log.url()?)
            } else {
                None
            };
            return runtime()?.block_on(crate::read_models::run_from_bus(
                bus,
                log.as_deref(),
                &args.log.service,
                name,
                args.output.as_deref(),
                std::time::Duration::from_secs(args.idle_exit),
            ));
        }
        let url = args.log.url()?;
        let feeds = crate::read_models::feeds_of(&args.log.service);
        if let Some(feed) = feeds.iter().find(|feed| feed.projection == name) {
            let followed = feed.source;
            let source = match (&args.source_database, args.log.data_dir()) {
                (Some(source), _) => source.clone(),
                (None, Some(dir)) => crate::audit::embedded_log(dir, followed).map_err(|path| {
                    CliError::bad_request(format!(
                        "--data-dir {}: no log of {followed} ({} does not exist)",
                        dir.display(),
                        path.display()
                    ))
                })?,
                (None, None) => {
                    return Err(CliError::bad_request(format!(
                        "--source-database: {name} follows {followed}; name its log"
                    )));
                }
            };
            return runtime()?.block_on(crate::read_models::run_feed(
                &url,
                &source,
                &args.log.service,
                feed,
                args.output.as_deref(),
            ));
        }
        return runtime()?.block_on(crate::read_models::run(
            &url,
            &args.log.service,
            name,
            args.output.as_deref(),
        ));
    }
    let Some(output) = args.output.as_ref() else {
        return Err(CliError::bad_request("--output: required"));
    };
    let source = match &args.bus {
        Some(_) if args.log.is_given() => {
            return Err(CliError::bad_request(
                "--bus replays the broker's stream: name no log with it (--data-dir, --database) unless with --read-model",
            ));
        }
        Some(bus) => {
            crate::audit::check_service(&args.log.service)?;
            crate::events::check_bus_url(bus)?;
            Source::Bus(bus.clone())
        }
        None => Source::Log(args.log.url()?),
    };
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        return Err(CliError::bad_request("--from is after --to"));
    }
    let file = create_output(output)?;
    let runtime = runtime()?;
    let mut out = Output {
        file: std::io::BufWriter::new(file),
        path: output.clone(),
        digest: Sha256::new(),
        written: 0,
        first: None,
        last: None,
    };
    let (read, duplicates) = match &source {
        Source::Log(url) => (runtime.block_on(replay(url, args, &mut out))?, None),
        Source::Bus(url) => {
            let (read, duplicates) = runtime.block_on(replay_bus(url, args, &mut out))?;
            (read, Some(duplicates))
        }
    };
    out.file.flush().map_err(|error| {
        CliError::failed(format!("{}: cannot write ({error})", output.display()))
    })?;
    let mut summary = json!({
        "service": args.log.service,
        "output": output.display().to_string(),
        "events_read": read,
        "events_written": out.written,
        "first_position": out.first,
        "last_position": out.last,
        "sha256": hex::encode(out.digest.finalize()),
    });
    if let Some(duplicates) = duplicates {
        summary["duplicates_skipped"] = json!(duplicates);
    }
    Ok(summary)
}

/// Creates `--output` for writing; an existing file is refused, never overwritten (an
/// auditor's earlier export stays as it was).
pub(crate) fn create_output(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|error| {
            CliError::bad_request(format!(
                "--output {}: cannot create it ({error})",
                path.display()
            ))
        })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::failed(format!("cannot start the runtime: {error}")))
}

/// Where the events come from.
enum Source {
    /// The service's log (its URL).
    Log(String),
    /// The service's stream on a broker (the bus URL).
    Bus(String),
}

/// The file being written and what has gone into it.
struct Output {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    digest: Sha256,
    written: u64,
    first: Option<u64>,
    last: Option<u64>,
}

impl Output {
    fn write(&mut self, line: &Value, position: u64) -> Result<()> {
        let mut line = line.to_string();
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|error| {
            CliError::failed(format!("{}: cannot write ({error})", self.path.display()))
        })?;
        self.digest.update(line.as_bytes());
        self.written += 1;
        self.first.get_or_insert(position);
        self.last = Some(position);
        Ok(())
    }
}

/// Reads the service's stream on a broker from its start until it stays idle, each event
/// once (a broker may deliver one twice: the first is kept); the events read and the
/// duplicates skipped.
async fn replay_bus(url: &str, args: &ReplayArgs, out: &mut Output) -> Result<(u64, u64)> {
    let unavailable = |error: mpos_bus::BusError| CliError::unavailable(error.to_string());
    let mut stream = crate::events::follow_on(
        url,
        mpos_bus::FollowOptions {
            service: args.log.service.clone(),
            tenant_id: args.tenant.clone(),
            aggregate_type: args.aggregate_type.clone(),
            event_type: args.event_type.clone(),
            // Seeks on the broker: to the offset given, or to the time of --from (an event
            // is published after it occurred: none that occurred from then is skipped).
            from: match (args.from_offset, args.from) {
                (Some(offset), _) => mpos_bus::FollowFrom::Offset(offset),
                (None, Some(from)) => mpos_bus::FollowFrom::Time(from),
                (None, None) => mpos_bus::FollowFrom::Start,
            },
        },
    )
    .await?;
    let idle = std::time::Duration::from_secs(args.idle_exit);
    let mut seen = std::collections::HashSet::new();
    let (mut read, mut duplicates) = (0_u64, 0_u64);
    loop {
        let delivery = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) | Ok(None) => return Ok((read, duplicates)),
            Ok(Some(Err(mpos_bus::BusError::Decode(_)))) => continue,
            Ok(Some(Err(error))) => return Err(unavailable(error)),
            Ok(Some(Ok(delivery))) => delivery,
        };
        read += 1;
        let envelope = &delivery.envelope;
        if !seen.insert(envelope.event_id.clone()) {
            duplicates += 1;
            continue;
        }
        if args.matches(&envelope_facts(envelope)) {
            let line = crate::events::event_json(envelope);
            out.write(&line, envelope.global_position)?;
        }
    }
}

/// Reads the whole log page by page and writes the events that pass the filters; the number
/// of events read.
async fn replay(url: &str, args: &ReplayArgs, out: &mut Output) -> Result<u64> {
    let service = &args.log.service;
    let store = EventStore::connect_read_only(url, service)
        .await
        .map_err(|error| CliError::unavailable(format!("{service}: {error}")))?;
    let result = async {
        let (head, _) = store
            .head()
            .await
            .map_err(|error| CliError::unavailable(format!("{service}: {error}")))?;
        let progress = progress_bar(head);
        let mut position = args
            .from_position
            .map_or(0, |first| first.saturating_sub(1));
        let mut read = 0_u64;
        loop {
            let page = store
                .read_after(position, PAGE)
                .await
                .map_err(|error| CliError::unavailable(format!("{service}: {error}")))?;
            let Some(last) = page.last() else {
                progress.finish();
                return Ok(read);
            };
            position = last.global_position;
            read += u64::try_from(page.len()).unwrap_or(u64::MAX);
            if position > head {
                progress.set_length(position);
            }
            progress.set_position(position);
            for stored in page
                .iter()
                .filter(|stored| args.matches(&stored_facts(stored)))
            {
                out.write(&replay_line(stored), stored.global_position)?;
            }
        }
    }
    .await;
    store.close().await;
    result
}

/// A bar on standard error, drawn only when it is a terminal (indicatif hides it otherwise).
fn progress_bar(head: u64) -> ProgressBar {
    let bar =
        ProgressBar::with_draw_target(Some(head), indicatif::ProgressDrawTarget::stderr_with_hz(4));
    if let Ok(style) =
        ProgressStyle::with_template("replay {bar:40} {pos}/{len} events ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar
}

/// One line of the file: the event as `inspect` prints it, with its service, tenant and
/// aggregate.
fn replay_line(stored: &StoredEvent) -> Value {
    let mut line = crate::inspect::event_json(stored);
    let event = &stored.event;
    line["tenant_id"] = Value::String(event.tenant_id.clone());
    line["aggregate_type"] = Value::String(event.aggregate_type.clone());
    line["aggregate_id"] = Value::String(event.aggregate_id.clone());
    line
}
