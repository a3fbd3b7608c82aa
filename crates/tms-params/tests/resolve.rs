//! Inheritance down the hierarchy and the provenance of every value.

mod common;

use common::{full, numbered_token, range, token, typed};
use mpos_proto::terminal_management as pb;
use tms_params::{
    BinRange, CardToken, Currency, Effective, Field, FieldPath, Level, LevelKind,
    MAX_BLOCKED_CARD_TOKENS, Pan, ParameterError, RiskParameters, Source, TokenKey, resolve,
};

fn level<'a>(kind: LevelKind, node_id: &'a str, parameters: &'a RiskParameters) -> Level<'a> {
    Level {
        kind,
        node_id,
        parameters,
    }
}

fn source(effective: &Effective, path: impl Into<FieldPath>) -> Option<(LevelKind, String)> {
    effective
        .source(&path.into())
        .map(|Source { level, node_id }| (level, node_id.to_owned()))
}

fn at(level: LevelKind, node: &str) -> Option<(LevelKind, String)> {
    Some((level, node.to_owned()))
}

fn eur() -> Currency {
    Currency::from_alpha("EUR").expect("EUR")
}

#[test]
fn a_deeper_level_overrides_a_scalar_and_the_rest_is_inherited() {
    let tenant = typed(&full());
    let store = typed(&pb::RiskParameters {
        contactless_transaction_limit: Some(25_000),
        terminal_action_codes: Some(pb::TerminalActionCodes {
            online: Some("0000000000".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let effective = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Store, "s-1", &store),
    ])
    .expect("resolves");

    let values = effective.values();
    assert_eq!(
        values
            .contactless_transaction_limit
            .map(|amount| amount.minor_units()),
        Some(25_000)
    );
    assert_eq!(
        source(&effective, Field::ContactlessTransactionLimit),
        at(LevelKind::Store, "s-1")
    );
    assert_eq!(
        source(&effective, Field::TacOnline),
        at(LevelKind::Store, "s-1")
    );
    // The sibling action codes stay the tenant's: each code inherits on its own.
    assert_eq!(
        values.terminal_action_codes.denial,
        tenant.terminal_action_codes.denial
    );
    assert_eq!(
        source(&effective, Field::TacDenial),
        at(LevelKind::Tenant, "t-1")
    );
    assert_eq!(values.cvm_list, tenant.cvm_list);
    assert_eq!(
        source(&effective, Field::CvmList),
        at(LevelKind::Tenant, "t-1")
    );
}

#[test]
fn floor_limits_are_inherited_per_currency() {
    let tenant = typed(&full());
    let terminal = typed(&pb::RiskParameters {
        floor_limits: vec![
            pb::FloorLimit {
                currency: "EUR".into(),
                amount: 2_000,
            },
            pb::FloorLimit {
                currency: "GBP".into(),
                amount: 3_000,
            },
        ],
        ..Default::default()
    });
    let effective = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Terminal, "term-9", &terminal),
    ])
    .expect("resolves");
    let limits: Vec<(String, u64)> = effective
        .values()
        .floor_limits
        .iter()
        .map(|(currency, amount)| (currency.alpha().to_owned(), amount.minor_units()))
        .collect();
    assert_eq!(
        limits,
        [
            ("EUR".to_owned(), 2_000),
            ("GBP".to_owned(), 3_000),
            ("USD".to_owned(), 6_000)
        ]
    );
    let usd = Currency::from_alpha("USD").expect("USD");
    assert_eq!(
        source(&effective, FieldPath::FloorLimit(eur())),
        at(LevelKind::Terminal, "term-9")
    );
    assert_eq!(
        source(&effective, FieldPath::FloorLimit(usd)),
        at(LevelKind::Tenant, "t-1")
    );
}

