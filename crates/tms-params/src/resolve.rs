//! Inheritance down the estate hierarchy: the effective set of a terminal and where each of
//! its values came from.

use std::collections::BTreeMap;
use std::fmt;

use mpos_proto::terminal_management as pb;

use crate::card::CardToken;
use crate::error::ParameterError;
use crate::params::{
    Field, FieldPath, MAX_BIN_RANGES, MAX_BLOCKED_CARD_TOKENS, RiskParameters,
    cross_field_violation,
};
use crate::values::{BinRange, Currency};

/// A level of the estate hierarchy, root first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LevelKind {
    /// The tenant (payment service provider).
    Tenant,
    /// A merchant of the tenant.
    Merchant,
    /// A store of the merchant.
    Store,
    /// A group of terminals in a store.
    TerminalGroup,
    /// One terminal.
    Terminal,
}

impl LevelKind {
    /// The lowercase name: `tenant`, `merchant`, `store`, `terminal_group`, `terminal`.
    pub fn as_str(self) -> &'static str {
        match self {
            LevelKind::Tenant => "tenant",
            LevelKind::Merchant => "merchant",
            LevelKind::Store => "store",
            LevelKind::TerminalGroup => "terminal_group",
            LevelKind::Terminal => "terminal",
        }
    }

    /// The protobuf enum value.
    pub fn to_proto(self) -> pb::ParameterLevel {
        match self {
            LevelKind::Tenant => pb::ParameterLevel::Tenant,
            LevelKind::Merchant => pb::ParameterLevel::Merchant,
            LevelKind::Store => pb::ParameterLevel::Store,
            LevelKind::TerminalGroup => pb::ParameterLevel::TerminalGroup,
            LevelKind::Terminal => pb::ParameterLevel::Terminal,
        }
    }

    /// The level of a protobuf enum value; `None` for `UNSPECIFIED`.
    pub fn from_proto(level: pb::ParameterLevel) -> Option<Self> {
        match level {
            pb::ParameterLevel::Unspecified => None,
            pb::ParameterLevel::Tenant => Some(LevelKind::Tenant),
            pb::ParameterLevel::Merchant => Some(LevelKind::Merchant),
            pb::ParameterLevel::Store => Some(LevelKind::Store),
            pb::ParameterLevel::TerminalGroup => Some(LevelKind::TerminalGroup),
            pb::ParameterLevel::Terminal => Some(LevelKind::Terminal),
        }
    }
}

impl fmt::Display for LevelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parameters stored at one node on the path from the tenant to a terminal.
#[derive(Clone, Copy, Debug)]
pub struct Level<'a> {
    /// Which level the node is.
    pub kind: LevelKind,
    /// The node's id (tenant id, merchant id, ...).
    pub node_id: &'a str,
    /// What the node sets.
    pub parameters: &'a RiskParameters,
}

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source<'a> {
    /// The level.
    pub level: LevelKind,
    /// The node at that level.
    pub node_id: &'a str,
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.level, self.node_id)
    }
}

/// The values every terminal needs before a set is worth signing; see
/// [`Effective::check_complete`]. A floor limit in the transaction currency is required too.
pub const REQUIRED_FIELDS: [Field; 6] = [
    Field::TacDenial,
    Field::TacOnline,
    Field::TacDefault,
    Field::MerchantCategoryCode,
    Field::TransactionCurrency,
    Field::TerminalCountryCode,
];

/// The resolved parameters of one terminal, with the source of every value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// The levels resolved, root first; sources index into it.
    levels: Vec<(LevelKind, String)>,
    values: RiskParameters,
    field_sources: [Option<u8>; Field::ALL.len()],
    floor_limit_sources: BTreeMap<Currency, u8>,
    /// Parallel to `values.blocked_bin_ranges` (sorted, unique).
    blocked_bin_range_sources: Vec<u8>,
    /// Parallel to `values.blocked_card_tokens` (sorted, unique).
    blocked_card_token_sources: Vec<u8>,
}

/// The levels with their position. `resolve` accepts at most one level of each kind, so
/// positions fit a `u8`.
fn indexed<'l, 'a>(
    levels: &'l [Level<'a>],
) -> impl DoubleEndedIterator<Item = (u8, &'l Level<'a>)> + 'l {
    let count = u8::try_from(levels.len()).unwrap_or(u8::MAX);
    (0..count).zip(levels)
}

