//! A tenant's routing rules: their types (serialised as JSON with camelCase fields),
//! [`RuleSet::validate`], and condition matching with an explanation ([`explain_match`]).
//!
//! Messages never echo input that might be card data: a BIN is shown to its first six
//! digits at most, and free text (merchant ids, terminal groups, currencies, MCCs that do
//! not have their expected shape) is shown only when it is short and of plain characters,
//! otherwise replaced by its length.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::brand::CardBrand;

/// The most rules a [`RuleSet`] may hold.
pub const MAX_RULES: usize = 1_000;
/// The most entries a single condition list of a rule may hold (e.g. 100 BIN ranges).
pub const MAX_CONDITIONS: usize = 100;
/// The most acquirers a single route may name.
pub const MAX_ROUTE_ACQUIRERS: usize = 100;
/// The longest rule id, in characters.
pub const MAX_RULE_ID_CHARS: usize = 64;

/// How the card was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryMode {
    /// Contact chip (`chip`).
    Chip,
    /// Contactless (`contactless`).
    Contactless,
    /// Magnetic stripe, the card having no chip (`swipe`).
    Swipe,
    /// Magnetic stripe after the chip failed (`swipe_fallback`).
    SwipeFallback,
}

impl EntryMode {
    /// The name used in JSON and explanations.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryMode::Chip => "chip",
            EntryMode::Contactless => "contactless",
            EntryMode::Swipe => "swipe",
            EntryMode::SwipeFallback => "swipe_fallback",
        }
    }
}

impl fmt::Display for EntryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the payment does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionType {
    /// A sale (`purchase`).
    Purchase,
    /// A refund (`refund`).
    Refund,
    /// An authorisation to be completed later (`pre_authorization`).
    PreAuthorization,
    /// The completion of a pre-authorisation (`completion`).
    Completion,
}

impl TransactionType {
    /// The name used in JSON and explanations.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransactionType::Purchase => "purchase",
            TransactionType::Refund => "refund",
            TransactionType::PreAuthorization => "pre_authorization",
            TransactionType::Completion => "completion",
        }
    }
}

impl fmt::Display for TransactionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the routing service knows about a payment when it routes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteInput<'a> {
    /// The first 6 to 11 digits of the PAN, never the full PAN. Anything else is treated as
    /// malformed: no BIN range matches it and its brand is [`CardBrand::Unknown`].
    pub bin: &'a str,
    /// The number of digits of the PAN. Carried for the service; no condition uses it yet.
    pub pan_length: u8,
    /// ISO 4217 alphabetic code, e.g. `EUR`, compared exactly.
    pub currency: &'a str,
    /// The amount in minor units of the currency.
    pub amount_minor: u64,
    /// The merchant's id, compared exactly.
    pub merchant_id: &'a str,
    /// The merchant category code, 4 digits.
    pub mcc: &'a str,
    /// The terminal's group, if it has one.
    #[serde(borrow)]
    pub terminal_group: Option<&'a str>,
    /// How the card was read.
    pub entry_mode: EntryMode,
    /// What the payment does.
    pub transaction_type: TransactionType,
}

impl RouteInput<'_> {
    /// Whether [`RouteInput::bin`] is 6 to 11 ASCII digits.
    pub fn bin_is_well_formed(&self) -> bool {
        is_digits(self.bin, BinRange::MIN_DIGITS..=BinRange::MAX_DIGITS)
    }

    /// The card brand of the BIN; [`CardBrand::Unknown`] for a malformed BIN.
    pub fn brand(&self) -> CardBrand {
        if self.bin_is_well_formed() {
            CardBrand::from_bin(self.bin)
        } else {
            CardBrand::Unknown
        }
    }
}

/// A range of BINs, both ends inclusive: equal-length strings of 6 to 11 digits. A BIN is in
/// the range when its first `low.len()` digits are; a BIN with fewer digits is not.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BinRange {
    /// The low end, e.g. `"40000000"`.
    pub low: String,
    /// The high end, as many digits as `low`, e.g. `"40000099"`.
    pub high: String,
}

impl BinRange {
    /// The fewest digits of an end.
    pub const MIN_DIGITS: usize = 6;
    /// The most digits of an end.
    pub const MAX_DIGITS: usize = 11;

    /// A range from its two ends (not checked: see [`BinRange::check`]).
    pub fn new(low: impl Into<String>, high: impl Into<String>) -> Self {
        Self {
            low: low.into(),
            high: high.into(),
        }
    }

    /// The first problem of the range, if any.
    pub fn check(&self) -> Result<(), BinRangeProblem> {
        for (end, text) in [(RangeEnd::Low, &self.low), (RangeEnd::High, &self.high)] {
            if !text.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(BinRangeProblem::NotDigits { end });
            }
            if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&text.len()) {
                return Err(BinRangeProblem::Length {
                    end,
                    length: text.len(),
                });
            }
        }
        if self.low.len() != self.high.len() {
            return Err(BinRangeProblem::UnequalLengths {
                low: self.low.len(),
                high: self.high.len(),
            });
        }
        // Equal-length digit strings order like the numbers they spell.
        if self.low > self.high {
            return Err(BinRangeProblem::LowAboveHigh);
        }
        Ok(())
    }

    /// Whether a BIN of 6 to 11 digits is in the range. A malformed range contains nothing.
    pub fn contains(&self, bin: &str) -> bool {
        let digits = self.low.len();
        self.check().is_ok()
            && is_digits(bin, BinRange::MIN_DIGITS..=BinRange::MAX_DIGITS)
            && bin.len() >= digits
            && (self.low.as_str()..=self.high.as_str()).contains(&&bin[..digits])
    }
}

impl fmt::Display for BinRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.check().is_ok() {
            write!(f, "{}-{}", self.low, self.high)
        } else {
            f.write_str("<malformed range>")
        }
    }
}

/// Which end of a [`BinRange`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeEnd {
    /// `low`.
    Low,
    /// `high`.
    High,
}

impl RangeEnd {
    /// The JSON field name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RangeEnd::Low => "low",
            RangeEnd::High => "high",
        }
    }
}

/// Why a [`BinRange`] is malformed. Displayed as the rest of a field path and a reason,
/// e.g. `.low: must be 6 to 11 digits, got 5`; the digits themselves are never shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "problem",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum BinRangeProblem {
    /// An end holds something other than ASCII digits.
    NotDigits {
        /// Which end.
        end: RangeEnd,
    },
    /// An end has fewer than 6 or more than 11 digits.
    Length {
        /// Which end.
        end: RangeEnd,
        /// How many characters it has.
        length: usize,
    },
    /// The ends differ in length.
    UnequalLengths {
        /// Digits of `low`.
        low: usize,
        /// Digits of `high`.
        high: usize,
    },
    /// `low` is greater than `high`.
    LowAboveHigh,
}

