//! The typed partial parameter set of one level, its validation from protobuf and its
//! canonical protobuf form.

use std::collections::BTreeMap;
use std::fmt;

use mpos_proto::terminal_management as pb;

use crate::card::CardToken;
use crate::error::ParameterError;
use crate::values::{
    ActionCode, Amount, BinRange, CountryCode, Currency, CvRule, CvmList, Mcc, Percent,
};

/// The most blocked card tokens at one level, and in an effective set.
pub const MAX_BLOCKED_CARD_TOKENS: usize = 10_000;
/// The most BIN ranges in an allow-list or block-list, at one level and in an effective set.
pub const MAX_BIN_RANGES: usize = 1_000;
/// The most floor limits (currencies) at one level.
pub const MAX_FLOOR_LIMITS: usize = 64;
/// The most transactions a terminal may hold for forwarding.
pub const MAX_OFFLINE_COUNT: u32 = 100_000;

/// The terminal action codes; each inherits on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TerminalActionCodes {
    /// TAC-Denial.
    pub denial: Option<ActionCode>,
    /// TAC-Online.
    pub online: Option<ActionCode>,
    /// TAC-Default.
    pub default_code: Option<ActionCode>,
}

/// Random transaction selection; each value inherits on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RandomSelection {
    /// Threshold value for biased random selection.
    pub threshold: Option<Amount>,
    /// Target percentage.
    pub target_percent: Option<Percent>,
    /// Maximum target percentage.
    pub max_target_percent: Option<Percent>,
}

/// Offline / store-and-forward limits; each value inherits on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OfflineLimits {
    /// The largest amount of one offline transaction.
    pub per_transaction_amount: Option<Amount>,
    /// The most transactions held for forwarding.
    pub max_count: Option<u32>,
    /// The largest sum of the transactions held for forwarding.
    pub max_total_amount: Option<Amount>,
}

/// Risk parameters: the partial set stored at one level (every value may be unset), or, inside
/// an [`crate::Effective`], the resolved set. Every value is valid by its type; the rules
/// between fields are checked by [`validate`] and by [`crate::resolve()`].
///
/// [`validate`] produces the lists sorted and without duplicates; [`crate::resolve()`] does not
/// rely on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RiskParameters {
    /// Terminal floor limits by currency.
    pub floor_limits: BTreeMap<Currency, Amount>,
    /// Terminal action codes.
    pub terminal_action_codes: TerminalActionCodes,
    /// Random transaction selection.
    pub random_selection: RandomSelection,
    /// The CVM list, replaced as a whole.
    pub cvm_list: Option<CvmList>,
    /// The CVM-required limit.
    pub cvm_required_limit: Option<Amount>,
    /// The contactless transaction limit.
    pub contactless_transaction_limit: Option<Amount>,
    /// The contactless floor limit.
    pub contactless_floor_limit: Option<Amount>,
    /// Offline limits.
    pub offline_limits: OfflineLimits,
    /// The allow-list: `None` when not set, `Some(empty)` for "no allow-list".
    pub allowed_bin_ranges: Option<Vec<BinRange>>,
    /// Blocked BIN ranges.
    pub blocked_bin_ranges: Vec<BinRange>,
    /// Blocked cards.
    pub blocked_card_tokens: Vec<CardToken>,
    /// Merchant category code.
    pub merchant_category_code: Option<Mcc>,
    /// Transaction currency.
    pub transaction_currency: Option<Currency>,
    /// Terminal country code.
    pub terminal_country_code: Option<CountryCode>,
}

/// A value of the set that is inherited as one piece: the deepest level that sets it wins.
/// (Floor limits inherit per currency; blocked ranges and tokens accumulate.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `terminal_action_codes.denial`
    TacDenial,
    /// `terminal_action_codes.online`
    TacOnline,
    /// `terminal_action_codes.default_code`
    TacDefault,
    /// `random_selection.threshold`
    RandomSelectionThreshold,
    /// `random_selection.target_percent`
    RandomSelectionTargetPercent,
    /// `random_selection.max_target_percent`
    RandomSelectionMaxTargetPercent,
    /// `cvm_list`
    CvmList,
    /// `cvm_required_limit`
    CvmRequiredLimit,
    /// `contactless_transaction_limit`
    ContactlessTransactionLimit,
    /// `contactless_floor_limit`
    ContactlessFloorLimit,
    /// `offline_limits.per_transaction_amount`
    OfflinePerTransactionAmount,
    /// `offline_limits.max_count`
    OfflineMaxCount,
    /// `offline_limits.max_total_amount`
    OfflineMaxTotalAmount,
    /// `allowed_bin_ranges`
    AllowedBinRanges,
    /// `merchant_category_code`
    MerchantCategoryCode,
    /// `transaction_currency`
    TransactionCurrency,
    /// `terminal_country_code`
    TerminalCountryCode,
}

