//! Properties: the parsers and `validate` are total, `resolve` is deterministic, root-only
//! values keep their root source, and the accumulated block lists are the union of the
//! levels' lists.

mod common;

use std::collections::BTreeSet;

use mpos_proto::terminal_management as pb;
use proptest::prelude::*;
use prost::Message;
use tms_params::{
    ActionCode, BinRange, CardToken, CountryCode, Currency, Field, FieldPath, Level, LevelKind,
    Mcc, Pan, RiskParameters, resolve, validate,
};

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,20}",
        "[0-9A-Fa-f]{0,70}",
        "[A-Z]{3}",
    ]
}

prop_compose! {
    fn arbitrary_set()(
        currencies in prop::collection::vec((any_text(), any::<u64>()), 0..4),
        tac in prop::option::of((
            prop::option::of(any_text()),
            prop::option::of(any_text()),
            prop::option::of(any_text()),
        )),
        random in prop::option::of((
            prop::option::of(any::<u64>()),
            prop::option::of(0_u32..120),
            prop::option::of(any::<u32>()),
        )),
        cvm in prop::option::of((
            any::<u64>(),
            0_u64..10_000,
            prop::collection::vec((0_u32..70, any::<bool>(), 0_u32..300), 0..4),
        )),
        amounts in prop::collection::vec(prop::option::of(any::<u64>()), 6),
        max_count in prop::option::of(any::<u32>()),
        allowed in prop::option::of(prop::collection::vec((any_text(), any_text()), 0..3)),
        blocked in prop::collection::vec((any_text(), any_text()), 0..3),
        tokens in prop::collection::vec(prop::collection::vec(any::<u8>(), 30..34), 0..3),
        codes in prop::collection::vec(prop::option::of(any_text()), 3),
    ) -> pb::RiskParameters {
        let ranges = |list: Vec<(String, String)>| {
            list.into_iter().map(|(low, high)| pb::BinRange { low, high }).collect::<Vec<_>>()
        };
        pb::RiskParameters {
            floor_limits: currencies
                .into_iter()
                .map(|(currency, amount)| pb::FloorLimit { currency, amount })
                .collect(),
            terminal_action_codes: tac.map(|(denial, online, default_code)| {
                pb::TerminalActionCodes { denial, online, default_code }
            }),
            random_selection: random.map(|(threshold, target_percent, max_target_percent)| {
                pb::RandomSelection { threshold, target_percent, max_target_percent }
            }),
            cvm_list: cvm.map(|(amount_x, amount_y, rules)| pb::CvmList {
                amount_x,
                amount_y,
                rules: rules
                    .into_iter()
                    .map(|(method, apply, condition)| pb::CvRule {
                        method,
                        apply_succeeding_if_unsuccessful: apply,
                        condition,
                    })
                    .collect(),
            }),
            cvm_required_limit: amounts[0],
            contactless_transaction_limit: amounts[1],
            contactless_floor_limit: amounts[2],
            offline_limits: Some(pb::OfflineLimits {
                per_transaction_amount: amounts[3],
                max_count,
                max_total_amount: amounts[4],
            }),
            allowed_bin_ranges: allowed.map(|list| pb::BinRangeList { ranges: ranges(list) }),
            blocked_bin_ranges: ranges(blocked),
            blocked_card_tokens: tokens,
            merchant_category_code: codes[0].clone(),
            transaction_currency: codes[1].clone(),
            terminal_country_code: codes[2].clone(),
        }
    }
}

/// A valid level whose values cannot conflict with any other level of this strategy: floors
/// are at most 1000 and limits at least 1000, thresholds below 100 and floor limits from
/// 100, and so on. Block lists draw from small pools so that levels overlap.
fn compatible_level() -> impl Strategy<Value = RiskParameters> {
    (
        prop::option::of(1_000_u64..100_000),
        prop::option::of(0_u64..=1_000),
        prop::option::of(0_u64..100),
        prop::option::of(0_u32..=50),
        prop::option::of(50_u32..=99),
        prop::collection::vec(
            (
                prop::sample::select(vec!["EUR", "USD", "GBP", "JPY"]),
                100_u64..1_000_000,
            ),
            0..3,
        ),
        prop::collection::vec(0_u32..40, 0..6),
        prop::collection::vec(0_u8..40, 0..6),
        prop::option::of(prop::sample::select(vec!["5411", "5812", "4111"])),
        prop::option::of(prop::collection::vec(0_u32..40, 0..3)),
    )
        .prop_map(
            |(limit, floor, threshold, target, max, floors, blocked, tokens, mcc, allowed)| {
                let range = |index: u32| {
                    let low = 400_000 + index * 100;
                    pb::BinRange {
                        low: low.to_string(),
                        high: (low + 99).to_string(),
                    }
                };
                let mut floor_limits = Vec::new();
                for (currency, amount) in floors {
                    if !floor_limits
                        .iter()
                        .any(|limit: &pb::FloorLimit| limit.currency == currency)
                    {
                        floor_limits.push(pb::FloorLimit {
                            currency: currency.into(),
                            amount,
                        });
                    }
                }
                let set = pb::RiskParameters {
                    floor_limits,
                    random_selection: Some(pb::RandomSelection {
                        threshold,
                        target_percent: target,
                        max_target_percent: max,
                    }),
                    contactless_transaction_limit: limit,
                    contactless_floor_limit: floor,
                    allowed_bin_ranges: allowed.map(|list| pb::BinRangeList {
                        ranges: list.into_iter().map(range).collect(),
                    }),
                    blocked_bin_ranges: blocked.into_iter().map(range).collect(),
                    blocked_card_tokens: tokens.into_iter().map(|seed| vec![seed; 32]).collect(),
                    merchant_category_code: mcc.map(Into::into),
                    transaction_currency: Some("EUR".into()),
                    ..Default::default()
                };
                validate(&set).expect("the strategy builds valid sets")
            },
        )
}

