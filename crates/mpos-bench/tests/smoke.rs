//! The harness works: a quick append run on SQLite yields positive, finite throughputs; a
//! one-second hsm run (needs NATS at `MPOS_BENCH_NATS_URL`, default nats://127.0.0.1:4222)
//! translates PIN blocks without a single failure; a quick token run verifies every token it
//! issued; a quick attestation run judges real device chains under both Google roots the same
//! way at every call. (No timing assertions: this is a smoke test, not a performance test.)

use mpos_bench::append::{self, AppendConfig};
use mpos_bench::hsm::{self, HsmBenchConfig};
use mpos_bench::{Backend, Urls};

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_append_benchmark_on_sqlite_yields_positive_finite_numbers() {
    let config = AppendConfig::quick();
    let results = append::run(&config, &[Backend::Sqlite], &Urls::from_env())
        .await
        .expect("append benchmark");
    assert_eq!(results.len(), config.batches.len());
    for result in &results {
        assert_eq!(result.store.len(), config.repetitions);
        assert_eq!(result.raw.len(), config.repetitions);
        for value in result.store.iter().chain(&result.raw) {
            assert!(value.is_finite() && *value > 0.0, "{result:?}");
        }
        let ratio = result.ratio();
        assert!(ratio.is_finite() && ratio > 0.0, "{result:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_second_hsm_run_translates_every_pin_block_without_failures() {
    let config = HsmBenchConfig::smoke();
    let result = hsm::run(&config, &Urls::from_env())
        .await
        .expect("hsm benchmark (is NATS running at MPOS_BENCH_NATS_URL?)");
    assert_eq!(result.hsm.len(), 1);
    assert_eq!(result.echo.len(), 1);
    assert_eq!(result.failures(), 0, "{result:?}");
    assert_eq!(result.ksns, config.devices * config.transactions);
    for run in result.hsm.iter().chain(&result.echo) {
        assert!(run.completed > 0, "{run:?}");
        assert!(run.rate.is_finite() && run.rate > 0.0, "{run:?}");
        assert!(run.p50_us > 0.0 && run.p50_us <= run.p99_us, "{run:?}");
    }
    let ratio = result.ratio();
    assert!(ratio.is_finite() && ratio > 0.0, "{result:?}");
}

/// The token benchmark verifies every token it issued (a failed verification fails the run).
#[test]
fn the_quick_token_benchmark_verifies_every_token() {
    let config = mpos_bench::token::TokenBenchConfig::quick();
    let runs = mpos_bench::token::run(&config).expect("token benchmark");
    assert_eq!(runs.len(), config.repetitions);
    for run in &runs {
        assert!(run.rate.is_finite() && run.rate > 0.0, "{run:?}");
        assert!(run.floor.is_finite() && run.floor > 0.0, "{run:?}");
        assert!(run.warm.is_finite() && run.warm > 0.0, "{run:?}");
    }
}

/// The attestation benchmark examines and judges real device chains under both Google roots
/// and reproduces the set-up's verdict at every call (a different one fails the run).
#[test]
fn the_quick_attestation_benchmark_judges_every_chain() {
    use mpos_bench::attestation::{self, AttestationBenchConfig, Root};
    use mpos_proto::attestation::Verdict;

    let config = AttestationBenchConfig::quick();
    let result = attestation::run(&config).expect("attestation benchmark");
    assert_eq!(result.runs.len(), config.repetitions * 2);
    for root in [Root::Ec, Root::Rsa] {
        assert!(result.runs.iter().any(|run| run.root == root), "{root}");
        assert!(
            result.outcomes.iter().any(|outcome| outcome.root == root),
            "{root}"
        );
    }
    for run in &result.runs {
        for rate in [run.rate, run.chain_floor, run.signature_floor] {
            assert!(rate.is_finite() && rate > 0.0, "{run:?}");
        }
    }
    for outcome in &result.outcomes {
        assert!(
            matches!(outcome.verdict, Verdict::Allow | Verdict::Flag),
            "{outcome:?}"
        );
        assert!(!outcome.links.is_empty(), "{outcome:?}");
    }
    assert_eq!(result.status_entries, config.status_entries);
    assert!(!result.links.is_empty());
    assert!(result.links.iter().all(|link| link.rate > 0.0));
}
