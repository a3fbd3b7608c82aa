//! The service's operations over its log: rules and acquirers (the admin API), decisions
//! (`Decide`), the conversation with the acquirers (`Authorize`), reversals (`Reverse` and
//! the store-and-forward worker of [`crate::forward`]), stored completion advices (repeated
//! by the same worker) and the reads.
//!
//! Health is kept in memory, one [`HealthBook`] per tenant: the breaker counts what this
//! process saw; every change of a breaker is recorded as `AcquirerHealthChanged` on the
//! acquirer, so the log says when and why an acquirer was out of service.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use acquirer_link::profile::{self, OriginalData, OriginalTransaction, Reversal, ReversalReason};
use acquirer_link::{AuthorizationRequest, LinkError, PinBlock, RequestKind};
use chrono::{DateTime, SubsecRound, Utc};
use hsm_proxy::rpc::HsmClient;
use mpos_errors::{ErrorCode, ServiceError};
use mpos_es::{CommandMetadata, Cqrs, EventStore, ProjectionRunner, command_error};
use mpos_http::check_id;
use mpos_proto::hsm as hsm_pb;
use mpos_proto::routing as pb;
use mpos_seal::Sealer;
use routing_rules::{
    self as rr, Admission, HealthBook, HealthPolicy, HealthSnapshot, HealthTransition,
    ManualReason, Outcome, Rate, Rejection, RouteInput, StateName,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::acquirer::{self, Acquirer, AcquirerCommand};
use crate::card::CardData;
use crate::convert;
use crate::exchange::{self, Exchange, ExchangeCommand};
use crate::links::{LinkRegistry, LinkTuning, rrn};
use crate::recent::{ConfigCache, Handoff};
use crate::rules::{self, PublishRules, TenantRules};
use crate::views::{ACQUIRERS, AcquirersProjection, PENDING, PendingProjection, PendingView};

/// Who acts (the envelope's actor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// Settings of the operations.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// The first pause after a failed reversal delivery.
    pub reversal_backoff_min: Duration,
    /// The longest pause between reversal deliveries.
    pub reversal_backoff_max: Duration,
    /// How links reconnect.
    pub link_tuning: LinkTuning,
    /// How long a tenant's rules and acquirers, once read, serve payments before they are
    /// read again (changes made through this process are seen at once; zero: read for every
    /// payment). See ADR 20.
    pub config_ttl: Duration,
}

/// How long a `Decide`'s exchange waits for its `Authorize` in memory.
const HANDOFF_TTL: Duration = Duration::from_secs(5);

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            reversal_backoff_min: Duration::from_secs(5),
            reversal_backoff_max: Duration::from_secs(600),
            link_tuning: LinkTuning::default(),
            config_ttl: Duration::from_secs(1),
        }
    }
}

/// The operations.
pub struct Router {
    pub(crate) store: EventStore,
    rules: Arc<Cqrs<TenantRules>>,
    acquirers: Arc<Cqrs<Acquirer>>,
    exchanges: Arc<Cqrs<Exchange>>,
    /// The payment path's commands on an exchange, on the state the request loaded once.
    held: mpos_es::Aggregates<Exchange>,
    /// Each tenant's rules and acquirers as last read.
    config: ConfigCache<TenantConfig>,
    /// The exchange each `Decide` recorded, for its `Authorize`.
    decided: Handoff<mpos_es::Loaded<Exchange>>,
    health: Mutex<HashMap<String, HealthBook>>,
    links: LinkRegistry,
    hsm: HsmClient,
    sealer: Arc<Sealer>,
    acquirer_views: ProjectionRunner<AcquirersProjection>,
    pub(crate) pending: ProjectionRunner<PendingProjection>,
    /// Wakes the store-and-forward worker when a reversal is queued.
    pub(crate) wake: Notify,
    settings: RouterSettings,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

/// A decision not yet recorded: what was decided, the breaker changes it caused, and the
/// tenant's acquirers it was decided on (their zone PIN keys go into the answer).
struct Decision {
    decided: pb::RouteDecided,
    transitions: Vec<HealthTransition>,
    config: Arc<TenantConfig>,
}

/// A tenant's rules and acquirers, as one payment's decision and attempts use them.
#[derive(Debug)]
struct TenantConfig {
    /// The rules as the decision logic takes them; `None`: the stored rules cannot be read.
    rules: Option<rr::RuleSet>,
    /// The configured acquirers, by id.
    acquirers: Vec<pb::AcquirerConfigured>,
}

impl TenantConfig {
    fn acquirer(&self, acquirer_id: &str) -> Option<&pb::AcquirerConfigured> {
        self.acquirers
            .iter()
            .find(|configured| configured.acquirer_id == acquirer_id)
    }
}

/// An exchange's snapshot is taken every this many events.
const EXCHANGE_SNAPSHOT_EVERY: usize = 50;

fn unreadable(error: serde_json::Error) -> ServiceError {
    tracing::error!(%error, "unreadable event");
    ServiceError::internal("unreadable event")
}

/// The acquirer aggregate's id.
pub fn acquirer_key(tenant_id: &str, acquirer_id: &str) -> String {
    format!("{tenant_id}/{acquirer_id}")
}

/// A card acceptor id (field 41: 8, field 42: 15 characters) at its field's width: left
/// justified and padded with spaces, as ISO 8583 fixed-width `ans` fields are (the platform's
/// terminal and merchant ids are often shorter).
fn field_width(value: &str, width: usize) -> String {
    format!("{value:<width$}")
}

/// The exchange aggregate's id.
pub fn exchange_key(tenant_id: &str, payment_id: &str) -> String {
    format!("{tenant_id}/{payment_id}")
}

/// The breaker policy of an acquirer's settings.
pub fn health_policy(policy: Option<&pb::HealthPolicy>) -> HealthPolicy {
    let defaults = HealthPolicy::default();
    let Some(policy) = policy else {
        return defaults;
    };
    let or = |value: u32, default| if value == 0 { default } else { value };
    HealthPolicy {
        window: Duration::from_secs(u64::from(or(policy.window_seconds, 30))),
        min_requests: or(policy.min_requests, defaults.min_requests),
        max_error_rate: Rate::ratio(u64::from(or(policy.max_error_percent, 50)), 100),
        max_timeout_rate: Rate::ratio(u64::from(or(policy.max_timeout_percent, 30)), 100),
        cool_down: Duration::from_secs(u64::from(or(policy.cool_down_seconds, 30))),
        half_open_probes: or(policy.half_open_probes, defaults.half_open_probes),
    }
}

fn health_state(state: StateName) -> pb::HealthState {
    match state {
        StateName::Closed => pb::HealthState::Closed,
        StateName::Open | StateName::ForcedOpen => pb::HealthState::Open,
        StateName::HalfOpen => pb::HealthState::HalfOpen,
    }
}

/// An acquirer's health now, in the shape of `AcquirerHealthChanged` (`to` the current
/// state, `from` unset, `at` now), with the link's connection state in the reason.
pub fn health_view(
    tenant_id: &str,
    acquirer_id: &str,
    health: &HealthSnapshot,
    link_state: &str,
) -> pb::AcquirerHealthChanged {
    let state = health.state.name();
    pb::AcquirerHealthChanged {
        tenant_id: tenant_id.to_owned(),
        acquirer_id: acquirer_id.to_owned(),
        from: pb::HealthState::Unspecified.into(),
        to: health_state(state).into(),
        reason: format!("{state}; link {link_state}"),
        error_percent: percent(health.error_rate),
        timeout_percent: percent(health.timeout_rate),
        requests: u32::try_from(health.requests).unwrap_or(u32::MAX),
        at: Some(mpos_proto::timestamp_from_micros(mpos_es::now_micros())),
    }
}

fn percent(rate: Rate) -> u32 {
    rate.ppm() / 10_000
}

/// Why an acquirer was left out, as recorded.
pub fn rejection_reason(rejection: &Rejection) -> String {
    match rejection {
        Rejection::CircuitOpen { trip, .. } => format!("circuit open: {trip}"),
        Rejection::ProbesInFlight { .. } => "half open: every probe is in flight".to_owned(),
        Rejection::ForcedOpen { reason } => format!("taken out: {reason}"),
    }
}

fn micros(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn outcome_name(outcome: pb::ExchangeOutcome) -> &'static str {
    match outcome {
        pb::ExchangeOutcome::Approved => "approved",
        pb::ExchangeOutcome::Declined => "declined",
        pb::ExchangeOutcome::Unavailable => "unavailable",
        pb::ExchangeOutcome::TimedOut => "timed_out",
        pb::ExchangeOutcome::InvalidResponse => "invalid_response",
        pb::ExchangeOutcome::Stored => "stored",
        pb::ExchangeOutcome::Unspecified => "unspecified",
    }
}

fn request_kind(kind: i32) -> Result<RequestKind, ServiceError> {
    match pb::TransactionType::try_from(kind) {
        Ok(pb::TransactionType::Purchase) => Ok(RequestKind::Purchase),
        Ok(pb::TransactionType::Refund) => Ok(RequestKind::Refund),
        Ok(pb::TransactionType::PreAuthorization) => Ok(RequestKind::PreAuthorization),
        Ok(pb::TransactionType::Completion) => Ok(RequestKind::Completion),
        _ => Err(ServiceError::bad_request(
            "transaction_type: purchase, refund, pre_authorization or completion",
        )),
    }
}

fn link_entry_mode(mode: i32) -> Result<acquirer_link::EntryMode, ServiceError> {
    match pb::EntryMode::try_from(mode) {
        Ok(pb::EntryMode::Chip) => Ok(acquirer_link::EntryMode::Chip),
        Ok(pb::EntryMode::Contactless) => Ok(acquirer_link::EntryMode::Contactless),
        Ok(pb::EntryMode::SwipeFallback) => Ok(acquirer_link::EntryMode::SwipeFallback),
        _ => Err(ServiceError::bad_request(
            "entry_mode: chip, contactless or swipe_fallback",
        )),
    }
}

/// The ISO 4217 numeric code of an alphabetic one.
fn currency_numeric(currency: &str) -> Result<String, ServiceError> {
    tms_params::values::Currency::from_alpha(currency)
        .map(|currency| format!("{:03}", currency.numeric()))
        .map_err(|_| ServiceError::bad_request("currency: an ISO 4217 alphabetic code"))
}

fn digits(value: &str, range: std::ops::RangeInclusive<usize>) -> bool {
    range.contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
}

/// A `MMDDhhmmss` UTC time with the year that puts it closest to `now`.
fn parse_field7(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use chrono::{Datelike, NaiveDate, TimeZone};
    if !digits(value, 10..=10) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| value.get(range)?.parse::<u32>().ok();
    let (month, day) = (number(0..2)?, number(2..4)?);
    let (hour, minute, second) = (number(4..6)?, number(6..8)?, number(8..10)?);
    [now.year() - 1, now.year(), now.year() + 1]
        .into_iter()
        .filter_map(|year| {
            NaiveDate::from_ymd_opt(year, month, day)?
                .and_hms_opt(hour, minute, second)
                .map(|naive| Utc.from_utc_datetime(&naive))
        })
        .min_by_key(|candidate| (*candidate - now).num_seconds().abs())
}

/// The reversal reason code (field 39) of a recorded reason.
fn reversal_reason(reason: &str) -> ReversalReason {
    match reason {
        "terminal_request" => ReversalReason::CustomerCancellation,
        "terminal_unreachable" | "invalid_response" => ReversalReason::SuspectedMalfunction,
        _ => ReversalReason::Timeout,
    }
}

const REVERSAL_REASONS: [&str; 4] = [
    "acquirer_timeout",
    "terminal_unreachable",
    "terminal_request",
    "invalid_response",
];

/// What one attempt came to.
struct AttemptResult {
    answer: pb::AcquirerResponded,
    issuer_emv_data: Vec<u8>,
}

/// A message the store-and-forward worker delivers until it is acknowledged.
#[derive(Clone, Copy, Debug)]
enum Stored {
    /// A reversal (0400, 0401).
    Reversal,
    /// A completion advice's repeat (0221).
    Advice,
}

impl Stored {
    fn acknowledged(self) -> &'static str {
        match self {
            Self::Reversal => "reversal acknowledged",
            Self::Advice => "completion advice acknowledged",
        }
    }

