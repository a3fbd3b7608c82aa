//! When a device's key slot needs attention: its DUKPT counter nears exhaustion, its key passed
//! its cryptoperiod, or its injections keep failing. Pure policy; the service raises the
//! alarms as events.
//!
//! A DUKPT device skips every counter with too many one-bits (TDES: more than 10 of 21, ANSI
//! X9.24-1; AES: more than 16 of 32, X9.24-3-2017), so "how many transactions are left" is the
//! number of valid counters above the current one, counted here exactly.

use std::time::Duration;

use mpos_proto::key_injection as pb;
use paycrypto::dukpt::{aes, tdes};

/// How urgent an alarm is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Plan a re-injection.
    Warning,
    /// Re-inject now: the device is about to stop (or has stopped) working.
    Critical,
}

/// Warning when no more than this share of a device's transactions is left (per mille).
pub const COUNTER_WARNING_PER_MILLE: u64 = 100;
/// Critical when no more than this share is left (per mille).
pub const COUNTER_CRITICAL_PER_MILLE: u64 = 10;
/// Warning this long before a key's cryptoperiod ends.
pub const CRYPTOPERIOD_NOTICE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Consecutive failed injections of one terminal that raise an alarm.
pub const FAILED_INJECTIONS_ALARM: u32 = 3;

/// `C(n, k)`, exact for `n ≤ 32`.
fn binomial(n: u32, k: u32) -> u64 {
    if k > n {
        return 0;
    }
    let k = k.min(n - k);
    (0..k).fold(1_u64, |acc, i| acc * u64::from(n - i) / u64::from(i + 1))
}

/// How many `width`-bit values `v` with `1 ≤ popcount(v) ≤ max_ones` satisfy `v ≤ limit`.
fn valid_up_to(limit: u64, width: u32, max_ones: u32) -> u64 {
    let mut count = 0;
    let mut ones_above = 0;
    for bit in (0..width).rev() {
        if limit >> bit & 1 == 1 {
            // Values equal to `limit` above `bit`, 0 at `bit`, anything below.
            count += (0..=max_ones.saturating_sub(ones_above))
                .map(|ones| binomial(bit, ones))
                .sum::<u64>();
            ones_above += 1;
            if ones_above > max_ones {
                return count - 1;
            }
        }
    }
    // Plus `limit` itself (its ones are at most `max_ones` here), minus the value 0 (counted
    // above, or equal to `limit`): `count` as it stands.
    count
}

/// The DUKPT variant's counter rules.
fn rules(algorithm: pb::DukptAlgorithm) -> Option<(u32, u32)> {
    match algorithm {
        pb::DukptAlgorithm::Tdes => Some((tdes::COUNTER_BITS, tdes::MAX_COUNTER_ONE_BITS)),
        pb::DukptAlgorithm::Aes128 => Some((32, aes::MAX_COUNTER_ONE_BITS)),
        pb::DukptAlgorithm::Unspecified => None,
    }
}

/// Every transaction a device of `algorithm` can make (TDES: 1,048,575).
pub fn total_transactions(algorithm: pb::DukptAlgorithm) -> u64 {
    rules(algorithm).map_or(0, |(width, ones)| {
        valid_up_to((1_u64 << width) - 1, width, ones)
    })
}

/// Transactions left to a device whose last counter used is `counter`.
pub fn remaining_transactions(algorithm: pb::DukptAlgorithm, counter: u32) -> u64 {
    rules(algorithm).map_or(0, |(width, ones)| {
        let limit = u64::from(counter).min((1_u64 << width) - 1);
        total_transactions(algorithm) - valid_up_to(limit, width, ones)
    })
}

/// The alarm for a device whose last counter used is `counter`, if any.
pub fn counter_alarm(algorithm: pb::DukptAlgorithm, counter: u32) -> Option<Severity> {
    let total = total_transactions(algorithm);
    if total == 0 {
        return None;
    }
    let left = remaining_transactions(algorithm, counter);
    if left * 1_000 <= total * COUNTER_CRITICAL_PER_MILLE {
        Some(Severity::Critical)
    } else if left * 1_000 <= total * COUNTER_WARNING_PER_MILLE {
        Some(Severity::Warning)
    } else {
        None
    }
}

/// The alarm for a key injected at `injected_at_us` with `cryptoperiod`, at `now_us`.
pub fn cryptoperiod_alarm(
    injected_at_us: i64,
    cryptoperiod: Duration,
    now_us: i64,
) -> Option<Severity> {
    let period_us = i64::try_from(cryptoperiod.as_micros()).unwrap_or(i64::MAX);
    let notice_us = i64::try_from(CRYPTOPERIOD_NOTICE.as_micros()).unwrap_or(i64::MAX);
    let end = injected_at_us.saturating_add(period_us);
    if now_us >= end {
        Some(Severity::Critical)
    } else if now_us >= end.saturating_sub(notice_us) {
        Some(Severity::Warning)
    } else {
        None
    }
}

