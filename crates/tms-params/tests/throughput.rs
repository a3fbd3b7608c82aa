//! The service must recompute and sign 100,000 effective sets in under 5 s on 2 cores. This
//! check runs single-threaded, so it allows 10 s. Ignored by default (a debug build is far
//! slower); run it optimised:
//!
//! ```sh
//! cargo test --release -p tms-params --test throughput -- --ignored --nocapture
//! ```
//!
//! `TMS_PARAMS_THROUGHPUT_SETS` overrides the number of sets (the time limit then scales).

mod common;

use std::time::{Duration, Instant};

use common::{full, numbered_token, range, typed};
use ed25519_dalek::SigningKey;
use mpos_proto::terminal_management as pb;
use tms_params::{Level, LevelKind, parameter_set, resolve, sign};

/// A typical estate path: a full tenant set with 200 blocked tokens and 50 blocked ranges, a
/// merchant adding 50 tokens, a store and group overriding a few values, a terminal with its
/// own floor limit.
fn typical_path() -> Vec<pb::RiskParameters> {
    let mut tenant = full();
    tenant.blocked_card_tokens = (0..200).map(numbered_token).collect();
    tenant.blocked_bin_ranges = (0..50_u32)
        .map(|index| {
            let low = 600_000 + index * 100;
            range(&low.to_string(), &(low + 99).to_string())
        })
        .collect();
    let merchant = pb::RiskParameters {
        blocked_card_tokens: (150..200).chain(1_000..1_050).map(numbered_token).collect(),
        merchant_category_code: Some("5812".into()),
        ..Default::default()
    };
    let store = pb::RiskParameters {
        contactless_transaction_limit: Some(25_000),
        ..Default::default()
    };
    let group = pb::RiskParameters {
        terminal_action_codes: Some(pb::TerminalActionCodes {
            online: Some("FC50BCA000".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let terminal = pb::RiskParameters {
        floor_limits: vec![pb::FloorLimit {
            currency: "EUR".into(),
            amount: 2_000,
        }],
        ..Default::default()
    };
    vec![tenant, merchant, store, group, terminal]
}

#[test]
#[ignore = "timing check; run with --release"]
fn one_hundred_thousand_sets_resolve_and_sign_in_time() {
    let sets: u32 = std::env::var("TMS_PARAMS_THROUGHPUT_SETS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000);
    let stored: Vec<_> = typical_path().iter().map(typed).collect();
    let kinds = [
        LevelKind::Tenant,
        LevelKind::Merchant,
        LevelKind::Store,
        LevelKind::TerminalGroup,
        LevelKind::Terminal,
    ];
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let mut resolve_time = Duration::ZERO;
    let mut sign_time = Duration::ZERO;
    let mut payload_bytes = 0;
    for version in 0..sets {
        let started = Instant::now();
        let levels: Vec<Level<'_>> = stored
            .iter()
            .zip(kinds)
            .map(|(parameters, kind)| Level {
                kind,
                node_id: "node-0190f5a0-0000-7000-8000-000000000001",
                parameters,
            })
            .collect();
        let effective = resolve(&levels).expect("resolves");
        let set = parameter_set("t-1", "term-1", u64::from(version), 0, &effective);
        let resolved = Instant::now();
        let signed = sign(&set, &key, "params-1");
        sign_time += resolved.elapsed();
        resolve_time += resolved - started;
        payload_bytes = signed.payload.len();
    }
    let total = resolve_time + sign_time;
    println!(
        "{sets} sets: resolve and encode {resolve_time:?}, sign {sign_time:?}, total {total:?}, \
         {:?} per set, payload {payload_bytes} bytes",
        total / sets.max(1)
    );
    let limit = Duration::from_secs(10) * sets / 100_000;
    if !cfg!(debug_assertions) {
        assert!(total < limit, "{total:?} for {sets} sets, limit {limit:?}");
    }
}