#[test]
fn blocked_lists_accumulate_and_keep_the_root_most_source() {
    let tenant = typed(&full()); // blocks 400000-400099 and token(1)
    let merchant = typed(&pb::RiskParameters {
        blocked_bin_ranges: vec![range("510000", "510099"), range("400000", "400099")],
        blocked_card_tokens: vec![token(2), token(1)],
        ..Default::default()
    });
    let terminal = typed(&pb::RiskParameters {
        blocked_card_tokens: vec![token(3)],
        ..Default::default()
    });
    let effective = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Merchant, "m-1", &merchant),
        level(LevelKind::Terminal, "term-1", &terminal),
    ])
    .expect("resolves");
    let values = effective.values();
    let ranges: Vec<String> = values
        .blocked_bin_ranges
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ranges, ["400000-400099", "510000-510099"]);
    let tokens: Vec<String> = values
        .blocked_card_tokens
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(tokens, [1, 2, 3].map(|seed| hex::encode(token(seed))));

    let blocked = |low: &str, high: &str| {
        FieldPath::BlockedBinRange(BinRange::parse(low, high).expect("range"))
    };
    assert_eq!(
        source(&effective, blocked("400000", "400099")),
        at(LevelKind::Tenant, "t-1"),
        "the merchant repeating the tenant's block does not take it over"
    );
    assert_eq!(
        source(&effective, blocked("510000", "510099")),
        at(LevelKind::Merchant, "m-1")
    );
    let token_path =
        |seed: u8| FieldPath::BlockedCardToken(CardToken::from_slice(&token(seed)).expect("token"));
    assert_eq!(
        source(&effective, token_path(1)),
        at(LevelKind::Tenant, "t-1")
    );
    assert_eq!(
        source(&effective, token_path(2)),
        at(LevelKind::Merchant, "m-1")
    );
    assert_eq!(
        source(&effective, token_path(3)),
        at(LevelKind::Terminal, "term-1")
    );
    assert_eq!(source(&effective, token_path(4)), None);
}

#[test]
fn a_child_cannot_unblock_what_a_parent_blocked() {
    let tenant = typed(&full());
    // An empty list at the terminal is "adds nothing", not "clears".
    let terminal = typed(&pb::RiskParameters::default());
    let effective = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Terminal, "term-1", &terminal),
    ])
    .expect("resolves");
    assert_eq!(
        effective.values().blocked_bin_ranges,
        tenant.blocked_bin_ranges
    );
    assert_eq!(
        effective.values().blocked_card_tokens,
        tenant.blocked_card_tokens
    );
}

#[test]
fn the_deepest_allow_list_replaces_the_ones_above_and_an_empty_one_clears() {
    let tenant = typed(&full());
    let group = typed(&pb::RiskParameters {
        allowed_bin_ranges: Some(pb::BinRangeList {
            ranges: vec![range("37000000", "37999999")],
        }),
        ..Default::default()
    });
    let effective = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::TerminalGroup, "g-1", &group),
    ])
    .expect("resolves");
    assert_eq!(
        effective.values().allowed_bin_ranges,
        group.allowed_bin_ranges
    );
    assert_eq!(
        source(&effective, Field::AllowedBinRanges),
        at(LevelKind::TerminalGroup, "g-1")
    );

    let terminal = typed(&pb::RiskParameters {
        allowed_bin_ranges: Some(pb::BinRangeList::default()),
        ..Default::default()
    });
    let effective = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::TerminalGroup, "g-1", &group),
        level(LevelKind::Terminal, "term-1", &terminal),
    ])
    .expect("resolves");
    assert_eq!(effective.values().allowed_bin_ranges, Some(Vec::new()));
    assert_eq!(
        source(&effective, Field::AllowedBinRanges),
        at(LevelKind::Terminal, "term-1")
    );
}

#[test]
fn levels_must_be_root_first_and_distinct() {
    let empty = RiskParameters::default();
    for kinds in [
        [LevelKind::Store, LevelKind::Tenant],
        [LevelKind::Store, LevelKind::Store],
    ] {
        let error = resolve(&[level(kinds[0], "a", &empty), level(kinds[1], "b", &empty)])
            .expect_err("refused");
        assert!(matches!(error, ParameterError::Levels { .. }), "{error}");
        assert!(
            error.to_string().starts_with("levels: must be root first"),
            "{error}"
        );
    }
    let effective = resolve(&[]).expect("no levels resolve to an empty set");
    assert_eq!(effective.values(), &RiskParameters::default());
    assert_eq!(effective.sources().count(), 0);
}

