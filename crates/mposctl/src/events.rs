//! `mposctl events tail`: follows a service's event stream on the broker, live, and prints
//! each event as one line of JSON, its payload decoded from protobuf by its type with the
//! platform's own descriptors (the proto3 JSON mapping, as integrators read it).
//!
//! * `--bus nats://…` follows the service's JetStream stream, `--bus kafka://…` its topic,
//!   with the `namespace` of the deployment's bus URL;
//! * `--tenant`, `--aggregate-type`, `--event-type` filter as a subscription does (on NATS the
//!   server filters by subject);
//! * from now on, or `--from-start`; `--limit N` stops after N events, `--idle-exit S` when
//!   none arrived for S seconds; otherwise it follows until interrupted.
//!
//! Nothing is recorded on the broker: no durable consumer, no consumer group, no offset.
//! The last line is the summary (`{"events":N,"stopped":"limit"|"idle"}`), or the error
//! object. Events carry no clear key, PIN block or full PAN by the platform's rule, so neither
//! does the output.

use std::io::Write;
use std::sync::LazyLock;
use std::time::Duration;

use clap::{Args, Subcommand};
use mpos_bus::{BusError, EventEnvelope, EventStream, FollowOptions};
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{Value, json};

use crate::audit::check_service;
use crate::error::CliError;

type Result<T> = std::result::Result<T, CliError>;

/// `mposctl events`.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// What to do.
    #[command(subcommand)]
    op: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Follows a service's events live on the broker, one JSON line per event.
    Tail(TailArgs),
    /// The nats-server user permissions of one tenant's integrator: its own tenant's events
    /// only, through its own named durable consumers (docs/bus.md, per-tenant scoping).
    NatsPermissions(PermissionsArgs),
    /// The Kafka ACLs of one tenant's integrator principal: read its own tenant topics
    /// (`tenant_topics=true`) with consumer groups `<tenant>_…`, nothing else.
    KafkaAcls(AclArgs),
}

/// `mposctl events kafka-acls`.
#[derive(Debug, Args)]
pub(crate) struct AclArgs {
    /// The tenant whose integrator the principal is.
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// The principal, e.g. User:acme (default User:<tenant>).
    #[arg(long, value_name = "PRINCIPAL")]
    principal: Option<String>,
    /// The deployment's bus namespace, if it has one.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Only these services' topics (repeatable; default: every service's).
    #[arg(long = "service", value_name = "SERVICE")]
    services: Vec<String>,
}

/// `mposctl events nats-permissions`.
#[derive(Debug, Args)]
pub(crate) struct PermissionsArgs {
    /// The tenant whose integrator the user is.
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// A durable consumer the integrator may use (repeatable); its name on the server is
    /// `<tenant>_<NAME>`.
    #[arg(long = "consumer", value_name = "NAME", required = true)]
    consumers: Vec<String>,
    /// The deployment's bus namespace, if it has one.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Only these services' streams (repeatable; default: every service's).
    #[arg(long = "service", value_name = "SERVICE")]
    services: Vec<String>,
}

/// `mposctl events tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The broker, as the deployment's bus URL: nats://host:port or kafka://host:port, with
    /// its ?namespace=… if it has one.
    #[arg(long, value_name = "URL")]
    bus: String,
    /// The service whose events to follow, e.g. authorization.
    #[arg(long, value_name = "SERVICE")]
    service: String,
    /// Only this tenant's events.
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// Only events of this aggregate type, e.g. payment.
    #[arg(long, value_name = "TYPE")]
    aggregate_type: Option<String>,
    /// Only events of this type, its full protobuf name, e.g.
    /// mpos.authorization.v1.PaymentApproved.
    #[arg(long, value_name = "TYPE")]
    event_type: Option<String>,
    /// From the start of the stream instead of from now on.
    #[arg(long)]
    from_start: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Stop when no event arrived for this many seconds.
    #[arg(long, value_name = "SECONDS")]
    idle_exit: Option<u64>,
}