impl fmt::Display for BinRangeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinRangeProblem::NotDigits { end } => {
                write!(f, ".{}: must hold only the digits 0-9", end.as_str())
            }
            BinRangeProblem::Length { end, length } => write!(
                f,
                ".{}: must be {} to {} digits, got {length}",
                end.as_str(),
                BinRange::MIN_DIGITS,
                BinRange::MAX_DIGITS
            ),
            BinRangeProblem::UnequalLengths { low, high } => write!(
                f,
                ".high: has {high} digits, low has {low}: both ends must have the same length"
            ),
            BinRangeProblem::LowAboveHigh => f.write_str(": low must not be greater than high"),
        }
    }
}

/// The conditions of a rule. Every condition that is present must hold; an empty list (or
/// an absent amount bound) accepts anything. Within a list, any one entry suffices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conditions {
    /// The BIN is in one of these ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bin_ranges: Vec<BinRange>,
    /// The card brand (from [`CardBrand::from_bin`]) is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brands: Vec<CardBrand>,
    /// The currency is one of these ISO 4217 alphabetic codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub currencies: Vec<String>,
    /// The amount is at least this, in minor units (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_min: Option<u64>,
    /// The amount is at most this, in minor units (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_max: Option<u64>,
    /// The merchant id is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merchants: Vec<String>,
    /// The MCC is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mccs: Vec<String>,
    /// The terminal group is one of these (a terminal without a group never matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terminal_groups: Vec<String>,
    /// The entry mode is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_modes: Vec<EntryMode>,
    /// The transaction type is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transaction_types: Vec<TransactionType>,
}

/// An acquirer of a [`Route::Split`] with its share of the volume.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedAcquirer {
    /// The acquirer's id.
    pub acquirer: String,
    /// Its weight: its share of the volume is `weight / total weight` of the admitted ones.
    pub weight: u32,
}

impl WeightedAcquirer {
    /// An acquirer with a weight.
    pub fn new(acquirer: impl Into<String>, weight: u32) -> Self {
        Self {
            acquirer: acquirer.into(),
            weight,
        }
    }
}

/// Where the payments of a rule go. JSON: `{"priority": ["acq-a", "acq-b"]}` or
/// `{"split": [{"acquirer": "acq-a", "weight": 70}, {"acquirer": "acq-b", "weight": 30}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Route {
    /// Acquirer ids: the first preferred, the rest fallbacks in list order.
    Priority(Vec<String>),
    /// The volume split by weight; the acquirers not chosen follow as fallbacks by weight,
    /// highest first, then by id (see [`crate::decide()`]).
    Split(Vec<WeightedAcquirer>),
}

impl Route {
    /// The acquirer ids in configured order.
    pub fn acquirers(&self) -> Vec<&str> {
        match self {
            Route::Priority(ids) => ids.iter().map(String::as_str).collect(),
            Route::Split(entries) => entries.iter().map(|e| e.acquirer.as_str()).collect(),
        }
    }

    /// Whether the route names the acquirer.
    pub fn contains(&self, acquirer: &str) -> bool {
        self.acquirers().contains(&acquirer)
    }

    /// `priority` or `split`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Route::Priority(_) => "priority",
            Route::Split(_) => "split",
        }
    }

    fn len(&self) -> usize {
        match self {
            Route::Priority(ids) => ids.len(),
            Route::Split(entries) => entries.len(),
        }
    }
}

fn enabled_by_default() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// One routing rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Unique within the set: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// Free text for the operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What the payment must look like.
    #[serde(default)]
    pub conditions: Conditions,
    /// Where matching payments go.
    pub route: Route,
    /// A disabled rule is skipped (and says so in the explanation). Defaults to `true`.
    #[serde(default = "enabled_by_default", skip_serializing_if = "is_true")]
    pub enabled: bool,
}

/// A tenant's rules, versioned as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSet {
    /// The version, reported in every decision.
    pub version: u64,
    /// Evaluated in order; the first enabled rule whose conditions hold wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Used when no rule matches; without it such payments get no route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route: Option<Route>,
}

/// A condition list of [`Conditions`], for [`RuleError::TooManyConditions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConditionField {
    /// `binRanges`.
    BinRanges,
    /// `brands`.
    Brands,
    /// `currencies`.
    Currencies,
    /// `merchants`.
    Merchants,
    /// `mccs`.
    Mccs,
    /// `terminalGroups`.
    TerminalGroups,
    /// `entryModes`.
    EntryModes,
    /// `transactionTypes`.
    TransactionTypes,
}

impl ConditionField {
    /// The JSON field name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionField::BinRanges => "binRanges",
            ConditionField::Brands => "brands",
            ConditionField::Currencies => "currencies",
            ConditionField::Merchants => "merchants",
            ConditionField::Mccs => "mccs",
            ConditionField::TerminalGroups => "terminalGroups",
            ConditionField::EntryModes => "entryModes",
            ConditionField::TransactionTypes => "transactionTypes",
        }
    }
}

impl fmt::Display for ConditionField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule an error is about: its position and its id. Displayed as `rule <id>`, or as
/// `rules[<index>]` when the id itself is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRef {
    /// The position in [`RuleSet::rules`].
    pub index: usize,
    /// The rule's id as written.
    pub id: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_valid_rule_id(&self.id) {
            write!(f, "rule {}", self.id)
        } else {
            write!(f, "rules[{}]", self.index)
        }
    }
}

/// The route an error is about. Displayed as `rule <id>: route` or `defaultRoute`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteRef {
    /// The route of a rule.
    Rule(RuleRef),
    /// [`RuleSet::default_route`].
    Default,
}

impl fmt::Display for RouteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteRef::Rule(rule) => write!(f, "{rule}: route"),
            RouteRef::Default => f.write_str("defaultRoute"),
        }
    }
}

