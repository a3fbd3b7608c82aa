//! The simulator's decision rules: pure, no I/O.
//!
//! A rules file (JSON) holds an ordered list of rules and a card table:
//!
//! ```json
//! {
//!   "cards": [{ "pan": "4761739001010010", "pvv": "1226", "pvki": 1 }],
//!   "rules": [
//!     { "name": "pin cards", "when": { "pan_prefix": "476173" }, "then": "verify_pin" },
//!     { "name": "chip", "when": { "mti": "0200" }, "then": { "verify_arqc": { "failure_code": "05" } } },
//!     { "name": "too much", "when": { "amount_min": 100000 }, "then": { "decline": "51" } },
//!     { "name": "stolen range", "when": { "pan_range": ["4000000000", "4000009999"] }, "then": { "decline": "14" } },
//!     { "name": "euros", "when": { "currency": "978" }, "then": "approve" }
//!   ]
//! }
//! ```
//!
//! Every rule whose conditions all hold is considered, in order. A check rule (`verify_pin`,
//! `verify_arqc`) adds its check and evaluation goes on with the next rule; the first final
//! rule (`approve`, `decline`) ends it. Without a final rule the request is approved. The
//! host runs the checks in order before the final outcome: the first failing check declines
//! with its code (`55` for a wrong PIN, the rule's `failure_code`, default `05`, for an ARQC).
//!
//! Conditions (all optional, all must hold):
//!
//! | condition | holds when |
//! |---|---|
//! | `pan_prefix` | the PAN starts with this string of digits |
//! | `pan_range: [low, high]` | the PAN's first `len(low)` digits are within `low..=high` (equal lengths) |
//! | `amount_min`, `amount_max` | the amount in minor units is within the bounds (inclusive) |
//! | `currency` | field 49 equals this ISO 4217 numeric code |
//! | `processing_code` | field 3 starts with this (e.g. `20` for refunds, `000000`) |
//! | `mti` | the request's MTI equals this (e.g. `0100`) |

use std::fmt;

use serde::Deserialize;
use zeroize::Zeroize;

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not valid JSON or not the rules file shape.
    #[error("rules file: {0}")]
    Syntax(String),
    /// A value is out of range (the message names the rule, never card data).
    #[error("rules file: {0}")]
    Invalid(String),
}

/// What the request looks like, for the conditions.
#[derive(Clone, Copy, Debug)]
pub struct RuleInput<'a> {
    /// The request's MTI, e.g. `0200`.
    pub mti: &'a str,
    /// The PAN digits (from field 2 or track 2).
    pub pan: &'a str,
    /// Field 4, minor units.
    pub amount_minor: u64,
    /// Field 49.
    pub currency: &'a str,
    /// Field 3.
    pub processing_code: &'a str,
}

/// Conditions of a rule; all present ones must hold.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// PAN prefix (digits).
    #[serde(default)]
    pub pan_prefix: Option<String>,
    /// PAN range: both bounds of equal length; the PAN's leading digits of that length.
    #[serde(default)]
    pub pan_range: Option<(String, String)>,
    /// Smallest amount (inclusive), minor units.
    #[serde(default)]
    pub amount_min: Option<u64>,
    /// Largest amount (inclusive), minor units.
    #[serde(default)]
    pub amount_max: Option<u64>,
    /// Currency (3 digits).
    #[serde(default)]
    pub currency: Option<String>,
    /// Processing code prefix.
    #[serde(default)]
    pub processing_code: Option<String>,
    /// MTI.
    #[serde(default)]
    pub mti: Option<String>,
}

impl fmt::Debug for Conditions {
    /// PAN bounds are test card data all the same: printed by length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conditions")
            .field("pan_prefix_len", &self.pan_prefix.as_ref().map(String::len))
            .field("pan_range", &self.pan_range.is_some())
            .field("amount_min", &self.amount_min)
            .field("amount_max", &self.amount_max)
            .field("currency", &self.currency)
            .field("processing_code", &self.processing_code)
            .field("mti", &self.mti)
            .finish()
    }
}

