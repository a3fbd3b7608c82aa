//! The routing decision: which rule applies, which acquirers may take the payment and in
//! which order, and why ([`decide()`]).
//!
//! # Order of the candidates
//!
//! First the acquirers of the route whose breaker rejects them now are eliminated
//! ([`HealthBook::peek`]); the rest are *admitted*. Then:
//!
//! - **Priority**: the admitted acquirers in list order.
//! - **Split**: `point = draw % total`, where `total` is the sum of the weights of the
//!   admitted acquirers only, so the volume of an eliminated acquirer goes to the others in
//!   proportion to their weights. Walking the admitted acquirers in configured order and
//!   adding up their weights, the first whose running sum exceeds `point` is the primary.
//!   The other admitted acquirers follow as fallbacks by weight, highest first, then by id.
//!   `draw` is uniform over `u64` ([`draw_from`]) and `total` is below 2^32, so the modulo
//!   bias is below 2^-32.
//!
//! # Probes
//!
//! [`decide()`] claims an admission only for the **first** candidate
//! ([`HealthBook::admit`]): for a closed breaker that changes nothing; for an open one whose
//! cool-down has passed, or a half-open one, it hands out one probe, so a decision consumes
//! at most one probe, and only for the acquirer the payment is sent to first. The other
//! candidates are listed as [`HealthBook::peek`] saw them: before sending the payment to a
//! fallback, the caller calls [`HealthBook::admit`] for it and skips it if rejected (a
//! fallback marked [`Admitted::Probe`] must be claimed that way; another payment may have
//! taken the probe meanwhile). Every request sent must have its outcome recorded with
//! [`HealthBook::record`].

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::brand::CardBrand;
use crate::health::{Admission, HealthBook, HealthTransition, Rejection};
use crate::rules::{Route, RouteInput, RuleSet, check_conditions, shown, shown_bin};

/// The draw for a payment: the first 8 bytes of SHA-256 of its id, big-endian. Callers
/// derive it this way so that a decision can be reproduced and explained from the payment
/// id alone.
pub fn draw_from(payment_id: &[u8]) -> u64 {
    Sha256::digest(payment_id)
        .first_chunk::<8>()
        .map_or(0, |bytes| u64::from_be_bytes(*bytes))
}

/// How a candidate was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admitted {
    /// Its breaker is closed.
    Allowed,
    /// Its breaker is half-open: the payment is a probe (see "Probes" in the module
    /// documentation).
    Probe,
}

/// An acquirer the payment may be sent to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The acquirer.
    pub acquirer: String,
    /// Its weight in a split route; `None` in a priority route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// How it was admitted.
    pub admission: Admitted,
}

/// Why an acquirer was eliminated: what its breaker answered.
pub type EliminationReason = Rejection;

/// An acquirer of the route that may not take the payment now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Elimination {
    /// The acquirer.
    pub acquirer: String,
    /// Why.
    pub reason: EliminationReason,
}

/// Why a payment got no route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoRouteReason {
    /// No enabled rule matched and there is no default route.
    NoRuleMatched,
    /// Every acquirer of the chosen route is unavailable (or the route names none).
    AllCandidatesUnavailable,
}

/// Whether the payment can be routed. JSON: `{"outcome": "routed"}` or
/// `{"outcome": "no_route", "reason": "no_rule_matched"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum DecisionOutcome {
    /// At least one candidate.
    Routed,
    /// None.
    NoRoute(NoRouteReason),
}

/// The routing decision for one payment, with the trail that explains it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// [`RuleSet::version`] of the rules used.
    pub rule_version: u64,
    /// The id of the rule that matched; `None` when the default route was used or nothing
    /// matched.
    pub matched_rule: Option<String>,
    /// Whether [`RuleSet::default_route`] was used.
    pub used_default: bool,
    /// The card brand of the BIN.
    pub brand: CardBrand,
    /// The acquirers to try, in order; empty unless [`DecisionOutcome::Routed`].
    pub candidates: Vec<Candidate>,
    /// The acquirers of the route that were left out, in route order.
    pub eliminated: Vec<Elimination>,
    /// The trail: each rule evaluated and why it did not match (or that it was disabled),
    /// the rule that matched or the default route, each elimination, and how the order
    /// was chosen, e.g. `split: draw 4123 of 10000 → acq-b (weight 30)`.
    pub explanation: Vec<String>,
    /// Routed, or why not.
    pub outcome: DecisionOutcome,
    /// Breaker changes the decision caused (an open breaker turning half-open when its
    /// probe was claimed), for the service to record.
    pub transitions: Vec<HealthTransition>,
}

/// An acquirer of the route with its weight.
#[derive(Clone, Copy)]
struct Entry<'r> {
    acquirer: &'r str,
    weight: Option<u32>,
}

