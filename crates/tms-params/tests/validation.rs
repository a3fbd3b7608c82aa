//! Every validation rule of a single level, and that each error names its field.

mod common;

use common::{full, numbered_token, range, token};
use mpos_proto::terminal_management as pb;
use tms_params::{
    Amount, MAX_BIN_RANGES, MAX_BLOCKED_CARD_TOKENS, MAX_FLOOR_LIMITS, ParameterError, validate,
};

/// Validates `parameters` and returns the error as `(field, message)`.
fn refused(parameters: &pb::RiskParameters) -> (String, String) {
    match validate(parameters) {
        Ok(typed) => panic!("accepted: {typed:?}"),
        Err(error) => (error.field().to_owned(), error.to_string()),
    }
}

fn assert_refused(parameters: &pb::RiskParameters, field: &str, contains: &str) {
    let (actual_field, message) = refused(parameters);
    assert_eq!(actual_field, field, "{message}");
    assert!(
        message.starts_with(&format!("{field}: ")),
        "message does not start with the field: {message}"
    );
    assert!(message.contains(contains), "{message:?} lacks {contains:?}");
}

#[test]
fn a_full_valid_set_and_an_empty_set_are_accepted() {
    let typed = validate(&full()).expect("valid");
    assert_eq!(typed.floor_limits.len(), 2);
    assert_eq!(
        typed
            .terminal_action_codes
            .default_code
            .map(|code| code.to_string()),
        Some("FC50BCA000".to_owned()),
        "hex masks are normalised to uppercase"
    );
    assert_eq!(
        validate(&pb::RiskParameters::default()),
        Ok(Default::default())
    );
}

#[test]
fn the_canonical_form_validates_to_the_same_set() {
    let typed = validate(&full()).expect("valid");
    assert_eq!(validate(&typed.to_proto()), Ok(typed));
}

#[test]
fn floor_limit_currencies_must_be_known_and_unique() {
    let mut set = full();
    set.floor_limits[1].currency = "XYZ".into();
    assert_refused(
        &set,
        "floor_limits[1].currency",
        "unknown or unsupported currency XYZ",
    );

    set.floor_limits[1].currency = "eur".into();
    assert_refused(&set, "floor_limits[1].currency", "3 uppercase letters");

    set.floor_limits[1].currency = "EUR".into();
    assert_refused(&set, "floor_limits[EUR]", "more than once");
}

#[test]
fn floor_limits_fit_the_four_byte_emv_field() {
    let mut set = full();
    set.floor_limits[0].amount = u64::from(u32::MAX) + 1;
    assert_refused(&set, "floor_limits[EUR]", "4-byte binary");
    set.floor_limits[0].amount = u64::from(u32::MAX);
    set.random_selection = None;
    assert!(validate(&set).is_ok());
}

#[test]
fn floor_limits_have_a_maximum_count() {
    let set = pb::RiskParameters {
        floor_limits: (0..=MAX_FLOOR_LIMITS)
            .map(|_| pb::FloorLimit {
                currency: "EUR".into(),
                amount: 1,
            })
            .collect(),
        ..Default::default()
    };
    assert_refused(&set, "floor_limits", "at most 64");
}

#[test]
fn terminal_action_codes_are_ten_hex_characters() {
    for (field, bad, contains) in [
        (
            "terminal_action_codes.denial",
            "001000000",
            "got 9 characters",
        ),
        (
            "terminal_action_codes.online",
            "FC50BCA0000",
            "got 11 characters",
        ),
        (
            "terminal_action_codes.default_code",
            "FC50BCA0ZZ",
            "hexadecimal",
        ),
        (
            "terminal_action_codes.default_code",
            "FC50BCA0é",
            "hexadecimal",
        ),
    ] {
        let mut set = full();
        let codes = set.terminal_action_codes.as_mut().expect("codes");
        match field {
            "terminal_action_codes.denial" => codes.denial = Some(bad.into()),
            "terminal_action_codes.online" => codes.online = Some(bad.into()),
            _ => codes.default_code = Some(bad.into()),
        }
        assert_refused(&set, field, contains);
    }
}

