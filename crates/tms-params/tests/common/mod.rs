//! Builders shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use mpos_proto::terminal_management as pb;
use tms_params::{RiskParameters, validate};

/// A fully set, valid tenant-level parameter set.
pub fn full() -> pb::RiskParameters {
    pb::RiskParameters {
        floor_limits: vec![
            pb::FloorLimit {
                currency: "EUR".into(),
                amount: 5_000,
            },
            pb::FloorLimit {
                currency: "USD".into(),
                amount: 6_000,
            },
        ],
        terminal_action_codes: Some(pb::TerminalActionCodes {
            denial: Some("0010000000".into()),
            online: Some("FC50BCA000".into()),
            default_code: Some("fc50bca000".into()),
        }),
        random_selection: Some(pb::RandomSelection {
            threshold: Some(1_000),
            target_percent: Some(20),
            max_target_percent: Some(50),
        }),
        cvm_list: Some(pb::CvmList {
            amount_x: 0,
            amount_y: 0,
            rules: vec![
                pb::CvRule {
                    method: 2,
                    apply_succeeding_if_unsuccessful: true,
                    condition: 3,
                },
                pb::CvRule {
                    method: 31,
                    apply_succeeding_if_unsuccessful: false,
                    condition: 0,
                },
            ],
        }),
        cvm_required_limit: Some(5_000),
        contactless_transaction_limit: Some(50_000),
        contactless_floor_limit: Some(5_000),
        offline_limits: Some(pb::OfflineLimits {
            per_transaction_amount: Some(10_000),
            max_count: Some(50),
            max_total_amount: Some(100_000),
        }),
        allowed_bin_ranges: Some(pb::BinRangeList {
            ranges: vec![range("400000", "499999"), range("510000", "559999")],
        }),
        blocked_bin_ranges: vec![range("400000", "400099")],
        blocked_card_tokens: vec![token(1)],
        merchant_category_code: Some("5411".into()),
        transaction_currency: Some("EUR".into()),
        terminal_country_code: Some("276".into()),
    }
}

pub fn range(low: &str, high: &str) -> pb::BinRange {
    pb::BinRange {
        low: low.into(),
        high: high.into(),
    }
}

/// A well-formed token, distinct per seed.
pub fn token(seed: u8) -> Vec<u8> {
    vec![seed; 32]
}

/// A well-formed token, distinct per index.
pub fn numbered_token(index: usize) -> Vec<u8> {
    let mut token = vec![0; 32];
    token[..8].copy_from_slice(&(index as u64).to_be_bytes());
    token
}

pub fn typed(parameters: &pb::RiskParameters) -> RiskParameters {
    validate(parameters).expect("valid parameters")
}