/// Decides where a payment goes: the first enabled rule of `rules` whose conditions hold
/// (else the default route), then the candidates of its route in the order of the module
/// documentation, using `health` to leave out unavailable acquirers and `draw` (see
/// [`draw_from`]) to pick the primary of a split. Never panics, whatever the rules (an
/// unvalidated route with repeated acquirers or zero weights is handled: repetitions are
/// ignored, and a split without weight is ordered by weight, then id).
pub fn decide(
    rules: &RuleSet,
    input: &RouteInput<'_>,
    health: &mut HealthBook,
    draw: u64,
    now: SystemTime,
) -> Decision {
    let brand = input.brand();
    let mut decision = Decision {
        rule_version: rules.version,
        matched_rule: None,
        used_default: false,
        brand,
        candidates: Vec::new(),
        eliminated: Vec::new(),
        explanation: Vec::new(),
        outcome: DecisionOutcome::Routed,
        transitions: Vec::new(),
    };
    let explanation = &mut decision.explanation;
    if !input.bin_is_well_formed() {
        explanation.push(format!(
            "bin {}: expected 6 to 11 digits, so the brand is unknown and no BIN range matches",
            shown_bin(input.bin)
        ));
    }

    let mut matched = None;
    for rule in &rules.rules {
        let id = shown(&rule.id);
        if !rule.enabled {
            explanation.push(format!("rule {id}: disabled, skipped"));
            continue;
        }
        match check_conditions(&rule.conditions, input, brand) {
            Ok(()) => {
                explanation.push(format!("rule {id}: matched ({} route)", rule.route.kind()));
                matched = Some(rule);
                break;
            }
            Err(why) => explanation.push(format!("rule {id}: {why}")),
        }
    }
    let route = match (matched, &rules.default_route) {
        (Some(rule), _) => {
            decision.matched_rule = Some(rule.id.clone());
            &rule.route
        }
        (None, Some(route)) => {
            explanation.push(format!("no rule matched: default route ({})", route.kind()));
            decision.used_default = true;
            route
        }
        (None, None) => {
            explanation.push("no rule matched and there is no default route".to_owned());
            decision.outcome = DecisionOutcome::NoRoute(NoRouteReason::NoRuleMatched);
            return decision;
        }
    };

    let admitted = admit_route(route, health, now, &mut decision);
    let mut ordered = order(route, admitted, draw, &mut decision.explanation);

    // Claim the first candidate; should its admission have changed since the peek (it
    // cannot within one call), leave it out and claim the next.
    while let Some(first) = ordered.first_mut() {
        let (admission, transition) = health.admit(&first.acquirer, now);
        decision.transitions.extend(transition);
        match admission {
            Admission::Allowed => first.admission = Admitted::Allowed,
            Admission::Probe => {
                first.admission = Admitted::Probe;
                decision.explanation.push(format!(
                    "{}: half-open, this payment is one of its probes",
                    shown(&first.acquirer)
                ));
            }
            Admission::Rejected(reason) => {
                decision.explanation.push(format!(
                    "{}: eliminated, {}",
                    shown(&first.acquirer),
                    describe(&reason, now)
                ));
                decision.eliminated.push(Elimination {
                    acquirer: first.acquirer.clone(),
                    reason,
                });
                ordered.remove(0);
                continue;
            }
        }
        break;
    }
    if ordered.is_empty() {
        decision
            .explanation
            .push("no acquirer of the route is available".to_owned());
        decision.outcome = DecisionOutcome::NoRoute(NoRouteReason::AllCandidatesUnavailable);
    }
    decision.candidates = ordered;
    decision
}

/// The acquirers of the route that the breakers admit now, each once, in route order;
/// the others go to `decision.eliminated`.
fn admit_route<'r>(
    route: &'r Route,
    health: &HealthBook,
    now: SystemTime,
    decision: &mut Decision,
) -> Vec<(Entry<'r>, Admitted)> {
    let entries: Vec<Entry<'_>> = match route {
        Route::Priority(ids) => ids
            .iter()
            .map(|id| Entry {
                acquirer: id,
                weight: None,
            })
            .collect(),
        Route::Split(weighted) => weighted
            .iter()
            .map(|entry| Entry {
                acquirer: &entry.acquirer,
                weight: Some(entry.weight),
            })
            .collect(),
    };
    if entries.is_empty() {
        decision
            .explanation
            .push("the route names no acquirer".to_owned());
    }
    let mut seen = BTreeSet::new();
    let mut admitted = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = shown(entry.acquirer);
        if !seen.insert(entry.acquirer) {
            decision
                .explanation
                .push(format!("{id}: listed again in the route, ignored"));
            continue;
        }
        match health.peek(entry.acquirer, now) {
            Admission::Allowed => admitted.push((entry, Admitted::Allowed)),
            Admission::Probe => admitted.push((entry, Admitted::Probe)),
            Admission::Rejected(reason) => {
                decision
                    .explanation
                    .push(format!("{id}: eliminated, {}", describe(&reason, now)));
                decision.eliminated.push(Elimination {
                    acquirer: entry.acquirer.to_owned(),
                    reason,
                });
            }
        }
    }
    admitted
}