#[test]
fn a_combined_violation_names_the_field_and_the_level_that_broke_it() {
    // The tenant allows contactless up to 500.00 with a floor of 50.00; a store lowers the
    // transaction limit below the inherited floor.
    let tenant = typed(&full());
    let store = typed(&pb::RiskParameters {
        contactless_transaction_limit: Some(4_000),
        ..Default::default()
    });
    let error = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Store, "s-7", &store),
    ])
    .expect_err("refused");
    match &error {
        ParameterError::Combined {
            field,
            level,
            node_id,
            ..
        } => {
            assert_eq!(field, "contactless_floor_limit");
            assert_eq!(*level, LevelKind::Store);
            assert_eq!(node_id, "s-7");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "contactless_floor_limit (set at store s-7): must not exceed \
         contactless_transaction_limit (5000 > 4000); contactless_floor_limit from tenant t-1, \
         contactless_transaction_limit from store s-7"
    );

    // A terminal raising the floor above the inherited limit is blamed the same way.
    let terminal = typed(&pb::RiskParameters {
        contactless_floor_limit: Some(60_000),
        ..Default::default()
    });
    let error = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Terminal, "term-1", &terminal),
    ])
    .expect_err("refused");
    assert!(
        matches!(&error, ParameterError::Combined { level: LevelKind::Terminal, node_id, .. } if node_id == "term-1"),
        "{error}"
    );
}

#[test]
fn the_random_selection_threshold_is_checked_against_the_inherited_floor_limit() {
    let tenant = typed(&full()); // EUR floor 5000, threshold 1000
    let merchant = typed(&pb::RiskParameters {
        floor_limits: vec![pb::FloorLimit {
            currency: "EUR".into(),
            amount: 800,
        }],
        ..Default::default()
    });
    let error = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Merchant, "m-1", &merchant),
    ])
    .expect_err("refused");
    assert_eq!(error.field(), "random_selection.threshold");
    assert!(
        error.to_string().contains(
            "random_selection.threshold from tenant t-1, floor_limits[EUR] from merchant m-1"
        ),
        "{error}"
    );

    // Switching the terminal to USD makes the EUR floor irrelevant.
    let terminal = typed(&pb::RiskParameters {
        transaction_currency: Some("USD".into()),
        ..Default::default()
    });
    assert!(
        resolve(&[
            level(LevelKind::Tenant, "t-1", &tenant),
            level(LevelKind::Merchant, "m-1", &merchant),
            level(LevelKind::Terminal, "term-1", &terminal),
        ])
        .is_ok()
    );
}

#[test]
fn offline_limits_are_checked_across_levels() {
    let tenant = typed(&full()); // per transaction 10000, total 100000
    let store = typed(&pb::RiskParameters {
        offline_limits: Some(pb::OfflineLimits {
            max_total_amount: Some(5_000),
            ..Default::default()
        }),
        ..Default::default()
    });
    let error = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Store, "s-1", &store),
    ])
    .expect_err("refused");
    assert_eq!(error.field(), "offline_limits.per_transaction_amount");
    assert!(matches!(
        error,
        ParameterError::Combined {
            level: LevelKind::Store,
            ..
        }
    ));
}

#[test]
fn the_accumulated_token_list_is_bounded() {
    let half = MAX_BLOCKED_CARD_TOKENS / 2 + 1;
    let tenant = typed(&pb::RiskParameters {
        blocked_card_tokens: (0..half).map(numbered_token).collect(),
        ..Default::default()
    });
    let merchant = typed(&pb::RiskParameters {
        blocked_card_tokens: (half..2 * half).map(numbered_token).collect(),
        ..Default::default()
    });
    let error = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Merchant, "m-1", &merchant),
    ])
    .expect_err("refused");
    assert_eq!(error.field(), "blocked_card_tokens");
    assert!(matches!(
        error,
        ParameterError::Combined {
            level: LevelKind::Merchant,
            ..
        }
    ));
    assert!(error.to_string().contains("at most 10000"), "{error}");
}

