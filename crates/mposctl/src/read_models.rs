//! `mposctl replay --read-model NAME|all`: a service's read models replayed from its log into
//! a fresh copy in memory, compared with the live read model the service keeps: both
//! digests (SHA-256 over every document's id, tenant and content, `mpos_es::digest_documents`)
//! and the documents of each.
//!
//! Each live read model is read at one position — its checkpoint, its documents, its
//! checkpoint again, until the two agree (a running service may be moving it) — and the
//! fresh copy is replayed up to that same position, with the service's own projection
//! (`mpos_es::Replayed`). Equal digests prove the live read model is what its events make;
//! a difference is a `verification_failed` (exit status 1) naming each read model that
//! differs. With `--output FILE`, the fresh copies' documents are written there as JSON lines
//! (with the file's SHA-256). Nothing is written to the service's database.
//!
//! With `--bus URL` the copy is folded from the service's stream on the broker (Kafka or
//! NATS) instead of its log: each event decoded from protobuf back into the log's JSON with
//! the service's codec, put back in log order (Kafka's partitions deliver out of order;
//! duplicates are dropped), up to the live read model's checkpoint when the log is given too
//! (then both digests, as above), else to the end of the stream (the copy's digest alone).
//! A stream that lacks a position the copy needs is `unavailable`, never a silent gap.

use std::io::Write;

use mpos_es::{
    CompareError, Compared, Document, EventCodec, EventStore, ReplayedReadModel, digest_documents,
};
use mpos_feed::follow::FeedNames;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::CliError;

type Result<T> = std::result::Result<T, CliError>;

/// Events read from the log per statement.
const PAGE: u32 = 5_000;

/// The read models each service keeps from its own log, as fresh (empty) copies.
pub(crate) fn of(service: &str) -> Vec<Box<dyn ReplayedReadModel>> {
    match service {
        "terminal-management" => terminal_management::read_models(),
        "attestation" => attestation::read_models(),
        "routing" => routing::read_models(),
        "authorization" => authorization::read_models(),
        _ => Vec::new(),
    }
}

/// A service's event codec: its events from a broker, or a followed log, back into the
/// log's form.
fn codec_of(service: &str) -> Option<EventCodec> {
    match service {
        "terminal-management" => Some(terminal_management::codec()),
        "key-injection" => Some(key_injection::codec()),
        "attestation" => Some(attestation::codec()),
        "routing" => Some(routing::codec()),
        "authorization" => Some(authorization::codec()),
        _ => None,
    }
}

/// The read models `service` keeps of another service's stream. Each is rebuilt by the
/// documents part of the service's own follower, without the work it starts (an injection,
/// a terminal suspended): the documents depend on the followed events alone. authorization's
/// `auth-routing` is not among them: it keeps no documents, only its checkpoint (it concludes
/// payments).
pub(crate) fn feeds_of(service: &str) -> Vec<FeedNames> {
    match service {
        "authorization" => authorization::feeds::REPLAYABLE_FEEDS.to_vec(),
        "terminal-management" => vec![terminal_management::verdicts::NAMES],
        "key-injection" => vec![key_injection::feed::NAMES],
        "attestation" => vec![attestation::service::FEED],
        "routing" => vec![routing::service::FEED],
        _ => Vec::new(),
    }
}

/// Follows `source` into `store` with the documents part of `service`'s follower of `feed`,
/// until `cancel`.
async fn follow_documents(
    service: String,
    feed: FeedNames,
    store: EventStore,
    source: mpos_feed::follow::FeedSource,
    cancel: tokio_util::sync::CancellationToken,
) {
    use std::sync::Arc;
    match service.as_str() {
        "authorization" => {
            authorization::feeds::run_replayable(store, feed.projection, source, cancel).await;
        }
        "terminal-management" => {
            let documents = terminal_management::verdicts::VerdictDocuments::new(store.clone());
            mpos_feed::follow::run(store, feed, source, Arc::new(documents), cancel).await;
        }
        // key-injection, attestation and routing keep terminal-management's documents.
        _ => {
            let view = mpos_feed::tms::TmsView::new(
                store.clone(),
                device_identity::TrustStore::new(),
                feed.projection,
            );
            let documents = mpos_feed::tms::TmsDocuments { view };
            mpos_feed::follow::run(store, feed, source, Arc::new(documents), cancel).await;
        }
    }
}