/// One problem of a [`RuleSet`], naming the rule and the field. [`RuleSet::validate`]
/// collects all of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(
    tag = "error",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum RuleError {
    /// More than [`MAX_RULES`] rules.
    #[error("rules: {count} rules, at most {max} allowed")]
    TooManyRules {
        /// How many there are.
        count: usize,
        /// [`MAX_RULES`].
        max: usize,
    },
    /// A rule id that is empty, too long or has characters other than `A-Z a-z 0-9 . _ -`.
    #[error(
        "{rule}: id: must be 1 to {MAX_RULE_ID_CHARS} characters of A-Z, a-z, 0-9, '.', '_' \
         and '-', got {length} characters"
    )]
    InvalidRuleId {
        /// The rule.
        rule: RuleRef,
        /// The id's length in characters.
        length: usize,
    },
    /// A rule id already used by an earlier rule.
    #[error("{rule}: id: already used by rules[{first_index}]")]
    DuplicateRuleId {
        /// The later rule.
        rule: RuleRef,
        /// The position of the first rule with that id.
        first_index: usize,
    },
    /// A condition list with more than [`MAX_CONDITIONS`] entries.
    #[error("{rule}: conditions.{field}: {count} entries, at most {max} allowed")]
    TooManyConditions {
        /// The rule.
        rule: RuleRef,
        /// The list.
        field: ConditionField,
        /// How many entries it has.
        count: usize,
        /// [`MAX_CONDITIONS`].
        max: usize,
    },
    /// A malformed BIN range.
    #[error("{rule}: conditions.binRanges[{index}]{problem}")]
    InvalidBinRange {
        /// The rule.
        rule: RuleRef,
        /// The position in the list.
        index: usize,
        /// What is wrong.
        problem: BinRangeProblem,
    },
    /// A currency that is not 3 uppercase ASCII letters.
    #[error("{rule}: conditions.currencies[{index}]: must be 3 uppercase letters (ISO 4217)")]
    InvalidCurrency {
        /// The rule.
        rule: RuleRef,
        /// The position in the list.
        index: usize,
    },
    /// An MCC that is not 4 ASCII digits.
    #[error("{rule}: conditions.mccs[{index}]: must be 4 digits (ISO 18245)")]
    InvalidMcc {
        /// The rule.
        rule: RuleRef,
        /// The position in the list.
        index: usize,
    },
    /// `amountMin` greater than `amountMax`.
    #[error("{rule}: conditions.amountMin: must not exceed amountMax ({min} > {max})")]
    AmountRangeInverted {
        /// The rule.
        rule: RuleRef,
        /// `amountMin`.
        min: u64,
        /// `amountMax`.
        max: u64,
    },
    /// A route without acquirers.
    #[error("{route}: must name at least one acquirer")]
    EmptyRoute {
        /// The route.
        route: RouteRef,
    },
    /// A route with more than [`MAX_ROUTE_ACQUIRERS`] acquirers.
    #[error("{route}: {count} acquirers, at most {max} allowed")]
    TooManyAcquirers {
        /// The route.
        route: RouteRef,
        /// How many it names.
        count: usize,
        /// [`MAX_ROUTE_ACQUIRERS`].
        max: usize,
    },
    /// An acquirer named twice in one route.
    #[error("{route}[{index}]: acquirer {} already appears at [{first_index}]", shown(.acquirer))]
    DuplicateAcquirer {
        /// The route.
        route: RouteRef,
        /// The position of the repetition.
        index: usize,
        /// The position of the first mention.
        first_index: usize,
        /// The acquirer id.
        acquirer: String,
    },
    /// An acquirer id that is not among the known acquirers.
    #[error("{route}[{index}]: unknown acquirer {}", shown(.acquirer))]
    UnknownAcquirer {
        /// The route.
        route: RouteRef,
        /// The position in the route.
        index: usize,
        /// The acquirer id.
        acquirer: String,
    },
    /// A split weight of 0.
    #[error("{route}[{index}].weight: must be at least 1 (acquirer {})", shown(.acquirer))]
    ZeroWeight {
        /// The route.
        route: RouteRef,
        /// The position in the route.
        index: usize,
        /// The acquirer id.
        acquirer: String,
    },
    /// A split whose weights add up to 0.
    #[error("{route}: the weights add up to 0, so no acquirer would get any volume")]
    TotalWeightZero {
        /// The route.
        route: RouteRef,
    },
    /// A split whose weights add up to more than `u32::MAX`.
    #[error("{route}: the weights add up to more than {}", u32::MAX)]
    WeightOverflow {
        /// The route.
        route: RouteRef,
    },
}

impl RuleError {
    /// The rule the error is about, if it is about one rule (the set-level and
    /// default-route errors are not).
    pub fn rule(&self) -> Option<&RuleRef> {
        match self {
            RuleError::TooManyRules { .. } => None,
            RuleError::InvalidRuleId { rule, .. }
            | RuleError::DuplicateRuleId { rule, .. }
            | RuleError::TooManyConditions { rule, .. }
            | RuleError::InvalidBinRange { rule, .. }
            | RuleError::InvalidCurrency { rule, .. }
            | RuleError::InvalidMcc { rule, .. }
            | RuleError::AmountRangeInverted { rule, .. } => Some(rule),
            RuleError::EmptyRoute { route }
            | RuleError::TooManyAcquirers { route, .. }
            | RuleError::DuplicateAcquirer { route, .. }
            | RuleError::UnknownAcquirer { route, .. }
            | RuleError::ZeroWeight { route, .. }
            | RuleError::TotalWeightZero { route }
            | RuleError::WeightOverflow { route } => match route {
                RouteRef::Rule(rule) => Some(rule),
                RouteRef::Default => None,
            },
        }
    }
}

