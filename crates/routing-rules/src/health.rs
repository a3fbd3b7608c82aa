//! Acquirer health: outcome counts over a sliding time window and a circuit breaker per
//! acquirer ([`AcquirerHealth`]), and a book of them by acquirer id ([`HealthBook`]).
//!
//! ```text
//!                error or timeout rate above its limit,
//!                with at least minRequests in the window
//!   ┌────────┐ ─────────────────────────────────────────▶ ┌──────┐
//!   │ Closed │                                            │ Open │
//!   └────────┘ ◀───────────┐                              └──────┘
//!       ▲                  │                               │    ▲
//!       │   halfOpenProbes │          coolDown elapsed,    │    │ a probe
//!       │        successes │          on the next admit    ▼    │ fails
//!       │                  │                            ┌──────────┐
//!       │                  └─────────────────────────── │ HalfOpen │
//!       │ reset (operator),                             └──────────┘
//!       │ from any state
//!   ┌────────────┐
//!   │ ForcedOpen │ ◀── force_open (operator), from any state
//!   └────────────┘
//! ```
//!
//! # Time
//!
//! Time is always passed in as a wall-clock [`SystemTime`]. Each [`AcquirerHealth`] keeps
//! its own monotonic timeline: a time earlier than the latest one it has seen (the wall
//! clock was set back) is treated as that latest time, and time flows on from there, so a
//! clock set back by an hour neither panics, nor replays the window, nor keeps a breaker
//! open an hour longer. Reported times (`until`) are converted back to the caller's clock.
//! A clock set forward is indistinguishable from time passing. Times before the Unix epoch
//! count as the epoch.
//!
//! # Rates without floating-point surprises
//!
//! A [`Rate`] is an integer number of parts per million. A limit given as `0.3` in JSON is
//! rounded once, to 300,000 ppm, and a breaker trips when
//! `count × 1,000,000 > limit_ppm × requests`, compared exactly in 128-bit integers. So
//! 6 timeouts in 20 requests against a limit of 0.3 is exactly at the limit and does not
//! trip, whatever `6.0 / 20.0` rounds to in binary floating point. Rates in snapshots are
//! rounded down to whole ppm.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::rules::shown;

/// A proportion from 0 to 1, held as an integer number of parts per million (see the
/// module documentation). JSON: a number from 0 to 1, e.g. `0.5`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rate(u32);

impl Rate {
    /// Parts per million in 1.
    pub const PPM: u32 = 1_000_000;
    /// 0.
    pub const ZERO: Rate = Rate(0);
    /// 1.
    pub const ONE: Rate = Rate(Self::PPM);

    /// A rate of `ppm` parts per million, if at most 1,000,000.
    pub const fn from_ppm(ppm: u32) -> Option<Rate> {
        if ppm <= Self::PPM {
            Some(Rate(ppm))
        } else {
            None
        }
    }

    /// A rate from a finite number from 0 to 1, rounded to the nearest ppm.
    pub fn from_f64(value: f64) -> Option<Rate> {
        if !(0.0..=1.0).contains(&value) {
            return None; // also NaN
        }
        let ppm = (value * f64::from(Self::PPM)).round();
        // In 0.0..=1e6 after the check above, so the conversion is exact.
        Self::from_ppm(ppm as u32)
    }

    /// `numerator / denominator`, rounded down to whole ppm; 0 when `denominator` is 0 and
    /// at most 1.
    pub fn ratio(numerator: u64, denominator: u64) -> Rate {
        if denominator == 0 {
            return Rate::ZERO;
        }
        let ppm = u128::from(numerator.min(denominator)) * u128::from(Self::PPM)
            / u128::from(denominator);
        Rate(u32::try_from(ppm).unwrap_or(Self::PPM))
    }

    /// Parts per million.
    pub const fn ppm(self) -> u32 {
        self.0
    }

    /// As a float, for display and JSON.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / f64::from(Self::PPM)
    }

    /// Whether `count / requests` is strictly greater than this rate, exactly.
    pub fn is_exceeded_by(self, count: u64, requests: u64) -> bool {
        u128::from(count) * u128::from(Self::PPM) > u128::from(self.0) * u128::from(requests)
    }
}

impl fmt::Display for Rate {
    /// A percentage rounded down to a tenth, e.g. `52.3%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}%", self.0 / 10_000, self.0 % 10_000 / 1_000)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Rate::from_f64(value)
            .ok_or_else(|| serde::de::Error::custom("a rate must be a number from 0 to 1"))
    }
}

/// [`Duration`] as whole milliseconds in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// When an acquirer is taken out of routing and how it is brought back. JSON fields:
/// `windowMs`, `minRequests`, `maxErrorRate`, `maxTimeoutRate`, `coolDownMs`,
/// `halfOpenProbes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthPolicy {
    /// The sliding window over which outcomes are counted, in whole seconds: 1 s to 1 h
    /// (a fraction of a second counts as a whole one). An outcome counts from the second it
    /// is recorded in for `window` seconds: between `window − 1 s` and `window` of age.
    #[serde(rename = "windowMs", with = "millis")]
    pub window: Duration,
    /// The fewest outcomes in the window before a rate can trip the breaker (at least 1).
    pub min_requests: u32,
    /// The breaker trips when errors and timeouts together make up more than this share of
    /// the outcomes in the window.
    pub max_error_rate: Rate,
    /// The breaker trips when timeouts alone make up more than this share.
    pub max_timeout_rate: Rate,
    /// How long a tripped breaker stays open before probes are let through (at most a day);
    /// also how long to wait for the answer to a probe before handing out another.
    #[serde(rename = "coolDownMs", with = "millis")]
    pub cool_down: Duration,
    /// How many successful probes close a half-open breaker (at least 1); also how many
    /// probes may be outstanding at once.
    pub half_open_probes: u32,
}

impl Default for HealthPolicy {
    /// 30 s window, 20 requests, error rate 0.5, timeout rate 0.3, 30 s cool-down, 3 probes.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            min_requests: 20,
            max_error_rate: Rate(500_000),
            max_timeout_rate: Rate(300_000),
            cool_down: Duration::from_secs(30),
            half_open_probes: 3,
        }
    }
}

/// Why a [`HealthPolicy`] is refused by [`HealthPolicy::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(
    tag = "error",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum PolicyError {
    /// The window is shorter than a second or longer than an hour.
    #[error("windowMs: must be 1000 to 3600000 ms, got {millis}")]
    Window {
        /// The window in milliseconds.
        millis: u128,
    },
    /// `minRequests` is 0.
    #[error("minRequests: must be at least 1")]
    MinRequests,
    /// The cool-down is longer than a day.
    #[error("coolDownMs: must be at most 86400000 ms, got {millis}")]
    CoolDown {
        /// The cool-down in milliseconds.
        millis: u128,
    },
    /// `halfOpenProbes` is 0.
    #[error("halfOpenProbes: must be at least 1")]
    HalfOpenProbes,
}