impl Field {
    /// Every field, in schema order.
    pub const ALL: [Field; 17] = [
        Field::TacDenial,
        Field::TacOnline,
        Field::TacDefault,
        Field::RandomSelectionThreshold,
        Field::RandomSelectionTargetPercent,
        Field::RandomSelectionMaxTargetPercent,
        Field::CvmList,
        Field::CvmRequiredLimit,
        Field::ContactlessTransactionLimit,
        Field::ContactlessFloorLimit,
        Field::OfflinePerTransactionAmount,
        Field::OfflineMaxCount,
        Field::OfflineMaxTotalAmount,
        Field::AllowedBinRanges,
        Field::MerchantCategoryCode,
        Field::TransactionCurrency,
        Field::TerminalCountryCode,
    ];

    /// The field path as in the protobuf schema, e.g. `terminal_action_codes.online`.
    pub fn path(self) -> &'static str {
        match self {
            Field::TacDenial => "terminal_action_codes.denial",
            Field::TacOnline => "terminal_action_codes.online",
            Field::TacDefault => "terminal_action_codes.default_code",
            Field::RandomSelectionThreshold => "random_selection.threshold",
            Field::RandomSelectionTargetPercent => "random_selection.target_percent",
            Field::RandomSelectionMaxTargetPercent => "random_selection.max_target_percent",
            Field::CvmList => "cvm_list",
            Field::CvmRequiredLimit => "cvm_required_limit",
            Field::ContactlessTransactionLimit => "contactless_transaction_limit",
            Field::ContactlessFloorLimit => "contactless_floor_limit",
            Field::OfflinePerTransactionAmount => "offline_limits.per_transaction_amount",
            Field::OfflineMaxCount => "offline_limits.max_count",
            Field::OfflineMaxTotalAmount => "offline_limits.max_total_amount",
            Field::AllowedBinRanges => "allowed_bin_ranges",
            Field::MerchantCategoryCode => "merchant_category_code",
            Field::TransactionCurrency => "transaction_currency",
            Field::TerminalCountryCode => "terminal_country_code",
        }
    }

    /// The position in [`Field::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether `parameters` sets this field.
    pub fn is_set_in(self, parameters: &RiskParameters) -> bool {
        let tac = &parameters.terminal_action_codes;
        let random = &parameters.random_selection;
        let offline = &parameters.offline_limits;
        match self {
            Field::TacDenial => tac.denial.is_some(),
            Field::TacOnline => tac.online.is_some(),
            Field::TacDefault => tac.default_code.is_some(),
            Field::RandomSelectionThreshold => random.threshold.is_some(),
            Field::RandomSelectionTargetPercent => random.target_percent.is_some(),
            Field::RandomSelectionMaxTargetPercent => random.max_target_percent.is_some(),
            Field::CvmList => parameters.cvm_list.is_some(),
            Field::CvmRequiredLimit => parameters.cvm_required_limit.is_some(),
            Field::ContactlessTransactionLimit => {
                parameters.contactless_transaction_limit.is_some()
            }
            Field::ContactlessFloorLimit => parameters.contactless_floor_limit.is_some(),
            Field::OfflinePerTransactionAmount => offline.per_transaction_amount.is_some(),
            Field::OfflineMaxCount => offline.max_count.is_some(),
            Field::OfflineMaxTotalAmount => offline.max_total_amount.is_some(),
            Field::AllowedBinRanges => parameters.allowed_bin_ranges.is_some(),
            Field::MerchantCategoryCode => parameters.merchant_category_code.is_some(),
            Field::TransactionCurrency => parameters.transaction_currency.is_some(),
            Field::TerminalCountryCode => parameters.terminal_country_code.is_some(),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// The path of one value of a set, as named in provenance and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldPath {
    /// A value inherited as one piece.
    Field(Field),
    /// `floor_limits[EUR]`
    FloorLimit(Currency),
    /// `blocked_bin_ranges[400000-400099]`
    BlockedBinRange(BinRange),
    /// `blocked_card_tokens[<64 hex>]`
    BlockedCardToken(CardToken),
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Field(field) => f.write_str(field.path()),
            FieldPath::FloorLimit(currency) => write!(f, "floor_limits[{currency}]"),
            FieldPath::BlockedBinRange(range) => write!(f, "blocked_bin_ranges[{range}]"),
            FieldPath::BlockedCardToken(token) => write!(f, "blocked_card_tokens[{token}]"),
        }
    }
}