/// The platform's message descriptors, to decode any event payload by its type.
static DESCRIPTORS: LazyLock<std::result::Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(mpos_proto::FILE_DESCRIPTOR_SET).map_err(|error| error.to_string())
});

/// Runs `mposctl events`.
pub(crate) fn run(args: EventsArgs) -> Result<Value> {
    match args.op {
        EventsCommand::Tail(args) => tail(&args),
        EventsCommand::NatsPermissions(args) => nats_permissions(&args),
        EventsCommand::KafkaAcls(args) => kafka_acls(&args),
    }
}

/// The services named, each checked, or every service.
fn services_of(given: &[String]) -> Result<Vec<&str>> {
    for service in given {
        check_service(service)?;
    }
    Ok(if given.is_empty() {
        crate::audit::SERVICES.to_vec()
    } else {
        given.iter().map(String::as_str).collect()
    })
}

fn kafka_acls(args: &AclArgs) -> Result<Value> {
    let services = services_of(&args.services)?;
    let acls = mpos_bus::kafka_tenant_acls(args.namespace.as_deref(), &args.tenant, &services)
        .map_err(|error| CliError::bad_request(error.to_string()))?;
    let principal = args
        .principal
        .clone()
        .unwrap_or_else(|| format!("User:{}", args.tenant));
    // The same, as kafka-acls.sh invocations.
    let commands: Vec<String> = acls
        .iter()
        .map(|acl| {
            let operations: Vec<String> = acl
                .operations
                .iter()
                .map(|operation| format!("--operation {operation}"))
                .collect();
            format!(
                "kafka-acls.sh --add --allow-principal {principal} {} --{} {} --resource-pattern-type {}",
                operations.join(" "),
                acl.resource_type.to_ascii_lowercase(),
                acl.name,
                acl.pattern_type.to_ascii_lowercase()
            )
        })
        .collect();
    Ok(json!({
        "tenant": args.tenant,
        "principal": principal,
        "acls": acls,
        "commands": commands,
    }))
}

fn nats_permissions(args: &PermissionsArgs) -> Result<Value> {
    let services = services_of(&args.services)?;
    let names: Vec<&str> = args.consumers.iter().map(String::as_str).collect();
    let permissions = mpos_bus::nats_tenant_permissions(
        args.namespace.as_deref(),
        &args.tenant,
        &services,
        &names,
    )
    .map_err(|error| CliError::bad_request(error.to_string()))?;
    Ok(json!({
        "tenant": args.tenant,
        "consumers": names
            .iter()
            .map(|name| mpos_bus::tenant_consumer_name(&args.tenant, name))
            .collect::<Vec<_>>(),
        "inbox_prefix": mpos_bus::tenant_inbox_prefix(&args.tenant),
        "permissions": permissions,
    }))
}

fn tail(args: &TailArgs) -> Result<Value> {
    check_service(&args.service)?;
    check_bus_url(&args.bus)?;
    if args.limit == Some(0) {
        return Err(CliError::bad_request("--limit must be at least 1"));
    }
    if let Err(error) = &*DESCRIPTORS {
        return Err(CliError::failed(format!(
            "the platform's descriptors do not load: {error}"
        )));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::failed(format!("cannot start the runtime: {error}")))?;
    runtime.block_on(follow(args))
}

/// A `--bus` URL that names a broker (the in-process bus of an embedded `mposd` cannot be
/// followed from outside it).
pub(crate) fn check_bus_url(url: &str) -> Result<()> {
    if url.starts_with("nats://") || url.starts_with("kafka://") {
        return Ok(());
    }
    Err(CliError::bad_request(
        "--bus: expected the broker's URL, nats://host:port or kafka://host:port (an embedded mposd's in-process bus cannot be followed from outside it)",
    ))
}

/// Connects to the broker of `url` and follows a service's stream on it; what goes wrong is
/// `bad_request` for the URL and `unavailable` for the broker.
pub(crate) async fn follow_on(url: &str, options: FollowOptions) -> Result<EventStream> {
    let bus = mpos_bus::connect(url).await.map_err(|error| match error {
        BusError::InvalidUrl(_) => CliError::bad_request(format!("--bus: {error}")),
        error => CliError::unavailable(error.to_string()),
    })?;
    bus.subscriber
        .follow(options)
        .await
        .map_err(|error| CliError::unavailable(error.to_string()))
}