impl HealthPolicy {
    /// The shortest window.
    pub const MIN_WINDOW: Duration = Duration::from_secs(1);
    /// The longest window (bounds the buckets kept per acquirer to 3,600).
    pub const MAX_WINDOW: Duration = Duration::from_secs(3_600);
    /// The longest cool-down.
    pub const MAX_COOL_DOWN: Duration = Duration::from_secs(86_400);

    /// Every problem of the policy. [`AcquirerHealth`] never panics on a policy that fails
    /// this; it clamps the values into range instead, so the service should validate
    /// policies where they are configured.
    pub fn validate(&self) -> Result<(), Vec<PolicyError>> {
        let mut errors = Vec::new();
        if !(Self::MIN_WINDOW..=Self::MAX_WINDOW).contains(&self.window) {
            errors.push(PolicyError::Window {
                millis: self.window.as_millis(),
            });
        }
        if self.min_requests == 0 {
            errors.push(PolicyError::MinRequests);
        }
        if self.cool_down > Self::MAX_COOL_DOWN {
            errors.push(PolicyError::CoolDown {
                millis: self.cool_down.as_millis(),
            });
        }
        if self.half_open_probes == 0 {
            errors.push(PolicyError::HalfOpenProbes);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The window in whole seconds, clamped to 1..=3600.
    fn window_secs(&self) -> u64 {
        let secs = self.window.as_secs() + u64::from(self.window.subsec_nanos() > 0);
        secs.clamp(1, Self::MAX_WINDOW.as_secs())
    }

    fn effective_min_requests(&self) -> u64 {
        u64::from(self.min_requests.max(1))
    }

    fn effective_cool_down(&self) -> Duration {
        self.cool_down.min(Self::MAX_COOL_DOWN)
    }

    fn effective_probes(&self) -> u32 {
        self.half_open_probes.max(1)
    }
}

/// What came of a request sent to an acquirer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Approved.
    Success,
    /// A business decline (insufficient funds, wrong PIN…): the acquirer works, so for
    /// health this is a success.
    Declined,
    /// A technical failure (connection refused, malformed response, system error).
    Error,
    /// No answer in time.
    Timeout,
}

impl Outcome {
    /// Whether the outcome counts against the acquirer ([`Outcome::Error`] or
    /// [`Outcome::Timeout`]).
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Error | Outcome::Timeout)
    }

    /// The name used in JSON and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Declined => "declined",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Why a breaker opened on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum TripReason {
    /// Errors and timeouts together made up more than `maxErrorRate` of the window.
    ErrorRate {
        /// The failure rate when it tripped.
        rate: Rate,
        /// Errors and timeouts in the window.
        failures: u64,
        /// Outcomes in the window.
        requests: u64,
        /// The policy's `maxErrorRate`.
        limit: Rate,
    },
    /// Timeouts made up more than `maxTimeoutRate` of the window.
    TimeoutRate {
        /// The timeout rate when it tripped.
        rate: Rate,
        /// Timeouts in the window.
        timeouts: u64,
        /// Outcomes in the window.
        requests: u64,
        /// The policy's `maxTimeoutRate`.
        limit: Rate,
    },
    /// A request while half-open failed.
    ProbeFailed {
        /// [`Outcome::Error`] or [`Outcome::Timeout`].
        outcome: Outcome,
    },
}

impl fmt::Display for TripReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TripReason::ErrorRate {
                rate,
                failures,
                requests,
                limit,
            } => write!(
                f,
                "error rate {rate} ({failures} of {requests} requests failed) above {limit}"
            ),
            TripReason::TimeoutRate {
                rate,
                timeouts,
                requests,
                limit,
            } => write!(
                f,
                "timeout rate {rate} ({timeouts} of {requests} requests timed out) above {limit}"
            ),
            TripReason::ProbeFailed { outcome } => {
                write!(f, "half-open probe failed ({})", outcome.as_str())
            }
        }
    }
}

/// Who took an acquirer out of (or put it back into) routing by hand, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManualReason {
    /// The operator (or system) acting.
    pub by: String,
    /// Free text, e.g. a ticket reference. Not repeated in explanations.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl ManualReason {
    /// A reason with an actor and a note.
    pub fn new(by: impl Into<String>, note: impl Into<String>) -> Self {
        Self {
            by: by.into(),
            note: note.into(),
        }
    }
}

impl fmt::Display for ManualReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "by {}", shown(&self.by))
    }
}

/// A breaker's state as seen at a given time. Serialised with a `state` tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum BreakerState {
    /// Routing normally.
    Closed,
    /// Tripped: no requests until `until`.
    Open {
        /// When probes will be let through, on the caller's clock.
        until: SystemTime,
        /// Why it tripped.
        trip: TripReason,
    },
    /// Letting probes through: `probes_left` more may be handed out now, `successes` have
    /// succeeded so far.
    HalfOpen {
        /// Probes that may still be handed out.
        probes_left: u32,
        /// Successful outcomes since the breaker half-opened.
        successes: u32,
    },
    /// Taken out by an operator until [`AcquirerHealth::reset`].
    ForcedOpen {
        /// Who and why.
        reason: ManualReason,
    },
}

impl BreakerState {
    /// The state without its details.
    pub fn name(&self) -> StateName {
        match self {
            BreakerState::Closed => StateName::Closed,
            BreakerState::Open { .. } => StateName::Open,
            BreakerState::HalfOpen { .. } => StateName::HalfOpen,
            BreakerState::ForcedOpen { .. } => StateName::ForcedOpen,
        }
    }
}

/// A breaker state without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    /// [`BreakerState::Closed`].
    Closed,
    /// [`BreakerState::Open`].
    Open,
    /// [`BreakerState::HalfOpen`].
    HalfOpen,
    /// [`BreakerState::ForcedOpen`].
    ForcedOpen,
}

impl StateName {
    /// The name used in JSON and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            StateName::Closed => "closed",
            StateName::Open => "open",
            StateName::HalfOpen => "half_open",
            StateName::ForcedOpen => "forced_open",
        }
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "cause",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum TransitionCause {
    /// Closed → Open on a rate, or HalfOpen → Open on a failed probe.
    Tripped {
        /// Why.
        trip: TripReason,
    },
    /// Open → HalfOpen: the cool-down passed and a probe was handed out.
    CoolDownElapsed,
    /// HalfOpen → Closed: enough probes succeeded.
    ProbesSucceeded {
        /// How many successes it took ([`HealthPolicy::half_open_probes`]).
        successes: u32,
    },
    /// Any → ForcedOpen by an operator.
    ForcedOpen {
        /// Who and why.
        reason: ManualReason,
    },
    /// Any → Closed by an operator.
    Reset {
        /// Who and why.
        reason: ManualReason,
    },
}

impl fmt::Display for TransitionCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionCause::Tripped { trip } => write!(f, "{trip}"),
            TransitionCause::CoolDownElapsed => f.write_str("cool-down elapsed, probing"),
            TransitionCause::ProbesSucceeded { successes } => {
                write!(f, "{successes} half-open probes succeeded")
            }
            TransitionCause::ForcedOpen { reason } => write!(f, "taken out {reason}"),
            TransitionCause::Reset { reason } => write!(f, "put back {reason}"),
        }
    }
}