/// Whether a terminal's consecutive failed injections call for an operator.
pub fn failing_injections_alarm(consecutive_failures: u32) -> Option<Severity> {
    (consecutive_failures >= FAILED_INJECTIONS_ALARM).then_some(Severity::Warning)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every valid TDES counter, by brute force through paycrypto's own rule.
    fn brute_force_tdes() -> Vec<u32> {
        (0..=tdes::COUNTER_MASK)
            .filter(|counter| tdes::is_valid_counter(*counter))
            .collect()
    }

    #[test]
    fn a_tdes_device_has_2_to_the_20_minus_1_transactions() {
        // Σ_{k=1..10} C(21, k) = 2^20 − 1 = 1,048,575 (half of the 2^21 patterns have at most
        // ten one-bits, minus the all-zero one): the "about one million transactions" of
        // X9.24-1. Checked against paycrypto's counter rule, counter by counter.
        assert_eq!(total_transactions(pb::DukptAlgorithm::Tdes), 1_048_575);
        assert_eq!(brute_force_tdes().len(), 1_048_575);
        assert_eq!(
            remaining_transactions(pb::DukptAlgorithm::Tdes, 0),
            1_048_575
        );
        assert_eq!(
            remaining_transactions(pb::DukptAlgorithm::Tdes, tdes::LAST_COUNTER),
            0
        );
    }

    #[test]
    fn an_aes_device_has_every_32_bit_counter_with_at_most_16_ones() {
        // Σ_{k=1..16} C(32, k) = (2^32 + C(32, 16)) / 2 − 1, C(32, 16) = 601,080,390.
        assert_eq!(binomial(32, 16), 601_080_390);
        assert_eq!(
            total_transactions(pb::DukptAlgorithm::Aes128),
            (4_294_967_296 + 601_080_390) / 2 - 1
        );
        assert_eq!(
            remaining_transactions(pb::DukptAlgorithm::Aes128, aes::LAST_COUNTER),
            0
        );
        assert_eq!(
            remaining_transactions(pb::DukptAlgorithm::Aes128, aes::LAST_COUNTER - 1),
            1
        );
    }

    #[test]
    fn remaining_matches_a_brute_force_count_for_tdes() {
        let valid = brute_force_tdes();
        for counter in [1, 2, 3, 0x3FF, 0x400, 0x1000, 0xFFC00, 0x1F_F7FF, 0x1F_F800] {
            let expected = valid.iter().filter(|&&v| v > counter).count() as u64;
            assert_eq!(
                remaining_transactions(pb::DukptAlgorithm::Tdes, counter),
                expected,
                "{counter:#x}"
            );
        }
    }

    #[test]
    fn alarms_rise_with_use_and_time() {
        assert_eq!(counter_alarm(pb::DukptAlgorithm::Tdes, 1), None);
        // The last tenth, and the last hundredth, of the counters.
        let valid = brute_force_tdes();
        let at_share = |per_mille: usize| valid[valid.len() - valid.len() * per_mille / 1_000];
        assert_eq!(
            counter_alarm(pb::DukptAlgorithm::Tdes, at_share(100)),
            Some(Severity::Warning)
        );
        assert_eq!(
            counter_alarm(pb::DukptAlgorithm::Tdes, at_share(5)),
            Some(Severity::Critical)
        );
        let day = 24 * 3600 * 1_000_000_i64;
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(cryptoperiod_alarm(0, year, 300 * day), None);
        assert_eq!(
            cryptoperiod_alarm(0, year, 340 * day),
            Some(Severity::Warning)
        );
        assert_eq!(
            cryptoperiod_alarm(0, year, 365 * day),
            Some(Severity::Critical)
        );
        assert_eq!(failing_injections_alarm(2), None);
        assert_eq!(failing_injections_alarm(3), Some(Severity::Warning));
    }

    proptest! {
        #[test]
        fn remaining_only_falls_as_the_counter_moves_on(a in any::<u32>(), b in any::<u32>()) {
            let (low, high) = (a.min(b), a.max(b));
            for algorithm in [pb::DukptAlgorithm::Tdes, pb::DukptAlgorithm::Aes128] {
                prop_assert!(
                    remaining_transactions(algorithm, high) <= remaining_transactions(algorithm, low)
                );
            }
            // One valid counter more used, one transaction fewer left.
            if aes::is_valid_counter(a) && a > 1 {
                prop_assert_eq!(
                    remaining_transactions(pb::DukptAlgorithm::Aes128, a - 1)
                        - remaining_transactions(pb::DukptAlgorithm::Aes128, a),
                    1
                );
            }
        }
    }
}