/// Merges lists of all levels: sorted, without duplicates, each entry tagged with the
/// root-most level that holds it. O(n log n) in the total length.
fn accumulate<T: Ord + Copy>(
    levels: &[Level<'_>],
    list: impl Fn(&RiskParameters) -> &[T],
) -> (Vec<T>, Vec<u8>) {
    let total = levels
        .iter()
        .map(|level| list(level.parameters).len())
        .sum();
    let mut tagged: Vec<(T, u8)> = Vec::with_capacity(total);
    for (index, level) in indexed(levels) {
        tagged.extend(list(level.parameters).iter().map(|item| (*item, index)));
    }
    // Stable: among equal entries the root-most level stays first, and dedup keeps it.
    tagged.sort_by_key(|entry| entry.0);
    tagged.dedup_by(|later, earlier| later.0 == earlier.0);
    tagged.into_iter().unzip()
}

/// Resolves the levels on the path from the tenant to a terminal, root first (each level
/// deeper than the one before; levels without parameters may be left out).
///
/// - values inherited as one piece ([`Field`], including the CVM list and the allow-list):
///   the deepest level that sets the value wins;
/// - floor limits: per currency, the deepest level wins;
/// - blocked BIN ranges and blocked card tokens: accumulated from every level and
///   deduplicated, so a level can never unblock what a level above blocked; the source of an
///   entry is the root-most level that blocks it.
///
/// The combined set is then checked against the rules between fields and the list maxima;
/// an error names the field and the deepest level involved. Runs in O(n log n) in the total
/// length of the lists.
pub fn resolve(levels: &[Level<'_>]) -> Result<Effective, ParameterError> {
    for pair in levels.windows(2) {
        if let [upper, lower] = pair
            && upper.kind >= lower.kind
        {
            return Err(ParameterError::Levels {
                reason: format!(
                    "must be root first, each deeper than the one before: {} {} comes before {} {}",
                    upper.kind, upper.node_id, lower.kind, lower.node_id
                ),
            });
        }
    }

    let mut values = RiskParameters::default();
    let mut field_sources = [None; Field::ALL.len()];

    // The deepest level that sets the value wins; only the winner is cloned.
    macro_rules! inherit {
        ($field:expr, $($path:tt)+) => {
            for (index, level) in indexed(levels).rev() {
                if let Some(value) = &level.parameters.$($path)+ {
                    values.$($path)+ = Some(value.clone());
                    field_sources[$field.index()] = Some(index);
                    break;
                }
            }
        };
    }
    inherit!(Field::TacDenial, terminal_action_codes.denial);
    inherit!(Field::TacOnline, terminal_action_codes.online);
    inherit!(Field::TacDefault, terminal_action_codes.default_code);
    inherit!(Field::RandomSelectionThreshold, random_selection.threshold);
    inherit!(
        Field::RandomSelectionTargetPercent,
        random_selection.target_percent
    );
    inherit!(
        Field::RandomSelectionMaxTargetPercent,
        random_selection.max_target_percent
    );
    inherit!(Field::CvmList, cvm_list);
    inherit!(Field::CvmRequiredLimit, cvm_required_limit);
    inherit!(
        Field::ContactlessTransactionLimit,
        contactless_transaction_limit
    );
    inherit!(Field::ContactlessFloorLimit, contactless_floor_limit);
    inherit!(
        Field::OfflinePerTransactionAmount,
        offline_limits.per_transaction_amount
    );
    inherit!(Field::OfflineMaxCount, offline_limits.max_count);
    inherit!(
        Field::OfflineMaxTotalAmount,
        offline_limits.max_total_amount
    );
    inherit!(Field::AllowedBinRanges, allowed_bin_ranges);
    inherit!(Field::MerchantCategoryCode, merchant_category_code);
    inherit!(Field::TransactionCurrency, transaction_currency);
    inherit!(Field::TerminalCountryCode, terminal_country_code);

    let mut floor_limit_sources = BTreeMap::new();
    for (index, level) in indexed(levels) {
        for (currency, amount) in &level.parameters.floor_limits {
            values.floor_limits.insert(*currency, *amount);
            floor_limit_sources.insert(*currency, index);
        }
    }

    let (blocked_bin_ranges, blocked_bin_range_sources) =
        accumulate(levels, |parameters| &parameters.blocked_bin_ranges);
    values.blocked_bin_ranges = blocked_bin_ranges;
    let (blocked_card_tokens, blocked_card_token_sources) =
        accumulate(levels, |parameters| &parameters.blocked_card_tokens);
    values.blocked_card_tokens = blocked_card_tokens;

    let effective = Effective {
        levels: levels
            .iter()
            .map(|level| (level.kind, level.node_id.to_owned()))
            .collect(),
        values,
        field_sources,
        floor_limit_sources,
        blocked_bin_range_sources,
        blocked_card_token_sources,
    };
    effective.check_combined(levels)?;
    Ok(effective)
}

impl Effective {
    fn source_at(&self, index: u8) -> Option<Source<'_>> {
        self.levels
            .get(usize::from(index))
            .map(|(level, node_id)| Source {
                level: *level,
                node_id,
            })
    }

    fn source_index(&self, path: &FieldPath) -> Option<u8> {
        match path {
            FieldPath::Field(field) => self.field_sources.get(field.index()).copied().flatten(),
            FieldPath::FloorLimit(currency) => self.floor_limit_sources.get(currency).copied(),
            FieldPath::BlockedBinRange(range) => self
                .values
                .blocked_bin_ranges
                .binary_search(range)
                .ok()
                .and_then(|position| self.blocked_bin_range_sources.get(position).copied()),
            FieldPath::BlockedCardToken(token) => self
                .values
                .blocked_card_tokens
                .binary_search(token)
                .ok()
                .and_then(|position| self.blocked_card_token_sources.get(position).copied()),
        }
    }

    fn combined_error(&self, field: &str, index: u8, reason: String) -> ParameterError {
        let (level, node_id) = self
            .levels
            .get(usize::from(index))
            .cloned()
            .unwrap_or((LevelKind::Tenant, String::new()));
        ParameterError::Combined {
            field: field.to_owned(),
            level,
            node_id,
            reason,
        }
    }

    /// The rules between fields and the list maxima, over the combined set.
    fn check_combined(&self, levels: &[Level<'_>]) -> Result<(), ParameterError> {
        if let Some(violation) = cross_field_violation(&self.values) {
            let field_index = self.source_index(&violation.field).unwrap_or(0);
            let related_index = self.source_index(&violation.related).unwrap_or(0);
            let describe = |index: u8| {
                self.source_at(index)
                    .map(|source| source.to_string())
                    .unwrap_or_default()
            };
            let reason = format!(
                "{}; {} from {}, {} from {}",
                violation.reason,
                violation.field,
                describe(field_index),
                violation.related,
                describe(related_index)
            );
            return Err(self.combined_error(
                &violation.field.to_string(),
                field_index.max(related_index),
                reason,
            ));
        }
        let deepest_contributor = |list: &dyn Fn(&RiskParameters) -> usize| {
            indexed(levels)
                .rev()
                .find(|(_, level)| list(level.parameters) > 0)
                .map_or(0, |(index, _)| index)
        };
        let ranges = self.values.blocked_bin_ranges.len();
        if ranges > MAX_BIN_RANGES {
            let index = deepest_contributor(&|parameters| parameters.blocked_bin_ranges.len());
            return Err(self.combined_error(
                "blocked_bin_ranges",
                index,
                format!("{ranges} ranges down the hierarchy, at most {MAX_BIN_RANGES}"),
            ));
        }
        let tokens = self.values.blocked_card_tokens.len();
        if tokens > MAX_BLOCKED_CARD_TOKENS {
            let index = deepest_contributor(&|parameters| parameters.blocked_card_tokens.len());
            return Err(self.combined_error(
                "blocked_card_tokens",
                index,
                format!("{tokens} tokens down the hierarchy, at most {MAX_BLOCKED_CARD_TOKENS}"),
            ));
        }
        Ok(())
    }

    /// The resolved values.
    pub fn values(&self) -> &RiskParameters {
        &self.values
    }

    /// The resolved values, taken out.
    pub fn into_values(self) -> RiskParameters {
        self.values
    }

    /// The level that supplied the value at `path`; `None` when no level sets it.
    pub fn source(&self, path: &FieldPath) -> Option<Source<'_>> {
        self.source_index(path)
            .and_then(|index| self.source_at(index))
    }

    /// The source of every value that is set: fields in schema order, then floor limits by
    /// currency, blocked BIN ranges and blocked card tokens in canonical order.
    pub fn sources(&self) -> impl Iterator<Item = (FieldPath, Source<'_>)> + '_ {
        let fields = Field::ALL.into_iter().filter_map(|field| {
            self.field_sources
                .get(field.index())
                .copied()
                .flatten()
                .map(|index| (FieldPath::Field(field), index))
        });
        let floor_limits = self
            .floor_limit_sources
            .iter()
            .map(|(currency, index)| (FieldPath::FloorLimit(*currency), *index));
        let ranges = self
            .values
            .blocked_bin_ranges
            .iter()
            .zip(&self.blocked_bin_range_sources)
            .map(|(range, index)| (FieldPath::BlockedBinRange(*range), *index));
        let tokens = self
            .values
            .blocked_card_tokens
            .iter()
            .zip(&self.blocked_card_token_sources)
            .map(|(token, index)| (FieldPath::BlockedCardToken(*token), *index));
        fields
            .chain(floor_limits)
            .chain(ranges)
            .chain(tokens)
            .filter_map(|(path, index)| self.source_at(index).map(|source| (path, source)))
    }

    /// The required values no level sets: [`REQUIRED_FIELDS`], and the floor limit of the
    /// transaction currency.
    pub fn missing_required(&self) -> Vec<FieldPath> {
        let mut missing: Vec<FieldPath> = REQUIRED_FIELDS
            .into_iter()
            .filter(|field| !field.is_set_in(&self.values))
            .map(FieldPath::Field)
            .collect();
        if let Some(currency) = self.values.transaction_currency
            && !self.values.floor_limits.contains_key(&currency)
        {
            missing.push(FieldPath::FloorLimit(currency));
        }
        missing
    }

    /// Refuses a set that lacks a required value (see [`Effective::missing_required`]); the
    /// error names the first one missing.
    pub fn check_complete(&self) -> Result<(), ParameterError> {
        match self.missing_required().first() {
            None => Ok(()),
            Some(path) => Err(ParameterError::Invalid {
                field: path.to_string(),
                reason: "required, but no level sets it".to_owned(),
            }),
        }
    }

    /// The protobuf form with the source of every value, in canonical order (see
    /// [`Effective::sources`]): what the platform's API shows.
    pub fn to_proto(&self) -> pb::EffectiveParameters {
        let mut proto = self.to_device_proto();
        proto.sources = self
            .sources()
            .map(|(path, source)| pb::ParameterSource {
                field: path.to_string(),
                level: source.level.to_proto().into(),
                node_id: source.node_id.to_owned(),
            })
            .collect();
        proto
    }

    /// The protobuf form without sources: what a terminal downloads (see
    /// [`crate::parameter_set()`]). A device needs no provenance, and every payload byte is
    /// hashed twice per Ed25519 signature and sent over the air.
    pub fn to_device_proto(&self) -> pb::EffectiveParameters {
        let currency = self.values.transaction_currency;
        pb::EffectiveParameters {
            values: Some(self.values.to_proto()),
            sources: Vec::new(),
            transaction_currency_numeric: currency.map_or(0, |c| u32::from(c.numeric())),
            transaction_currency_exponent: currency.map(|c| u32::from(c.exponent())),
        }
    }

    /// Whether a card would pass the BIN and token lists: not blocked by range or token, and
    /// inside the allow-list when there is one. `token` is the card's token under the tenant
    /// key.
    pub fn card_allowed(&self, pan: &crate::card::Pan, token: &CardToken) -> bool {
        if self.values.blocked_card_tokens.binary_search(token).is_ok() {
            return false;
        }
        if self
            .values
            .blocked_bin_ranges
            .iter()
            .any(|range| range.contains(pan))
        {
            return false;
        }
        match &self.values.allowed_bin_ranges {
            Some(allowed) if !allowed.is_empty() => {
                allowed.iter().any(|range: &BinRange| range.contains(pan))
            }
            _ => true,
        }
    }
}