#[test]
fn random_selection_percentages_are_below_100_and_ordered() {
    let mut set = full();
    let random = set.random_selection.as_mut().expect("random");
    random.target_percent = Some(100);
    assert_refused(&set, "random_selection.target_percent", "0 to 99");

    let random = set.random_selection.as_mut().expect("random");
    random.target_percent = Some(20);
    random.max_target_percent = Some(u32::MAX);
    assert_refused(&set, "random_selection.max_target_percent", "0 to 99");

    let random = set.random_selection.as_mut().expect("random");
    random.target_percent = Some(60);
    random.max_target_percent = Some(50);
    assert_refused(
        &set,
        "random_selection.target_percent",
        "must not exceed random_selection.max_target_percent (60 > 50)",
    );
}

#[test]
fn random_selection_threshold_is_below_the_floor_limit_of_the_transaction_currency() {
    let mut set = full();
    set.random_selection.as_mut().expect("random").threshold = Some(5_000);
    assert_refused(
        &set,
        "random_selection.threshold",
        "must be less than floor_limits[EUR] (5000 >= 5000)",
    );

    // Only the floor limit of the transaction currency counts.
    set.transaction_currency = Some("USD".into());
    assert!(validate(&set).is_ok());

    // A zero floor limit (online only) allows a zero threshold.
    let mut set = full();
    set.floor_limits[0].amount = 0;
    set.random_selection.as_mut().expect("random").threshold = Some(0);
    assert!(validate(&set).is_ok());

    set.random_selection.as_mut().expect("random").threshold = Some(Amount::MAX + 1);
    assert_refused(&set, "random_selection.threshold", "12-digit");
}

#[test]
fn cvm_list_rules_follow_emv_book_3_annex_c3() {
    let cases: [(u32, u32, &str, &str); 5] = [
        (6, 0, "cvm_list.rules[1].method", "reserved for future use"),
        (29, 0, "cvm_list.rules[1].method", "reserved for future use"),
        (63, 0, "cvm_list.rules[1].method", "not a CVM method"),
        (64, 0, "cvm_list.rules[1].method", "not a CVM method"),
        (
            31,
            0x0A,
            "cvm_list.rules[1].condition",
            "not a CVM condition code",
        ),
    ];
    for (method, condition, field, contains) in cases {
        let mut set = full();
        let rule = &mut set.cvm_list.as_mut().expect("list").rules[1];
        rule.method = method;
        rule.condition = condition;
        assert_refused(&set, field, contains);
    }
    // Payment system and issuer methods, payment system conditions are accepted.
    let mut set = full();
    let rule = &mut set.cvm_list.as_mut().expect("list").rules[1];
    rule.method = 62;
    rule.condition = 0xFF;
    let typed = validate(&set).expect("valid");
    let list = typed.cvm_list.expect("list");
    // Tag 8E value: X, Y (4 bytes each), then 0x42 0x03 (enciphered PIN online, apply
    // succeeding, if terminal supports the CVM) and 0x3E 0xFF.
    assert_eq!(
        list.to_emv_bytes(),
        [0, 0, 0, 0, 0, 0, 0, 0, 0x42, 0x03, 0x3E, 0xFF]
    );
}

#[test]
fn cvm_list_amounts_and_rule_count_are_bounded() {
    let mut set = full();
    set.cvm_list.as_mut().expect("list").amount_x = u64::from(u32::MAX) + 1;
    assert_refused(&set, "cvm_list.amount_x", "4-byte binary");

    let mut set = full();
    set.cvm_list.as_mut().expect("list").amount_y = u64::MAX;
    assert_refused(&set, "cvm_list.amount_y", "4-byte binary");

    let mut set = full();
    set.cvm_list.as_mut().expect("list").rules.clear();
    assert_refused(&set, "cvm_list.rules", "at least one rule");

    let mut set = full();
    let list = set.cvm_list.as_mut().expect("list");
    list.rules = vec![list.rules[0]; 123];
    assert_refused(&set, "cvm_list.rules", "at most 122");
}