impl RuleSet {
    /// Checks the whole set against the tenant's acquirers and returns every problem found,
    /// in rule order (set-level first, the default route last).
    pub fn validate(&self, known_acquirers: &BTreeSet<String>) -> Result<(), Vec<RuleError>> {
        let mut errors = Vec::new();
        if self.rules.len() > MAX_RULES {
            errors.push(RuleError::TooManyRules {
                count: self.rules.len(),
                max: MAX_RULES,
            });
        }
        let mut first_by_id: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let at = RuleRef {
                index,
                id: rule.id.clone(),
            };
            if !is_valid_rule_id(&rule.id) {
                errors.push(RuleError::InvalidRuleId {
                    rule: at.clone(),
                    length: rule.id.chars().count(),
                });
            } else if let Some(&first_index) = first_by_id.get(rule.id.as_str()) {
                errors.push(RuleError::DuplicateRuleId {
                    rule: at.clone(),
                    first_index,
                });
            } else {
                first_by_id.insert(&rule.id, index);
            }
            validate_conditions(&rule.conditions, &at, &mut errors);
            validate_route(
                &rule.route,
                RouteRef::Rule(at),
                known_acquirers,
                &mut errors,
            );
        }
        if let Some(route) = &self.default_route {
            validate_route(route, RouteRef::Default, known_acquirers, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn validate_conditions(conditions: &Conditions, rule: &RuleRef, errors: &mut Vec<RuleError>) {
    let counts = [
        (ConditionField::BinRanges, conditions.bin_ranges.len()),
        (ConditionField::Brands, conditions.brands.len()),
        (ConditionField::Currencies, conditions.currencies.len()),
        (ConditionField::Merchants, conditions.merchants.len()),
        (ConditionField::Mccs, conditions.mccs.len()),
        (
            ConditionField::TerminalGroups,
            conditions.terminal_groups.len(),
        ),
        (ConditionField::EntryModes, conditions.entry_modes.len()),
        (
            ConditionField::TransactionTypes,
            conditions.transaction_types.len(),
        ),
    ];
    for (field, count) in counts {
        if count > MAX_CONDITIONS {
            errors.push(RuleError::TooManyConditions {
                rule: rule.clone(),
                field,
                count,
                max: MAX_CONDITIONS,
            });
        }
    }
    for (index, range) in conditions.bin_ranges.iter().enumerate() {
        if let Err(problem) = range.check() {
            errors.push(RuleError::InvalidBinRange {
                rule: rule.clone(),
                index,
                problem,
            });
        }
    }
    for (index, currency) in conditions.currencies.iter().enumerate() {
        if !is_currency(currency) {
            errors.push(RuleError::InvalidCurrency {
                rule: rule.clone(),
                index,
            });
        }
    }
    for (index, mcc) in conditions.mccs.iter().enumerate() {
        if !is_digits(mcc, 4..=4) {
            errors.push(RuleError::InvalidMcc {
                rule: rule.clone(),
                index,
            });
        }
    }
    if let (Some(min), Some(max)) = (conditions.amount_min, conditions.amount_max)
        && min > max
    {
        errors.push(RuleError::AmountRangeInverted {
            rule: rule.clone(),
            min,
            max,
        });
    }
}

fn validate_route(
    route: &Route,
    at: RouteRef,
    known_acquirers: &BTreeSet<String>,
    errors: &mut Vec<RuleError>,
) {
    if route.len() == 0 {
        errors.push(RuleError::EmptyRoute { route: at });
        return;
    }
    if route.len() > MAX_ROUTE_ACQUIRERS {
        errors.push(RuleError::TooManyAcquirers {
            route: at.clone(),
            count: route.len(),
            max: MAX_ROUTE_ACQUIRERS,
        });
    }
    let mut first_by_acquirer: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, acquirer) in route.acquirers().into_iter().enumerate() {
        if let Some(&first_index) = first_by_acquirer.get(acquirer) {
            errors.push(RuleError::DuplicateAcquirer {
                route: at.clone(),
                index,
                first_index,
                acquirer: acquirer.to_owned(),
            });
        } else {
            first_by_acquirer.insert(acquirer, index);
        }
        if !known_acquirers.contains(acquirer) {
            errors.push(RuleError::UnknownAcquirer {
                route: at.clone(),
                index,
                acquirer: acquirer.to_owned(),
            });
        }
    }
    if let Route::Split(entries) = route {
        let mut total: Option<u32> = Some(0);
        for (index, entry) in entries.iter().enumerate() {
            if entry.weight == 0 {
                errors.push(RuleError::ZeroWeight {
                    route: at.clone(),
                    index,
                    acquirer: entry.acquirer.clone(),
                });
            }
            total = total.and_then(|sum| sum.checked_add(entry.weight));
        }
        match total {
            None => errors.push(RuleError::WeightOverflow { route: at }),
            Some(0) => errors.push(RuleError::TotalWeightZero { route: at }),
            Some(_) => {}
        }
    }
}

/// Whether an id is 1 to [`MAX_RULE_ID_CHARS`] characters of `A-Z a-z 0-9 . _ -`.
pub fn is_valid_rule_id(id: &str) -> bool {
    (1..=MAX_RULE_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

fn is_digits(text: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_digit())
}

fn is_currency(text: &str) -> bool {
    text.len() == 3 && text.bytes().all(|byte| byte.is_ascii_uppercase())
}

/// Free text as it may appear in a message: itself when it is 1 to 64 characters of
/// `A-Z a-z 0-9 . _ - : / @ # +`, otherwise only its length.
pub(crate) fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

/// See [`shown`].
pub(crate) struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = (1..=64).contains(&self.0.len())
            && self.0.bytes().all(|byte| {
                byte.is_ascii_alphanumeric()
                    || matches!(byte, b'.' | b'_' | b'-' | b':' | b'/' | b'@' | b'#' | b'+')
            });
        if plain {
            f.write_str(self.0)
        } else {
            write!(f, "<{} characters>", self.0.chars().count())
        }
    }
}

/// A list in a message: at most the first 10 entries, then how many more there are.
fn list<T: fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    const SHOWN: usize = 10;
    let total = items.len();
    let mut text = String::from("[");
    for (index, item) in items.take(SHOWN).enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(&item.to_string());
    }
    if total > SHOWN {
        text.push_str(&format!(", … {} more", total - SHOWN));
    }
    text.push(']');
    text
}

/// The BIN as messages show it: its first six digits (followed by `…` if it has more), or
/// `malformed (N characters)` when it is not 6 to 11 digits. Six digits is the most of a
/// card number PCI DSS lets every card length display; an 11-digit BIN of a 12-digit PAN
/// would otherwise give away all but the check digit.
pub(crate) fn shown_bin(bin: &str) -> String {
    if is_digits(bin, BinRange::MIN_DIGITS..=BinRange::MAX_DIGITS) {
        let ellipsis = if bin.len() > 6 { "…" } else { "" };
        format!("{}{ellipsis}", &bin[..6])
    } else {
        format!("malformed ({} characters)", bin.chars().count())
    }
}

/// Whether the rule's conditions hold for the payment, and if not, the first one that does
/// not, e.g. `currency USD not in [EUR]`. Conditions are checked in the order of the
/// [`Conditions`] fields. Whether the rule is enabled is not considered: that is for
/// [`crate::decide()`]. This is what the service's dry run shows for each rule.
pub fn explain_match(rule: &Rule, input: &RouteInput<'_>) -> Result<(), String> {
    check_conditions(&rule.conditions, input, input.brand())
}