impl Conditions {
    /// Whether every present condition holds for `input`.
    pub fn matches(&self, input: &RuleInput<'_>) -> bool {
        if let Some(prefix) = &self.pan_prefix
            && !input.pan.starts_with(prefix.as_str())
        {
            return false;
        }
        if let Some((low, high)) = &self.pan_range {
            let Some(head) = input.pan.get(..low.len()) else {
                return false;
            };
            // Equal-length digit strings compare like the numbers they spell.
            if head < low.as_str() || head > high.as_str() {
                return false;
            }
        }
        if self.amount_min.is_some_and(|min| input.amount_minor < min)
            || self.amount_max.is_some_and(|max| input.amount_minor > max)
        {
            return false;
        }
        if self
            .currency
            .as_deref()
            .is_some_and(|currency| currency != input.currency)
        {
            return false;
        }
        if self
            .processing_code
            .as_deref()
            .is_some_and(|code| !input.processing_code.starts_with(code))
        {
            return false;
        }
        if self.mti.as_deref().is_some_and(|mti| mti != input.mti) {
            return false;
        }
        true
    }

    fn validate(&self, rule: &str) -> Result<(), RulesError> {
        let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        let invalid = |what: &str| RulesError::Invalid(format!("rule {rule:?}: {what}"));
        if let Some(prefix) = &self.pan_prefix
            && (!digits(prefix) || prefix.len() > 19)
        {
            return Err(invalid("pan_prefix must be 1 to 19 digits"));
        }
        if let Some((low, high)) = &self.pan_range
            && (!digits(low) || !digits(high) || low.len() != high.len() || low > high)
        {
            return Err(invalid(
                "pan_range must be two digit strings of equal length, low <= high",
            ));
        }
        if let (Some(min), Some(max)) = (self.amount_min, self.amount_max)
            && min > max
        {
            return Err(invalid("amount_min is above amount_max"));
        }
        if let Some(currency) = &self.currency
            && (currency.len() != 3 || !digits(currency))
        {
            return Err(invalid("currency must be 3 digits"));
        }
        if let Some(code) = &self.processing_code
            && (code.len() > 6 || !digits(code))
        {
            return Err(invalid("processing_code must be 1 to 6 digits"));
        }
        if let Some(mti) = &self.mti
            && (mti.len() != 4 || !digits(mti))
        {
            return Err(invalid("mti must be 4 digits"));
        }
        Ok(())
    }
}

/// Options of the ARQC check.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ArqcOptions {
    /// The response code when the ARQC does not verify (default `05`).
    #[serde(default)]
    pub failure_code: Option<String>,
}

/// What a rule does.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Approve (`00`, an authorisation code generated). Final.
    Approve,
    /// Decline with this response code. Final.
    Decline(String),
    /// Check the PIN block (field 52) against the PVV on file; a wrong PIN declines `55`,
    /// a card without a PVV on file or a request without a PIN block declines `55` too.
    VerifyPin,
    /// Check the ARQC in field 55; put the ARPC in tag 91 of the answer.
    VerifyArqc(ArqcOptions),
}

/// One rule.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for logs and errors.
    #[serde(default)]
    pub name: String,
    /// When the rule applies (no conditions: always).
    #[serde(default)]
    pub when: Conditions,
    /// What it does.
    pub then: Action,
}

/// A card on file, for PIN verification.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// The PAN.
    pub pan: String,
    /// The Visa PVV on file (4 digits).
    pub pvv: String,
    /// The PIN verification key index (0–6), default 1.
    #[serde(default = "default_pvki")]
    pub pvki: u8,
}

fn default_pvki() -> u8 {
    1
}

impl Drop for Card {
    fn drop(&mut self) {
        self.pan.zeroize();
        self.pvv.zeroize();
    }
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last4 = self.pan.get(self.pan.len().saturating_sub(4)..);
        f.debug_struct("Card")
            .field("pan_last4", &last4.unwrap_or_default())
            .field("pvv", &"***")
            .field("pvki", &self.pvki)
            .finish()
    }
}

/// A check the host runs before the final outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// PIN against the PVV on file.
    Pin,
    /// ARQC; decline with `failure_code` when it does not verify.
    Arqc {
        /// The decline code.
        failure_code: String,
    },
}

/// The final outcome when every check passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Approve.
    Approve,
    /// Decline with this code.
    Decline(String),
}

/// What the rules decided for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// Checks to run, in order.
    pub checks: Vec<Check>,
    /// The outcome when they all pass.
    pub outcome: Outcome,
    /// The name of the rule that decided the outcome (`None`: the default approval).
    pub rule: Option<String>,
}

/// The ordered rules and the card table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Rules, in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Cards with a PVV on file.
    #[serde(default)]
    pub cards: Vec<Card>,
}

/// The ARQC decline code when a rule names none.
pub const DEFAULT_ARQC_FAILURE_CODE: &str = "05";
/// The decline code of a wrong PIN (ISO 8583:1987 "incorrect PIN").
pub const WRONG_PIN_CODE: &str = "55";