/// The admitted acquirers as candidates in the order of the module documentation.
fn order(
    route: &Route,
    admitted: Vec<(Entry<'_>, Admitted)>,
    draw: u64,
    explanation: &mut Vec<String>,
) -> Vec<Candidate> {
    let candidate = |(entry, admission): (Entry<'_>, Admitted)| Candidate {
        acquirer: entry.acquirer.to_owned(),
        weight: entry.weight,
        admission,
    };
    let mut candidates: Vec<Candidate> = admitted.into_iter().map(candidate).collect();
    if candidates.is_empty() {
        return candidates;
    }
    let by_weight_then_id = |a: &Candidate, b: &Candidate| {
        b.weight
            .cmp(&a.weight)
            .then_with(|| a.acquirer.cmp(&b.acquirer))
    };
    match route {
        Route::Priority(_) => {
            explanation.push(format!("priority: {}", names(&candidates)));
        }
        Route::Split(_) => {
            let total: u64 = candidates
                .iter()
                .map(|c| u64::from(c.weight.unwrap_or(0)))
                .sum();
            if total == 0 {
                candidates.sort_by(by_weight_then_id);
                explanation.push(format!(
                    "split: the available acquirers have no weight; by weight, then id: {}",
                    names(&candidates)
                ));
                return candidates;
            }
            let point = draw % total;
            let mut running = 0u64;
            let primary = candidates
                .iter()
                .position(|c| {
                    running += u64::from(c.weight.unwrap_or(0));
                    running > point
                })
                .unwrap_or(0);
            let first = candidates.remove(primary);
            candidates.sort_by(by_weight_then_id);
            explanation.push(format!(
                "split: draw {point} of {total} → {} (weight {})",
                shown(&first.acquirer),
                first.weight.unwrap_or(0)
            ));
            if !candidates.is_empty() {
                explanation.push(format!(
                    "fallbacks by weight, then id: {}",
                    names(&candidates)
                ));
            }
            candidates.insert(0, first);
        }
    }
    candidates
}

fn names(candidates: &[Candidate]) -> String {
    candidates
        .iter()
        .map(|c| shown(&c.acquirer).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rejection for the explanation, with times relative to `now`.
fn describe(rejection: &Rejection, now: SystemTime) -> String {
    let remaining = |until: &SystemTime| {
        let left = until.duration_since(now).unwrap_or(Duration::ZERO);
        format!("{}.{} s", left.as_secs(), left.subsec_millis() / 100)
    };
    match rejection {
        Rejection::CircuitOpen { until, trip } => {
            format!("circuit open for another {} ({trip})", remaining(until))
        }
        Rejection::ProbesInFlight { until } => format!(
            "half-open with every probe in flight (handed out again in {} if unanswered)",
            remaining(until)
        ),
        Rejection::ForcedOpen { reason } => format!("taken out {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{HealthPolicy, ManualReason, Outcome, StateName, TripReason};
    use crate::rules::tests::{input, priority, rule};
    use crate::rules::{BinRange, Conditions, EntryMode, Rule, TransactionType, WeightedAcquirer};
    use std::time::UNIX_EPOCH;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn at(ms: u64) -> SystemTime {
        t0() + Duration::from_millis(ms)
    }

    fn split(weights: &[(&str, u32)]) -> Route {
        Route::Split(
            weights
                .iter()
                .map(|(id, weight)| WeightedAcquirer::new(*id, *weight))
                .collect(),
        )
    }

    fn set(rules: Vec<Rule>, default_route: Option<Route>) -> RuleSet {
        RuleSet {
            version: 9,
            rules,
            default_route,
        }
    }

    fn currencies(list: &[&str]) -> Conditions {
        Conditions {
            currencies: list.iter().map(|c| (*c).to_owned()).collect(),
            ..Conditions::default()
        }
    }

    fn acquirers(decision: &Decision) -> Vec<&str> {
        decision
            .candidates
            .iter()
            .map(|c| c.acquirer.as_str())
            .collect()
    }

    /// Trips the acquirer's breaker at `t0` with 20 errors (default policy).
    fn trip(health: &mut HealthBook, acquirer: &str) {
        for _ in 0..20 {
            let _ = health.record(acquirer, Outcome::Error, t0());
        }
        assert_eq!(health.state(acquirer, t0()).name(), StateName::Open);
    }

    fn operator() -> ManualReason {
        ManualReason::new("ops-1", "maintenance window")
    }

    #[test]
    fn draw_from_is_the_first_8_bytes_of_sha256_big_endian() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de … (FIPS 180-2, appendix B.1)
        assert_eq!(draw_from(b"abc"), 0xba78_16bf_8f01_cfea);
        assert_eq!(draw_from(b"pay-1"), draw_from(b"pay-1"));
        assert_ne!(draw_from(b"pay-1"), draw_from(b"pay-2"));
    }

    #[test]
    fn the_first_matching_rule_wins_and_earlier_rules_explain_why_not() {
        let rules = set(
            vec![
                rule("us-only", currencies(&["USD"]), priority(&["acq-c"])),
                rule("eu", currencies(&["EUR"]), priority(&["acq-a"])),
                rule("all", Conditions::default(), priority(&["acq-b"])),
            ],
            None,
        );
        let decision = decide(&rules, &input(), &mut HealthBook::default(), 0, t0());
        assert_eq!(decision.matched_rule.as_deref(), Some("eu"));
        assert!(!decision.used_default);
        assert_eq!(decision.rule_version, 9);
        assert_eq!(decision.brand, CardBrand::Visa);
        assert_eq!(acquirers(&decision), ["acq-a"]);
        assert_eq!(decision.outcome, DecisionOutcome::Routed);
        assert_eq!(
            decision.explanation,
            [
                "rule us-only: currency EUR not in [USD]",
                "rule eu: matched (priority route)",
                "priority: acq-a",
            ]
        );
    }

    #[test]
    fn the_default_route_is_used_when_no_rule_matches() {
        let rules = set(
            vec![rule("gbp", currencies(&["GBP"]), priority(&["acq-c"]))],
            Some(priority(&["acq-b", "acq-a"])),
        );
        let decision = decide(&rules, &input(), &mut HealthBook::default(), 0, t0());
        assert_eq!(decision.matched_rule, None);
        assert!(decision.used_default);
        assert_eq!(acquirers(&decision), ["acq-b", "acq-a"]);
        assert_eq!(
            decision.explanation,
            [
                "rule gbp: currency EUR not in [GBP]",
                "no rule matched: default route (priority)",
                "priority: acq-b, acq-a",
            ]
        );
    }

    #[test]
    fn without_a_default_route_an_unmatched_payment_gets_no_route() {
        let rules = set(
            vec![rule("gbp", currencies(&["GBP"]), priority(&["acq-c"]))],
            None,
        );
        let decision = decide(&rules, &input(), &mut HealthBook::default(), 0, t0());
        assert_eq!(
            decision.outcome,
            DecisionOutcome::NoRoute(NoRouteReason::NoRuleMatched)
        );
        assert!(decision.candidates.is_empty());
        assert_eq!(
            decision.explanation.last().map(String::as_str),
            Some("no rule matched and there is no default route")
        );
    }

    #[test]
    fn a_disabled_rule_is_skipped_even_when_it_would_match() {
        let mut off = rule("off", Conditions::default(), priority(&["acq-c"]));
        off.enabled = false;
        let rules = set(
            vec![off, rule("on", Conditions::default(), priority(&["acq-a"]))],
            None,
        );
        let decision = decide(&rules, &input(), &mut HealthBook::default(), 0, t0());
        assert_eq!(decision.matched_rule.as_deref(), Some("on"));
        assert_eq!(decision.explanation[0], "rule off: disabled, skipped");
    }

    #[test]
    fn every_condition_kind_can_decide_between_rules() {
        let cases: Vec<(Conditions, &str)> = vec![
            (
                Conditions {
                    bin_ranges: vec![BinRange::new("510000", "559999")],
                    ..Conditions::default()
                },
                "bin 411111… not in [510000-559999]",
            ),
            (
                Conditions {
                    brands: vec![CardBrand::Amex],
                    ..Conditions::default()
                },
                "brand visa not in [amex]",
            ),
            (currencies(&["SEK"]), "currency EUR not in [SEK]"),
            (
                Conditions {
                    amount_min: Some(10_000),
                    ..Conditions::default()
                },
                "amount 1500 below amountMin 10000",
            ),
            (
                Conditions {
                    amount_max: Some(1_000),
                    ..Conditions::default()
                },
                "amount 1500 above amountMax 1000",
            ),
            (
                Conditions {
                    merchants: vec!["m-9".to_owned()],
                    ..Conditions::default()
                },
                "merchant m-1 not in [m-9]",
            ),
            (
                Conditions {
                    mccs: vec!["4111".to_owned()],
                    ..Conditions::default()
                },
                "mcc 5411 not in [4111]",
            ),
            (
                Conditions {
                    terminal_groups: vec!["tg-south".to_owned()],
                    ..Conditions::default()
                },
                "terminal group tg-north not in [tg-south]",
            ),
            (
                Conditions {
                    entry_modes: vec![EntryMode::Chip],
                    ..Conditions::default()
                },
                "entry mode contactless not in [chip]",
            ),
            (
                Conditions {
                    transaction_types: vec![TransactionType::Completion],
                    ..Conditions::default()
                },
                "transaction type purchase not in [completion]",
            ),
        ];
        for (conditions, why) in cases {
            let rules = set(
                vec![
                    rule("first", conditions, priority(&["acq-c"])),
                    rule("second", Conditions::default(), priority(&["acq-a"])),
                ],
                None,
            );
            let decision = decide(&rules, &input(), &mut HealthBook::default(), 0, t0());
            assert_eq!(decision.matched_rule.as_deref(), Some("second"), "{why}");
            assert_eq!(decision.explanation[0], format!("rule first: {why}"));
        }
    }

    #[test]
    fn a_malformed_bin_is_explained_and_matches_only_brand_unknown() {
        let rules = set(
            vec![
                rule(
                    "visa",
                    Conditions {
                        brands: vec![CardBrand::Visa],
                        ..Conditions::default()
                    },
                    priority(&["acq-a"]),
                ),
                rule(
                    "unknown",
                    Conditions {
                        brands: vec![CardBrand::Unknown],
                        ..Conditions::default()
                    },
                    priority(&["acq-b"]),
                ),
            ],
            None,
        );
        let pan = RouteInput {
            bin: "4111111111111111",
            ..input()
        };
        let decision = decide(&rules, &pan, &mut HealthBook::default(), 0, t0());
        assert_eq!(decision.brand, CardBrand::Unknown);
        assert_eq!(decision.matched_rule.as_deref(), Some("unknown"));
        assert_eq!(
            decision.explanation[0],
            "bin malformed (16 characters): expected 6 to 11 digits, so the brand is unknown \
             and no BIN range matches"
        );
        assert!(
            decision
                .explanation
                .iter()
                .all(|line| !line.contains("41111111")),
            "the PAN never appears"
        );
    }

    #[test]
    fn priority_skips_an_open_breaker_and_says_why() {
        let mut health = HealthBook::default();
        trip(&mut health, "acq-b");
        let rules = set(vec![], Some(priority(&["acq-a", "acq-b", "acq-c"])));
        let decision = decide(&rules, &input(), &mut health, 0, at(12_300));
        assert_eq!(acquirers(&decision), ["acq-a", "acq-c"]);
        assert!(
            decision
                .candidates
                .iter()
                .all(|c| c.admission == Admitted::Allowed && c.weight.is_none())
        );
        assert_eq!(decision.eliminated.len(), 1);
        let elimination = &decision.eliminated[0];
        assert_eq!(elimination.acquirer, "acq-b");
        assert!(matches!(
            elimination.reason,
            Rejection::CircuitOpen {
                until,
                trip: TripReason::ErrorRate { .. }
            } if until == at(30_000)
        ));
        assert_eq!(
            decision.explanation[1],
            "acq-b: eliminated, circuit open for another 17.7 s (error rate 100.0% (20 of 20 \
             requests failed) above 50.0%)"
        );
        assert_eq!(decision.explanation[2], "priority: acq-a, acq-c");
    }

    #[test]
    fn a_forced_open_acquirer_is_eliminated_until_reset() {
        let mut health = HealthBook::default();
        let _ = health.force_open("acq-a", operator(), t0());
        let rules = set(vec![], Some(priority(&["acq-a", "acq-b"])));
        let decision = decide(&rules, &input(), &mut health, 0, at(3_600_000));
        assert_eq!(acquirers(&decision), ["acq-b"]);
        assert_eq!(
            decision.explanation[1],
            "acq-a: eliminated, taken out by ops-1"
        );
        let _ = health.reset("acq-a", operator(), at(3_600_000));
        let decision = decide(&rules, &input(), &mut health, 0, at(3_600_000));
        assert_eq!(acquirers(&decision), ["acq-a", "acq-b"]);
    }

    #[test]
    fn when_every_acquirer_is_out_there_is_no_route() {
        let mut health = HealthBook::default();
        trip(&mut health, "acq-a");
        let _ = health.force_open("acq-b", operator(), t0());
        let rules = set(vec![], Some(split(&[("acq-a", 1), ("acq-b", 1)])));
        let decision = decide(&rules, &input(), &mut health, 0, t0());
        assert_eq!(
            decision.outcome,
            DecisionOutcome::NoRoute(NoRouteReason::AllCandidatesUnavailable)
        );
        assert!(decision.candidates.is_empty());
        let out: Vec<&str> = decision
            .eliminated
            .iter()
            .map(|e| e.acquirer.as_str())
            .collect();
        assert_eq!(out, ["acq-a", "acq-b"]);
        assert_eq!(
            decision.explanation.last().map(String::as_str),
            Some("no acquirer of the route is available")
        );
    }

    #[test]
    fn split_explains_the_draw_and_orders_fallbacks_by_weight_then_id() {
        let rules = set(
            vec![],
            Some(split(&[
                ("acq-c", 20),
                ("acq-b", 50),
                ("acq-a", 20),
                ("acq-d", 10),
            ])),
        );
        // Cumulative in configured order: acq-c [0,20), acq-b [20,70), acq-a [70,90),
        // acq-d [90,100).
        let expectations = [
            (0, "acq-c"),
            (19, "acq-c"),
            (20, "acq-b"),
            (69, "acq-b"),
            (70, "acq-a"),
            (90, "acq-d"),
            (99, "acq-d"),
            (100 + 95, "acq-d"),
        ];
        for (draw, primary) in expectations {
            let decision = decide(&rules, &input(), &mut HealthBook::default(), draw, t0());
            assert_eq!(decision.candidates[0].acquirer, primary, "draw {draw}");
        }
        let decision = decide(&rules, &input(), &mut HealthBook::default(), 95, t0());
        assert_eq!(acquirers(&decision), ["acq-d", "acq-b", "acq-a", "acq-c"]);
        assert_eq!(decision.candidates[0].weight, Some(10));
        assert_eq!(
            &decision.explanation[1..],
            [
                "split: draw 95 of 100 → acq-d (weight 10)",
                "fallbacks by weight, then id: acq-b, acq-a, acq-c",
            ]
        );
    }

    /// Hoeffding: for n independent draws, P(|count − n·p| ≥ t) ≤ 2·exp(−2t²/n). With SHA-256
    /// of distinct ids as independent uniform draws, t = sqrt(n·ln(2/δ)/2) bounds the
    /// chance of a false failure by δ = 1e-6 per acquirer (t ≈ 269 for n = 10,000, i.e. a
    /// share within ±2.7 points). The draws are fixed, so the test is deterministic anyway;
    /// the bound says a correct split would fail it with that chance.
    fn tolerance(n: u32) -> f64 {
        let delta = 1e-6_f64;
        (f64::from(n) * (2.0 / delta).ln() / 2.0).sqrt()
    }

    fn shares(rules: &RuleSet, health: &mut HealthBook, n: u32) -> Vec<(String, u32)> {
        let mut counts = std::collections::BTreeMap::<String, u32>::new();
        for i in 0..n {
            let draw = draw_from(format!("payment-{i}").as_bytes());
            let decision = decide(rules, &input(), health, draw, t0());
            *counts
                .entry(decision.candidates[0].acquirer.clone())
                .or_default() += 1;
        }
        counts.into_iter().collect()
    }

    fn assert_shares(observed: &[(String, u32)], expected: &[(&str, f64)], n: u32) {
        let t = tolerance(n);
        assert_eq!(observed.len(), expected.len(), "{observed:?}");
        for ((acquirer, count), (want, p)) in observed.iter().zip(expected) {
            assert_eq!(acquirer, want);
            let mean = f64::from(n) * p;
            assert!(
                (f64::from(*count) - mean).abs() <= t,
                "{acquirer}: {count} vs {mean:.0} ± {t:.0}"
            );
        }
    }

    #[test]
    fn split_volume_follows_the_weights_over_10000_payments() {
        let n = 10_000;
        let rules = set(
            vec![],
            Some(split(&[("acq-a", 50), ("acq-b", 30), ("acq-c", 20)])),
        );
        let observed = shares(&rules, &mut HealthBook::default(), n);
        assert_shares(
            &observed,
            &[("acq-a", 0.5), ("acq-b", 0.3), ("acq-c", 0.2)],
            n,
        );
    }

    #[test]
    fn an_open_breaker_moves_its_share_to_the_others_in_proportion() {
        let n = 10_000;
        let rules = set(
            vec![],
            Some(split(&[("acq-a", 50), ("acq-b", 30), ("acq-c", 20)])),
        );
        let mut health = HealthBook::default();
        trip(&mut health, "acq-b");
        let observed = shares(&rules, &mut health, n);
        assert_shares(
            &observed,
            &[("acq-a", 50.0 / 70.0), ("acq-c", 20.0 / 70.0)],
            n,
        );
        let decision = decide(&rules, &input(), &mut health, 0, t0());
        assert_eq!(decision.eliminated[0].acquirer, "acq-b");
        assert!(
            decision
                .explanation
                .contains(&"split: draw 0 of 70 → acq-a (weight 50)".to_owned())
        );
    }

    #[test]
    fn a_decision_claims_one_probe_and_only_for_the_first_candidate() {
        let policy = HealthPolicy {
            half_open_probes: 1,
            ..HealthPolicy::default()
        };
        let mut health = HealthBook::new(policy);
        trip(&mut health, "acq-a");
        let after_cool_down = at(30_000);

        // acq-a as a fallback: listed as a probe, but nothing is claimed.
        let fallback = set(vec![], Some(priority(&["acq-b", "acq-a"])));
        let decision = decide(&fallback, &input(), &mut health, 0, after_cool_down);
        assert_eq!(acquirers(&decision), ["acq-b", "acq-a"]);
        assert_eq!(decision.candidates[1].admission, Admitted::Probe);
        assert!(decision.transitions.is_empty());
        assert_eq!(
            health.state("acq-a", after_cool_down).name(),
            StateName::HalfOpen
        );

        // acq-a first: the probe is claimed and the half-opening reported.
        let first = set(vec![], Some(priority(&["acq-a", "acq-b"])));
        let decision = decide(&first, &input(), &mut health, 0, after_cool_down);
        assert_eq!(acquirers(&decision), ["acq-a", "acq-b"]);
        assert_eq!(decision.candidates[0].admission, Admitted::Probe);
        assert_eq!(decision.transitions.len(), 1);
        assert_eq!(decision.transitions[0].acquirer, "acq-a");
        assert_eq!(
            (decision.transitions[0].from, decision.transitions[0].to),
            (StateName::Open, StateName::HalfOpen)
        );
        assert_eq!(
            decision.explanation.last().map(String::as_str),
            Some("acq-a: half-open, this payment is one of its probes")
        );

        // The only probe is out: the next payment goes to acq-b.
        let decision = decide(&first, &input(), &mut health, 0, after_cool_down);
        assert_eq!(acquirers(&decision), ["acq-b"]);
        assert!(matches!(
            decision.eliminated[0].reason,
            Rejection::ProbesInFlight { .. }
        ));

        // The probe succeeds: acq-a is back.
        let closed = health.record("acq-a", Outcome::Success, after_cool_down);
        assert_eq!(closed.map(|t| t.to), Some(StateName::Closed));
        let decision = decide(&first, &input(), &mut health, 0, after_cool_down);
        assert_eq!(acquirers(&decision), ["acq-a", "acq-b"]);
        assert_eq!(decision.candidates[0].admission, Admitted::Allowed);
    }

    #[test]
    fn unvalidated_routes_do_not_panic() {
        let rules = set(
            vec![
                rule("empty", Conditions::default(), Route::Priority(vec![])),
                rule("never", currencies(&["XXX"]), priority(&["acq-a"])),
            ],
            None,
        );
        let decision = decide(&rules, &input(), &mut HealthBook::default(), 7, t0());
        assert_eq!(
            decision.outcome,
            DecisionOutcome::NoRoute(NoRouteReason::AllCandidatesUnavailable)
        );
        assert!(
            decision
                .explanation
                .contains(&"the route names no acquirer".to_owned())
        );

        let zero = set(
            vec![],
            Some(split(&[("acq-b", 0), ("acq-a", 0), ("acq-a", 5)])),
        );
        let decision = decide(&zero, &input(), &mut HealthBook::default(), 7, t0());
        assert_eq!(acquirers(&decision), ["acq-a", "acq-b"]);
        assert_eq!(
            &decision.explanation[1..],
            [
                "acq-a: listed again in the route, ignored",
                "split: the available acquirers have no weight; by weight, then id: acq-a, acq-b",
            ]
        );
    }

    #[test]
    fn decisions_serialise_to_json() {
        let rules = set(vec![], Some(split(&[("acq-a", 1)])));
        let decision = decide(&rules, &input(), &mut HealthBook::default(), 0, t0());
        let json = serde_json::to_value(&decision).expect("write");
        assert_eq!(json["outcome"], serde_json::json!({"outcome": "routed"}));
        assert_eq!(
            json["candidates"],
            serde_json::json!([{"acquirer": "acq-a", "weight": 1, "admission": "allowed"}])
        );
        assert_eq!(json["usedDefault"], true);
        let back: Decision = serde_json::from_value(json).expect("read");
        assert_eq!(back, decision);
        let none = DecisionOutcome::NoRoute(NoRouteReason::NoRuleMatched);
        assert_eq!(
            serde_json::to_value(none).expect("write"),
            serde_json::json!({"outcome": "no_route", "reason": "no_rule_matched"})
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const POOL: [&str; 5] = ["acq-0", "acq-1", "acq-2", "acq-3", "acq-4"];

        fn acquirer() -> impl Strategy<Value = String> {
            (0..POOL.len()).prop_map(|i| POOL[i].to_owned())
        }

        fn route() -> impl Strategy<Value = Route> {
            prop_oneof![
                proptest::collection::vec(acquirer(), 0..6).prop_map(Route::Priority),
                proptest::collection::vec((acquirer(), 0u32..5), 0..6).prop_map(|entries| {
                    Route::Split(
                        entries
                            .into_iter()
                            .map(|(id, weight)| WeightedAcquirer::new(id, weight))
                            .collect(),
                    )
                }),
                proptest::collection::vec(acquirer(), 1..4).prop_map(|ids| {
                    Route::Split(
                        ids.into_iter()
                            .map(|id| WeightedAcquirer::new(id, u32::MAX))
                            .collect(),
                    )
                }),
            ]
        }

        fn conditions() -> impl Strategy<Value = Conditions> {
            (
                proptest::option::of(("[0-9]{6,8}", "[0-9]{6,8}")),
                proptest::option::of(0usize..CardBrand::ALL.len()),
                proptest::option::of(prop_oneof![Just("EUR"), Just("USD"), Just("eur")]),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(prop_oneof![Just("tg-north"), Just("tg-south")]),
            )
                .prop_map(|(bins, brand, currency, min, max, group)| Conditions {
                    bin_ranges: bins
                        .map(|(low, high)| BinRange::new(low, high))
                        .into_iter()
                        .collect(),
                    brands: brand.map(|i| CardBrand::ALL[i]).into_iter().collect(),
                    currencies: currency.map(str::to_owned).into_iter().collect(),
                    amount_min: min,
                    amount_max: max,
                    terminal_groups: group.map(str::to_owned).into_iter().collect(),
                    ..Conditions::default()
                })
        }

        fn rules() -> impl Strategy<Value = RuleSet> {
            (
                proptest::collection::vec((conditions(), route(), any::<bool>()), 0..6),
                proptest::option::of(route()),
            )
                .prop_map(|(rules, default_route)| RuleSet {
                    version: 1,
                    rules: rules
                        .into_iter()
                        .enumerate()
                        .map(|(i, (conditions, route, enabled))| Rule {
                            id: format!("r{i}"),
                            description: String::new(),
                            conditions,
                            route,
                            enabled,
                        })
                        .collect(),
                    default_route,
                })
        }

        /// Per acquirer: 0 untouched, 1 tripped, 2 tripped and past its cool-down,
        /// 3 forced open, 4 half-open with every probe out.
        fn health_states() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(0u8..5, POOL.len())
        }

        fn book(states: &[u8]) -> (HealthBook, SystemTime) {
            let mut health = HealthBook::new(HealthPolicy {
                min_requests: 1,
                half_open_probes: 1,
                ..HealthPolicy::default()
            });
            let now = at(30_000);
            for (acquirer, state) in POOL.iter().zip(states) {
                match state {
                    1 => {
                        let _ = health.record(acquirer, Outcome::Error, at(29_000));
                    }
                    2 => {
                        let _ = health.record(acquirer, Outcome::Error, t0());
                    }
                    3 => {
                        let _ = health.force_open(acquirer, operator(), t0());
                    }
                    4 => {
                        let _ = health.record(acquirer, Outcome::Timeout, t0());
                        let _ = health.admit(acquirer, now);
                    }
                    _ => {}
                }
            }
            (health, now)
        }

        proptest! {
            #[test]
            fn decide_never_panics_and_candidates_are_sound(
                rules in rules(),
                states in health_states(),
                bin in prop_oneof!["[0-9]{6,11}", ".{0,20}"],
                currency in prop_oneof![Just("EUR"), Just("USD"), Just("")],
                amount in any::<u64>(),
                draw in any::<u64>(),
            ) {
                let (mut health, now) = book(&states);
                let payment = RouteInput {
                    bin: &bin,
                    currency,
                    amount_minor: amount,
                    ..input()
                };
                let decision = decide(&rules, &payment, &mut health, draw, now);

                let route = match &decision.matched_rule {
                    Some(id) => rules.rules.iter().find(|r| &r.id == id).map(|r| &r.route),
                    None => rules.default_route.as_ref().filter(|_| decision.used_default),
                };
                let mut seen = BTreeSet::new();
                for candidate in &decision.candidates {
                    prop_assert!(seen.insert(candidate.acquirer.as_str()), "duplicate candidate");
                    prop_assert!(
                        !decision.eliminated.iter().any(|e| e.acquirer == candidate.acquirer),
                        "eliminated candidate"
                    );
                    let route = route.ok_or_else(|| TestCaseError::fail("candidate without route"))?;
                    prop_assert!(route.contains(&candidate.acquirer), "candidate not in route");
                }
                for elimination in &decision.eliminated {
                    let route = route.ok_or_else(|| TestCaseError::fail("elimination without route"))?;
                    prop_assert!(route.contains(&elimination.acquirer));
                }
                prop_assert_eq!(
                    decision.outcome == DecisionOutcome::Routed,
                    !decision.candidates.is_empty()
                );
                prop_assert!(!(decision.used_default && decision.matched_rule.is_some()));
                if let Some(first) = decision.candidates.first() {
                    let out_for_good = matches!(
                        health.peek(&first.acquirer, now),
                        Admission::Rejected(Rejection::CircuitOpen { .. } | Rejection::ForcedOpen { .. })
                    );
                    prop_assert!(!out_for_good, "first candidate is out");
                }
            }
        }
    }
}