#[test]
fn amounts_are_at_most_twelve_digits() {
    let too_big = Some(Amount::MAX + 1);
    let mut set = full();
    set.cvm_required_limit = too_big;
    assert_refused(&set, "cvm_required_limit", "exceeds 999999999999");
    let mut set = full();
    set.contactless_transaction_limit = too_big;
    assert_refused(&set, "contactless_transaction_limit", "exceeds");
    let mut set = full();
    set.contactless_floor_limit = too_big;
    assert_refused(&set, "contactless_floor_limit", "exceeds");
    let mut set = full();
    set.offline_limits
        .as_mut()
        .expect("offline")
        .max_total_amount = too_big;
    assert_refused(&set, "offline_limits.max_total_amount", "exceeds");
    let mut set = full();
    set.offline_limits
        .as_mut()
        .expect("offline")
        .per_transaction_amount = Some(u64::MAX);
    assert_refused(&set, "offline_limits.per_transaction_amount", "exceeds");
}

#[test]
fn contactless_floor_limit_must_not_exceed_the_contactless_transaction_limit() {
    let mut set = full();
    set.contactless_floor_limit = Some(50_001);
    assert_refused(
        &set,
        "contactless_floor_limit",
        "must not exceed contactless_transaction_limit (50001 > 50000)",
    );
    set.contactless_floor_limit = Some(50_000);
    assert!(validate(&set).is_ok());
}

#[test]
fn offline_limits_are_consistent_and_bounded() {
    let mut set = full();
    set.offline_limits
        .as_mut()
        .expect("offline")
        .per_transaction_amount = Some(100_001);
    assert_refused(
        &set,
        "offline_limits.per_transaction_amount",
        "must not exceed offline_limits.max_total_amount",
    );
    let mut set = full();
    set.offline_limits.as_mut().expect("offline").max_count = Some(100_001);
    assert_refused(&set, "offline_limits.max_count", "exceeds 100000");
}

#[test]
fn bin_ranges_have_equal_length_prefixes_of_6_to_11_digits_in_order() {
    let cases = [
        (
            range("40000", "40009"),
            "allowed_bin_ranges[1].low",
            "6 to 11 digits",
        ),
        (
            range("400000", "4000991"),
            "allowed_bin_ranges[1].high",
            "same length",
        ),
        (
            range("400000123456", "400000123457"),
            "allowed_bin_ranges[1].low",
            "6 to 11",
        ),
        (
            range("4000a0", "400099"),
            "allowed_bin_ranges[1].low",
            "digits only",
        ),
        (
            range("400000", "+40009"),
            "allowed_bin_ranges[1].high",
            "digits only",
        ),
        (
            range("400099", "400000"),
            "allowed_bin_ranges[1]",
            "low must not be greater",
        ),
    ];
    for (bad, field, contains) in cases {
        let mut set = full();
        set.allowed_bin_ranges.as_mut().expect("allowed").ranges[1] = bad;
        assert_refused(&set, field, contains);
    }
    let mut set = full();
    set.blocked_bin_ranges.push(range("499999", "400000"));
    assert_refused(&set, "blocked_bin_ranges[1]", "low must not be greater");
}

#[test]
fn a_pan_typed_into_a_bin_field_is_not_echoed() {
    let mut set = full();
    set.blocked_bin_ranges = vec![range("4111111111111111", "4111111111111111")];
    let (_, message) = refused(&set);
    assert!(!message.contains("4111"), "{message}");
}