/// Replays the read model of `feed` that `service` keeps of another service's stream: the
/// followed log at `source_url`, up to the live read model's checkpoint, is copied into a
/// scratch log and followed by the service's own follower into a scratch store; both
/// digests, as for the service's own read models.
pub(crate) async fn run_feed(
    url: &str,
    source_url: &str,
    service: &str,
    feed: &FeedNames,
    output: Option<&std::path::Path>,
) -> Result<Value> {
    let (projection, followed) = (feed.projection, feed.source);
    let codec = codec_of(followed).ok_or_else(|| {
        CliError::failed(format!("{service}: no codec for the followed {followed}"))
    })?;
    let mut copies = output.map(Copies::create).transpose()?;
    let failed =
        |what: &str, error: mpos_es::StoreError| CliError::unavailable(format!("{what}: {error}"));
    let live_store = EventStore::connect_read_only(url, service)
        .await
        .map_err(|error| failed(service, error))?;
    let live = mpos_es::still(&live_store, feed.consumer, projection)
        .await
        .map_err(|error| compare_error(service, error));
    live_store.close().await;
    let (position, live) = live?;

    // The followed log up to the checkpoint, copied into a scratch log: the follower stops
    // exactly where the live read model stands.
    let scratch = tempfile::tempdir()
        .map_err(|error| CliError::failed(format!("a scratch directory: {error}")))?;
    let copy_url = format!("sqlite://{}", scratch.path().join("followed.db").display());
    let fresh_url = format!("sqlite://{}", scratch.path().join("fresh.db").display());
    let source = EventStore::connect_read_only(source_url, followed)
        .await
        .map_err(|error| failed(followed, error))?;
    let copy = EventStore::connect(&copy_url, followed)
        .await
        .map_err(|error| failed("scratch log", error))?;
    let fresh = EventStore::connect(&fresh_url, service)
        .await
        .map_err(|error| failed("scratch store", error))?;
    let result = async {
        let mut read = 0_u64;
        let mut at = 0_u64;
        while at < position {
            let page = source
                .read_after(at, PAGE)
                .await
                .map_err(|error| failed(followed, error))?;
            let events: Vec<mpos_es::NewEvent> = page
                .iter()
                .take_while(|event| event.global_position <= position)
                .map(|event| event.event.clone())
                .collect();
            let Some(last) = page.last() else { break };
            at = last.global_position;
            if events.is_empty() {
                break;
            }
            read += u64::try_from(events.len()).unwrap_or(u64::MAX);
            copy.append(events, None)
                .await
                .map_err(|error| failed("scratch log", error))?;
        }
        if read < position {
            return Err(CliError::unavailable(format!(
                "{followed}'s log holds {read} events, the read model is as of position {position}"
            )));
        }
        let cancel = tokio_util::sync::CancellationToken::new();
        let follower = tokio::spawn(follow_documents(
            service.to_owned(),
            *feed,
            fresh.clone(),
            mpos_feed::follow::FeedSource::Store {
                store: copy.clone(),
                codec: std::sync::Arc::new(codec),
            },
            cancel.clone(),
        ));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let outcome = loop {
            let reached = fresh
                .consumer_position(feed.consumer)
                .await
                .map_err(|error| failed("scratch store", error))?;
            if reached >= position {
                break Ok(read);
            }
            if std::time::Instant::now() > deadline {
                break Err(CliError::failed(format!(
                    "{projection}: the replay stopped at {reached} of {position}"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        cancel.cancel();
        let _ = follower.await;
        outcome
    }
    .await;
    let replayed = match &result {
        Ok(_) => fresh
            .list_documents(projection, None)
            .await
            .map_err(|error| failed("scratch store", error)),
        Err(_) => Ok(Vec::new()),
    };
    source.close().await;
    copy.close().await;
    fresh.close().await;
    let read = result?;
    let replayed = replayed?;

    let (live_digest, fresh_digest) = (digest_documents(&live), digest_documents(&replayed));
    let identical = live_digest == fresh_digest;
    let mut summary = json!({
        "service": service,
        "source": "log",
        "events_read": read,
        "read_models": [{
            "name": projection,
            "follows": followed,
            "position": position,
            "live": {"documents": live.len(), "digest": live_digest},
            "replayed": {"documents": replayed.len(), "digest": fresh_digest},
            "identical": identical,
        }],
    });
    if let Some(mut copies) = copies.take() {
        copies.write(projection, &replayed)?;
        copies.finish(&mut summary)?;
    }
    if identical {
        Ok(summary)
    } else {
        Err(CliError::verification_failed(
            format!("{service}: {projection} differs from its replay"),
            summary,
        ))
    }
}

/// `name` (or `all`) of `service`'s read models, or `not_found` naming those it has.
fn select(service: &str, name: &str) -> Result<Vec<Box<dyn ReplayedReadModel>>> {
    let mut models = of(service);
    let known: Vec<&'static str> = models.iter().map(|model| model.name()).collect();
    if name != "all" {
        models.retain(|model| model.name() == name);
    }
    if models.is_empty() {
        return Err(CliError::not_found(if known.is_empty() {
            format!("{service} keeps no read model of its own log")
        } else {
            format!(
                "{service} has no read model {name}; it has {} (or all)",
                known.join(", ")
            )
        }));
    }
    Ok(models)
}

/// Replays `name` (or `all`) of `service`'s read models from the log at `url`; the summary,
/// or `verification_failed` with it when a copy differs from its live read model.
pub(crate) async fn run(
    url: &str,
    service: &str,
    name: &str,
    output: Option<&std::path::Path>,
) -> Result<Value> {
    let models = select(service, name)?;
    let copies = output.map(Copies::create).transpose()?;
    let store = EventStore::connect_read_only(url, service)
        .await
        .map_err(|error| CliError::unavailable(format!("{service}: {error}")))?;
    let result = mpos_es::compare_read_models(&store, models)
        .await
        .map_err(|error| compare_error(service, error));
    store.close().await;
    let (compared, read) = result?;
    report(service, &compared, read, true, copies, json!("log"))
}

/// Replays `name` (or `all`) of `service`'s read models from its stream on the broker at
/// `bus`: up to each live read model's checkpoint and compared with it when `log` (the
/// service's log URL) is given, else to the end of the stream.
pub(crate) async fn run_from_bus(
    bus: &str,
    log: Option<&str>,
    service: &str,
    name: &str,
    output: Option<&std::path::Path>,
    idle: std::time::Duration,
) -> Result<Value> {
    let models = select(service, name)?;
    let Some(codec) = codec_of(service) else {
        return Err(CliError::not_found(format!(
            "{service} keeps no read model of its own log"
        )));
    };
    let copies = output.map(Copies::create).transpose()?;
    let mut compared = match log {
        Some(url) => {
            let store = EventStore::connect_read_only(url, service)
                .await
                .map_err(|error| CliError::unavailable(format!("{service}: {error}")))?;
            let result = mpos_es::live_at_checkpoints(&store, models)
                .await
                .map_err(|error| compare_error(service, error));
            store.close().await;
            result?
        }
        None => models
            .into_iter()
            .map(|copy| Compared {
                copy,
                position: u64::MAX,
                live: Vec::new(),
            })
            .collect(),
    };
    let (read, folded) = fold_from_bus(bus, service, &codec, &mut compared, idle).await?;
    let mut summary = report(
        service,
        &compared,
        read,
        log.is_some(),
        copies,
        json!("bus"),
    );
    if let Ok(summary) = summary.as_mut() {
        summary["last_position"] = json!(folded);
    }
    summary
}

/// Folds the service's stream on `bus` into each copy, in log order, each up to its own
/// position; the deliveries read and the last position folded.
async fn fold_from_bus(
    bus: &str,
    service: &str,
    codec: &EventCodec,
    compared: &mut [Compared],
    idle: std::time::Duration,
) -> Result<(u64, u64)> {
    let target = compared
        .iter()
        .map(|model| model.position)
        .max()
        .unwrap_or(0);
    if target == 0 {
        return Ok((0, 0));
    }
    let mut stream = crate::events::follow_on(
        bus,
        mpos_bus::FollowOptions {
            service: service.to_owned(),
            tenant_id: None,
            aggregate_type: None,
            event_type: None,
            from: mpos_bus::FollowFrom::Start,
        },
    )
    .await?;
    let mut order = mpos_es::InOrder::default();
    let mut read = 0_u64;
    while order.folded() < target {
        let delivery = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(error))) => return Err(CliError::unavailable(error.to_string())),
            Ok(Some(Ok(delivery))) => delivery,
        };
        read += 1;
        let event = codec
            .stored_from_envelope(&delivery.envelope)
            .map_err(|error| {
                CliError::failed(format!(
                    "{service}: the event at position {} does not decode: {error}",
                    delivery.envelope.global_position
                ))
            })?;
        mpos_es::apply_each(compared, &order.push(event))
            .map_err(|error| compare_error(service, error))?;
    }
    // Without the log, the end of the stream is the target; with it, every position up to
    // the live checkpoint must have come.
    let needed = if target == u64::MAX {
        order.folded()
    } else {
        target
    };
    if order.folded() < needed || !order.is_drained() {
        return Err(CliError::unavailable(format!(
            "{service}: the broker's stream lacks position {} (folded up to {}, {} later events held back); it cannot be replayed in order",
            order.folded() + 1,
            order.folded(),
            order.held()
        )));
    }
    Ok((read, order.folded()))
}

/// The summary of compared (or, `compare` false, only replayed) read models, with the copies
/// written to `file`; `verification_failed` when a copy differs.
fn report(
    service: &str,
    compared: &[Compared],
    read: u64,
    compare: bool,
    mut copies: Option<Copies>,
    source: Value,
) -> Result<Value> {
    let mut reports = Vec::new();
    let mut differing = Vec::new();
    for model in compared {
        let fresh = model
            .copy
            .documents()
            .map_err(|error| CliError::failed(format!("{}: {error}", model.copy.name())))?;
        let (live_digest, fresh_digest) = (digest_documents(&model.live), digest_documents(&fresh));
        let identical = live_digest == fresh_digest;
        if compare && !identical {
            differing.push(model.copy.name());
        }
        if let Some(copies) = copies.as_mut() {
            copies.write(model.copy.name(), &fresh)?;
        }
        reports.push(if compare {
            json!({
                "name": model.copy.name(),
                "position": model.position,
                "live": {"documents": model.live.len(), "digest": live_digest},
                "replayed": {"documents": fresh.len(), "digest": fresh_digest},
                "identical": identical,
            })
        } else {
            json!({
                "name": model.copy.name(),
                "replayed": {"documents": fresh.len(), "digest": fresh_digest},
            })
        });
    }
    let mut summary = json!({
        "service": service,
        "source": source,
        "events_read": read,
        "read_models": reports,
    });
    if let Some(copies) = copies {
        copies.finish(&mut summary)?;
    }
    if differing.is_empty() {
        Ok(summary)
    } else {
        Err(CliError::verification_failed(
            format!(
                "{service}: {} differs from its replay",
                differing.join(", ")
            ),
            summary,
        ))
    }
}

/// A comparison that could not be made, as the CLI reports it.
fn compare_error(service: &str, error: CompareError) -> CliError {
    match error {
        CompareError::Apply { .. } => CliError::failed(error.to_string()),
        CompareError::Moving(_) | CompareError::Store(_) => {
            CliError::unavailable(format!("{service}: {error}"))
        }
    }
}

/// The fresh copies' documents written to `--output` as JSON lines, with the file's SHA-256.
struct Copies {
    file: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    digest: Sha256,
}

impl Copies {
    /// Creates the file (an existing one is refused).
    fn create(path: &std::path::Path) -> Result<Self> {
        let file = crate::replay::create_output(path)?;
        Ok(Self {
            file: std::io::BufWriter::new(file),
            path: path.to_owned(),
            digest: Sha256::new(),
        })
    }

    fn cannot_write(&self, error: &std::io::Error) -> CliError {
        CliError::failed(format!("{}: cannot write ({error})", self.path.display()))
    }

    /// Writes one read model's documents, a line each.
    fn write(&mut self, read_model: &str, documents: &[Document]) -> Result<()> {
        for document in documents {
            let mut line = document_line(read_model, document).to_string();
            line.push('\n');
            self.file
                .write_all(line.as_bytes())
                .map_err(|error| self.cannot_write(&error))?;
            self.digest.update(line.as_bytes());
        }
        Ok(())
    }

    /// Flushes the file and names it, with its SHA-256, in `summary`.
    fn finish(mut self, summary: &mut Value) -> Result<()> {
        self.file
            .flush()
            .map_err(|error| self.cannot_write(&error))?;
        summary["output"] = json!(self.path.display().to_string());
        summary["sha256"] = json!(hex::encode(self.digest.finalize()));
        Ok(())
    }
}

/// One document of a fresh copy as a line of the output file.
fn document_line(read_model: &str, document: &Document) -> Value {
    json!({
        "read_model": read_model,
        "id": document.id,
        "tenant_id": document.tenant_id,
        "position": document.position,
        "document": serde_json::from_str::<Value>(&document.payload).unwrap_or(Value::Null),
    })
}