    fn failed(self) -> &'static str {
        match self {
            Self::Reversal => "reversal delivery failed",
            Self::Advice => "completion advice delivery failed",
        }
    }
}

impl Router {
    /// The operations over `store`; MACs and PIN translation through `hsm`; card data opened
    /// with `sealer`; links stop when `cancel` fires.
    pub fn new(
        store: EventStore,
        hsm: HsmClient,
        sealer: Arc<Sealer>,
        settings: RouterSettings,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            rules: mpos_es::snapshot_framework(&store, 50),
            acquirers: mpos_es::snapshot_framework(&store, 100),
            exchanges: mpos_es::snapshot_framework(&store, EXCHANGE_SNAPSHOT_EVERY),
            held: mpos_es::Aggregates::new(&store, EXCHANGE_SNAPSHOT_EVERY, ()),
            config: ConfigCache::new(settings.config_ttl),
            decided: Handoff::new(HANDOFF_TTL),
            health: Mutex::new(HashMap::new()),
            links: LinkRegistry::new(hsm.clone(), settings.link_tuning, cancel),
            hsm,
            sealer,
            acquirer_views: ProjectionRunner::new(store.clone(), AcquirersProjection),
            pending: ProjectionRunner::new(store.clone(), PendingProjection),
            wake: Notify::new(),
            store,
            settings,
        }
    }

    /// The process's sealing key (what `AuthorizeRequest.sealed_card` is sealed to).
    pub fn sealing_key(&self) -> mpos_proto::common::SealingKey {
        mpos_proto::common::SealingKey::from(&self.sealer.public_key())
    }

    /// The links (their states, for health checks).
    pub fn links(&self) -> &LinkRegistry {
        &self.links
    }

    fn metadata(actor: &Actor, tenant_id: &str) -> CommandMetadata {
        CommandMetadata {
            tenant_id: tenant_id.to_owned(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            causation_id: String::new(),
            traceparent: mpos_telemetry::current_traceparent().unwrap_or_default(),
            actor: actor.0.clone(),
        }
    }

    fn books(&self) -> MutexGuard<'_, HashMap<String, HealthBook>> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn load<A>(&self, aggregate_type: &str, aggregate_id: &str) -> Result<A, ServiceError>
    where
        A: cqrs_es::Aggregate + Default,
        A::Event: serde::de::DeserializeOwned,
    {
        let mut state = A::default();
        for stored in self
            .store
            .read_aggregate(aggregate_type, aggregate_id, 0)
            .await?
        {
            let event: A::Event =
                serde_json::from_str(&stored.event.payload).map_err(unreadable)?;
            state.apply(event);
        }
        Ok(state)
    }

    // ---------------------------------------------------------------------------------
    // Rules
    // ---------------------------------------------------------------------------------

    /// The tenant's current rules (version 0 and no rules before the first version).
    pub async fn rules(&self, tenant_id: &str) -> Result<pb::RulesPublished, ServiceError> {
        check_id("tenant_id", tenant_id)?;
        let current: TenantRules = self.load(rules::AGGREGATE_TYPE, tenant_id).await?;
        Ok(pb::RulesPublished {
            tenant_id: tenant_id.to_owned(),
            version: current.version,
            rules: Some(current.rules),
        })
    }

    /// Publishes a new version of the tenant's rules, made from `expected_version` (`None`:
    /// whatever is current; a stale version is a conflict). Every acquirer a rule names must
    /// be configured.
    pub async fn publish_rules(
        &self,
        actor: &Actor,
        tenant_id: &str,
        rules: pb::RuleSet,
        expected_version: Option<u64>,
    ) -> Result<pb::RulesPublished, ServiceError> {
        check_id("tenant_id", tenant_id)?;
        let known_acquirers: BTreeSet<String> = self
            .acquirers(tenant_id)
            .await?
            .into_iter()
            .map(|configured| configured.acquirer_id)
            .collect();
        let published = mpos_es::execute(
            &self.rules,
            tenant_id,
            PublishRules {
                tenant_id: tenant_id.to_owned(),
                rules,
                expected_version,
                known_acquirers,
            },
            Self::metadata(actor, tenant_id),
        )
        .await;
        self.config.invalidate(tenant_id);
        published?;
        self.rules(tenant_id).await
    }

    // ---------------------------------------------------------------------------------
    // Acquirers
    // ---------------------------------------------------------------------------------

    /// The tenant's rules and acquirers for a payment: as read less than the configured
    /// time ago, or read now.
    async fn tenant_config(&self, tenant_id: &str) -> Result<Arc<TenantConfig>, ServiceError> {
        if let Some(config) = self.config.get(tenant_id) {
            return Ok(config);
        }
        let start = self.config.read_start();
        let current: TenantRules = self.load(rules::AGGREGATE_TYPE, tenant_id).await?;
        let rules = match current.domain() {
            Ok(rules) => Some(rules),
            Err(error) => {
                tracing::error!(%error, "stored rules unreadable");
                None
            }
        };
        let config = Arc::new(TenantConfig {
            rules,
            acquirers: self.acquirers(tenant_id).await?,
        });
        self.config.put(tenant_id, start, config.clone());
        Ok(config)
    }

    /// The tenant's configured acquirers, by id.
    pub async fn acquirers(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<pb::AcquirerConfigured>, ServiceError> {
        check_id("tenant_id", tenant_id)?;
        self.acquirer_views.catch_up().await?;
        let mut out = Vec::new();
        for document in self
            .store
            .list_documents(ACQUIRERS, Some(tenant_id))
            .await?
        {
            let view: Acquirer = serde_json::from_str(&document.payload).map_err(unreadable)?;
            if let Some(settings) = view.settings {
                out.push(pb::AcquirerConfigured {
                    tenant_id: view.tenant_id,
                    acquirer_id: view.acquirer_id,
                    settings: Some(settings),
                });
            }
        }
        out.sort_by(|a, b| a.acquirer_id.cmp(&b.acquirer_id));
        Ok(out)
    }

    /// One acquirer's settings; not found when it is not configured.
    pub async fn acquirer(
        &self,
        tenant_id: &str,
        acquirer_id: &str,
    ) -> Result<pb::AcquirerConfigured, ServiceError> {
        check_id("tenant_id", tenant_id)?;
        check_id("acquirer_id", acquirer_id)?;
        let state: Acquirer = self
            .load(
                acquirer::AGGREGATE_TYPE,
                &acquirer_key(tenant_id, acquirer_id),
            )
            .await?;
        let settings = state
            .settings
            .ok_or_else(|| ServiceError::not_found("acquirer not found"))?;
        Ok(pb::AcquirerConfigured {
            tenant_id: tenant_id.to_owned(),
            acquirer_id: acquirer_id.to_owned(),
            settings: Some(settings),
        })
    }

    /// Creates or changes an acquirer (the link is rebuilt with the new settings when next
    /// used); answers the settings as stored, defaults filled in.
    pub async fn configure_acquirer(
        &self,
        actor: &Actor,
        tenant_id: &str,
        acquirer_id: &str,
        settings: pb::AcquirerSettings,
    ) -> Result<pb::AcquirerConfigured, ServiceError> {
        check_id("tenant_id", tenant_id)?;
        check_id("acquirer_id", acquirer_id)?;
        let configured = mpos_es::execute(
            &self.acquirers,
            &acquirer_key(tenant_id, acquirer_id),
            AcquirerCommand::Configure {
                tenant_id: tenant_id.to_owned(),
                acquirer_id: acquirer_id.to_owned(),
                settings,
                known_specs: iso8583::Spec::builtin_names()
                    .iter()
                    .map(|name| (*name).to_owned())
                    .collect(),
            },
            Self::metadata(actor, tenant_id),
        )
        .await;
        self.config.invalidate(tenant_id);
        configured?;
        let configured = self.acquirer(tenant_id, acquirer_id).await?;
        if let Some(settings) = &configured.settings {
            self.books()
                .entry(tenant_id.to_owned())
                .or_default()
                .set_policy(acquirer_id, health_policy(settings.health.as_ref()));
        }
        Ok(configured)
    }

    /// Removes an acquirer; refused (conflict) while the current rules name it.
    pub async fn remove_acquirer(
        &self,
        actor: &Actor,
        tenant_id: &str,
        acquirer_id: &str,
    ) -> Result<(), ServiceError> {
        check_id("tenant_id", tenant_id)?;
        check_id("acquirer_id", acquirer_id)?;
        let current: TenantRules = self.load(rules::AGGREGATE_TYPE, tenant_id).await?;
        let named = current.domain().is_ok_and(|rules| {
            rules
                .rules
                .iter()
                .map(|rule| &rule.route)
                .chain(rules.default_route.as_ref())
                .any(|route| route.acquirers().contains(&acquirer_id))
        });
        if named {
            return Err(ServiceError::conflict(format!(
                "the routing rules (version {}) name acquirer {acquirer_id}: change them first",
                current.version
            )));
        }
        let removed = mpos_es::execute(
            &self.acquirers,
            &acquirer_key(tenant_id, acquirer_id),
            AcquirerCommand::Remove,
            Self::metadata(actor, tenant_id),
        )
        .await;
        self.config.invalidate(tenant_id);
        removed?;
        self.links.remove(tenant_id, acquirer_id);
        if let Some(book) = self.books().get_mut(tenant_id) {
            book.remove(acquirer_id);
        }
        Ok(())
    }

    /// The breaker of every acquirer of the tenant this process has seen.
    pub async fn health(
        &self,
        tenant_id: &str,
    ) -> Result<BTreeMap<String, HealthSnapshot>, ServiceError> {
        let configured = self.acquirers(tenant_id).await?;
        let now = SystemTime::now();
        let mut books = self.books();
        let book = books.entry(tenant_id.to_owned()).or_default();
        Ok(configured
            .iter()
            .map(|configured| {
                (
                    configured.acquirer_id.clone(),
                    book.snapshot(&configured.acquirer_id, now),
                )
            })
            .collect())
    }

    /// One acquirer's breaker.
    pub async fn acquirer_health(
        &self,
        tenant_id: &str,
        acquirer_id: &str,
    ) -> Result<HealthSnapshot, ServiceError> {
        self.acquirer(tenant_id, acquirer_id).await?;
        Ok(self
            .books()
            .entry(tenant_id.to_owned())
            .or_default()
            .snapshot(acquirer_id, SystemTime::now()))
    }

    /// Takes an acquirer out of routing (an operator's decision; its breaker stays open
    /// until [`Router::reset`]).
    pub async fn force_open(
        &self,
        actor: &Actor,
        tenant_id: &str,
        acquirer_id: &str,
        note: &str,
    ) -> Result<HealthSnapshot, ServiceError> {
        self.manual(actor, tenant_id, acquirer_id, note, true).await
    }

    /// Puts an acquirer back into routing (breaker closed, counts cleared).
    pub async fn reset(
        &self,
        actor: &Actor,
        tenant_id: &str,
        acquirer_id: &str,
        note: &str,
    ) -> Result<HealthSnapshot, ServiceError> {
        self.manual(actor, tenant_id, acquirer_id, note, false)
            .await
    }

    async fn manual(
        &self,
        actor: &Actor,
        tenant_id: &str,
        acquirer_id: &str,
        note: &str,
        open: bool,
    ) -> Result<HealthSnapshot, ServiceError> {
        if note.chars().count() > 500 {
            return Err(ServiceError::bad_request("note: at most 500 characters"));
        }
        self.acquirer(tenant_id, acquirer_id).await?;
        let now = SystemTime::now();
        let reason = ManualReason::new(actor.0.clone(), note);
        let transition = {
            let mut books = self.books();
            let book = books.entry(tenant_id.to_owned()).or_default();
            if open {
                book.force_open(acquirer_id, reason, now)
            } else {
                // An acquirer never seen has nothing to reset: it is closed already.
                book.reset(acquirer_id, reason, now)
            }
        };
        if let Some(transition) = transition {
            self.record_transitions(actor, tenant_id, vec![transition])
                .await;
        }
        self.acquirer_health(tenant_id, acquirer_id).await
    }

    /// Records breaker changes on their acquirers; a failure is logged, not returned (the
    /// payment that caused it goes on).
    async fn record_transitions(
        &self,
        actor: &Actor,
        tenant_id: &str,
        transitions: Vec<HealthTransition>,
    ) {
        for transition in transitions {
            let snapshot = self
                .books()
                .get(tenant_id)
                .map(|book| book.snapshot(&transition.acquirer, transition.at));
            let (error_percent, timeout_percent, requests) = snapshot.map_or((0, 0, 0), |s| {
                (
                    percent(s.error_rate),
                    percent(s.timeout_rate),
                    u32::try_from(s.requests).unwrap_or(u32::MAX),
                )
            });
            tracing::info!(
                tenant = %tenant_id,
                acquirer = %transition.acquirer,
                from = %transition.from,
                to = %transition.to,
                "acquirer health changed"
            );
            let changed = pb::AcquirerHealthChanged {
                tenant_id: tenant_id.to_owned(),
                acquirer_id: transition.acquirer.clone(),
                from: health_state(transition.from).into(),
                to: health_state(transition.to).into(),
                reason: format!("{}: {}", transition.to, transition.cause),
                error_percent,
                timeout_percent,
                requests,
                at: Some(mpos_proto::timestamp_from_micros(micros(transition.at))),
            };
            if let Err(error) = mpos_es::execute_retrying(
                &self.acquirers,
                &acquirer_key(tenant_id, &transition.acquirer),
                AcquirerCommand::RecordHealth(changed),
                Self::metadata(actor, tenant_id),
                8,
            )
            .await
            {
                tracing::warn!(error = %error.message, "acquirer health change not recorded");
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Decide
    // ---------------------------------------------------------------------------------

    /// The exchange of a payment (default when the payment was never routed).
    pub async fn exchange(
        &self,
        tenant_id: &str,
        payment_id: &str,
    ) -> Result<Exchange, ServiceError> {
        check_id("tenant_id", tenant_id)?;
        check_id("payment_id", payment_id)?;
        self.load(
            exchange::AGGREGATE_TYPE,
            &exchange_key(tenant_id, payment_id),
        )
        .await
    }

    /// Checks a Decide request; the error names the field.
    fn check_decide(request: &pb::DecideRequest) -> Result<(), ServiceError> {
        check_id("tenant_id", &request.tenant_id)?;
        check_id("payment_id", &request.payment_id)?;
        if !digits(&request.bin, 6..=11) {
            return Err(ServiceError::bad_request("bin: 6 to 11 digits"));
        }
        if !(12..=19).contains(&request.pan_length)
            || usize::try_from(request.pan_length).unwrap_or(0) < request.bin.len()
        {
            return Err(ServiceError::bad_request("pan_length: 12 to 19"));
        }
        currency_numeric(&request.currency)?;
        if request.amount_minor > 999_999_999_999 {
            return Err(ServiceError::bad_request(
                "amount_minor: at most 999999999999",
            ));
        }
        if request.merchant_id.is_empty() || request.merchant_id.len() > 64 {
            return Err(ServiceError::bad_request("merchant_id: 1 to 64 characters"));
        }
        if !request.merchant_category_code.is_empty()
            && !digits(&request.merchant_category_code, 4..=4)
        {
            return Err(ServiceError::bad_request(
                "merchant_category_code: 4 digits",
            ));
        }
        if request.terminal_group_id.len() > 64 {
            return Err(ServiceError::bad_request(
                "terminal_group_id: at most 64 characters",
            ));
        }
        convert::entry_mode(request.entry_mode)
            .map_err(|error| ServiceError::bad_request(format!("entry_mode: {error}")))?;
        convert::transaction_type(request.transaction_type)
            .map_err(|error| ServiceError::bad_request(format!("transaction_type: {error}")))?;
        Ok(())
    }

    /// Decides (without recording) and answers the decision and the breaker changes it
    /// caused; `book` is the health book to use.
    async fn decision(
        &self,
        request: &pb::DecideRequest,
        dry_run: bool,
    ) -> Result<Decision, ServiceError> {
        Self::check_decide(request)?;
        let tenant_id = &request.tenant_id;
        let config = self.tenant_config(tenant_id).await?;
        let rule_set = config
            .rules
            .as_ref()
            .ok_or_else(|| ServiceError::internal("the stored rules cannot be read"))?;
        let configured = &config.acquirers;
        let input = RouteInput {
            bin: &request.bin,
            pan_length: u8::try_from(request.pan_length).unwrap_or(0),
            currency: &request.currency,
            amount_minor: request.amount_minor,
            merchant_id: &request.merchant_id,
            mcc: &request.merchant_category_code,
            terminal_group: (!request.terminal_group_id.is_empty())
                .then_some(request.terminal_group_id.as_str()),
            entry_mode: convert::entry_mode(request.entry_mode)
                .map_err(|error| ServiceError::bad_request(error.0))?,
            transaction_type: convert::transaction_type(request.transaction_type)
                .map_err(|error| ServiceError::bad_request(error.0))?,
        };
        let draw = rr::draw_from(request.payment_id.as_bytes());
        let now = SystemTime::now();
        let mut decision = {
            let mut books = self.books();
            let book = books.entry(tenant_id.clone()).or_default();
            for acquirer in configured {
                let policy = health_policy(
                    acquirer
                        .settings
                        .as_ref()
                        .and_then(|settings| settings.health.as_ref()),
                );
                if *book.policy(&acquirer.acquirer_id) != policy {
                    book.set_policy(&acquirer.acquirer_id, policy);
                }
            }
            if dry_run {
                // A copy: a dry run claims no probe and changes no breaker.
                let mut copy = book.clone();
                rr::decide(rule_set, &input, &mut copy, draw, now)
            } else {
                rr::decide(rule_set, &input, book, draw, now)
            }
        };
        // Acquirers disabled in their settings (or no longer configured) are left out too.
        let disabled: BTreeMap<&str, &str> = configured
            .iter()
            .filter(|c| c.settings.as_ref().is_some_and(|s| s.disabled))
            .map(|c| (c.acquirer_id.as_str(), "disabled in its settings"))
            .collect();
        let known: BTreeSet<&str> = configured.iter().map(|c| c.acquirer_id.as_str()).collect();
        let mut eliminated: Vec<pb::Elimination> = decision
            .eliminated
            .iter()
            .map(|elimination| pb::Elimination {
                acquirer_id: elimination.acquirer.clone(),
                reason: rejection_reason(&elimination.reason),
            })
            .collect();
        let before = decision.candidates.len();
        decision.candidates.retain(|candidate| {
            let reason = disabled
                .get(candidate.acquirer.as_str())
                .copied()
                .or_else(|| {
                    (!known.contains(candidate.acquirer.as_str())).then_some("not configured")
                });
            match reason {
                Some(reason) => {
                    eliminated.push(pb::Elimination {
                        acquirer_id: candidate.acquirer.clone(),
                        reason: reason.to_owned(),
                    });
                    decision
                        .explanation
                        .push(format!("{}: left out, {reason}", candidate.acquirer));
                    false
                }
                None => true,
            }
        });
        let mut no_route_reason = match decision.outcome {
            rr::DecisionOutcome::Routed => String::new(),
            rr::DecisionOutcome::NoRoute(rr::NoRouteReason::NoRuleMatched) => {
                "no_rule_matched".to_owned()
            }
            rr::DecisionOutcome::NoRoute(rr::NoRouteReason::AllCandidatesUnavailable) => {
                "all_candidates_unavailable".to_owned()
            }
        };
        if decision.candidates.is_empty() && no_route_reason.is_empty() && before > 0 {
            no_route_reason = "all_candidates_unavailable".to_owned();
        }
        let decided = pb::RouteDecided {
            tenant_id: tenant_id.clone(),
            payment_id: request.payment_id.clone(),
            decision_id: uuid::Uuid::now_v7().to_string(),
            rule_version: decision.rule_version,
            rule_id: decision.matched_rule.clone().unwrap_or_default(),
            used_default: decision.used_default,
            brand: decision.brand.to_string(),
            bin: request.bin.clone(),
            amount_minor: request.amount_minor,
            currency: request.currency.clone(),
            candidates: decision
                .candidates
                .iter()
                .map(|candidate| pb::Candidate {
                    acquirer_id: candidate.acquirer.clone(),
                    weight: candidate.weight.unwrap_or(0),
                    probe: candidate.admission == rr::Admitted::Probe,
                })
                .collect(),
            eliminated,
            explanation: decision.explanation.clone(),
            no_route_reason,
            draw,
        };
        Ok(Decision {
            decided,
            transitions: decision.transitions,
            config,
        })
    }

    async fn answer_decision(
        &self,
        decided: &pb::RouteDecided,
    ) -> Result<pb::DecideResponse, ServiceError> {
        let config = self.tenant_config(&decided.tenant_id).await?;
        Ok(Self::answer_with(decided, &config.acquirers))
    }

    /// The answer to a decision, with the zone PIN keys of the tenant's `configured`
    /// acquirers.
    fn answer_with(
        decided: &pb::RouteDecided,
        configured: &[pb::AcquirerConfigured],
    ) -> pb::DecideResponse {
        let pin_key = |acquirer_id: &str| {
            configured
                .iter()
                .find(|c| c.acquirer_id == acquirer_id)
                .and_then(|c| c.settings.as_ref())
                .map(|s| s.zone_pin_key.clone())
                .unwrap_or_default()
        };
        pb::DecideResponse {
            decision_id: decided.decision_id.clone(),
            rule_version: decided.rule_version,
            rule_id: decided.rule_id.clone(),
            candidates: decided
                .candidates
                .iter()
                .map(|candidate| pb::RouteCandidate {
                    acquirer_id: candidate.acquirer_id.clone(),
                    zone_pin_key: pin_key(&candidate.acquirer_id),
                    probe: candidate.probe,
                })
                .collect(),
            no_route_reason: decided.no_route_reason.clone(),
            explanation: decided.explanation.clone(),
        }
    }

    /// Chooses the acquirers for a payment and records the decision; a second Decide of the
    /// same payment answers the recorded decision.
    pub async fn decide(
        &self,
        actor: &Actor,
        request: pb::DecideRequest,
    ) -> Result<pb::DecideResponse, ServiceError> {
        Self::check_decide(&request)?;
        let key = exchange_key(&request.tenant_id, &request.payment_id);
        let mut held = self.held.load(&key).await.map_err(command_error)?;
        if let Some(decided) = &held.state().decided {
            return self.answer_decision(decided).await;
        }
        let Decision {
            decided,
            transitions,
            config,
        } = self.decision(&request, false).await?;
        let result = self
            .held
            .execute(
                &mut held,
                ExchangeCommand::Decide(decided.clone()),
                Self::metadata(actor, &request.tenant_id),
            )
            .await
            .map_err(command_error);
        self.record_transitions(actor, &request.tenant_id, transitions)
            .await;
        match result {
            Ok(()) => {
                metrics::counter!(
                    "mpos_routing_decisions_total",
                    "outcome" => if decided.no_route_reason.is_empty() { "routed" } else { "no_route" }
                )
                .increment(1);
                if decided.no_route_reason.is_empty() {
                    self.decided.leave(&key, held);
                }
                Ok(Self::answer_with(&decided, &config.acquirers))
            }
            // Decided concurrently: the first decision stands.
            Err(error) if matches!(error.code, ErrorCode::AlreadyExists | ErrorCode::Conflict) => {
                let existing: Exchange = self.load(exchange::AGGREGATE_TYPE, &key).await?;
                match &existing.decided {
                    Some(decided) => self.answer_decision(decided).await,
                    None => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Decides without recording anything and without claiming a probe: the explanation of
    /// where the payment would go now.
    pub async fn dry_run(
        &self,
        request: pb::DecideRequest,
    ) -> Result<pb::DecideResponse, ServiceError> {
        let Decision {
            decided, config, ..
        } = self.decision(&request, true).await?;
        Ok(Self::answer_with(&decided, &config.acquirers))
    }

    // ---------------------------------------------------------------------------------
    // Authorize
    // ---------------------------------------------------------------------------------

    fn check_authorize(request: &pb::AuthorizeRequest) -> Result<(), ServiceError> {
        check_id("tenant_id", &request.tenant_id)?;
        check_id("payment_id", &request.payment_id)?;
        currency_numeric(&request.currency)?;
        request_kind(request.transaction_type)?;
        link_entry_mode(request.entry_mode)?;
        // Fields 41 and 42 are fixed width: shorter ids are padded with spaces (see
        // `field_width`), longer ones do not fit.
        let printable = |value: &str, len: usize| {
            (1..=len).contains(&value.len())
                && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        };
        if !printable(&request.terminal_id, 8) {
            return Err(ServiceError::bad_request(
                "terminal_id: 1 to 8 printable characters",
            ));
        }
        if !printable(&request.merchant_id, 15) {
            return Err(ServiceError::bad_request(
                "merchant_id: 1 to 15 printable characters",
            ));
        }
        if !digits(&request.merchant_category_code, 4..=4) {
            return Err(ServiceError::bad_request(
                "merchant_category_code: 4 digits",
            ));
        }
        if request.amount_minor > 999_999_999_999 {
            return Err(ServiceError::bad_request(
                "amount_minor: at most 999999999999",
            ));
        }
        if !request.pin_block.is_empty()
            && (request.pin_block.len() != 16 || hex::decode(&request.pin_block).is_err())
        {
            return Err(ServiceError::bad_request("pin_block: 16 hex digits"));
        }
        if let Some(dukpt) = &request.dukpt_pin_block {
            if !request.pin_block.is_empty() {
                return Err(ServiceError::bad_request(
                    "dukpt_pin_block: not with pin_block",
                ));
            }
            if !(1..=200).contains(&dukpt.bdk.len()) {
                return Err(ServiceError::bad_request(
                    "dukpt_pin_block.bdk: 1 to 200 characters",
                ));
            }
            let hex_digits = |value: &str, len: usize| {
                value.len() == len && value.bytes().all(|b| b.is_ascii_hexdigit())
            };
            let block_len = match dukpt.ksn.len() {
                20 => 16,
                24 => 32,
                _ => 0,
            };
            if block_len == 0 || !hex_digits(&dukpt.ksn, dukpt.ksn.len()) {
                return Err(ServiceError::bad_request(
                    "dukpt_pin_block.ksn: 20 (TDES) or 24 (AES) hex digits",
                ));
            }
            if !hex_digits(&dukpt.block, block_len) {
                return Err(ServiceError::bad_request(
                    "dukpt_pin_block.block: 16 hex digits under TDES DUKPT, 32 under AES DUKPT",
                ));
            }
        }
        if request.emv_data.len() > 999 {
            return Err(ServiceError::bad_request("emv_data: at most 999 bytes"));
        }
        Ok(())
    }

    fn answer_of(exchange: &Exchange) -> pb::AuthorizeResponse {
        let attempts = exchange
            .attempts
            .iter()
            .map(|attempt| {
                let outcome = attempt
                    .answer
                    .as_ref()
                    .and_then(|answer| pb::ExchangeOutcome::try_from(answer.outcome).ok())
                    .unwrap_or(pb::ExchangeOutcome::Unspecified);
                format!("{}: {}", attempt.sent.acquirer_id, outcome_name(outcome))
            })
            .collect();
        let last = exchange.attempts.last();
        let answer = last
            .and_then(|attempt| attempt.answer.clone())
            .unwrap_or_default();
        let mut response = pb::AuthorizeResponse {
            outcome: if answer.outcome == 0 {
                pb::ExchangeOutcome::Unavailable.into()
            } else {
                answer.outcome
            },
            acquirer_id: answer.acquirer_id,
            response_code: answer.response_code,
            auth_code: answer.auth_code,
            stan: last.map(|a| a.sent.stan.clone()).unwrap_or_default(),
            rrn: last.map(|a| a.sent.rrn.clone()).unwrap_or_default(),
            issuer_emv_data: Vec::new(),
            attempts,
            decision: None,
            pin_block_invalid: false,
        };
        // A completion advice in doubt, stored for repeat (and not superseded by a
        // reversal): the completion stands on the pre-authorisation's approval code; the
        // response code is the acquirer's acknowledgement once there is one.
        if let Some(advice) = exchange
            .advice
            .as_ref()
            .filter(|_| exchange.reversal.is_none())
        {
            response.outcome = pb::ExchangeOutcome::Stored.into();
            response.acquirer_id.clone_from(&advice.queued.acquirer_id);
            response.auth_code.clone_from(&advice.queued.approval_code);
            response.response_code = advice
                .acknowledged
                .as_ref()
                .map(|acknowledged| acknowledged.response_code.clone())
                .unwrap_or_default();
        }
        response
    }

    /// Sends the payment to its decided acquirers, the first, then the next while one is
    /// unavailable, and answers the acquirer's answer. An answer in doubt (no answer in
    /// time, an answer that fails its MAC or cannot be read) queues the reversal; for a
    /// completion advice (0220) it stores the advice for repeat (0221) instead and answers
    /// `STORED`: the completion stands.
    pub async fn authorize(
        &self,
        actor: &Actor,
        request: pb::AuthorizeRequest,
    ) -> Result<pb::AuthorizeResponse, ServiceError> {
        Self::check_authorize(&request)?;
        let key = exchange_key(&request.tenant_id, &request.payment_id);
        // Right after its Decide, the exchange that Decide recorded, not read again. The
        // first attempt is recorded before its request goes out, a commit refused if anyone
        // wrote to the exchange since (another replica authorised it meanwhile): then it is
        // all done again on the exchange as the log holds it.
        if let Some(mut handed) = self.decided.take(&key) {
            match self
                .authorize_on(actor, &request, &mut handed, &mut None)
                .await
            {
                Err(error) if error.code == ErrorCode::Conflict => {
                    tracing::info!("exchange changed since its decision; authorising again");
                }
                answered => return self.with_decision(answered, &handed).await,
            }
        }
        if let Some(facts) = &request.route {
            // Decided here: the payment's first call, so the exchange is not read first (ADR
            // 27). Its first commit is refused if the exchange exists after all (a retry, or
            // another replica), and the request is then authorised on the exchange as the
            // log holds it, below. Nothing has gone to an acquirer before that commit.
            let fresh = self.held.assume_new(&key);
            match self
                .decide_and_authorize(actor, &request, facts, fresh)
                .await
            {
                Err(error) if error.code == ErrorCode::Conflict => {
                    tracing::info!("exchange exists already; authorising on it");
                }
                answered => return answered,
            }
        }
        let mut held = self.held.load(&key).await.map_err(command_error)?;
        if held.state().decided.is_none()
            && let Some(facts) = &request.route
        {
            return self
                .decide_and_authorize(actor, &request, facts, held)
                .await;
        }
        let answered = self
            .authorize_on(actor, &request, &mut held, &mut None)
            .await;
        self.with_decision(answered, &held).await
    }

    /// An answer with the decision the exchange `held` went by.
    async fn with_decision(
        &self,
        answered: Result<pb::AuthorizeResponse, ServiceError>,
        held: &mpos_es::Loaded<Exchange>,
    ) -> Result<pb::AuthorizeResponse, ServiceError> {
        let mut response = answered?;
        if let Some(decided) = &held.state().decided {
            response.decision = Some(self.answer_decision(decided).await?);
        }
        Ok(response)
    }

    /// Authorize with the decision taken here (ADR 24): decided in memory, recorded with the
    /// first request sent on it, or alone when nothing was sent.
    async fn decide_and_authorize(
        &self,
        actor: &Actor,
        request: &pb::AuthorizeRequest,
        facts: &pb::RouteFacts,
        mut held: mpos_es::Loaded<Exchange>,
    ) -> Result<pb::AuthorizeResponse, ServiceError> {
        // The decision's input: the request's own fields and the facts it adds.
        let decide = pb::DecideRequest {
            tenant_id: request.tenant_id.clone(),
            payment_id: request.payment_id.clone(),
            transaction_type: request.transaction_type,
            amount_minor: request.amount_minor,
            currency: request.currency.clone(),
            bin: facts.bin.clone(),
            pan_length: facts.pan_length,
            merchant_id: request.merchant_id.clone(),
            merchant_category_code: request.merchant_category_code.clone(),
            terminal_group_id: facts.terminal_group_id.clone(),
            entry_mode: request.entry_mode,
        };
        let Decision {
            decided,
            transitions,
            config,
        } = self.decision(&decide, false).await?;
        self.record_transitions(actor, &request.tenant_id, transitions)
            .await;
        let routed = decided.no_route_reason.is_empty();
        metrics::counter!(
            "mpos_routing_decisions_total",
            "outcome" => if routed { "routed" } else { "no_route" }
        )
        .increment(1);
        let decision = Self::answer_with(&decided, &config.acquirers);
        let mut pending = Some(decided);
        let answered = if routed {
            self.authorize_on(actor, request, &mut held, &mut pending)
                .await
        } else {
            Ok(pb::AuthorizeResponse {
                outcome: pb::ExchangeOutcome::Unavailable.into(),
                ..pb::AuthorizeResponse::default()
            })
        };
        if let Some(decided) = pending.take() {
            // Nothing was sent on it: the decision alone.
            let recorded = self
                .held
                .execute(
                    &mut held,
                    ExchangeCommand::Decide(decided),
                    Self::metadata(actor, &request.tenant_id),
                )
                .await
                .map_err(command_error);
            if let Err(error) = recorded {
                tracing::warn!(code = error.code.as_str(), "routing decision not recorded");
                answered.as_ref().map_err(Clone::clone)?;
                return Err(error);
            }
        }
        let mut response = answered?;
        response.decision = Some(decision);
        Ok(response)
    }

    /// [`Router::authorize`] on the exchange `held` (as loaded, or as its Decide left it);
    /// `pending` is a decision taken for this request and not recorded yet, recorded with the
    /// first request sent (and then taken).
    async fn authorize_on(
        &self,
        actor: &Actor,
        request: &pb::AuthorizeRequest,
        held: &mut mpos_es::Loaded<Exchange>,
        pending: &mut Option<pb::RouteDecided>,
    ) -> Result<pb::AuthorizeResponse, ServiceError> {
        let tenant_id = request.tenant_id.clone();
        let key = exchange_key(&tenant_id, &request.payment_id);
        // Held throughout: the attempts are recorded on this state, which keeps their events.
        let mut exchange: Exchange = held.state().clone();
        let Some(decided) = exchange.decided.clone().or_else(|| pending.clone()) else {
            return Err(ServiceError::conflict(
                "the payment has no routing decision: Decide first",
            ));
        };
        if !request.decision_id.is_empty() && request.decision_id != decided.decision_id {
            return Err(ServiceError::conflict(
                "decision_id is not the payment's decision",
            ));
        }
        if !decided.no_route_reason.is_empty() {
            return Err(ServiceError::conflict(format!(
                "the payment has no route: {}",
                decided.no_route_reason
            )));
        }
        if exchange.in_flight().is_some() {
            return Err(ServiceError::conflict(
                "an attempt of this payment is in flight",
            ));
        }
        let finished = exchange.reversal.is_some()
            || exchange.advice.is_some()
            || exchange.attempts.last().is_some_and(|attempt| {
                attempt.answer.as_ref().is_some_and(|answer| {
                    answer.outcome != i32::from(pb::ExchangeOutcome::Unavailable)
                })
            });
        if finished {
            // A retry of an authorisation that ended: the recorded answer.
            return Ok(Self::answer_of(&exchange));
        }
        let card = CardData::open(
            &self.sealer,
            request.sealed_card.as_ref(),
            &request.payment_id,
        )?;
        let kind = request_kind(request.transaction_type)?;
        let original = if kind == RequestKind::Completion {
            Some(self.completion_original(request).await?)
        } else {
            None
        };
        let mut pin_block = if request.pin_block.is_empty() {
            None
        } else {
            let bytes: [u8; 8] = hex::decode(&request.pin_block)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| ServiceError::bad_request("pin_block: 16 hex digits"))?;
            Some(PinBlock::new(bytes))
        };
        let dukpt_pin = request
            .dukpt_pin_block
            .as_ref()
            .filter(|_| pin_block.is_none());
        // Candidates left out because they take no PIN block: all of them means the PIN
        // block cannot go anywhere.
        let mut no_pin_key = 0_usize;
        let mut pin_acquirer = if request.pin_block_acquirer_id.is_empty() {
            decided
                .candidates
                .first()
                .map(|c| c.acquirer_id.clone())
                .unwrap_or_default()
        } else {
            request.pin_block_acquirer_id.clone()
        };
        let tried: BTreeSet<String> = exchange
            .attempts
            .iter()
            .map(|attempt| attempt.sent.acquirer_id.clone())
            .collect();
        let mut notes: Vec<String> = Vec::new();
        let config = self.tenant_config(&tenant_id).await?;
        for candidate in &decided.candidates {
            let acquirer_id = &candidate.acquirer_id;
            if tried.contains(acquirer_id) {
                continue;
            }
            if let Some((original_acquirer, _, _)) = &original
                && original_acquirer != acquirer_id
            {
                notes.push(format!(
                    "{acquirer_id}: skipped, the pre-authorisation went elsewhere"
                ));
                continue;
            }
            let Some(configured) = config.acquirer(acquirer_id) else {
                notes.push(format!("{acquirer_id}: skipped, not configured"));
                continue;
            };
            let settings = configured.settings.clone().unwrap_or_default();
            if settings.disabled {
                notes.push(format!("{acquirer_id}: skipped, disabled"));
                continue;
            }
            let (admission, transition) = {
                let mut books = self.books();
                books
                    .entry(tenant_id.clone())
                    .or_default()
                    .admit(acquirer_id, SystemTime::now())
            };
            if let Some(transition) = transition {
                self.record_transitions(actor, &tenant_id, vec![transition])
                    .await;
            }
            if let Admission::Rejected(rejection) = admission {
                notes.push(format!(
                    "{acquirer_id}: skipped, {}",
                    rejection_reason(&rejection)
                ));
                continue;
            }
            // The PIN block must be under this acquirer's zone PIN key.
            let block = match (&pin_block, dukpt_pin) {
                (None, Some(_)) | (Some(_), _) if settings.zone_pin_key.is_empty() => {
                    no_pin_key += 1;
                    notes.push(format!("{acquirer_id}: skipped, takes no PIN blocks"));
                    continue;
                }
                (None, Some(dukpt)) => {
                    match self
                        .translate_dukpt_pin(&tenant_id, dukpt, &settings, &card)
                        .await
                    {
                        Ok(translated) => Some(translated),
                        Err(error) if error.code == ErrorCode::BadRequest => {
                            // The block itself: no acquirer would take it.
                            tracing::info!(code = error.code.as_str(), "pin block refused");
                            notes.push(format!("{acquirer_id}: PIN block refused by the HSM"));
                            let mut response = Self::answer_of(&exchange);
                            response.outcome = pb::ExchangeOutcome::Unavailable.into();
                            response.pin_block_invalid = true;
                            response.attempts.extend(notes);
                            return Ok(response);
                        }
                        Err(error) => {
                            tracing::warn!(acquirer = %acquirer_id, code = error.code.as_str(), "pin translation failed");
                            notes.push(format!("{acquirer_id}: skipped, PIN translation failed"));
                            continue;
                        }
                    }
                }
                (None, None) => None,
                (Some(block), _) if pin_acquirer == *acquirer_id => Some(block.clone()),
                (Some(block), _) => {
                    match self
                        .translate_pin(&tenant_id, &pin_acquirer, &settings, block, &card)
                        .await
                    {
                        Ok(translated) => {
                            pin_block = Some(translated.clone());
                            pin_acquirer.clone_from(acquirer_id);
                            Some(translated)
                        }
                        Err(error) => {
                            tracing::warn!(acquirer = %acquirer_id, code = error.code.as_str(), "pin translation failed");
                            notes.push(format!("{acquirer_id}: skipped, PIN translation failed"));
                            continue;
                        }
                    }
                }
            };
            let attempt = u32::try_from(exchange.attempts.len()).unwrap_or(u32::MAX) + 1;
            let result = self
                .attempt(
                    actor,
                    held,
                    pending,
                    request,
                    &card,
                    kind,
                    block,
                    original
                        .as_ref()
                        .map(|(_, data, code)| (data.clone(), code.clone())),
                    acquirer_id,
                    &settings,
                    attempt,
                )
                .await?;
            let outcome = pb::ExchangeOutcome::try_from(result.answer.outcome)
                .unwrap_or(pb::ExchangeOutcome::Unspecified);
            exchange = held.state().clone();
            if outcome == pb::ExchangeOutcome::Unavailable {
                // A completion goes only to the pre-authorisation's acquirer: when its link
                // is down the advice is stored and sent once it is up (store and forward).
                if kind == RequestKind::Completion
                    && self
                        .queue_advice(
                            actor,
                            &tenant_id,
                            &request.payment_id,
                            "acquirer_unavailable",
                        )
                        .await?
                        .is_some()
                {
                    exchange = self.load(exchange::AGGREGATE_TYPE, &key).await?;
                    let mut response = Self::answer_of(&exchange);
                    response.attempts.extend(notes);
                    return Ok(response);
                }
                continue;
            }
            if matches!(
                outcome,
                pb::ExchangeOutcome::TimedOut | pb::ExchangeOutcome::InvalidResponse
            ) {
                let reason = if outcome == pb::ExchangeOutcome::TimedOut {
                    "acquirer_timeout"
                } else {
                    "invalid_response"
                };
                self.queue_in_doubt(
                    actor,
                    &tenant_id,
                    &request.payment_id,
                    reason,
                    kind == RequestKind::Completion,
                )
                .await?;
                exchange = self.load(exchange::AGGREGATE_TYPE, &key).await?;
            }
            let mut response = Self::answer_of(&exchange);
            response.issuer_emv_data = result.issuer_emv_data;
            response.attempts.extend(notes);
            return Ok(response);
        }
        let mut response = Self::answer_of(&exchange);
        response.outcome = pb::ExchangeOutcome::Unavailable.into();
        response.pin_block_invalid = (pin_block.is_some() || dukpt_pin.is_some())
            && no_pin_key > 0
            && no_pin_key == decided.candidates.len();
        response.attempts.extend(notes);
        Ok(response)
    }

    /// The pre-authorisation a completion refers to: its acquirer, field 90 data and
    /// approval code.
    async fn completion_original(
        &self,
        request: &pb::AuthorizeRequest,
    ) -> Result<(String, OriginalData, String), ServiceError> {
        if request.original_payment_id.is_empty() {
            return Err(ServiceError::bad_request(
                "original_payment_id: required for a completion",
            ));
        }
        let original = self
            .exchange(&request.tenant_id, &request.original_payment_id)
            .await?;
        let approved = original
            .attempts
            .iter()
            .rev()
            .find(|attempt| {
                attempt.answer.as_ref().is_some_and(|answer| {
                    answer.outcome == i32::from(pb::ExchangeOutcome::Approved)
                })
            })
            .ok_or_else(|| {
                ServiceError::conflict("the original payment has no approved authorisation")
            })?;
        let settings = self
            .acquirer(&request.tenant_id, &approved.sent.acquirer_id)
            .await?
            .settings
            .unwrap_or_default();
        let transmitted_at = parse_field7(&approved.sent.transmitted_at, Utc::now())
            .ok_or_else(|| ServiceError::internal("the original's field 7 is unreadable"))?;
        let auth_code = if request.original_auth_code.is_empty() {
            approved
                .answer
                .as_ref()
                .map(|answer| answer.auth_code.clone())
                .unwrap_or_default()
        } else {
            request.original_auth_code.clone()
        };
        Ok((
            approved.sent.acquirer_id.clone(),
            OriginalData {
                mti: approved.sent.mti.clone(),
                stan: approved.sent.stan.parse().map_err(|_| {
                    ServiceError::internal("the pre-authorisation's STAN is unreadable")
                })?,
                transmitted_at,
                acquirer_id: if settings.acquiring_institution_id.is_empty() {
                    "0".to_owned()
                } else {
                    settings.acquiring_institution_id
                },
            },
            auth_code,
        ))
    }

    /// Translates a PIN block from the zone PIN key of `from_acquirer` to that of `to`
    /// (ISO 9564 format 0 both sides), through the hsm-proxy.
    async fn translate_pin(
        &self,
        tenant_id: &str,
        from_acquirer: &str,
        to: &pb::AcquirerSettings,
        block: &PinBlock,
        card: &CardData,
    ) -> Result<PinBlock, ServiceError> {
        let from = self
            .acquirer(tenant_id, from_acquirer)
            .await?
            .settings
            .unwrap_or_default();
        if from.zone_pin_key.is_empty() {
            return Err(ServiceError::bad_request(
                "the PIN block's acquirer has no zone PIN key",
            ));
        }
        if from.zone_pin_key == to.zone_pin_key {
            return Ok(block.clone());
        }
        let key = |key: &str| hsm_pb::PinBlockKey {
            key: key.to_owned(),
            format: hsm_pb::PinBlockFormat::Iso0.into(),
            dukpt: None,
        };
        let translate = hsm_pb::TranslatePinDataRequest {
            tenant_id: tenant_id.to_owned(),
            incoming: Some(key(&from.zone_pin_key)),
            outgoing: Some(key(&to.zone_pin_key)),
            pin_block: hex::encode_upper(block.expose()),
            ..hsm_pb::TranslatePinDataRequest::default()
        };
        self.translate(translate, card).await
    }

    /// Translates the terminal's DUKPT PIN block (ISO 0 under TDES DUKPT, ISO 4 under AES
    /// DUKPT) to ISO 0 under the zone PIN key of `to`, through the hsm-proxy.
    async fn translate_dukpt_pin(
        &self,
        tenant_id: &str,
        dukpt: &pb::DukptPinBlock,
        to: &pb::AcquirerSettings,
        card: &CardData,
    ) -> Result<PinBlock, ServiceError> {
        let format = if dukpt.ksn.len() == 24 {
            hsm_pb::PinBlockFormat::Iso4
        } else {
            hsm_pb::PinBlockFormat::Iso0
        };
        let translate = hsm_pb::TranslatePinDataRequest {
            tenant_id: tenant_id.to_owned(),
            incoming: Some(hsm_pb::PinBlockKey {
                key: dukpt.bdk.clone(),
                format: format.into(),
                dukpt: Some(hsm_pb::Dukpt {
                    ksn: dukpt.ksn.clone(),
                    ..hsm_pb::Dukpt::default()
                }),
            }),
            outgoing: Some(hsm_pb::PinBlockKey {
                key: to.zone_pin_key.clone(),
                format: hsm_pb::PinBlockFormat::Iso0.into(),
                dukpt: None,
            }),
            pin_block: dukpt.block.clone(),
            ..hsm_pb::TranslatePinDataRequest::default()
        };
        self.translate(translate, card).await
    }

    /// One TranslatePinData to an ISO 0 block, with the PAN sealed to the hsm-proxy (ADR 15);
    /// the request's PIN block is wiped after.
    async fn translate(
        &self,
        mut translate: hsm_pb::TranslatePinDataRequest,
        card: &CardData,
    ) -> Result<PinBlock, ServiceError> {
        let result = self
            .hsm
            .translate_pin_data_sealed(translate.clone(), card.pan.expose())
            .await;
        zeroize::Zeroize::zeroize(&mut translate.pin_block);
        let mut response = result.map_err(ServiceError::from)?;
        let bytes: Option<[u8; 8]> = hex::decode(&response.pin_block)
            .ok()
            .and_then(|bytes| bytes.try_into().ok());
        zeroize::Zeroize::zeroize(&mut response.pin_block);
        bytes
            .map(PinBlock::new)
            .ok_or_else(|| ServiceError::internal("the hsm-proxy answered a malformed PIN block"))
    }

    /// One attempt: record the request, send it, record the answer and the breaker.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        actor: &Actor,
        held: &mut mpos_es::Loaded<Exchange>,
        pending: &mut Option<pb::RouteDecided>,
        request: &pb::AuthorizeRequest,
        card: &CardData,
        kind: RequestKind,
        pin_block: Option<PinBlock>,
        original: Option<(OriginalData, String)>,
        acquirer_id: &str,
        settings: &pb::AcquirerSettings,
        attempt: u32,
    ) -> Result<AttemptResult, ServiceError> {
        let tenant_id = &request.tenant_id;
        let link = self.links.link(tenant_id, acquirer_id, settings).await?;
        let stan = self.links.next_stan(tenant_id, acquirer_id);
        let now = Utc::now().trunc_subsecs(0);
        let rrn = rrn(now, stan);
        let pin_capable = pin_block.is_some();
        // What a repeat of a completion advice needs (fields 38 and 90), recorded with it.
        let (approval_code, original_data_elements) = match &original {
            Some((data, code)) => (
                code.clone(),
                data.field90()
                    .map_err(|error| ServiceError::bad_request(format!("request: {error}")))?,
            ),
            None => (String::new(), String::new()),
        };
        let message = AuthorizationRequest {
            kind,
            pan: card.pan.clone(),
            expiry: card.expiry.as_ref().map(|expiry| expiry.to_string()),
            track2: card.track2.clone(),
            pan_sequence: card.pan_sequence.clone(),
            amount_minor: request.amount_minor,
            currency_numeric: currency_numeric(&request.currency)?,
            stan,
            rrn: rrn.clone(),
            transmitted_at: now,
            // The terminal's local time is not in the request: the transmission time (UTC)
            // stands in for it, so a reversal rebuilds fields 12/13 from field 7.
            local_at: now.naive_utc(),
            mcc: request.merchant_category_code.clone(),
            entry_mode: link_entry_mode(request.entry_mode)?,
            pin_capable,
            pin_block,
            icc_data: (!request.emv_data.is_empty()).then(|| request.emv_data.clone()),
            terminal_id: field_width(&request.terminal_id, 8),
            merchant_id: field_width(&request.merchant_id, 15),
            acquirer_institution_id: if settings.acquiring_institution_id.is_empty() {
                "0".to_owned()
            } else {
                settings.acquiring_institution_id.clone()
            },
            auth_code: original.as_ref().map(|(_, code)| code.clone()),
            original: original.map(|(data, _)| data),
        };
        // Built before anything is recorded: a request that cannot be encoded changes nothing.
        let encoded = profile::to_message(&message)
            .map_err(|error| ServiceError::bad_request(format!("request: {error}")))?;
        drop(message);
        let sent = pb::AcquirerRequestSent {
            tenant_id: tenant_id.clone(),
            payment_id: request.payment_id.clone(),
            acquirer_id: acquirer_id.to_owned(),
            mti: kind.mti().to_owned(),
            stan: format!("{stan:06}"),
            rrn,
            attempt,
            transaction_type: request.transaction_type,
            amount_minor: request.amount_minor,
            currency: request.currency.clone(),
            transmitted_at: now.format("%m%d%H%M%S").to_string(),
            terminal_id: field_width(&request.terminal_id, 8),
            merchant_id: field_width(&request.merchant_id, 15),
            merchant_category_code: request.merchant_category_code.clone(),
            entry_mode: request.entry_mode,
            pin_capable,
            approval_code,
            original_data_elements,
        };
        // A decision taken for this request goes with its first request (one commit).
        let command = match pending.as_ref() {
            Some(decided) => ExchangeCommand::DecideAndSend(Box::new(decided.clone()), sent),
            None => ExchangeCommand::Send(sent),
        };
        let committed = self
            .held
            .execute(held, command, Self::metadata(actor, tenant_id))
            .await;
        if matches!(committed, Err(cqrs_es::AggregateError::AggregateConflict)) {
            // Someone wrote to the exchange first (a retry finds it there, ADR 27): the
            // decision alone would be refused the same way, so it is not tried.
            *pending = None;
        }
        committed.map_err(command_error)?;
        *pending = None;
        let started = Instant::now();
        let result = link.exchange(encoded).await;
        let duration_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let mut answer = pb::AcquirerResponded {
            tenant_id: tenant_id.clone(),
            payment_id: request.payment_id.clone(),
            acquirer_id: acquirer_id.to_owned(),
            duration_ms,
            ..pb::AcquirerResponded::default()
        };
        let mut issuer_emv_data = Vec::new();
        let health = match result.map(|reply| profile::response_from_message(&reply)) {
            Ok(Ok(response)) => {
                answer.mti.clone_from(&response.mti);
                answer.response_code.clone_from(&response.response_code);
                answer.auth_code = response.auth_code.clone().unwrap_or_default();
                issuer_emv_data = response.icc_data.clone().unwrap_or_default();
                if response.approved() {
                    answer.outcome = pb::ExchangeOutcome::Approved.into();
                    Outcome::Success
                } else {
                    answer.outcome = pb::ExchangeOutcome::Declined.into();
                    answer.detail = response
                        .code()
                        .map(|code| code.meaning().to_owned())
                        .unwrap_or_default();
                    // A host that cannot process it (96, 91) is a failure for health.
                    if matches!(response.response_code.as_str(), "91" | "96") {
                        Outcome::Error
                    } else {
                        Outcome::Declined
                    }
                }
            }
            Ok(Err(error)) | Err(error @ (LinkError::Codec(_) | LinkError::Protocol(_))) => {
                answer.outcome = pb::ExchangeOutcome::InvalidResponse.into();
                answer.detail = error.label().to_owned();
                Outcome::Error
            }
            Err(LinkError::BadMac) => {
                answer.outcome = pb::ExchangeOutcome::InvalidResponse.into();
                answer.detail = "bad_mac".to_owned();
                Outcome::Error
            }
            Err(LinkError::Timeout) => {
                answer.outcome = pb::ExchangeOutcome::TimedOut.into();
                answer.detail = "timeout".to_owned();
                Outcome::Timeout
            }
            Err(error @ (LinkError::Unavailable(_) | LinkError::Mac(_))) => {
                answer.outcome = pb::ExchangeOutcome::Unavailable.into();
                answer.detail = error.label().to_owned();
                Outcome::Error
            }
        };
        tracing::info!(
            tenant = %tenant_id,
            acquirer = %acquirer_id,
            outcome = outcome_name(pb::ExchangeOutcome::try_from(answer.outcome).unwrap_or_default()),
            duration_ms,
            "acquirer exchange"
        );
        metrics::counter!(
            "mpos_routing_exchanges_total",
            "outcome" => outcome_name(pb::ExchangeOutcome::try_from(answer.outcome).unwrap_or_default())
        )
        .increment(1);
        self.held
            .execute_retrying(
                held,
                ExchangeCommand::Respond(answer.clone()),
                Self::metadata(actor, tenant_id),
                8,
            )
            .await
            .map_err(command_error)?;
        let transition = self.books().entry(tenant_id.clone()).or_default().record(
            acquirer_id,
            health,
            SystemTime::now(),
        );
        if let Some(transition) = transition {
            self.record_transitions(actor, tenant_id, vec![transition])
                .await;
        }
        Ok(AttemptResult {
            answer,
            issuer_emv_data,
        })
    }

    // ---------------------------------------------------------------------------------
    // Reversals
    // ---------------------------------------------------------------------------------

    /// Queues the reversal of the payment's last delivered attempt (idempotent); `None` when
    /// nothing reached an acquirer.
    pub(crate) async fn queue_reversal(
        &self,
        actor: &Actor,
        tenant_id: &str,
        payment_id: &str,
        reason: &str,
    ) -> Result<Option<String>, ServiceError> {
        let key = exchange_key(tenant_id, payment_id);
        let exchange: Exchange = self.load(exchange::AGGREGATE_TYPE, &key).await?;
        if let Some(reversal) = &exchange.reversal {
            return Ok(Some(reversal.queued.acquirer_id.clone()));
        }
        let Some(delivered) = exchange.last_delivered() else {
            return Ok(None);
        };
        let sent = &delivered.sent;
        let queued = pb::ReversalQueued {
            tenant_id: tenant_id.to_owned(),
            payment_id: payment_id.to_owned(),
            acquirer_id: sent.acquirer_id.clone(),
            reason: reason.to_owned(),
            original_mti: sent.mti.clone(),
            original_stan: sent.stan.clone(),
            original_rrn: sent.rrn.clone(),
            original_transmitted_at: sent.transmitted_at.clone(),
            amount_minor: sent.amount_minor,
            currency: sent.currency.clone(),
            terminal_id: sent.terminal_id.clone(),
            merchant_id: sent.merchant_id.clone(),
        };
        let acquirer_id = queued.acquirer_id.clone();
        self.queue_stored(
            actor,
            tenant_id,
            &key,
            ExchangeCommand::QueueReversal(queued),
            Stored::Reversal,
        )
        .await?;
        tracing::info!(tenant = %tenant_id, acquirer = %acquirer_id, reason, "reversal queued");
        Ok(Some(acquirer_id))
    }

    /// Records a message queued for the store-and-forward worker and wakes it.
    async fn queue_stored(
        &self,
        actor: &Actor,
        tenant_id: &str,
        key: &str,
        command: ExchangeCommand,
        stored: Stored,
    ) -> Result<(), ServiceError> {
        mpos_es::execute_retrying(
            &self.exchanges,
            key,
            command,
            Self::metadata(actor, tenant_id),
            8,
        )
        .await?;
        match stored {
            Stored::Reversal => metrics::counter!("mpos_routing_reversals_queued_total"),
            Stored::Advice => metrics::counter!("mpos_routing_advices_queued_total"),
        }
        .increment(1);
        self.wake.notify_one();
        Ok(())
    }

    /// Stores the payment's last completion advice for repeat (idempotent), whether it was
    /// sent or refused before it could be sent; `None` when there is none to store: nothing
    /// was attempted, or the attempt was recorded before fields 38 and 90 were kept with it.
    pub(crate) async fn queue_advice(
        &self,
        actor: &Actor,
        tenant_id: &str,
        payment_id: &str,
        reason: &str,
    ) -> Result<Option<String>, ServiceError> {
        let key = exchange_key(tenant_id, payment_id);
        let exchange: Exchange = self.load(exchange::AGGREGATE_TYPE, &key).await?;
        if let Some(advice) = &exchange.advice {
            return Ok(Some(advice.queued.acquirer_id.clone()));
        }
        // The last attempt, delivered or not: a completion the link could not send is
        // stored as well.
        let Some(delivered) = exchange.attempts.last() else {
            return Ok(None);
        };
        let sent = &delivered.sent;
        if sent.approval_code.is_empty() || sent.original_data_elements.is_empty() {
            return Ok(None);
        }
        let queued = pb::AdviceQueued {
            tenant_id: tenant_id.to_owned(),
            payment_id: payment_id.to_owned(),
            acquirer_id: sent.acquirer_id.clone(),
            reason: reason.to_owned(),
            original_mti: sent.mti.clone(),
            original_stan: sent.stan.clone(),
            original_rrn: sent.rrn.clone(),
            original_transmitted_at: sent.transmitted_at.clone(),
            amount_minor: sent.amount_minor,
            currency: sent.currency.clone(),
            terminal_id: sent.terminal_id.clone(),
            merchant_id: sent.merchant_id.clone(),
            approval_code: sent.approval_code.clone(),
            original_data_elements: sent.original_data_elements.clone(),
        };
        let acquirer_id = queued.acquirer_id.clone();
        self.queue_stored(
            actor,
            tenant_id,
            &key,
            ExchangeCommand::QueueAdvice(queued),
            Stored::Advice,
        )
        .await?;
        tracing::info!(tenant = %tenant_id, acquirer = %acquirer_id, reason, "completion advice stored for repeat");
        Ok(Some(acquirer_id))
    }

    /// What follows an attempt in doubt: a completion advice is stored for repeat; anything
    /// else, and an advice that cannot be repeated (recorded before fields 38 and 90 were
    /// kept), is reversed.
    async fn queue_in_doubt(
        &self,
        actor: &Actor,
        tenant_id: &str,
        payment_id: &str,
        reason: &str,
        completion: bool,
    ) -> Result<(), ServiceError> {
        if completion
            && self
                .queue_advice(actor, tenant_id, payment_id, reason)
                .await?
                .is_some()
        {
            return Ok(());
        }
        self.queue_reversal(actor, tenant_id, payment_id, reason)
            .await?;
        Ok(())
    }

    /// Queues a reversal of the payment's last delivered request; `queued = false` when
    /// nothing reached an acquirer. A stored completion advice is superseded: its repeats
    /// stop and the 0220 is reversed.
    pub async fn reverse(
        &self,
        actor: &Actor,
        request: pb::ReverseRequest,
    ) -> Result<pb::ReverseResponse, ServiceError> {
        check_id("tenant_id", &request.tenant_id)?;
        check_id("payment_id", &request.payment_id)?;
        let reason = if request.reason.is_empty() {
            "terminal_request"
        } else {
            request.reason.as_str()
        };
        if !REVERSAL_REASONS.contains(&reason) {
            return Err(ServiceError::bad_request(format!(
                "reason: one of {}",
                REVERSAL_REASONS.join(", ")
            )));
        }
        let exchange = self
            .exchange(&request.tenant_id, &request.payment_id)
            .await?;
        if exchange.decided.is_none() {
            return Err(ServiceError::not_found("no such payment"));
        }
        if exchange.in_flight().is_some() {
            return Err(ServiceError::conflict(
                "an attempt of this payment is in flight: reverse when it is answered",
            ));
        }
        if exchange.reversal.is_none()
            && exchange.last_delivered().is_some_and(|attempt| {
                attempt.answer.as_ref().is_some_and(|answer| {
                    answer.outcome == i32::from(pb::ExchangeOutcome::Declined)
                })
            })
        {
            return Ok(pb::ReverseResponse {
                queued: false,
                acquirer_id: String::new(),
            });
        }
        let acquirer = self
            .queue_reversal(actor, &request.tenant_id, &request.payment_id, reason)
            .await?;
        Ok(pb::ReverseResponse {
            queued: acquirer.is_some(),
            acquirer_id: acquirer.unwrap_or_default(),
        })
    }

    /// Queues the reversal of every attempt that was sent before `started_us` and never
    /// answered (the process stopped between send and answer), or, for a completion advice,
    /// stores the advice for repeat; how many.
    pub async fn reverse_unanswered(
        &self,
        actor: &Actor,
        started_us: i64,
    ) -> Result<u64, ServiceError> {
        self.pending.catch_up().await?;
        let mut queued = 0;
        for document in self.store.list_documents(PENDING, None).await? {
            let view: PendingView = serde_json::from_str(&document.payload).map_err(unreadable)?;
            if !view.in_flight
                || view.reversal_pending
                || view.advice_pending
                || view.sent_at_us >= started_us
            {
                continue;
            }
            let key = exchange_key(&view.tenant_id, &view.payment_id);
            let exchange: Exchange = self.load(exchange::AGGREGATE_TYPE, &key).await?;
            let Some(in_flight) = exchange.in_flight() else {
                continue;
            };
            let completion =
                in_flight.sent.transaction_type == i32::from(pb::TransactionType::Completion);
            let answer = pb::AcquirerResponded {
                tenant_id: view.tenant_id.clone(),
                payment_id: view.payment_id.clone(),
                acquirer_id: in_flight.sent.acquirer_id.clone(),
                outcome: pb::ExchangeOutcome::TimedOut.into(),
                detail: "unanswered at start: the service stopped between send and answer"
                    .to_owned(),
                ..pb::AcquirerResponded::default()
            };
            mpos_es::execute_retrying(
                &self.exchanges,
                &key,
                ExchangeCommand::Respond(answer),
                Self::metadata(actor, &view.tenant_id),
                8,
            )
            .await?;
            self.queue_in_doubt(
                actor,
                &view.tenant_id,
                &view.payment_id,
                "unanswered_at_start",
                completion,
            )
            .await?;
            queued += 1;
        }
        if queued > 0 {
            tracing::warn!(
                exchanges = queued,
                "unanswered attempts found at start, reversals queued or advices stored"
            );
        }
        Ok(queued)
    }

    /// Delivers every reversal and stored completion advice that is due; answers when the
    /// next one is due (Unix microseconds), if any is pending.
    pub async fn deliver_due(&self, actor: &Actor) -> Result<Option<i64>, ServiceError> {
        self.pending.catch_up().await?;
        let now_us = mpos_es::now_micros();
        let mut next: Option<i64> = None;
        for document in self.store.list_documents(PENDING, None).await? {
            let view: PendingView = serde_json::from_str(&document.payload).map_err(unreadable)?;
            if !view.reversal_pending && !view.advice_pending {
                continue;
            }
            let due = if view.next_attempt_at_us <= now_us {
                match self.deliver(actor, &view.tenant_id, &view.payment_id).await {
                    Ok(next_at) => next_at,
                    Err(error) => {
                        tracing::warn!(error = %error.message, "delivery not recorded");
                        Some(now_us + 1_000_000)
                    }
                }
            } else {
                Some(view.next_attempt_at_us)
            };
            if let Some(due) = due {
                next = Some(next.map_or(due, |next| next.min(due)));
            }
        }
        Ok(next)
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 2_u32.saturating_pow(failures.min(20));
        self.settings
            .reversal_backoff_min
            .saturating_mul(factor)
            .min(self.settings.reversal_backoff_max)
    }

    /// One delivery of a payment's pending reversal, or else of its stored completion
    /// advice; when the next is due if it failed.
    async fn deliver(
        &self,
        actor: &Actor,
        tenant_id: &str,
        payment_id: &str,
    ) -> Result<Option<i64>, ServiceError> {
        let key = exchange_key(tenant_id, payment_id);
        let exchange: Exchange = self.load(exchange::AGGREGATE_TYPE, &key).await?;
        if exchange.advice_pending() {
            return self
                .deliver_advice(actor, tenant_id, payment_id, &exchange)
                .await;
        }
        let Some(reversal) = exchange.reversal.clone() else {
            return Ok(None);
        };
        if reversal.acknowledged.is_some() {
            return Ok(None);
        }
        let result = self.send_reversal(tenant_id, &exchange, &reversal).await;
        self.record_delivery(
            actor,
            tenant_id,
            payment_id,
            Stored::Reversal,
            &reversal.queued.acquirer_id,
            reversal.failures,
            result,
        )
        .await
    }

    /// One repeat (0221) of a stored completion advice; when the next is due if it failed.
    async fn deliver_advice(
        &self,
        actor: &Actor,
        tenant_id: &str,
        payment_id: &str,
        exchange: &Exchange,
    ) -> Result<Option<i64>, ServiceError> {
        let Some(advice) = exchange.advice.clone() else {
            return Ok(None);
        };
        let result = self.send_advice(tenant_id, exchange, &advice).await;
        self.record_delivery(
            actor,
            tenant_id,
            payment_id,
            Stored::Advice,
            &advice.queued.acquirer_id,
            advice.failures,
            result,
        )
        .await
    }

    /// Records one delivery of a stored message: its acknowledgement, or its failure with
    /// the time of the next attempt (backing off after `failures` earlier ones); when the
    /// next is due if it failed.
    #[allow(clippy::too_many_arguments)]
    async fn record_delivery(
        &self,
        actor: &Actor,
        tenant_id: &str,
        payment_id: &str,
        stored: Stored,
        acquirer_id: &str,
        failures: u32,
        result: Result<acquirer_link::AuthorizationResponse, String>,
    ) -> Result<Option<i64>, ServiceError> {
        let key = exchange_key(tenant_id, payment_id);
        let attempt = failures + 1;
        let (command, next) = match result {
            Ok(response) => {
                tracing::info!(tenant = %tenant_id, acquirer = %acquirer_id, attempts = attempt, response_code = %response.response_code, "{}", stored.acknowledged());
                let command = match stored {
                    Stored::Reversal => {
                        metrics::counter!("mpos_routing_reversals_acknowledged_total").increment(1);
                        ExchangeCommand::AcknowledgeReversal(pb::ReversalAcknowledged {
                            tenant_id: tenant_id.to_owned(),
                            payment_id: payment_id.to_owned(),
                            acquirer_id: acquirer_id.to_owned(),
                            response_code: response.response_code,
                            attempts: attempt,
                        })
                    }
                    Stored::Advice => {
                        metrics::counter!("mpos_routing_advices_acknowledged_total").increment(1);
                        ExchangeCommand::AcknowledgeAdvice(pb::AdviceAcknowledged {
                            tenant_id: tenant_id.to_owned(),
                            payment_id: payment_id.to_owned(),
                            acquirer_id: acquirer_id.to_owned(),
                            response_code: response.response_code,
                            attempts: attempt,
                        })
                    }
                };
                (command, None)
            }
            Err(error) => {
                let next_us = mpos_es::now_micros()
                    + i64::try_from(self.backoff(failures).as_micros()).unwrap_or(i64::MAX / 2);
                tracing::info!(tenant = %tenant_id, acquirer = %acquirer_id, attempt, error = %error, "{}", stored.failed());
                let next_attempt_at = Some(mpos_proto::timestamp_from_micros(next_us));
                let command = match stored {
                    Stored::Reversal => {
                        metrics::counter!("mpos_routing_reversal_delivery_failures_total")
                            .increment(1);
                        ExchangeCommand::ReversalFailed(pb::ReversalAttemptFailed {
                            tenant_id: tenant_id.to_owned(),
                            payment_id: payment_id.to_owned(),
                            attempt,
                            error,
                            next_attempt_at,
                        })
                    }
                    Stored::Advice => {
                        metrics::counter!("mpos_routing_advice_delivery_failures_total")
                            .increment(1);
                        ExchangeCommand::AdviceFailed(pb::AdviceAttemptFailed {
                            tenant_id: tenant_id.to_owned(),
                            payment_id: payment_id.to_owned(),
                            attempt,
                            error,
                            next_attempt_at,
                        })
                    }
                };
                (command, Some(next_us))
            }
        };
        mpos_es::execute_retrying(
            &self.exchanges,
            &key,
            command,
            Self::metadata(actor, tenant_id),
            8,
        )
        .await?;
        Ok(next)
    }

    /// Sends the repeat (0221) of a stored completion advice, built from what the log keeps
    /// (the 0220's STAN, RRN, field 7, amount, terminal, merchant, MCC, entry mode, fields 38
    /// and 90; no card data), and waits for its 0230. An 0230 that says the host could not
    /// process it (`91`, `96`) is a failed delivery; any other acknowledges the advice. The
    /// error is a short label for the log.
    async fn send_advice(
        &self,
        tenant_id: &str,
        exchange: &Exchange,
        advice: &crate::exchange::Advice,
    ) -> Result<acquirer_link::AuthorizationResponse, String> {
        let queued = &advice.queued;
        let settings = match self.acquirer(tenant_id, &queued.acquirer_id).await {
            Ok(configured) => configured.settings.unwrap_or_default(),
            Err(error) => return Err(format!("acquirer: {}", error.message)),
        };
        let sent = &exchange
            .attempts
            .iter()
            .rev()
            .find(|attempt| {
                attempt.sent.stan == queued.original_stan && attempt.sent.rrn == queued.original_rrn
            })
            .ok_or_else(|| "the advice's attempt is not in the exchange".to_owned())?
            .sent;
        let now = Utc::now();
        let transmitted_at = parse_field7(&queued.original_transmitted_at, now)
            .ok_or_else(|| "the advice's field 7 is unreadable".to_owned())?;
        let preauthorization = OriginalData::parse_field90(&queued.original_data_elements, now)
            .map_err(|error| error.to_string())?;
        let recorded = OriginalTransaction {
            kind: RequestKind::Completion,
            amount_minor: queued.amount_minor,
            currency_numeric: currency_numeric(&queued.currency).map_err(|error| error.message)?,
            stan: queued
                .original_stan
                .parse()
                .map_err(|_| "the advice's stan is unreadable".to_owned())?,
            rrn: queued.original_rrn.clone(),
            transmitted_at,
            // As the 0220 had them: fields 12/13 carried its transmission time.
            local_at: transmitted_at.naive_utc(),
            mcc: Some(sent.merchant_category_code.clone()).filter(|mcc| !mcc.is_empty()),
            entry_mode: link_entry_mode(sent.entry_mode)
                .ok()
                .map(|mode| (mode, sent.pin_capable)),
            terminal_id: queued.terminal_id.clone(),
            merchant_id: queued.merchant_id.clone(),
            acquirer_institution_id: if settings.acquiring_institution_id.is_empty() {
                "0".to_owned()
            } else {
                settings.acquiring_institution_id.clone()
            },
            auth_code: Some(queued.approval_code.clone()),
        };
        let message = profile::advice_repeat_message(&recorded, &preauthorization)
            .map_err(|error| error.to_string())?;
        let link = self
            .links
            .link(tenant_id, &queued.acquirer_id, &settings)
            .await
            .map_err(|error| error.message)?;
        let reply = link
            .exchange(message)
            .await
            .map_err(|error| error.label().to_owned())?;
        let response =
            profile::response_from_message(&reply).map_err(|error| error.label().to_owned())?;
        if response.mti != "0230" {
            return Err(format!("answered {} instead of 0230", response.mti));
        }
        if matches!(response.response_code.as_str(), "91" | "96") {
            return Err(format!(
                "answered 0230 {}: not processed",
                response.response_code
            ));
        }
        Ok(response)
    }

    /// Sends the reversal (0400, 0401 when repeated) and waits for its 0410; the error is a
    /// short label for the log.
    async fn send_reversal(
        &self,
        tenant_id: &str,
        exchange: &Exchange,
        reversal: &crate::exchange::Reversal,
    ) -> Result<acquirer_link::AuthorizationResponse, String> {
        let queued = &reversal.queued;
        let settings = match self.acquirer(tenant_id, &queued.acquirer_id).await {
            Ok(configured) => configured.settings.unwrap_or_default(),
            Err(error) => return Err(format!("acquirer: {}", error.message)),
        };
        let original_attempt = exchange
            .attempts
            .iter()
            .rev()
            .find(|attempt| attempt.sent.stan == queued.original_stan)
            .ok_or_else(|| "the original attempt is not in the exchange".to_owned())?;
        let kind =
            request_kind(original_attempt.sent.transaction_type).map_err(|error| error.message)?;
        let transmitted_at = parse_field7(&queued.original_transmitted_at, Utc::now())
            .ok_or_else(|| "the original's field 7 is unreadable".to_owned())?;
        let original = OriginalTransaction {
            kind,
            amount_minor: queued.amount_minor,
            currency_numeric: currency_numeric(&queued.currency).map_err(|error| error.message)?,
            stan: queued
                .original_stan
                .parse()
                .map_err(|_| "the original's STAN is unreadable".to_owned())?,
            rrn: queued.original_rrn.clone(),
            transmitted_at,
            local_at: transmitted_at.naive_utc(),
            // Fields 18 and 22 as the request carried them (absent from attempts recorded
            // before they were kept: the acquirer finds the original by field 90 and RRN).
            mcc: Some(original_attempt.sent.merchant_category_code.clone())
                .filter(|mcc| !mcc.is_empty()),
            entry_mode: link_entry_mode(original_attempt.sent.entry_mode)
                .ok()
                .map(|mode| (mode, original_attempt.sent.pin_capable)),
            terminal_id: queued.terminal_id.clone(),
            merchant_id: queued.merchant_id.clone(),
            acquirer_institution_id: if settings.acquiring_institution_id.is_empty() {
                "0".to_owned()
            } else {
                settings.acquiring_institution_id.clone()
            },
            auth_code: original_attempt
                .answer
                .as_ref()
                .map(|answer| answer.auth_code.clone())
                .filter(|code| code.len() == 6),
        };
        let link = self
            .links
            .link(tenant_id, &queued.acquirer_id, &settings)
            .await
            .map_err(|error| error.message)?;
        let message = profile::reversal_message_for(
            &original,
            &Reversal {
                reason: reversal_reason(&queued.reason),
                stan: self.links.next_stan(tenant_id, &queued.acquirer_id),
                transmitted_at: Utc::now().trunc_subsecs(0),
                repeat: reversal.failures > 0,
            },
        )
        .map_err(|error| error.to_string())?;
        let reply = link
            .exchange(message)
            .await
            .map_err(|error| error.label().to_owned())?;
        let response =
            profile::response_from_message(&reply).map_err(|error| error.label().to_owned())?;
        if response.mti != "0410" {
            return Err(format!("answered {} instead of 0410", response.mti));
        }
        Ok(response)
    }
}