impl RuleSet {
    /// No rules: approve everything.
    pub fn approve_all() -> Self {
        Self::default()
    }

    /// Parses and validates a rules file.
    pub fn from_json(text: &str) -> Result<Self, RulesError> {
        // Only the position: serde_json's own message may quote a value (card data).
        let set: Self = serde_json::from_str(text).map_err(|error| {
            RulesError::Syntax(format!(
                "{:?} error at line {} column {}",
                error.classify(),
                error.line(),
                error.column()
            ))
        })?;
        set.validate()?;
        Ok(set)
    }

    fn validate(&self) -> Result<(), RulesError> {
        let code_ok =
            |code: &str| code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphanumeric());
        for (index, rule) in self.rules.iter().enumerate() {
            let name = if rule.name.is_empty() {
                format!("#{}", index + 1)
            } else {
                rule.name.clone()
            };
            rule.when.validate(&name)?;
            match &rule.then {
                Action::Decline(code) if !code_ok(code) => {
                    return Err(RulesError::Invalid(format!(
                        "rule {name:?}: a decline code is 2 characters"
                    )));
                }
                Action::VerifyArqc(ArqcOptions {
                    failure_code: Some(code),
                }) if !code_ok(code) => {
                    return Err(RulesError::Invalid(format!(
                        "rule {name:?}: failure_code is 2 characters"
                    )));
                }
                _ => {}
            }
        }
        for (index, card) in self.cards.iter().enumerate() {
            let digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
            if !(12..=19).contains(&card.pan.len()) || !digits(&card.pan) {
                return Err(RulesError::Invalid(format!(
                    "card #{}: pan must be 12 to 19 digits",
                    index + 1
                )));
            }
            if card.pvv.len() != 4 || !digits(&card.pvv) {
                return Err(RulesError::Invalid(format!(
                    "card #{}: pvv must be 4 digits",
                    index + 1
                )));
            }
            if card.pvki > 9 {
                return Err(RulesError::Invalid(format!(
                    "card #{}: pvki must be one digit",
                    index + 1
                )));
            }
        }
        Ok(())
    }

    /// Evaluates the rules for one request.
    pub fn evaluate(&self, input: &RuleInput<'_>) -> Evaluation {
        let mut checks = Vec::new();
        for rule in &self.rules {
            if !rule.when.matches(input) {
                continue;
            }
            let name = || Some(rule.name.clone());
            match &rule.then {
                Action::Approve => {
                    return Evaluation {
                        checks,
                        outcome: Outcome::Approve,
                        rule: name(),
                    };
                }
                Action::Decline(code) => {
                    return Evaluation {
                        checks,
                        outcome: Outcome::Decline(code.clone()),
                        rule: name(),
                    };
                }
                Action::VerifyPin => {
                    if !checks.contains(&Check::Pin) {
                        checks.push(Check::Pin);
                    }
                }
                Action::VerifyArqc(options) => {
                    if !checks
                        .iter()
                        .any(|check| matches!(check, Check::Arqc { .. }))
                    {
                        checks.push(Check::Arqc {
                            failure_code: options
                                .failure_code
                                .clone()
                                .unwrap_or_else(|| DEFAULT_ARQC_FAILURE_CODE.to_owned()),
                        });
                    }
                }
            }
        }
        Evaluation {
            checks,
            outcome: Outcome::Approve,
            rule: None,
        }
    }

    /// The card on file with this PAN.
    pub fn card(&self, pan: &str) -> Option<&Card> {
        self.cards.iter().find(|card| card.pan == pan)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn input<'a>(pan: &'a str, amount: u64) -> RuleInput<'a> {
        RuleInput {
            mti: "0200",
            pan,
            amount_minor: amount,
            currency: "978",
            processing_code: "000000",
        }
    }

    const FILE: &str = r#"{
        "cards": [{ "pan": "4761739001010010", "pvv": "1226", "pvki": 1 }],
        "rules": [
            { "name": "pin", "when": { "pan_prefix": "476173" }, "then": "verify_pin" },
            { "name": "chip", "when": { "mti": "0200" }, "then": { "verify_arqc": {} } },
            { "name": "too much", "when": { "amount_min": 100000 }, "then": { "decline": "51" } },
            { "name": "stolen", "when": { "pan_range": ["4000000000", "4000009999"] }, "then": { "decline": "14" } },
            { "name": "refunds", "when": { "processing_code": "20", "currency": "978" }, "then": "approve" },
            { "name": "dollars", "when": { "currency": "840", "amount_max": 500 }, "then": { "decline": "13" } }
        ]
    }"#;

    #[test]
    fn parses_and_evaluates_in_order() {
        let set = RuleSet::from_json(FILE).unwrap();
        assert_eq!(set.rules.len(), 6);
        let evaluation = set.evaluate(&input("4761739001010010", 1_000));
        assert_eq!(
            evaluation.checks,
            vec![
                Check::Pin,
                Check::Arqc {
                    failure_code: "05".into()
                }
            ]
        );
        assert_eq!(evaluation.outcome, Outcome::Approve);
        assert_eq!(evaluation.rule, None);

        let big = set.evaluate(&input("5100000000000000", 100_000));
        assert_eq!(big.outcome, Outcome::Decline("51".into()));
        assert_eq!(big.rule.as_deref(), Some("too much"));
        assert_eq!(
            set.evaluate(&input("5100000000000000", 99_999)).outcome,
            Outcome::Approve
        );
    }

    #[test]
    fn pan_range_is_inclusive_over_the_bound_length() {
        let set = RuleSet::from_json(FILE).unwrap();
        for (pan, declined) in [
            ("4000000000000002", true),
            ("4000009999999999", true),
            ("4000010000000000", false),
            ("3999999999999999", false),
        ] {
            let outcome = set.evaluate(&input(pan, 10)).outcome;
            assert_eq!(outcome == Outcome::Decline("14".into()), declined, "{pan}");
        }
    }

    #[test]
    fn processing_code_currency_and_mti() {
        let set = RuleSet::from_json(FILE).unwrap();
        let mut refund = input("5100000000000000", 200_000);
        refund.processing_code = "200000";
        refund.mti = "0100";
        // "too much" comes first and still declines: order matters.
        assert_eq!(set.evaluate(&refund).outcome, Outcome::Decline("51".into()));
        refund.amount_minor = 10;
        let evaluation = set.evaluate(&refund);
        assert_eq!(evaluation.rule.as_deref(), Some("refunds"));
        assert!(
            evaluation.checks.is_empty(),
            "the chip rule is for 0200 only"
        );

        let mut dollars = input("5100000000000000", 500);
        dollars.currency = "840";
        assert_eq!(
            set.evaluate(&dollars).outcome,
            Outcome::Decline("13".into())
        );
        dollars.amount_minor = 501;
        assert_eq!(set.evaluate(&dollars).outcome, Outcome::Approve);
    }

    #[test]
    fn arqc_failure_code_and_card_table() {
        let set = RuleSet::from_json(
            r#"{"rules":[{"then":{"verify_arqc":{"failure_code":"N7"}}}],
                "cards":[{"pan":"4761739001010010","pvv":"1226"}]}"#,
        )
        .unwrap();
        assert_eq!(
            set.evaluate(&input("4761739001010010", 1)).checks,
            vec![Check::Arqc {
                failure_code: "N7".into()
            }]
        );
        let card = set.card("4761739001010010").unwrap();
        assert_eq!(card.pvki, 1);
        assert!(set.card("4761739001010011").is_none());
        let printed = format!("{card:?}");
        assert!(!printed.contains("476173900101"), "{printed}");
        assert!(!printed.contains("1226"), "{printed}");
    }

    #[test]
    fn empty_set_approves() {
        let evaluation = RuleSet::approve_all().evaluate(&input("5100000000000000", 1));
        assert_eq!(evaluation.outcome, Outcome::Approve);
        assert!(evaluation.checks.is_empty());
    }

    #[test]
    fn refuses_bad_files() {
        for bad in [
            "not json",
            r#"{"rules":[{"then":"explode"}]}"#,
            r#"{"rules":[{"then":{"decline":"5"}}]}"#,
            r#"{"rules":[{"when":{"pan_range":["4000","39999"]},"then":"approve"}]}"#,
            r#"{"rules":[{"when":{"pan_range":["5000","4000"]},"then":"approve"}]}"#,
            r#"{"rules":[{"when":{"currency":"EUR"},"then":"approve"}]}"#,
            r#"{"rules":[{"when":{"amount_min":5,"amount_max":4},"then":"approve"}]}"#,
            r#"{"rules":[{"when":{"mti":"200"},"then":"approve"}]}"#,
            r#"{"rules":[{"when":{"colour":"red"},"then":"approve"}]}"#,
            r#"{"cards":[{"pan":"4761","pvv":"1226"}]}"#,
            r#"{"cards":[{"pan":"4761739001010010","pvv":"12a6"}]}"#,
        ] {
            assert!(RuleSet::from_json(bad).is_err(), "{bad}");
        }
    }
}