#[test]
fn the_protobuf_form_names_every_source() {
    let tenant = typed(&full());
    let terminal = typed(&pb::RiskParameters {
        merchant_category_code: Some("5812".into()),
        ..Default::default()
    });
    let effective = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Terminal, "term-1", &terminal),
    ])
    .expect("resolves");
    let proto = effective.to_proto();
    assert_eq!(proto.transaction_currency_numeric, 978);
    assert_eq!(proto.transaction_currency_exponent, Some(2));
    let sources: Vec<(String, pb::ParameterLevel, String)> = proto
        .sources
        .iter()
        .map(|source| (source.field.clone(), source.level(), source.node_id.clone()))
        .collect();
    // 17 fields, 2 floor limits, 1 blocked range, 1 token.
    assert_eq!(sources.len(), 21);
    for expected in [
        (
            "merchant_category_code",
            pb::ParameterLevel::Terminal,
            "term-1",
        ),
        (
            "contactless_transaction_limit",
            pb::ParameterLevel::Tenant,
            "t-1",
        ),
        ("floor_limits[EUR]", pb::ParameterLevel::Tenant, "t-1"),
        (
            "blocked_bin_ranges[400000-400099]",
            pb::ParameterLevel::Tenant,
            "t-1",
        ),
    ] {
        assert!(
            sources.contains(&(expected.0.to_owned(), expected.1, expected.2.to_owned())),
            "{expected:?} missing from {sources:?}"
        );
    }
    assert!(sources.contains(&(
        format!("blocked_card_tokens[{}]", hex::encode(token(1))),
        pb::ParameterLevel::Tenant,
        "t-1".to_owned()
    )));
    let values = tms_params::validate(proto.values.as_ref().expect("values")).expect("valid");
    assert_eq!(&values, effective.values());
}

#[test]
fn completeness_lists_the_required_values_no_level_sets() {
    let tenant = typed(&pb::RiskParameters {
        transaction_currency: Some("EUR".into()),
        merchant_category_code: Some("5411".into()),
        ..Default::default()
    });
    let effective = resolve(&[level(LevelKind::Tenant, "t-1", &tenant)]).expect("resolves");
    let missing: Vec<String> = effective
        .missing_required()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        missing,
        [
            "terminal_action_codes.denial",
            "terminal_action_codes.online",
            "terminal_action_codes.default_code",
            "terminal_country_code",
            "floor_limits[EUR]"
        ]
    );
    let error = effective.check_complete().expect_err("incomplete");
    assert_eq!(
        error.to_string(),
        "terminal_action_codes.denial: required, but no level sets it"
    );
    let full_tenant = typed(&full());
    let effective = resolve(&[level(LevelKind::Tenant, "t-1", &full_tenant)]).expect("resolves");
    assert_eq!(effective.check_complete(), Ok(()));
}

#[test]
fn card_checks_apply_the_block_and_allow_lists() {
    let key = TokenKey::new(&[7; 32]).expect("key");
    // Visa test PANs (Luhn-valid); 4000000000000002 falls in the blocked 400000-400099.
    let blocked_by_range = Pan::parse("4000000000000002").expect("pan");
    let allowed = Pan::parse("4111111111111111").expect("pan");
    let outside_allow_list = Pan::parse("378282246310005").expect("pan");
    let tenant = typed(&full());
    let terminal = typed(&pb::RiskParameters {
        blocked_card_tokens: vec![CardToken::from_pan(&key, &allowed).bytes().to_vec()],
        ..Default::default()
    });
    let effective = resolve(&[level(LevelKind::Tenant, "t-1", &tenant)]).expect("resolves");
    let token_of = |pan: &Pan| CardToken::from_pan(&key, pan);
    assert!(!effective.card_allowed(&blocked_by_range, &token_of(&blocked_by_range)));
    assert!(effective.card_allowed(&allowed, &token_of(&allowed)));
    assert!(!effective.card_allowed(&outside_allow_list, &token_of(&outside_allow_list)));

    let effective = resolve(&[
        level(LevelKind::Tenant, "t-1", &tenant),
        level(LevelKind::Terminal, "term-1", &terminal),
    ])
    .expect("resolves");
    assert!(!effective.card_allowed(&allowed, &token_of(&allowed)));
}