#[test]
fn bin_range_lists_have_a_maximum_length_and_are_deduplicated() {
    let mut set = full();
    set.blocked_bin_ranges = vec![range("400000", "400099"); MAX_BIN_RANGES + 1];
    assert_refused(&set, "blocked_bin_ranges", "at most 1000");

    let mut set = full();
    set.allowed_bin_ranges = Some(pb::BinRangeList {
        ranges: vec![range("400000", "400099"); MAX_BIN_RANGES + 1],
    });
    assert_refused(&set, "allowed_bin_ranges", "at most 1000");

    let mut set = full();
    set.blocked_bin_ranges = vec![
        range("510000", "510099"),
        range("400000", "400099"),
        range("510000", "510099"),
    ];
    let typed = validate(&set).expect("valid");
    let shown: Vec<String> = typed
        .blocked_bin_ranges
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["400000-400099", "510000-510099"]);
}

#[test]
fn an_empty_allow_list_is_kept_apart_from_an_unset_one() {
    let mut set = full();
    set.allowed_bin_ranges = Some(pb::BinRangeList::default());
    assert_eq!(
        validate(&set).expect("valid").allowed_bin_ranges,
        Some(Vec::new())
    );
    set.allowed_bin_ranges = None;
    assert_eq!(validate(&set).expect("valid").allowed_bin_ranges, None);
}

#[test]
fn blocked_card_tokens_are_32_bytes_and_bounded() {
    let mut set = full();
    set.blocked_card_tokens.push(vec![0xAB; 31]);
    assert_refused(
        &set,
        "blocked_card_tokens[1]",
        "must be 32 bytes (HMAC-SHA-256), got 31 bytes",
    );

    let mut set = full();
    set.blocked_card_tokens.push(Vec::new());
    assert_refused(&set, "blocked_card_tokens[1]", "got 0 bytes");

    let mut set = full();
    set.blocked_card_tokens = (0..=MAX_BLOCKED_CARD_TOKENS).map(numbered_token).collect();
    assert_refused(&set, "blocked_card_tokens", "at most 10000");

    let mut set = full();
    set.blocked_card_tokens = vec![token(2), token(1), token(1)];
    let typed = validate(&set).expect("valid");
    let shown: Vec<String> = typed
        .blocked_card_tokens
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [hex::encode(token(1)), hex::encode(token(2))],
        "sorted, deduplicated, shown in lowercase hex"
    );
}

#[test]
fn merchant_category_code_is_four_digits() {
    for bad in ["541", "54111", "54a1", "", "５４１１"] {
        let mut set = full();
        set.merchant_category_code = Some(bad.into());
        assert_refused(&set, "merchant_category_code", "4 digits");
    }
    let mut set = full();
    set.merchant_category_code = Some("0742".into());
    let typed = validate(&set).expect("valid");
    assert_eq!(
        typed.merchant_category_code.map(|mcc| mcc.to_string()),
        Some("0742".to_owned())
    );
}

#[test]
fn transaction_currency_must_be_supported() {
    let mut set = full();
    set.transaction_currency = Some("XXX".into());
    assert_refused(&set, "transaction_currency", "unknown or unsupported");
}

#[test]
fn terminal_country_code_is_three_digits() {
    for (bad, contains) in [
        ("27", "3 digits"),
        ("2760", "3 digits"),
        ("2a6", "3 digits"),
        ("000", "not a country"),
    ] {
        let mut set = full();
        set.terminal_country_code = Some(bad.into());
        assert_refused(&set, "terminal_country_code", contains);
    }
    let mut set = full();
    set.terminal_country_code = Some("040".into());
    let typed = validate(&set).expect("valid");
    assert_eq!(
        typed.terminal_country_code.map(|code| code.numeric()),
        Some(40)
    );
}

#[test]
fn errors_are_the_invalid_variant_with_the_field() {
    let mut set = full();
    set.merchant_category_code = Some("1".into());
    assert!(matches!(
        validate(&set),
        Err(ParameterError::Invalid { field, .. }) if field == "merchant_category_code"
    ));
}