impl From<Field> for FieldPath {
    fn from(field: Field) -> Self {
        FieldPath::Field(field)
    }
}

/// A rule between two values that a set breaks.
#[derive(Debug)]
pub(crate) struct Violation {
    /// The value the rule constrains.
    pub(crate) field: FieldPath,
    /// The value it is constrained by.
    pub(crate) related: FieldPath,
    /// What is wrong.
    pub(crate) reason: String,
}

/// The rules between fields, over whatever values are set: a rule whose values are not all
/// set does not apply.
pub(crate) fn cross_field_violation(parameters: &RiskParameters) -> Option<Violation> {
    if let (Some(floor), Some(limit)) = (
        parameters.contactless_floor_limit,
        parameters.contactless_transaction_limit,
    ) && floor > limit
    {
        return Some(Violation {
            field: Field::ContactlessFloorLimit.into(),
            related: Field::ContactlessTransactionLimit.into(),
            reason: format!("must not exceed contactless_transaction_limit ({floor} > {limit})"),
        });
    }
    let random = &parameters.random_selection;
    if let (Some(target), Some(max)) = (random.target_percent, random.max_target_percent)
        && target > max
    {
        return Some(Violation {
            field: Field::RandomSelectionTargetPercent.into(),
            related: Field::RandomSelectionMaxTargetPercent.into(),
            reason: format!(
                "must not exceed random_selection.max_target_percent ({} > {})",
                target.value(),
                max.value()
            ),
        });
    }
    if let (Some(threshold), Some(currency)) = (random.threshold, parameters.transaction_currency)
        && let Some(floor) = parameters.floor_limits.get(&currency)
        && threshold >= *floor
        && !(threshold == Amount::ZERO && *floor == Amount::ZERO)
    {
        return Some(Violation {
            field: Field::RandomSelectionThreshold.into(),
            related: FieldPath::FloorLimit(currency),
            reason: format!("must be less than floor_limits[{currency}] ({threshold} >= {floor})"),
        });
    }
    let offline = &parameters.offline_limits;
    if let (Some(per_transaction), Some(total)) =
        (offline.per_transaction_amount, offline.max_total_amount)
        && per_transaction > total
    {
        return Some(Violation {
            field: Field::OfflinePerTransactionAmount.into(),
            related: Field::OfflineMaxTotalAmount.into(),
            reason: format!(
                "must not exceed offline_limits.max_total_amount ({per_transaction} > {total})"
            ),
        });
    }
    None
}

fn amount(field: Field, value: Option<u64>) -> Result<Option<Amount>, ParameterError> {
    value
        .map(Amount::new)
        .transpose()
        .map_err(|error| error.in_field(field.path()))
}

fn action_code(field: Field, value: Option<&String>) -> Result<Option<ActionCode>, ParameterError> {
    value
        .map(|text| ActionCode::parse(text))
        .transpose()
        .map_err(|error| error.in_field(field.path()))
}

fn percent(field: Field, value: Option<u32>) -> Result<Option<Percent>, ParameterError> {
    value
        .map(Percent::new)
        .transpose()
        .map_err(|error| error.in_field(field.path()))
}