async fn follow(args: &TailArgs) -> Result<Value> {
    let unavailable = |error: BusError| CliError::unavailable(error.to_string());
    let mut stream = follow_on(
        &args.bus,
        FollowOptions {
            service: args.service.clone(),
            tenant_id: args.tenant.clone(),
            aggregate_type: args.aggregate_type.clone(),
            event_type: args.event_type.clone(),
            from: if args.from_start {
                mpos_bus::FollowFrom::Start
            } else {
                mpos_bus::FollowFrom::Now
            },
        },
    )
    .await?;
    let idle = args.idle_exit.map(Duration::from_secs);
    let mut printed = 0_u64;
    let mut stdout = std::io::stdout();
    loop {
        if args.limit.is_some_and(|limit| printed >= limit) {
            return Ok(json!({ "events": printed, "stopped": "limit" }));
        }
        let next = match idle {
            Some(idle) => match tokio::time::timeout(idle, stream.next()).await {
                Ok(next) => next,
                Err(_) => return Ok(json!({ "events": printed, "stopped": "idle" })),
            },
            None => stream.next().await,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => {
                // A record that does not decode is named and skipped; a broker failure ends it.
                if matches!(error, BusError::Decode(_)) {
                    write_line(&mut stdout, &json!({ "skipped": error.to_string() }))?;
                    continue;
                }
                return Err(unavailable(error));
            }
            None => return Err(CliError::unavailable("the broker ended the stream")),
        };
        write_line(&mut stdout, &event_json(&delivery.envelope))?;
        printed += 1;
    }
}

/// Writes one line and flushes it, so that a pipe sees each event as it arrives.
fn write_line(stdout: &mut std::io::Stdout, value: &Value) -> Result<()> {
    let mut out = stdout.lock();
    writeln!(out, "{value}")
        .and_then(|()| out.flush())
        .map_err(|error| CliError::failed(format!("cannot write to stdout: {error}")))
}

/// One event: the envelope's fields, and its payload decoded by its type.
pub(crate) fn event_json(envelope: &EventEnvelope) -> Value {
    let occurred_at = envelope.occurred_at.as_ref().and_then(|time| {
        chrono::DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(0))
            .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    });
    let mut line = json!({
        "service": envelope.service,
        "tenant_id": envelope.tenant_id,
        "aggregate_type": envelope.aggregate_type,
        "aggregate_id": envelope.aggregate_id,
        "sequence": envelope.sequence,
        "global_position": envelope.global_position,
        "event_id": envelope.event_id,
        "event_type": envelope.event_type,
        "event_version": envelope.event_version,
        "occurred_at": occurred_at,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "actor": envelope.actor,
        "traceparent": envelope.traceparent,
        "previous_hash": hex::encode(&envelope.previous_hash),
        "hash": hex::encode(&envelope.hash),
    });
    match decode_payload(&envelope.event_type, &envelope.payload) {
        Ok(payload) => line["payload"] = payload,
        Err(error) => {
            line["payload"] = Value::Null;
            line["payload_error"] = Value::String(error);
            line["payload_hex"] = Value::String(hex::encode(&envelope.payload));
        }
    }
    line
}

/// A payload in the proto3 JSON mapping, decoded as the message its type names.
fn decode_payload(event_type: &str, payload: &[u8]) -> std::result::Result<Value, String> {
    let pool = DESCRIPTORS.as_ref().map_err(Clone::clone)?;
    let descriptor = pool
        .get_message_by_name(event_type)
        .ok_or_else(|| format!("no message type {event_type:?} in the platform's descriptors"))?;
    let message = DynamicMessage::decode(descriptor, payload)
        .map_err(|error| format!("not a {event_type}: {error}"))?;
    serde_json::to_value(&message).map_err(|error| error.to_string())
}