/// [`explain_match`] with the brand already worked out.
pub(crate) fn check_conditions(
    conditions: &Conditions,
    input: &RouteInput<'_>,
    brand: CardBrand,
) -> Result<(), String> {
    let c = conditions;
    if !c.bin_ranges.is_empty() && !c.bin_ranges.iter().any(|r| r.contains(input.bin)) {
        let mut why = format!(
            "bin {} not in {}",
            shown_bin(input.bin),
            list(c.bin_ranges.iter())
        );
        if input.bin_is_well_formed() && c.bin_ranges.iter().any(|r| r.low.len() > input.bin.len())
        {
            why.push_str(&format!(
                " (only {} digits known; longer ranges cannot match)",
                input.bin.len()
            ));
        }
        return Err(why);
    }
    if !c.brands.is_empty() && !c.brands.contains(&brand) {
        return Err(format!("brand {brand} not in {}", list(c.brands.iter())));
    }
    if !c.currencies.is_empty() && !c.currencies.iter().any(|x| x == input.currency) {
        let currency = if is_currency(input.currency) {
            input.currency.to_owned()
        } else {
            format!("<malformed, {} characters>", input.currency.chars().count())
        };
        return Err(format!(
            "currency {currency} not in {}",
            list(c.currencies.iter().map(|x| shown(x)))
        ));
    }
    if let Some(min) = c.amount_min
        && input.amount_minor < min
    {
        return Err(format!(
            "amount {} below amountMin {min}",
            input.amount_minor
        ));
    }
    if let Some(max) = c.amount_max
        && input.amount_minor > max
    {
        return Err(format!(
            "amount {} above amountMax {max}",
            input.amount_minor
        ));
    }
    if !c.merchants.is_empty() && !c.merchants.iter().any(|x| x == input.merchant_id) {
        return Err(format!(
            "merchant {} not in {}",
            shown(input.merchant_id),
            list(c.merchants.iter().map(|x| shown(x)))
        ));
    }
    if !c.mccs.is_empty() && !c.mccs.iter().any(|x| x == input.mcc) {
        let mcc = if is_digits(input.mcc, 4..=4) {
            input.mcc.to_owned()
        } else {
            format!("<malformed, {} characters>", input.mcc.chars().count())
        };
        return Err(format!(
            "mcc {mcc} not in {}",
            list(c.mccs.iter().map(|x| shown(x)))
        ));
    }
    if !c.terminal_groups.is_empty() {
        let groups = list(c.terminal_groups.iter().map(|x| shown(x)));
        match input.terminal_group {
            None => return Err(format!("no terminal group, rule needs one of {groups}")),
            Some(group) if !c.terminal_groups.iter().any(|x| x == group) => {
                return Err(format!("terminal group {} not in {groups}", shown(group)));
            }
            Some(_) => {}
        }
    }
    if !c.entry_modes.is_empty() && !c.entry_modes.contains(&input.entry_mode) {
        return Err(format!(
            "entry mode {} not in {}",
            input.entry_mode,
            list(c.entry_modes.iter())
        ));
    }
    if !c.transaction_types.is_empty() && !c.transaction_types.contains(&input.transaction_type) {
        return Err(format!(
            "transaction type {} not in {}",
            input.transaction_type,
            list(c.transaction_types.iter())
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn input() -> RouteInput<'static> {
        RouteInput {
            bin: "41111111",
            pan_length: 16,
            currency: "EUR",
            amount_minor: 1_500,
            merchant_id: "m-1",
            mcc: "5411",
            terminal_group: Some("tg-north"),
            entry_mode: EntryMode::Contactless,
            transaction_type: TransactionType::Purchase,
        }
    }

    pub(crate) fn rule(id: &str, conditions: Conditions, route: Route) -> Rule {
        Rule {
            id: id.to_owned(),
            description: String::new(),
            conditions,
            route,
            enabled: true,
        }
    }

    pub(crate) fn priority(ids: &[&str]) -> Route {
        Route::Priority(ids.iter().map(|id| (*id).to_owned()).collect())
    }

    fn with(conditions: Conditions) -> Rule {
        rule("r", conditions, priority(&["acq-a"]))
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    fn known() -> BTreeSet<String> {
        ["acq-a", "acq-b", "acq-c"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    fn errors_of(set: &RuleSet) -> Vec<RuleError> {
        set.validate(&known()).err().unwrap_or_default()
    }

    fn one_rule_set(rule: Rule) -> RuleSet {
        RuleSet {
            version: 1,
            rules: vec![rule],
            default_route: None,
        }
    }

    fn at(id: &str) -> RuleRef {
        RuleRef {
            index: 0,
            id: id.to_owned(),
        }
    }

    // ---- matching, one condition kind at a time ----

    #[test]
    fn no_conditions_match_every_payment() {
        assert_eq!(
            explain_match(&with(Conditions::default()), &input()),
            Ok(())
        );
    }

    #[test]
    fn bin_range_matches_inside_and_explains_outside() {
        let inside = Conditions {
            bin_ranges: vec![BinRange::new("411111", "411112")],
            ..Conditions::default()
        };
        assert_eq!(explain_match(&with(inside), &input()), Ok(()));
        let outside = Conditions {
            bin_ranges: vec![BinRange::new("510000", "559999")],
            ..Conditions::default()
        };
        assert_eq!(
            explain_match(&with(outside), &input()),
            Err("bin 411111… not in [510000-559999]".to_owned())
        );
    }

    #[test]
    fn bin_range_ends_are_inclusive_on_the_first_len_digits() {
        let range = BinRange::new("41111100", "41111199");
        assert!(range.contains("41111100"));
        assert!(range.contains("41111199"));
        assert!(
            range.contains("4111110000"),
            "longer BIN, prefix at the low end"
        );
        assert!(
            range.contains("41111199999"),
            "longer BIN, prefix at the high end"
        );
        assert!(!range.contains("41111099"), "one below low");
        assert!(!range.contains("41111200"), "one above high");
        assert!(
            !range.contains("411111"),
            "6 known digits cannot decide an 8-digit range"
        );
        assert!(!range.contains("411111000000"), "12 digits is not a BIN");
        assert!(!range.contains("4111110a"), "not digits");
        assert!(BinRange::new("00000000000", "99999999999").contains("12345678901"));
        assert!(
            !BinRange::new("411112", "411111").contains("411111"),
            "malformed"
        );
    }

    #[test]
    fn bin_range_explains_when_the_bin_is_too_short_or_malformed() {
        let conditions = Conditions {
            bin_ranges: vec![BinRange::new("41111100", "41111199")],
            ..Conditions::default()
        };
        let short = RouteInput {
            bin: "411111",
            ..input()
        };
        assert_eq!(
            explain_match(&with(conditions.clone()), &short),
            Err(
                "bin 411111 not in [41111100-41111199] (only 6 digits known; longer ranges \
                 cannot match)"
                    .to_owned()
            )
        );
        let pan = RouteInput {
            bin: "4111111111111111",
            ..input()
        };
        assert_eq!(
            explain_match(&with(conditions), &pan),
            Err("bin malformed (16 characters) not in [41111100-41111199]".to_owned()),
            "a full PAN is never echoed"
        );
    }

    #[test]
    fn brand_matches_and_explains() {
        let visa = Conditions {
            brands: vec![CardBrand::Visa],
            ..Conditions::default()
        };
        assert_eq!(explain_match(&with(visa), &input()), Ok(()));
        let others = Conditions {
            brands: vec![CardBrand::Mastercard, CardBrand::Maestro],
            ..Conditions::default()
        };
        assert_eq!(
            explain_match(&with(others), &input()),
            Err("brand visa not in [mastercard, maestro]".to_owned())
        );
        let unknown = Conditions {
            brands: vec![CardBrand::Unknown],
            ..Conditions::default()
        };
        let malformed = RouteInput {
            bin: "41x111",
            ..input()
        };
        assert_eq!(explain_match(&with(unknown), &malformed), Ok(()));
    }

    #[test]
    fn currency_matches_and_explains() {
        let eur = Conditions {
            currencies: strings(&["GBP", "EUR"]),
            ..Conditions::default()
        };
        assert_eq!(explain_match(&with(eur.clone()), &input()), Ok(()));
        let usd = RouteInput {
            currency: "USD",
            ..input()
        };
        assert_eq!(
            explain_match(&with(eur.clone()), &usd),
            Err("currency USD not in [GBP, EUR]".to_owned())
        );
        let lower = RouteInput {
            currency: "eur",
            ..input()
        };
        assert_eq!(
            explain_match(&with(eur), &lower),
            Err("currency <malformed, 3 characters> not in [GBP, EUR]".to_owned())
        );
    }

    #[test]
    fn amount_bounds_are_inclusive_and_explained() {
        let bounds = Conditions {
            amount_min: Some(1_000),
            amount_max: Some(2_000),
            ..Conditions::default()
        };
        for amount in [1_000, 1_500, 2_000] {
            let payment = RouteInput {
                amount_minor: amount,
                ..input()
            };
            assert_eq!(explain_match(&with(bounds.clone()), &payment), Ok(()));
        }
        let below = RouteInput {
            amount_minor: 999,
            ..input()
        };
        assert_eq!(
            explain_match(&with(bounds.clone()), &below),
            Err("amount 999 below amountMin 1000".to_owned())
        );
        let above = RouteInput {
            amount_minor: 2_001,
            ..input()
        };
        assert_eq!(
            explain_match(&with(bounds), &above),
            Err("amount 2001 above amountMax 2000".to_owned())
        );
        let only_max = Conditions {
            amount_max: Some(u64::MAX),
            ..Conditions::default()
        };
        let huge = RouteInput {
            amount_minor: u64::MAX,
            ..input()
        };
        assert_eq!(explain_match(&with(only_max), &huge), Ok(()));
    }

    #[test]
    fn merchant_matches_and_explains_without_echoing_odd_text() {
        let merchants = Conditions {
            merchants: strings(&["m-1", "m-2"]),
            ..Conditions::default()
        };
        assert_eq!(explain_match(&with(merchants.clone()), &input()), Ok(()));
        let other = RouteInput {
            merchant_id: "m-3",
            ..input()
        };
        assert_eq!(
            explain_match(&with(merchants.clone()), &other),
            Err("merchant m-3 not in [m-1, m-2]".to_owned())
        );
        let odd = RouteInput {
            merchant_id: "4111 1111 1111 1111",
            ..input()
        };
        assert_eq!(
            explain_match(&with(merchants), &odd),
            Err("merchant <19 characters> not in [m-1, m-2]".to_owned())
        );
    }

    #[test]
    fn mcc_matches_and_explains() {
        let grocery = Conditions {
            mccs: strings(&["5411"]),
            ..Conditions::default()
        };
        assert_eq!(explain_match(&with(grocery.clone()), &input()), Ok(()));
        let fuel = RouteInput {
            mcc: "5541",
            ..input()
        };
        assert_eq!(
            explain_match(&with(grocery), &fuel),
            Err("mcc 5541 not in [5411]".to_owned())
        );
    }

    #[test]
    fn terminal_group_matches_and_explains_a_missing_group() {
        let north = Conditions {
            terminal_groups: strings(&["tg-north"]),
            ..Conditions::default()
        };
        assert_eq!(explain_match(&with(north.clone()), &input()), Ok(()));
        let south = RouteInput {
            terminal_group: Some("tg-south"),
            ..input()
        };
        assert_eq!(
            explain_match(&with(north.clone()), &south),
            Err("terminal group tg-south not in [tg-north]".to_owned())
        );
        let none = RouteInput {
            terminal_group: None,
            ..input()
        };
        assert_eq!(
            explain_match(&with(north), &none),
            Err("no terminal group, rule needs one of [tg-north]".to_owned())
        );
    }

    #[test]
    fn entry_mode_matches_and_explains() {
        let contactless = Conditions {
            entry_modes: vec![EntryMode::Contactless, EntryMode::Chip],
            ..Conditions::default()
        };
        assert_eq!(explain_match(&with(contactless.clone()), &input()), Ok(()));
        let fallback = RouteInput {
            entry_mode: EntryMode::SwipeFallback,
            ..input()
        };
        assert_eq!(
            explain_match(&with(contactless), &fallback),
            Err("entry mode swipe_fallback not in [contactless, chip]".to_owned())
        );
    }

    #[test]
    fn transaction_type_matches_and_explains() {
        let purchases = Conditions {
            transaction_types: vec![TransactionType::Purchase],
            ..Conditions::default()
        };
        assert_eq!(explain_match(&with(purchases.clone()), &input()), Ok(()));
        let refund = RouteInput {
            transaction_type: TransactionType::Refund,
            ..input()
        };
        assert_eq!(
            explain_match(&with(purchases), &refund),
            Err("transaction type refund not in [purchase]".to_owned())
        );
    }

    #[test]
    fn the_first_failing_condition_in_field_order_is_the_one_explained() {
        let conditions = Conditions {
            currencies: strings(&["GBP"]),
            mccs: strings(&["5999"]),
            ..Conditions::default()
        };
        assert_eq!(
            explain_match(&with(conditions), &input()),
            Err("currency EUR not in [GBP]".to_owned())
        );
    }

    #[test]
    fn long_lists_are_cut_in_explanations() {
        let conditions = Conditions {
            merchants: (0..25).map(|i| format!("m-{i:02}")).collect(),
            ..Conditions::default()
        };
        let why = explain_match(&with(conditions), &input()).expect_err("no match");
        assert!(why.ends_with("m-08, m-09, … 15 more]"), "{why}");
    }

    // ---- validation, one error at a time ----

    #[test]
    fn a_valid_set_passes() {
        let set = RuleSet {
            version: 3,
            rules: vec![
                rule(
                    "eu-visa",
                    Conditions {
                        bin_ranges: vec![BinRange::new("400000", "499999")],
                        brands: vec![CardBrand::Visa],
                        currencies: strings(&["EUR"]),
                        amount_min: Some(1),
                        amount_max: Some(1),
                        mccs: strings(&["5411"]),
                        ..Conditions::default()
                    },
                    Route::Split(vec![
                        WeightedAcquirer::new("acq-a", 70),
                        WeightedAcquirer::new("acq-b", 30),
                    ]),
                ),
                rule("Rule_2.x-y", Conditions::default(), priority(&["acq-c"])),
            ],
            default_route: Some(priority(&["acq-a"])),
        };
        assert_eq!(set.validate(&known()), Ok(()));
    }

    #[test]
    fn invalid_rule_ids_are_refused_by_index() {
        let long = "a".repeat(65);
        for id in ["", "has space", "ünïcode", "semi;colon", long.as_str()] {
            let errors = errors_of(&one_rule_set(with(Conditions::default())).tap_id(id));
            assert_eq!(
                errors,
                vec![RuleError::InvalidRuleId {
                    rule: at(id),
                    length: id.chars().count()
                }],
                "{id:?}"
            );
            assert!(
                errors[0]
                    .to_string()
                    .starts_with("rules[0]: id: must be 1 to 64")
            );
        }
        let longest = "a".repeat(64);
        assert_eq!(
            one_rule_set(with(Conditions::default()))
                .tap_id(&longest)
                .validate(&known()),
            Ok(())
        );
    }

    trait TapId {
        fn tap_id(self, id: &str) -> Self;
    }

    impl TapId for RuleSet {
        fn tap_id(mut self, id: &str) -> Self {
            self.rules[0].id = id.to_owned();
            self
        }
    }

    #[test]
    fn duplicate_rule_ids_name_the_first_use() {
        let set = RuleSet {
            version: 1,
            rules: vec![
                rule("a", Conditions::default(), priority(&["acq-a"])),
                rule("b", Conditions::default(), priority(&["acq-a"])),
                rule("a", Conditions::default(), priority(&["acq-a"])),
            ],
            default_route: None,
        };
        let errors = errors_of(&set);
        assert_eq!(
            errors,
            vec![RuleError::DuplicateRuleId {
                rule: RuleRef {
                    index: 2,
                    id: "a".to_owned()
                },
                first_index: 0
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "rule a: id: already used by rules[0]"
        );
    }

    #[test]
    fn empty_routes_are_refused_for_rules_and_the_default() {
        let set = RuleSet {
            version: 1,
            rules: vec![rule("r", Conditions::default(), Route::Split(vec![]))],
            default_route: Some(Route::Priority(vec![])),
        };
        let errors = errors_of(&set);
        assert_eq!(
            errors,
            vec![
                RuleError::EmptyRoute {
                    route: RouteRef::Rule(at("r"))
                },
                RuleError::EmptyRoute {
                    route: RouteRef::Default
                },
            ]
        );
        assert_eq!(
            errors[0].to_string(),
            "rule r: route: must name at least one acquirer"
        );
        assert_eq!(
            errors[1].to_string(),
            "defaultRoute: must name at least one acquirer"
        );
        assert_eq!(errors[1].rule(), None);
    }

    #[test]
    fn duplicate_and_unknown_acquirers_are_refused() {
        let set = one_rule_set(rule(
            "r",
            Conditions::default(),
            priority(&["acq-a", "acq-x", "acq-a"]),
        ));
        let errors = errors_of(&set);
        assert_eq!(
            errors,
            vec![
                RuleError::UnknownAcquirer {
                    route: RouteRef::Rule(at("r")),
                    index: 1,
                    acquirer: "acq-x".to_owned()
                },
                RuleError::DuplicateAcquirer {
                    route: RouteRef::Rule(at("r")),
                    index: 2,
                    first_index: 0,
                    acquirer: "acq-a".to_owned()
                },
            ]
        );
        assert_eq!(
            errors[0].to_string(),
            "rule r: route[1]: unknown acquirer acq-x"
        );
        assert_eq!(
            errors[1].to_string(),
            "rule r: route[2]: acquirer acq-a already appears at [0]"
        );
        assert_eq!(errors[1].rule(), Some(&at("r")));
    }

    #[test]
    fn split_weights_must_be_positive_and_fit_in_u32() {
        let zero = one_rule_set(rule(
            "r",
            Conditions::default(),
            Route::Split(vec![
                WeightedAcquirer::new("acq-a", 0),
                WeightedAcquirer::new("acq-b", 5),
            ]),
        ));
        let errors = errors_of(&zero);
        assert_eq!(
            errors,
            vec![RuleError::ZeroWeight {
                route: RouteRef::Rule(at("r")),
                index: 0,
                acquirer: "acq-a".to_owned()
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "rule r: route[0].weight: must be at least 1 (acquirer acq-a)"
        );

        let all_zero = RuleSet {
            version: 1,
            rules: vec![],
            default_route: Some(Route::Split(vec![WeightedAcquirer::new("acq-a", 0)])),
        };
        let errors = errors_of(&all_zero);
        assert_eq!(errors.len(), 2);
        assert_eq!(
            errors[1],
            RuleError::TotalWeightZero {
                route: RouteRef::Default
            }
        );
        assert_eq!(
            errors[1].to_string(),
            "defaultRoute: the weights add up to 0, so no acquirer would get any volume"
        );

        let overflow = one_rule_set(rule(
            "r",
            Conditions::default(),
            Route::Split(vec![
                WeightedAcquirer::new("acq-a", u32::MAX),
                WeightedAcquirer::new("acq-b", 1),
            ]),
        ));
        let errors = errors_of(&overflow);
        assert_eq!(
            errors,
            vec![RuleError::WeightOverflow {
                route: RouteRef::Rule(at("r"))
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "rule r: route: the weights add up to more than 4294967295"
        );
        let largest = one_rule_set(rule(
            "r",
            Conditions::default(),
            Route::Split(vec![
                WeightedAcquirer::new("acq-a", u32::MAX - 1),
                WeightedAcquirer::new("acq-b", 1),
            ]),
        ));
        assert_eq!(largest.validate(&known()), Ok(()));
    }

    #[test]
    fn malformed_bin_ranges_name_the_end_and_never_the_digits() {
        let cases = [
            (
                BinRange::new("41111", "41111"),
                BinRangeProblem::Length {
                    end: RangeEnd::Low,
                    length: 5,
                },
                ".low: must be 6 to 11 digits, got 5",
            ),
            (
                BinRange::new("411111", "411111111111"),
                BinRangeProblem::Length {
                    end: RangeEnd::High,
                    length: 12,
                },
                ".high: must be 6 to 11 digits, got 12",
            ),
            (
                BinRange::new("41111a", "411119"),
                BinRangeProblem::NotDigits { end: RangeEnd::Low },
                ".low: must hold only the digits 0-9",
            ),
            (
                BinRange::new("411111", "4111119"),
                BinRangeProblem::UnequalLengths { low: 6, high: 7 },
                ".high: has 7 digits, low has 6: both ends must have the same length",
            ),
            (
                BinRange::new("411112", "411111"),
                BinRangeProblem::LowAboveHigh,
                ": low must not be greater than high",
            ),
        ];
        for (range, problem, text) in cases {
            let set = one_rule_set(with(Conditions {
                bin_ranges: vec![BinRange::new("400000", "400000"), range],
                ..Conditions::default()
            }));
            let errors = errors_of(&set);
            assert_eq!(
                errors,
                vec![RuleError::InvalidBinRange {
                    rule: at("r"),
                    index: 1,
                    problem
                }]
            );
            assert_eq!(
                errors[0].to_string(),
                format!("rule r: conditions.binRanges[1]{text}")
            );
        }
        for (low, high) in [("411111", "411111"), ("41111111111", "41111111111")] {
            assert_eq!(BinRange::new(low, high).check(), Ok(()), "{low}");
        }
    }

    #[test]
    fn currencies_must_be_three_uppercase_letters() {
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            let set = one_rule_set(with(Conditions {
                currencies: strings(&["EUR", bad]),
                ..Conditions::default()
            }));
            let errors = errors_of(&set);
            assert_eq!(
                errors,
                vec![RuleError::InvalidCurrency {
                    rule: at("r"),
                    index: 1
                }],
                "{bad:?}"
            );
            assert_eq!(
                errors[0].to_string(),
                "rule r: conditions.currencies[1]: must be 3 uppercase letters (ISO 4217)"
            );
        }
    }

    #[test]
    fn mccs_must_be_four_digits() {
        for bad in ["541", "54111", "54a1", ""] {
            let set = one_rule_set(with(Conditions {
                mccs: strings(&[bad]),
                ..Conditions::default()
            }));
            let errors = errors_of(&set);
            assert_eq!(
                errors,
                vec![RuleError::InvalidMcc {
                    rule: at("r"),
                    index: 0
                }],
                "{bad:?}"
            );
            assert_eq!(
                errors[0].to_string(),
                "rule r: conditions.mccs[0]: must be 4 digits (ISO 18245)"
            );
        }
    }

    #[test]
    fn amount_min_must_not_exceed_amount_max() {
        let set = one_rule_set(with(Conditions {
            amount_min: Some(10),
            amount_max: Some(9),
            ..Conditions::default()
        }));
        let errors = errors_of(&set);
        assert_eq!(
            errors,
            vec![RuleError::AmountRangeInverted {
                rule: at("r"),
                min: 10,
                max: 9
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "rule r: conditions.amountMin: must not exceed amountMax (10 > 9)"
        );
        let equal = one_rule_set(with(Conditions {
            amount_min: Some(10),
            amount_max: Some(10),
            ..Conditions::default()
        }));
        assert_eq!(equal.validate(&known()), Ok(()));
    }

    #[test]
    fn at_most_1000_rules() {
        let mut set = RuleSet {
            version: 1,
            rules: (0..MAX_RULES)
                .map(|i| {
                    rule(
                        &format!("r{i}"),
                        Conditions::default(),
                        priority(&["acq-a"]),
                    )
                })
                .collect(),
            default_route: None,
        };
        assert_eq!(set.validate(&known()), Ok(()));
        set.rules.push(rule(
            "one-more",
            Conditions::default(),
            priority(&["acq-a"]),
        ));
        let errors = errors_of(&set);
        assert_eq!(
            errors,
            vec![RuleError::TooManyRules {
                count: 1_001,
                max: 1_000
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "rules: 1001 rules, at most 1000 allowed"
        );
    }

    #[test]
    fn at_most_100_conditions_of_each_kind() {
        let full = Conditions {
            bin_ranges: vec![BinRange::new("400000", "400000"); MAX_CONDITIONS],
            brands: vec![CardBrand::Visa; MAX_CONDITIONS],
            currencies: vec!["EUR".to_owned(); MAX_CONDITIONS],
            merchants: vec!["m".to_owned(); MAX_CONDITIONS],
            mccs: vec!["5411".to_owned(); MAX_CONDITIONS],
            terminal_groups: vec!["g".to_owned(); MAX_CONDITIONS],
            entry_modes: vec![EntryMode::Chip; MAX_CONDITIONS],
            transaction_types: vec![TransactionType::Refund; MAX_CONDITIONS],
            ..Conditions::default()
        };
        assert_eq!(one_rule_set(with(full.clone())).validate(&known()), Ok(()));
        let mut over = full;
        over.bin_ranges.push(BinRange::new("400000", "400000"));
        over.brands.push(CardBrand::Visa);
        over.currencies.push("EUR".to_owned());
        over.merchants.push("m".to_owned());
        over.mccs.push("5411".to_owned());
        over.terminal_groups.push("g".to_owned());
        over.entry_modes.push(EntryMode::Chip);
        over.transaction_types.push(TransactionType::Refund);
        let errors = errors_of(&one_rule_set(with(over)));
        let fields: Vec<_> = errors
            .iter()
            .map(|error| match error {
                RuleError::TooManyConditions {
                    field, count: 101, ..
                } => field.as_str(),
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                "binRanges",
                "brands",
                "currencies",
                "merchants",
                "mccs",
                "terminalGroups",
                "entryModes",
                "transactionTypes"
            ]
        );
        assert_eq!(
            errors[0].to_string(),
            "rule r: conditions.binRanges: 101 entries, at most 100 allowed"
        );
    }

    #[test]
    fn at_most_100_acquirers_per_route() {
        let ids: Vec<String> = (0..=MAX_ROUTE_ACQUIRERS).map(|i| format!("a{i}")).collect();
        let known: BTreeSet<String> = ids.iter().cloned().collect();
        let set = one_rule_set(rule("r", Conditions::default(), Route::Priority(ids)));
        let errors = set.validate(&known).err().unwrap_or_default();
        assert_eq!(
            errors,
            vec![RuleError::TooManyAcquirers {
                route: RouteRef::Rule(at("r")),
                count: 101,
                max: 100
            }]
        );
    }

    #[test]
    fn validation_collects_every_problem_of_every_rule() {
        let set = RuleSet {
            version: 1,
            rules: vec![
                rule(
                    "bad one",
                    Conditions {
                        currencies: strings(&["eur"]),
                        ..Conditions::default()
                    },
                    priority(&["acq-z"]),
                ),
                rule(
                    "ok",
                    Conditions {
                        mccs: strings(&["1"]),
                        amount_min: Some(2),
                        amount_max: Some(1),
                        ..Conditions::default()
                    },
                    Route::Split(vec![WeightedAcquirer::new("acq-a", 0)]),
                ),
            ],
            default_route: Some(priority(&["acq-q"])),
        };
        let messages: Vec<String> = errors_of(&set).iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "rules[0]: id: must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-', \
                 got 7 characters",
                "rules[0]: conditions.currencies[0]: must be 3 uppercase letters (ISO 4217)",
                "rules[0]: route[0]: unknown acquirer acq-z",
                "rule ok: conditions.mccs[0]: must be 4 digits (ISO 18245)",
                "rule ok: conditions.amountMin: must not exceed amountMax (2 > 1)",
                "rule ok: route[0].weight: must be at least 1 (acquirer acq-a)",
                "rule ok: route: the weights add up to 0, so no acquirer would get any volume",
                "defaultRoute[0]: unknown acquirer acq-q",
            ]
        );
    }

    #[test]
    fn odd_acquirer_ids_are_not_echoed_in_messages() {
        let set = one_rule_set(rule("r", Conditions::default(), priority(&["acq a\n"])));
        assert_eq!(
            errors_of(&set)[0].to_string(),
            "rule r: route[0]: unknown acquirer <6 characters>"
        );
    }

    // ---- JSON ----

    #[test]
    fn rule_sets_read_and_write_camel_case_json() {
        let json = r#"{
            "version": 7,
            "rules": [
                {
                    "id": "eu-visa",
                    "description": "EU Visa split",
                    "conditions": {
                        "binRanges": [{"low": "400000", "high": "499999"}],
                        "brands": ["visa"],
                        "currencies": ["EUR"],
                        "amountMin": 1, "amountMax": 500000,
                        "merchants": ["m-1"], "mccs": ["5411"],
                        "terminalGroups": ["tg-north"],
                        "entryModes": ["chip", "swipe_fallback"],
                        "transactionTypes": ["purchase", "pre_authorization"]
                    },
                    "route": {"split": [{"acquirer": "acq-a", "weight": 70},
                                        {"acquirer": "acq-b", "weight": 30}]}
                },
                {"id": "off", "route": {"priority": ["acq-c"]}, "enabled": false}
            ],
            "defaultRoute": {"priority": ["acq-a", "acq-b"]}
        }"#;
        let set: RuleSet = serde_json::from_str(json).expect("parse");
        assert_eq!(set.validate(&known()), Ok(()));
        assert_eq!(
            set.rules[0].conditions.entry_modes[1],
            EntryMode::SwipeFallback
        );
        assert!(set.rules[0].enabled, "enabled defaults to true");
        assert!(!set.rules[1].enabled);
        let again: RuleSet =
            serde_json::from_str(&serde_json::to_string(&set).expect("write")).expect("reparse");
        assert_eq!(again, set);
    }

    #[test]
    fn a_misspelt_condition_is_refused_rather_than_matching_everything() {
        let json = r#"{"id": "r", "conditions": {"currency": ["EUR"]},
                       "route": {"priority": ["acq-a"]}}"#;
        assert!(serde_json::from_str::<Rule>(json).is_err());
    }

    #[test]
    fn rule_errors_serialise_with_a_tag() {
        let error = RuleError::InvalidMcc {
            rule: at("r"),
            index: 2,
        };
        let json = serde_json::to_value(&error).expect("write");
        assert_eq!(
            json,
            serde_json::json!({"error": "invalid_mcc", "rule": {"index": 0, "id": "r"}, "index": 2})
        );
    }
}