fn bin_ranges(field: &str, ranges: &[pb::BinRange]) -> Result<Vec<BinRange>, ParameterError> {
    if ranges.len() > MAX_BIN_RANGES {
        return Err(ParameterError::Invalid {
            field: field.to_owned(),
            reason: format!("{} ranges, at most {MAX_BIN_RANGES}", ranges.len()),
        });
    }
    let mut parsed = ranges
        .iter()
        .enumerate()
        .map(|(index, range)| {
            BinRange::parse(&range.low, &range.high)
                .map_err(|error| error.in_field(&format!("{field}[{index}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    parsed.sort_unstable();
    parsed.dedup();
    Ok(parsed)
}

/// Validates the partial set of one level. Errors name the field path and what is wrong, e.g.
/// `contactless_floor_limit: must not exceed contactless_transaction_limit (500 > 400)`. Rules
/// between fields apply when both values are set at this level; [`crate::resolve()`] applies them
/// again to the combined set. Never panics.
pub fn validate(parameters: &pb::RiskParameters) -> Result<RiskParameters, ParameterError> {
    let mut typed = RiskParameters::default();

    if parameters.floor_limits.len() > MAX_FLOOR_LIMITS {
        return Err(ParameterError::Invalid {
            field: "floor_limits".to_owned(),
            reason: format!(
                "{} floor limits, at most {MAX_FLOOR_LIMITS}",
                parameters.floor_limits.len()
            ),
        });
    }
    for (index, limit) in parameters.floor_limits.iter().enumerate() {
        let currency = Currency::from_alpha(&limit.currency)
            .map_err(|error| error.in_field(&format!("floor_limits[{index}].currency")))?;
        let amount = Amount::new_binary4(limit.amount)
            .map_err(|error| error.in_field(&format!("floor_limits[{currency}]")))?;
        if typed.floor_limits.insert(currency, amount).is_some() {
            return Err(ParameterError::Invalid {
                field: format!("floor_limits[{currency}]"),
                reason: "currency appears more than once".to_owned(),
            });
        }
    }

    if let Some(codes) = &parameters.terminal_action_codes {
        typed.terminal_action_codes = TerminalActionCodes {
            denial: action_code(Field::TacDenial, codes.denial.as_ref())?,
            online: action_code(Field::TacOnline, codes.online.as_ref())?,
            default_code: action_code(Field::TacDefault, codes.default_code.as_ref())?,
        };
    }

    if let Some(random) = &parameters.random_selection {
        typed.random_selection = RandomSelection {
            threshold: amount(Field::RandomSelectionThreshold, random.threshold)?,
            target_percent: percent(Field::RandomSelectionTargetPercent, random.target_percent)?,
            max_target_percent: percent(
                Field::RandomSelectionMaxTargetPercent,
                random.max_target_percent,
            )?,
        };
    }

    if let Some(list) = &parameters.cvm_list {
        let rules = list
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                CvRule::new(
                    rule.method,
                    rule.apply_succeeding_if_unsuccessful,
                    rule.condition,
                )
                .map_err(|error| error.in_field(&format!("cvm_list.rules[{index}]")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        typed.cvm_list = Some(
            CvmList::new(list.amount_x, list.amount_y, rules)
                .map_err(|error| error.in_field(Field::CvmList.path()))?,
        );
    }

    typed.cvm_required_limit = amount(Field::CvmRequiredLimit, parameters.cvm_required_limit)?;
    typed.contactless_transaction_limit = amount(
        Field::ContactlessTransactionLimit,
        parameters.contactless_transaction_limit,
    )?;
    typed.contactless_floor_limit = amount(
        Field::ContactlessFloorLimit,
        parameters.contactless_floor_limit,
    )?;

    if let Some(offline) = &parameters.offline_limits {
        let max_count = match offline.max_count {
            Some(count) if count > MAX_OFFLINE_COUNT => {
                return Err(ParameterError::Invalid {
                    field: Field::OfflineMaxCount.path().to_owned(),
                    reason: format!("{count} exceeds {MAX_OFFLINE_COUNT}"),
                });
            }
            count => count,
        };
        typed.offline_limits = OfflineLimits {
            per_transaction_amount: amount(
                Field::OfflinePerTransactionAmount,
                offline.per_transaction_amount,
            )?,
            max_count,
            max_total_amount: amount(Field::OfflineMaxTotalAmount, offline.max_total_amount)?,
        };
    }

    if let Some(list) = &parameters.allowed_bin_ranges {
        typed.allowed_bin_ranges = Some(bin_ranges(Field::AllowedBinRanges.path(), &list.ranges)?);
    }
    typed.blocked_bin_ranges = bin_ranges("blocked_bin_ranges", &parameters.blocked_bin_ranges)?;

    if parameters.blocked_card_tokens.len() > MAX_BLOCKED_CARD_TOKENS {
        return Err(ParameterError::Invalid {
            field: "blocked_card_tokens".to_owned(),
            reason: format!(
                "{} tokens, at most {MAX_BLOCKED_CARD_TOKENS}",
                parameters.blocked_card_tokens.len()
            ),
        });
    }
    let mut tokens = parameters
        .blocked_card_tokens
        .iter()
        .enumerate()
        .map(|(index, token)| {
            CardToken::from_slice(token)
                .map_err(|error| error.in_field(&format!("blocked_card_tokens[{index}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    tokens.sort_unstable();
    tokens.dedup();
    typed.blocked_card_tokens = tokens;

    typed.merchant_category_code = parameters
        .merchant_category_code
        .as_deref()
        .map(Mcc::parse)
        .transpose()
        .map_err(|error| error.in_field(Field::MerchantCategoryCode.path()))?;
    typed.transaction_currency = parameters
        .transaction_currency
        .as_deref()
        .map(Currency::from_alpha)
        .transpose()
        .map_err(|error| error.in_field(Field::TransactionCurrency.path()))?;
    typed.terminal_country_code = parameters
        .terminal_country_code
        .as_deref()
        .map(CountryCode::parse)
        .transpose()
        .map_err(|error| error.in_field(Field::TerminalCountryCode.path()))?;

    if let Some(violation) = cross_field_violation(&typed) {
        return Err(ParameterError::Invalid {
            field: violation.field.to_string(),
            reason: violation.reason,
        });
    }
    Ok(typed)
}

fn bin_ranges_to_proto(ranges: &[BinRange]) -> Vec<pb::BinRange> {
    ranges
        .iter()
        .map(|range| pb::BinRange {
            low: range.low(),
            high: range.high(),
        })
        .collect()
}

impl RiskParameters {
    /// The canonical protobuf form: floor limits by currency, codes in uppercase hex, tokens
    /// in lowercase hex, lists as held, and no empty sub-messages. `validate` of the result
    /// gives back an equal set.
    pub fn to_proto(&self) -> pb::RiskParameters {
        let tac = &self.terminal_action_codes;
        let random = &self.random_selection;
        let offline = &self.offline_limits;
        pb::RiskParameters {
            floor_limits: self
                .floor_limits
                .iter()
                .map(|(currency, amount)| pb::FloorLimit {
                    currency: currency.alpha().to_owned(),
                    amount: amount.minor_units(),
                })
                .collect(),
            terminal_action_codes: (*tac != TerminalActionCodes::default()).then(|| {
                pb::TerminalActionCodes {
                    denial: tac.denial.map(|code| code.to_string()),
                    online: tac.online.map(|code| code.to_string()),
                    default_code: tac.default_code.map(|code| code.to_string()),
                }
            }),
            random_selection: (*random != RandomSelection::default()).then(|| {
                pb::RandomSelection {
                    threshold: random.threshold.map(Amount::minor_units),
                    target_percent: random.target_percent.map(|p| u32::from(p.value())),
                    max_target_percent: random.max_target_percent.map(|p| u32::from(p.value())),
                }
            }),
            cvm_list: self.cvm_list.as_ref().map(|list| pb::CvmList {
                amount_x: list.amount_x().minor_units(),
                amount_y: list.amount_y().minor_units(),
                rules: list
                    .rules()
                    .iter()
                    .map(|rule| pb::CvRule {
                        method: u32::from(rule.method()),
                        apply_succeeding_if_unsuccessful: rule.apply_succeeding_if_unsuccessful(),
                        condition: u32::from(rule.condition()),
                    })
                    .collect(),
            }),
            cvm_required_limit: self.cvm_required_limit.map(Amount::minor_units),
            contactless_transaction_limit: self
                .contactless_transaction_limit
                .map(Amount::minor_units),
            contactless_floor_limit: self.contactless_floor_limit.map(Amount::minor_units),
            offline_limits: (*offline != OfflineLimits::default()).then(|| pb::OfflineLimits {
                per_transaction_amount: offline.per_transaction_amount.map(Amount::minor_units),
                max_count: offline.max_count,
                max_total_amount: offline.max_total_amount.map(Amount::minor_units),
            }),
            allowed_bin_ranges: self
                .allowed_bin_ranges
                .as_ref()
                .map(|ranges| pb::BinRangeList {
                    ranges: bin_ranges_to_proto(ranges),
                }),
            blocked_bin_ranges: bin_ranges_to_proto(&self.blocked_bin_ranges),
            blocked_card_tokens: self
                .blocked_card_tokens
                .iter()
                .map(|token| token.bytes().to_vec())
                .collect(),
            merchant_category_code: self.merchant_category_code.map(|mcc| mcc.to_string()),
            transaction_currency: self
                .transaction_currency
                .map(|currency| currency.alpha().to_owned()),
            terminal_country_code: self.terminal_country_code.map(|code| code.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_indices_follow_the_list_of_all_fields() {
        for (position, field) in Field::ALL.into_iter().enumerate() {
            assert_eq!(field.index(), position, "{field}");
        }
    }
}