/// A state change of one [`AcquirerHealth`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChange {
    /// The state before.
    pub from: StateName,
    /// The state after.
    pub to: StateName,
    /// Why.
    pub cause: TransitionCause,
    /// When, as passed in by the caller.
    pub at: SystemTime,
}

/// A state change of an acquirer in a [`HealthBook`], for the service to record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthTransition {
    /// The acquirer.
    pub acquirer: String,
    /// The state before.
    pub from: StateName,
    /// The state after.
    pub to: StateName,
    /// Why.
    pub cause: TransitionCause,
    /// When, as passed in by the caller.
    pub at: SystemTime,
}

impl HealthTransition {
    fn new(acquirer: &str, change: StateChange) -> Self {
        Self {
            acquirer: acquirer.to_owned(),
            from: change.from,
            to: change.to,
            cause: change.cause,
            at: change.at,
        }
    }
}

impl fmt::Display for HealthTransition {
    /// E.g. `acq-b: closed → open: error rate 55.0% (11 of 20 requests failed) above 50.0%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} → {}: {}",
            shown(&self.acquirer),
            self.from,
            self.to,
            self.cause
        )
    }
}

/// Why a request may not go to an acquirer now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "rejection",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Rejection {
    /// The breaker is open.
    CircuitOpen {
        /// When probes will be let through, on the caller's clock.
        until: SystemTime,
        /// Why it tripped.
        trip: TripReason,
    },
    /// Half-open, and every probe has been handed out and not answered yet.
    ProbesInFlight {
        /// When, if still unanswered, the probes are considered lost and handed out again.
        until: SystemTime,
    },
    /// Taken out by an operator.
    ForcedOpen {
        /// Who and why.
        reason: ManualReason,
    },
}

/// Whether a request may go to an acquirer now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    /// Closed: go ahead.
    Allowed,
    /// Half-open: go ahead as one of the limited probes; record its outcome.
    Probe,
    /// Not now.
    Rejected(Rejection),
}

/// Outcome counts in the window and the breaker state, at a given time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthSnapshot {
    /// Outcomes in the window.
    pub requests: u64,
    /// [`Outcome::Error`]s in the window.
    pub errors: u64,
    /// [`Outcome::Timeout`]s in the window.
    pub timeouts: u64,
    /// `(errors + timeouts) / requests`, rounded down to ppm (0 without requests).
    pub error_rate: Rate,
    /// `timeouts / requests`, rounded down to ppm (0 without requests).
    pub timeout_rate: Rate,
    /// The breaker.
    pub state: BreakerState,
}

/// Outcome counts of one second of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    second: u64,
    requests: u32,
    errors: u32,
    timeouts: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    requests: u64,
    errors: u64,
    timeouts: u64,
}

/// The acquirer's own monotonic timeline (see "Time" in the module documentation):
/// internal time = wall time since the epoch + `offset`, never below `latest`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Timeline {
    latest: Duration,
    offset: Duration,
}

impl Timeline {
    /// The internal time of `now` and the offset in force, without remembering them.
    fn view(&self, now: SystemTime) -> (Duration, Duration) {
        let wall = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let time = wall.saturating_add(self.offset);
        if time < self.latest {
            // Set back: shift so that `now` maps to the latest time seen.
            (self.latest, self.offset.saturating_add(self.latest - time))
        } else {
            (time, self.offset)
        }
    }

    /// The internal time of `now`, remembered.
    fn observe(&mut self, now: SystemTime) -> Duration {
        let (time, offset) = self.view(now);
        self.latest = time;
        self.offset = offset;
        time
    }

    /// An internal time on the caller's clock, given the offset in force.
    fn wall(time: Duration, offset: Duration) -> SystemTime {
        UNIX_EPOCH
            .checked_add(time.saturating_sub(offset))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// The state as stored, with times on the internal timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stored {
    Closed,
    Open {
        until: Duration,
        trip: TripReason,
    },
    HalfOpen {
        probes_left: u32,
        successes: u32,
        /// When outstanding probes count as lost and are handed out again.
        probe_deadline: Duration,
    },
    ForcedOpen {
        reason: ManualReason,
    },
}

impl Stored {
    fn name(&self) -> StateName {
        match self {
            Stored::Closed => StateName::Closed,
            Stored::Open { .. } => StateName::Open,
            Stored::HalfOpen { .. } => StateName::HalfOpen,
            Stored::ForcedOpen { .. } => StateName::ForcedOpen,
        }
    }
}

/// The health of one acquirer: outcome counts in one-second buckets over the policy's
/// window (at most one bucket per second of the window is kept, so memory is bounded), and
/// a circuit breaker (see the module documentation for the state diagram).
///
/// Contract with the caller: record an outcome for every request that was
/// [`Admission::Allowed`] or [`Admission::Probe`] (a request that got no answer is an
/// [`Outcome::Timeout`]). While half-open, every recorded outcome counts as a probe
/// result. Probes unanswered for a cool-down are handed out again, so a lost probe cannot
/// keep the breaker half-open forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcquirerHealth {
    policy: HealthPolicy,
    state: Stored,
    buckets: VecDeque<Bucket>,
    timeline: Timeline,
}