const KINDS: [LevelKind; 5] = [
    LevelKind::Tenant,
    LevelKind::Merchant,
    LevelKind::Store,
    LevelKind::TerminalGroup,
    LevelKind::Terminal,
];
const NODES: [&str; 5] = ["t", "m", "s", "g", "term"];

fn levels(sets: &[RiskParameters]) -> Vec<Level<'_>> {
    sets.iter()
        .zip(KINDS.iter().zip(NODES))
        .map(|(parameters, (kind, node_id))| Level {
            kind: *kind,
            node_id,
            parameters,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn validate_never_panics_and_accepted_sets_round_trip(set in arbitrary_set()) {
        if let Ok(typed) = validate(&set) {
            prop_assert_eq!(validate(&typed.to_proto()), Ok(typed));
        }
    }

    #[test]
    fn the_text_parsers_are_total(text in any_text(), other in any_text()) {
        if let Ok(code) = ActionCode::parse(&text) {
            prop_assert_eq!(code.to_string(), text.to_uppercase());
        }
        if let Ok(range) = BinRange::parse(&text, &other) {
            prop_assert_eq!(range.to_string(), format!("{text}-{other}"));
        }
        if let Ok(token) = CardToken::parse(&text) {
            prop_assert_eq!(token.to_string(), text.to_lowercase());
        }
        if let Ok(mcc) = Mcc::parse(&text) {
            prop_assert_eq!(mcc.to_string(), text.clone());
        }
        if let Ok(country) = CountryCode::parse(&text) {
            prop_assert_eq!(country.to_string(), text.clone());
        }
        if let Ok(currency) = Currency::from_alpha(&text) {
            prop_assert_eq!(currency.alpha(), text.as_str());
        }
        if let Ok(pan) = Pan::parse(&text) {
            let digits = pan.expose();
            prop_assert_eq!(digits.as_str(), text.as_str());
            prop_assert_eq!(format!("{pan:?}"), "***");
        }
    }

    #[test]
    fn resolve_is_deterministic(sets in prop::collection::vec(compatible_level(), 1..=5)) {
        let levels = levels(&sets);
        let first = resolve(&levels).expect("compatible levels resolve");
        let second = resolve(&levels).expect("compatible levels resolve");
        prop_assert_eq!(first.to_proto().encode_to_vec(), second.to_proto().encode_to_vec());
        prop_assert_eq!(first, second);
    }

    #[test]
    fn a_value_set_only_at_the_root_is_inherited_unchanged(
        sets in prop::collection::vec(compatible_level(), 1..=5),
        mcc in prop::sample::select(vec!["0742", "5999"]),
    ) {
        let mut sets = sets;
        for set in sets.iter_mut().skip(1) {
            set.merchant_category_code = None;
        }
        let root_mcc = Mcc::parse(mcc).expect("mcc");
        sets[0].merchant_category_code = Some(root_mcc);
        let levels = levels(&sets);
        let effective = resolve(&levels).expect("resolves");
        prop_assert_eq!(effective.values().merchant_category_code, Some(root_mcc));
        let source = effective
            .source(&FieldPath::Field(Field::MerchantCategoryCode))
            .expect("source");
        prop_assert_eq!((source.level, source.node_id), (LevelKind::Tenant, "t"));
    }

    #[test]
    fn accumulated_block_lists_are_the_union(sets in prop::collection::vec(compatible_level(), 1..=5)) {
        let levels = levels(&sets);
        let effective = resolve(&levels).expect("resolves");
        let ranges: BTreeSet<BinRange> =
            sets.iter().flat_map(|set| set.blocked_bin_ranges.iter().copied()).collect();
        let tokens: BTreeSet<CardToken> =
            sets.iter().flat_map(|set| set.blocked_card_tokens.iter().copied()).collect();
        prop_assert_eq!(&effective.values().blocked_bin_ranges, &ranges.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(&effective.values().blocked_card_tokens, &tokens.into_iter().collect::<Vec<_>>());
        // Each entry's source is the root-most level that blocks it.
        for token in &effective.values().blocked_card_tokens {
            let first = sets
                .iter()
                .position(|set| set.blocked_card_tokens.contains(token))
                .expect("some level blocks it");
            let source = effective.source(&FieldPath::BlockedCardToken(*token)).expect("source");
            prop_assert_eq!(source.level, KINDS[first]);
        }
        // The deepest allow-list wins.
        let deepest = sets.iter().rev().find_map(|set| set.allowed_bin_ranges.clone());
        prop_assert_eq!(&effective.values().allowed_bin_ranges, &deepest);
    }
}
