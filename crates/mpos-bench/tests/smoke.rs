//! The harness works: a quick append run on SQLite yields positive, finite throughputs.
//! (No timing assertions: this is a smoke test, not a performance test.)

use mpos_bench::append::{self, AppendConfig};
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