impl AcquirerHealth {
    /// A closed breaker with an empty window.
    pub fn new(policy: HealthPolicy) -> Self {
        Self {
            policy,
            state: Stored::Closed,
            buckets: VecDeque::new(),
            timeline: Timeline::default(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &HealthPolicy {
        &self.policy
    }

    /// Replaces the policy; the counts and the state are kept.
    pub fn set_policy(&mut self, policy: HealthPolicy) {
        self.policy = policy;
    }

    /// What [`AcquirerHealth::admit`] would answer now, changing nothing (no probe is
    /// handed out).
    pub fn peek(&self, now: SystemTime) -> Admission {
        let (time, offset) = self.timeline.view(now);
        match &self.state {
            Stored::Closed => Admission::Allowed,
            Stored::Open { until, trip } => {
                if time >= *until {
                    Admission::Probe
                } else {
                    Admission::Rejected(Rejection::CircuitOpen {
                        until: Timeline::wall(*until, offset),
                        trip: *trip,
                    })
                }
            }
            Stored::HalfOpen {
                probes_left,
                probe_deadline,
                ..
            } => {
                if *probes_left > 0 || time >= *probe_deadline {
                    Admission::Probe
                } else {
                    Admission::Rejected(Rejection::ProbesInFlight {
                        until: Timeline::wall(*probe_deadline, offset),
                    })
                }
            }
            Stored::ForcedOpen { reason } => Admission::Rejected(Rejection::ForcedOpen {
                reason: reason.clone(),
            }),
        }
    }

    /// Whether a request may go to the acquirer now. An open breaker whose cool-down has
    /// passed turns half-open (reported as the [`StateChange`]) and hands out a probe; a
    /// half-open one hands out at most [`HealthPolicy::half_open_probes`] probes at once.
    pub fn admit(&mut self, now: SystemTime) -> (Admission, Option<StateChange>) {
        let time = self.timeline.observe(now);
        let offset = self.timeline.offset;
        let mut change = None;
        if let Stored::Open { until, .. } = &self.state
            && time >= *until
        {
            self.state = Stored::HalfOpen {
                probes_left: self.policy.effective_probes(),
                successes: 0,
                probe_deadline: time,
            };
            change = Some(StateChange {
                from: StateName::Open,
                to: StateName::HalfOpen,
                cause: TransitionCause::CoolDownElapsed,
                at: now,
            });
        }
        let cool_down = self.policy.effective_cool_down();
        let probes = self.policy.effective_probes();
        let admission = match &mut self.state {
            Stored::Closed => Admission::Allowed,
            Stored::Open { until, trip } => Admission::Rejected(Rejection::CircuitOpen {
                until: Timeline::wall(*until, offset),
                trip: *trip,
            }),
            Stored::HalfOpen {
                probes_left,
                successes,
                probe_deadline,
            } => {
                if *probes_left == 0 && time >= *probe_deadline {
                    *probes_left = probes.saturating_sub(*successes).max(1);
                }
                if *probes_left > 0 {
                    *probes_left -= 1;
                    *probe_deadline = time.saturating_add(cool_down);
                    Admission::Probe
                } else {
                    Admission::Rejected(Rejection::ProbesInFlight {
                        until: Timeline::wall(*probe_deadline, offset),
                    })
                }
            }
            Stored::ForcedOpen { reason } => Admission::Rejected(Rejection::ForcedOpen {
                reason: reason.clone(),
            }),
        };
        (admission, change)
    }

    /// Records what came of a request. Closed → Open when, with at least
    /// [`HealthPolicy::min_requests`] outcomes in the window, timeouts exceed
    /// `max_timeout_rate` or errors and timeouts together exceed `max_error_rate` (strictly
    /// greater: a rate equal to the limit does not trip). HalfOpen → Open on any failure,
    /// with a new cool-down; HalfOpen → Closed, with an empty window, after
    /// `half_open_probes` successes. An open or forced-open breaker only counts.
    pub fn record(&mut self, outcome: Outcome, now: SystemTime) -> Option<StateChange> {
        let time = self.timeline.observe(now);
        self.count(outcome, time.as_secs());
        let cool_down = self.policy.effective_cool_down();
        match &mut self.state {
            Stored::Closed => {
                let trip = self.trip_reason(time.as_secs())?;
                self.state = Stored::Open {
                    until: time.saturating_add(cool_down),
                    trip,
                };
                Some(StateChange {
                    from: StateName::Closed,
                    to: StateName::Open,
                    cause: TransitionCause::Tripped { trip },
                    at: now,
                })
            }
            Stored::HalfOpen { successes, .. } => {
                if outcome.is_failure() {
                    let trip = TripReason::ProbeFailed { outcome };
                    self.state = Stored::Open {
                        until: time.saturating_add(cool_down),
                        trip,
                    };
                    return Some(StateChange {
                        from: StateName::HalfOpen,
                        to: StateName::Open,
                        cause: TransitionCause::Tripped { trip },
                        at: now,
                    });
                }
                *successes = successes.saturating_add(1);
                if *successes < self.policy.effective_probes() {
                    return None;
                }
                let successes = *successes;
                self.state = Stored::Closed;
                self.buckets.clear();
                Some(StateChange {
                    from: StateName::HalfOpen,
                    to: StateName::Closed,
                    cause: TransitionCause::ProbesSucceeded { successes },
                    at: now,
                })
            }
            Stored::Open { .. } | Stored::ForcedOpen { .. } => None,
        }
    }

    /// Takes the acquirer out of routing until [`AcquirerHealth::reset`]. `None` if it was
    /// already forced open (the reason is then replaced).
    pub fn force_open(&mut self, reason: ManualReason, now: SystemTime) -> Option<StateChange> {
        self.timeline.observe(now);
        let from = self.state.name();
        self.state = Stored::ForcedOpen {
            reason: reason.clone(),
        };
        (from != StateName::ForcedOpen).then_some(StateChange {
            from,
            to: StateName::ForcedOpen,
            cause: TransitionCause::ForcedOpen { reason },
            at: now,
        })
    }

    /// Puts the acquirer back: closed, with an empty window, whatever the state was. `None`
    /// if it was already closed.
    pub fn reset(&mut self, reason: ManualReason, now: SystemTime) -> Option<StateChange> {
        self.timeline.observe(now);
        let from = self.state.name();
        self.state = Stored::Closed;
        self.buckets.clear();
        (from != StateName::Closed).then_some(StateChange {
            from,
            to: StateName::Closed,
            cause: TransitionCause::Reset { reason },
            at: now,
        })
    }

    /// The breaker as [`AcquirerHealth::admit`] would find it now: an open breaker whose
    /// cool-down has passed shows as half-open with all its probes.
    pub fn state(&self, now: SystemTime) -> BreakerState {
        let (time, offset) = self.timeline.view(now);
        match &self.state {
            Stored::Closed => BreakerState::Closed,
            Stored::Open { until, trip } => {
                if time >= *until {
                    BreakerState::HalfOpen {
                        probes_left: self.policy.effective_probes(),
                        successes: 0,
                    }
                } else {
                    BreakerState::Open {
                        until: Timeline::wall(*until, offset),
                        trip: *trip,
                    }
                }
            }
            Stored::HalfOpen {
                probes_left,
                successes,
                probe_deadline,
            } => {
                let probes_left = if *probes_left == 0 && time >= *probe_deadline {
                    self.policy
                        .effective_probes()
                        .saturating_sub(*successes)
                        .max(1)
                } else {
                    *probes_left
                };
                BreakerState::HalfOpen {
                    probes_left,
                    successes: *successes,
                }
            }
            Stored::ForcedOpen { reason } => BreakerState::ForcedOpen {
                reason: reason.clone(),
            },
        }
    }

    /// The counts in the window and the state, now.
    pub fn snapshot(&self, now: SystemTime) -> HealthSnapshot {
        let (time, _) = self.timeline.view(now);
        let totals = self.totals(time.as_secs());
        HealthSnapshot {
            requests: totals.requests,
            errors: totals.errors,
            timeouts: totals.timeouts,
            error_rate: Rate::ratio(totals.errors + totals.timeouts, totals.requests),
            timeout_rate: Rate::ratio(totals.timeouts, totals.requests),
            state: self.state(now),
        }
    }

    /// Whether a bucket of `second` is still in the window at `now_second`.
    fn in_window(&self, second: u64, now_second: u64) -> bool {
        second.saturating_add(self.policy.window_secs()) > now_second
    }

    fn count(&mut self, outcome: Outcome, now_second: u64) {
        while let Some(front) = self.buckets.front() {
            if self.in_window(front.second, now_second) {
                break;
            }
            self.buckets.pop_front();
        }
        // The timeline never goes back, so the newest bucket is never in the future.
        let bucket = match self.buckets.back_mut() {
            Some(bucket) if bucket.second == now_second => bucket,
            _ => {
                self.buckets.push_back(Bucket {
                    second: now_second,
                    requests: 0,
                    errors: 0,
                    timeouts: 0,
                });
                match self.buckets.back_mut() {
                    Some(bucket) => bucket,
                    None => return,
                }
            }
        };
        bucket.requests = bucket.requests.saturating_add(1);
        match outcome {
            Outcome::Error => bucket.errors = bucket.errors.saturating_add(1),
            Outcome::Timeout => bucket.timeouts = bucket.timeouts.saturating_add(1),
            Outcome::Success | Outcome::Declined => {}
        }
    }

    fn totals(&self, now_second: u64) -> Totals {
        self.buckets
            .iter()
            .filter(|bucket| self.in_window(bucket.second, now_second))
            .fold(Totals::default(), |sum, bucket| Totals {
                requests: sum.requests + u64::from(bucket.requests),
                errors: sum.errors + u64::from(bucket.errors),
                timeouts: sum.timeouts + u64::from(bucket.timeouts),
            })
    }

    fn trip_reason(&self, now_second: u64) -> Option<TripReason> {
        let Totals {
            requests,
            errors,
            timeouts,
        } = self.totals(now_second);
        if requests < self.policy.effective_min_requests() {
            return None;
        }
        let failures = errors + timeouts;
        if self
            .policy
            .max_timeout_rate
            .is_exceeded_by(timeouts, requests)
        {
            Some(TripReason::TimeoutRate {
                rate: Rate::ratio(timeouts, requests),
                timeouts,
                requests,
                limit: self.policy.max_timeout_rate,
            })
        } else if self
            .policy
            .max_error_rate
            .is_exceeded_by(failures, requests)
        {
            Some(TripReason::ErrorRate {
                rate: Rate::ratio(failures, requests),
                failures,
                requests,
                limit: self.policy.max_error_rate,
            })
        } else {
            None
        }
    }

    #[cfg(test)]
    fn bucket_count(&self) -> usize {
        self.buckets.len()
    }
}

/// The health of every acquirer of a tenant, by id, each with its own policy (or the
/// book's default). An acquirer that was never recorded is closed with an empty window;
/// entries are created by [`HealthBook::record`], [`HealthBook::force_open`] and
/// [`HealthBook::set_policy`], and dropped by [`HealthBook::remove`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthBook {
    default_policy: HealthPolicy,
    acquirers: BTreeMap<String, AcquirerHealth>,
}

impl Default for HealthBook {
    /// A book with [`HealthPolicy::default`] for every acquirer.
    fn default() -> Self {
        Self::new(HealthPolicy::default())
    }
}

impl HealthBook {
    /// An empty book; acquirers without a policy of their own get `default_policy`.
    pub fn new(default_policy: HealthPolicy) -> Self {
        Self {
            default_policy,
            acquirers: BTreeMap::new(),
        }
    }

    /// Gives an acquirer its own policy (its counts and state are kept).
    pub fn set_policy(&mut self, acquirer: &str, policy: HealthPolicy) {
        self.entry(acquirer).set_policy(policy);
    }

    /// The acquirer's policy.
    pub fn policy(&self, acquirer: &str) -> &HealthPolicy {
        self.acquirers
            .get(acquirer)
            .map_or(&self.default_policy, AcquirerHealth::policy)
    }

    /// The acquirer's health, if anything was recorded for it.
    pub fn get(&self, acquirer: &str) -> Option<&AcquirerHealth> {
        self.acquirers.get(acquirer)
    }

    /// Forgets an acquirer (e.g. one removed from the tenant).
    pub fn remove(&mut self, acquirer: &str) -> Option<AcquirerHealth> {
        self.acquirers.remove(acquirer)
    }

    /// See [`AcquirerHealth::peek`].
    pub fn peek(&self, acquirer: &str, now: SystemTime) -> Admission {
        self.acquirers
            .get(acquirer)
            .map_or(Admission::Allowed, |health| health.peek(now))
    }

    /// See [`AcquirerHealth::admit`].
    pub fn admit(
        &mut self,
        acquirer: &str,
        now: SystemTime,
    ) -> (Admission, Option<HealthTransition>) {
        match self.acquirers.get_mut(acquirer) {
            None => (Admission::Allowed, None),
            Some(health) => {
                let (admission, change) = health.admit(now);
                (
                    admission,
                    change.map(|change| HealthTransition::new(acquirer, change)),
                )
            }
        }
    }

    /// See [`AcquirerHealth::record`].
    pub fn record(
        &mut self,
        acquirer: &str,
        outcome: Outcome,
        now: SystemTime,
    ) -> Option<HealthTransition> {
        let change = self.entry(acquirer).record(outcome, now)?;
        Some(HealthTransition::new(acquirer, change))
    }

    /// See [`AcquirerHealth::force_open`].
    pub fn force_open(
        &mut self,
        acquirer: &str,
        reason: ManualReason,
        now: SystemTime,
    ) -> Option<HealthTransition> {
        let change = self.entry(acquirer).force_open(reason, now)?;
        Some(HealthTransition::new(acquirer, change))
    }

    /// See [`AcquirerHealth::reset`].
    pub fn reset(
        &mut self,
        acquirer: &str,
        reason: ManualReason,
        now: SystemTime,
    ) -> Option<HealthTransition> {
        let change = self.acquirers.get_mut(acquirer)?.reset(reason, now)?;
        Some(HealthTransition::new(acquirer, change))
    }

    /// See [`AcquirerHealth::state`].
    pub fn state(&self, acquirer: &str, now: SystemTime) -> BreakerState {
        self.acquirers
            .get(acquirer)
            .map_or(BreakerState::Closed, |health| health.state(now))
    }

    /// See [`AcquirerHealth::snapshot`].
    pub fn snapshot(&self, acquirer: &str, now: SystemTime) -> HealthSnapshot {
        match self.acquirers.get(acquirer) {
            Some(health) => health.snapshot(now),
            None => AcquirerHealth::new(self.default_policy).snapshot(now),
        }
    }

    /// The snapshots of every acquirer in the book, by id.
    pub fn snapshots(&self, now: SystemTime) -> BTreeMap<String, HealthSnapshot> {
        self.acquirers
            .iter()
            .map(|(id, health)| (id.clone(), health.snapshot(now)))
            .collect()
    }

    fn entry(&mut self, acquirer: &str) -> &mut AcquirerHealth {
        let default_policy = self.default_policy;
        self.acquirers
            .entry(acquirer.to_owned())
            .or_insert_with(|| AcquirerHealth::new(default_policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed start well after the epoch, so going back in time stays after it.
    pub(crate) fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn at(ms: u64) -> SystemTime {
        t0() + Duration::from_millis(ms)
    }

    fn before(ms: u64) -> SystemTime {
        t0() - Duration::from_millis(ms)
    }

    fn record_n(health: &mut AcquirerHealth, n: u32, outcome: Outcome, now: SystemTime) {
        for _ in 0..n {
            assert_eq!(health.record(outcome, now), None, "tripped early");
        }
    }

    fn tripped(health: &mut AcquirerHealth) -> SystemTime {
        record_n(health, 19, Outcome::Error, t0());
        let change = health.record(Outcome::Error, t0()).expect("trips");
        assert_eq!(change.to, StateName::Open);
        t0()
    }

    fn operator() -> ManualReason {
        ManualReason::new("ops-1", "INC-42 acquirer maintenance")
    }

    #[test]
    fn error_rate_equal_to_the_limit_does_not_trip_one_more_error_does() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut health, 10, Outcome::Success, t0());
        record_n(&mut health, 10, Outcome::Error, t0());
        assert_eq!(
            health.state(t0()),
            BreakerState::Closed,
            "10 of 20 is exactly 0.5"
        );
        let change = health.record(Outcome::Error, t0()).expect("11 of 21 trips");
        let trip = TripReason::ErrorRate {
            rate: Rate::ratio(11, 21),
            failures: 11,
            requests: 21,
            limit: Rate::from_ppm(500_000).expect("rate"),
        };
        assert_eq!(
            change,
            StateChange {
                from: StateName::Closed,
                to: StateName::Open,
                cause: TransitionCause::Tripped { trip },
                at: t0(),
            }
        );
        assert_eq!(
            health.state(t0()),
            BreakerState::Open {
                until: at(30_000),
                trip
            }
        );
        assert_eq!(
            trip.to_string(),
            "error rate 52.3% (11 of 21 requests failed) above 50.0%"
        );
    }

    #[test]
    fn nothing_trips_below_min_requests_and_the_minimum_itself_trips() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut health, 19, Outcome::Error, t0());
        assert_eq!(health.snapshot(t0()).error_rate, Rate::ONE);
        assert_eq!(
            health.state(t0()),
            BreakerState::Closed,
            "19 < minRequests 20"
        );
        assert!(
            health.record(Outcome::Error, t0()).is_some(),
            "the 20th trips"
        );
    }

    #[test]
    fn timeout_rate_trips_on_its_own_lower_limit() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut health, 14, Outcome::Success, t0());
        record_n(&mut health, 6, Outcome::Timeout, t0());
        assert_eq!(
            health.state(t0()),
            BreakerState::Closed,
            "6 of 20 is exactly 0.3"
        );
        let change = health
            .record(Outcome::Timeout, t0())
            .expect("7 of 21 trips");
        assert_eq!(
            change.cause,
            TransitionCause::Tripped {
                trip: TripReason::TimeoutRate {
                    rate: Rate::ratio(7, 21),
                    timeouts: 7,
                    requests: 21,
                    limit: Rate::from_ppm(300_000).expect("rate"),
                }
            }
        );
    }

    #[test]
    fn errors_and_timeouts_together_count_toward_the_error_rate() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut health, 9, Outcome::Success, t0());
        record_n(&mut health, 6, Outcome::Error, t0());
        record_n(&mut health, 4, Outcome::Timeout, t0());
        let change = health
            .record(Outcome::Timeout, t0())
            .expect("11 of 20 failed");
        assert!(matches!(
            change.cause,
            TransitionCause::Tripped {
                trip: TripReason::ErrorRate {
                    failures: 11,
                    requests: 20,
                    ..
                }
            }
        ));
        let snapshot = health.snapshot(t0());
        assert_eq!(
            (snapshot.requests, snapshot.errors, snapshot.timeouts),
            (20, 6, 5)
        );
        assert_eq!(snapshot.error_rate, Rate::from_ppm(550_000).expect("rate"));
        assert_eq!(
            snapshot.timeout_rate,
            Rate::from_ppm(250_000).expect("rate")
        );
    }

    #[test]
    fn declines_are_successes_for_health() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut health, 100, Outcome::Declined, t0());
        let snapshot = health.snapshot(t0());
        assert_eq!(snapshot.requests, 100);
        assert_eq!(snapshot.error_rate, Rate::ZERO);
        assert_eq!(snapshot.state, BreakerState::Closed);
    }

    #[test]
    fn open_rejects_until_the_cool_down_then_probes_close_it() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        tripped(&mut health);
        let (admission, change) = health.admit(at(29_999));
        assert!(
            matches!(admission, Admission::Rejected(Rejection::CircuitOpen { until, .. }) if until == at(30_000))
        );
        assert_eq!(change, None);

        let (admission, change) = health.admit(at(30_000));
        assert_eq!(admission, Admission::Probe);
        assert_eq!(
            change,
            Some(StateChange {
                from: StateName::Open,
                to: StateName::HalfOpen,
                cause: TransitionCause::CoolDownElapsed,
                at: at(30_000),
            })
        );
        assert_eq!(health.admit(at(30_001)).0, Admission::Probe);
        assert_eq!(health.admit(at(30_002)).0, Admission::Probe);
        assert_eq!(
            health.admit(at(30_003)).0,
            Admission::Rejected(Rejection::ProbesInFlight { until: at(60_002) }),
            "three probes are out"
        );
        assert_eq!(
            health.state(at(30_003)),
            BreakerState::HalfOpen {
                probes_left: 0,
                successes: 0
            }
        );

        assert_eq!(health.record(Outcome::Success, at(31_000)), None);
        assert_eq!(health.record(Outcome::Declined, at(31_000)), None);
        let change = health.record(Outcome::Success, at(31_000)).expect("closes");
        assert_eq!(
            (change.from, change.to, change.cause),
            (
                StateName::HalfOpen,
                StateName::Closed,
                TransitionCause::ProbesSucceeded { successes: 3 }
            )
        );
        assert_eq!(
            health.snapshot(at(31_000)).requests,
            0,
            "window starts afresh"
        );
        assert_eq!(health.admit(at(31_000)).0, Admission::Allowed);
    }

    #[test]
    fn a_failed_probe_reopens_with_a_new_cool_down() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        tripped(&mut health);
        assert_eq!(health.admit(at(30_000)).0, Admission::Probe);
        assert_eq!(health.record(Outcome::Success, at(30_500)), None);
        let change = health
            .record(Outcome::Timeout, at(31_000))
            .expect("reopens");
        let trip = TripReason::ProbeFailed {
            outcome: Outcome::Timeout,
        };
        assert_eq!(
            (change.from, change.to, change.cause),
            (
                StateName::HalfOpen,
                StateName::Open,
                TransitionCause::Tripped { trip }
            )
        );
        assert_eq!(
            health.admit(at(60_999)).0,
            Admission::Rejected(Rejection::CircuitOpen {
                until: at(61_000),
                trip
            })
        );
        assert_eq!(health.admit(at(61_000)).0, Admission::Probe);
        assert_eq!(
            health.state(at(61_000)),
            BreakerState::HalfOpen {
                probes_left: 2,
                successes: 0
            },
            "successes start again"
        );
    }

    #[test]
    fn probes_lost_for_a_cool_down_are_handed_out_again() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        tripped(&mut health);
        for ms in [30_000, 30_000, 30_000] {
            assert_eq!(health.admit(at(ms)).0, Admission::Probe);
        }
        assert_eq!(health.record(Outcome::Success, at(31_000)), None);
        assert!(matches!(
            health.peek(at(59_999)),
            Admission::Rejected(Rejection::ProbesInFlight { .. })
        ));
        assert_eq!(health.peek(at(60_000)), Admission::Probe);
        assert_eq!(health.admit(at(60_000)).0, Admission::Probe);
        assert_eq!(health.admit(at(60_000)).0, Admission::Probe);
        assert!(
            matches!(
                health.admit(at(60_000)).0,
                Admission::Rejected(Rejection::ProbesInFlight { .. })
            ),
            "only the two still needed"
        );
    }

    #[test]
    fn peek_hands_out_nothing() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        tripped(&mut health);
        for _ in 0..10 {
            assert_eq!(health.peek(at(30_000)), Admission::Probe);
        }
        assert_eq!(
            health.state(at(30_000)),
            BreakerState::HalfOpen {
                probes_left: 3,
                successes: 0
            }
        );
        for _ in 0..3 {
            assert_eq!(health.admit(at(30_000)).0, Admission::Probe);
        }
        assert!(matches!(health.peek(at(30_000)), Admission::Rejected(_)));
    }

    #[test]
    fn the_window_slides_and_old_failures_are_forgotten() {
        let mut inside = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut inside, 15, Outcome::Error, at(0));
        record_n(&mut inside, 4, Outcome::Error, at(29_999));
        assert!(
            inside.record(Outcome::Error, at(29_999)).is_some(),
            "all 20 in the window"
        );

        let mut slid = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut slid, 15, Outcome::Error, at(0));
        assert_eq!(slid.snapshot(at(29_999)).requests, 15);
        assert_eq!(slid.snapshot(at(30_000)).requests, 0, "15 errors forgotten");
        record_n(&mut slid, 5, Outcome::Error, at(30_000));
        assert_eq!(slid.snapshot(at(30_000)).requests, 5);
        assert_eq!(slid.state(at(30_000)), BreakerState::Closed);
    }

    #[test]
    fn memory_is_one_bucket_per_second_of_the_window() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        for second in 0..10_000 {
            health.record(Outcome::Success, at(second * 1_000));
            health.record(Outcome::Success, at(second * 1_000 + 500));
        }
        assert_eq!(health.bucket_count(), 30);
        assert_eq!(health.snapshot(at(9_999_999)).requests, 60);
    }

    #[test]
    fn a_clock_set_back_counts_as_the_latest_time_and_never_panics() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut health, 10, Outcome::Error, at(100_000));
        // Set back an hour: these count at t0+100 s, in the same window.
        record_n(&mut health, 9, Outcome::Error, before(3_600_000));
        assert_eq!(health.snapshot(before(3_600_000)).requests, 19);
        let change = health
            .record(Outcome::Error, before(3_600_000))
            .expect("20 errors in the window");
        assert_eq!(
            change.at,
            before(3_600_000),
            "reported on the caller's clock"
        );
        // The cool-down runs from the set-back clock, not an hour longer.
        let until = before(3_600_000) + Duration::from_secs(30);
        assert!(matches!(
            health.admit(before(3_600_000)).0,
            Admission::Rejected(Rejection::CircuitOpen { until: u, .. }) if u == until
        ));
        assert_eq!(health.admit(until).0, Admission::Probe);
        // And before the epoch.
        let ancient = UNIX_EPOCH - Duration::from_secs(1);
        let _ = health.record(Outcome::Success, ancient);
        let _ = health.admit(ancient);
        let _ = health.snapshot(ancient);
    }

    #[test]
    fn a_clock_set_back_does_not_replay_the_window() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut health, 15, Outcome::Error, at(0));
        record_n(&mut health, 1, Outcome::Success, at(40_000));
        assert_eq!(health.snapshot(at(40_000)).requests, 1);
        // Back to t0: the 15 errors stay forgotten.
        assert_eq!(health.snapshot(at(0)).requests, 1);
        record_n(&mut health, 5, Outcome::Error, at(0));
        assert_eq!(health.snapshot(at(0)).requests, 6);
    }

    #[test]
    fn force_open_holds_until_reset_and_reset_starts_afresh() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        record_n(&mut health, 5, Outcome::Error, t0());
        let change = health.force_open(operator(), t0()).expect("taken out");
        assert_eq!(
            (change.from, change.to),
            (StateName::Closed, StateName::ForcedOpen)
        );
        assert_eq!(health.force_open(operator(), t0()), None, "already out");
        assert_eq!(
            health.admit(at(3_600_000)).0,
            Admission::Rejected(Rejection::ForcedOpen { reason: operator() }),
            "no cool-down"
        );
        record_n(&mut health, 50, Outcome::Success, at(1_000));
        assert_eq!(
            health.state(at(1_000)),
            BreakerState::ForcedOpen { reason: operator() }
        );
        let change = health.reset(operator(), at(2_000)).expect("put back");
        assert_eq!(
            (change.from, change.to),
            (StateName::ForcedOpen, StateName::Closed)
        );
        assert_eq!(change.cause.to_string(), "put back by ops-1");
        assert_eq!(health.snapshot(at(2_000)).requests, 0);
        assert_eq!(health.admit(at(2_000)).0, Admission::Allowed);
        assert_eq!(health.reset(operator(), at(2_000)), None, "already closed");
    }

    #[test]
    fn an_open_breaker_can_be_reset_by_hand() {
        let mut health = AcquirerHealth::new(HealthPolicy::default());
        tripped(&mut health);
        let change = health.reset(operator(), at(1_000)).expect("closed");
        assert_eq!(
            (change.from, change.to),
            (StateName::Open, StateName::Closed)
        );
        assert_eq!(health.admit(at(1_000)).0, Admission::Allowed);
    }

    #[test]
    fn rates_are_exact_integers() {
        assert_eq!(Rate::from_f64(0.3), Rate::from_ppm(300_000));
        assert_eq!(Rate::from_f64(0.1 + 0.2), Rate::from_ppm(300_000));
        assert_eq!(Rate::from_f64(1.0), Some(Rate::ONE));
        assert_eq!(Rate::from_f64(0.0), Some(Rate::ZERO));
        for bad in [f64::NAN, -0.000_001, 1.000_001, f64::INFINITY] {
            assert_eq!(Rate::from_f64(bad), None, "{bad}");
        }
        assert_eq!(Rate::from_ppm(1_000_001), None);
        assert_eq!(Rate::ratio(1, 3).ppm(), 333_333, "rounded down");
        assert_eq!(Rate::ratio(5, 0), Rate::ZERO);
        assert_eq!(Rate::ratio(u64::MAX, u64::MAX), Rate::ONE);
        let limit = Rate::from_ppm(300_000).expect("rate");
        assert!(!limit.is_exceeded_by(3, 10));
        assert!(limit.is_exceeded_by(300_001, 1_000_000));
        assert!(!limit.is_exceeded_by(u64::MAX / 4, u64::MAX), "no overflow");
        assert_eq!(Rate::ratio(11, 21).to_string(), "52.3%");
        assert_eq!(Rate::ONE.to_string(), "100.0%");
    }

    #[test]
    fn policies_read_and_write_json_in_milliseconds() {
        let json = serde_json::to_value(HealthPolicy::default()).expect("write");
        assert_eq!(
            json,
            serde_json::json!({
                "windowMs": 30_000, "minRequests": 20, "maxErrorRate": 0.5,
                "maxTimeoutRate": 0.3, "coolDownMs": 30_000, "halfOpenProbes": 3
            })
        );
        let back: HealthPolicy = serde_json::from_value(json).expect("read");
        assert_eq!(back, HealthPolicy::default());
        let too_high = serde_json::json!({
            "windowMs": 30_000, "minRequests": 20, "maxErrorRate": 1.5,
            "maxTimeoutRate": 0.3, "coolDownMs": 30_000, "halfOpenProbes": 3
        });
        assert!(serde_json::from_value::<HealthPolicy>(too_high).is_err());
    }

    #[test]
    fn policy_validation_names_each_field_and_bad_policies_are_clamped() {
        let bad = HealthPolicy {
            window: Duration::from_millis(999),
            min_requests: 0,
            cool_down: Duration::from_secs(86_401),
            half_open_probes: 0,
            ..HealthPolicy::default()
        };
        let messages: Vec<String> = bad
            .validate()
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            [
                "windowMs: must be 1000 to 3600000 ms, got 999",
                "minRequests: must be at least 1",
                "coolDownMs: must be at most 86400000 ms, got 86401000",
                "halfOpenProbes: must be at least 1",
            ]
        );
        assert_eq!(HealthPolicy::default().validate(), Ok(()));
        let mut health = AcquirerHealth::new(HealthPolicy {
            window: Duration::ZERO,
            ..bad
        });
        let change = health.record(Outcome::Error, t0()).expect("min 1 request");
        assert_eq!(change.to, StateName::Open);
        assert_eq!(
            health.admit(at(86_400_000)).0,
            Admission::Probe,
            "cool-down ≤ a day"
        );
        let change = health
            .record(Outcome::Success, at(86_400_000))
            .expect("one probe");
        assert_eq!(change.to, StateName::Closed);
    }

    #[test]
    fn the_book_keeps_a_policy_per_acquirer_and_names_the_acquirer() {
        let mut book = HealthBook::default();
        let strict = HealthPolicy {
            min_requests: 1,
            ..HealthPolicy::default()
        };
        book.set_policy("acq-b", strict);
        assert_eq!(book.policy("acq-b"), &strict);
        assert_eq!(book.policy("acq-a"), &HealthPolicy::default());
        assert_eq!(book.peek("never-seen", t0()), Admission::Allowed);
        assert_eq!(book.admit("never-seen", t0()), (Admission::Allowed, None));
        assert_eq!(book.record("acq-a", Outcome::Error, t0()), None);
        let transition = book.record("acq-b", Outcome::Error, t0()).expect("trips");
        assert_eq!(transition.acquirer, "acq-b");
        assert_eq!(
            transition.to_string(),
            "acq-b: closed → open: error rate 100.0% (1 of 1 requests failed) above 50.0%"
        );
        let snapshots = book.snapshots(t0());
        assert_eq!(snapshots.len(), 2);
        assert_eq!(snapshots["acq-a"].requests, 1);
        assert_eq!(snapshots["acq-b"].state.name(), StateName::Open);
        assert_eq!(book.state("acq-c", t0()), BreakerState::Closed);
        assert_eq!(book.snapshot("acq-c", t0()).requests, 0);
        assert_eq!(book.reset("acq-c", operator(), t0()), None);
        let out = book
            .force_open("acq-c", operator(), t0())
            .expect("taken out");
        assert_eq!(out.acquirer, "acq-c");
        assert!(book.remove("acq-c").is_some());
        assert_eq!(book.peek("acq-c", t0()), Admission::Allowed);
    }

    #[test]
    fn states_and_transitions_serialise_with_tags() {
        let state = BreakerState::HalfOpen {
            probes_left: 2,
            successes: 1,
        };
        assert_eq!(
            serde_json::to_value(&state).expect("write"),
            serde_json::json!({"state": "half_open", "probesLeft": 2, "successes": 1})
        );
        let transition = HealthTransition {
            acquirer: "acq-a".to_owned(),
            from: StateName::HalfOpen,
            to: StateName::Open,
            cause: TransitionCause::Tripped {
                trip: TripReason::ProbeFailed {
                    outcome: Outcome::Error,
                },
            },
            at: t0(),
        };
        let json = serde_json::to_value(&transition).expect("write");
        assert_eq!(json["cause"]["cause"], "tripped");
        assert_eq!(json["cause"]["trip"]["kind"], "probe_failed");
        let back: HealthTransition = serde_json::from_value(json).expect("read");
        assert_eq!(back, transition);
    }

    proptest::proptest! {
        /// Any sequence of calls at any times, forwards and backwards, never panics, keeps
        /// memory bounded and keeps the counts consistent.
        #[test]
        fn any_sequence_of_calls_at_any_times_is_safe(
            steps in proptest::collection::vec((0u8..6, -100_000i64..100_000), 1..200),
        ) {
            let policy = HealthPolicy {
                min_requests: 3,
                half_open_probes: 2,
                window: Duration::from_secs(10),
                cool_down: Duration::from_secs(5),
                ..HealthPolicy::default()
            };
            let mut health = AcquirerHealth::new(policy);
            let mut now = t0();
            for (op, delta_ms) in steps {
                now = if delta_ms >= 0 {
                    now + Duration::from_millis(delta_ms.unsigned_abs())
                } else {
                    now - Duration::from_millis(delta_ms.unsigned_abs())
                };
                match op {
                    0 => { let _ = health.admit(now); }
                    1 => { let _ = health.record(Outcome::Success, now); }
                    2 => { let _ = health.record(Outcome::Error, now); }
                    3 => { let _ = health.record(Outcome::Timeout, now); }
                    4 => { let _ = health.peek(now); }
                    _ => { let _ = health.record(Outcome::Declined, now); }
                }
                let snapshot = health.snapshot(now);
                proptest::prop_assert!(health.bucket_count() <= 10);
                proptest::prop_assert!(snapshot.errors + snapshot.timeouts <= snapshot.requests);
                if let BreakerState::HalfOpen { probes_left, .. } = snapshot.state {
                    proptest::prop_assert!(probes_left <= 2);
                }
            }
        }
    }
}
