//! `mpos-bench [append|replay|outbox|hsm|tms|ki|token|attestation|payments|all] [--quick] [--markdown]`:
//! kernel, hsm-proxy, terminal-management and attestation benchmarks, each figure next to a
//! floor measured in the same run.

use clap::{Parser, ValueEnum};
use mpos_bench::append::{self, AppendConfig};
use mpos_bench::hsm::{self, HsmBenchConfig};
use mpos_bench::outbox::{self, BusKind, OutboxConfig};
use mpos_bench::replay::{self, ReplayConfig};
use mpos_bench::report::Report;
use mpos_bench::{Backend, Urls, ki, machine, tms};

/// mimalloc instead of glibc's malloc: request handling allocates from many threads at once
/// (ADR 12, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum What {
    Append,
    Replay,
    Outbox,
    Hsm,
    Tms,
    /// key-injection: keys injected per second (not part of `all`: ~10 minutes).
    Ki,
    /// The SoftPOS attestation token: ES256 verifications per second.
    Token,
    /// SoftPOS attestation: a real key attestation chain plus policy, verifications per second.
    Attestation,
    /// The payment path: authorizations per second and latency, on mposd and distributed
    /// (needs the release binaries: `cargo build --release --bins`).
    Payments,
    All,
}

/// Benchmarks of the mPOS event-sourcing kernel. URLs come from MPOS_BENCH_POSTGRES_URL,
/// MPOS_BENCH_NATS_URL and MPOS_BENCH_KAFKA_URL.
#[derive(Debug, Parser)]
#[command(name = "mpos-bench")]
struct Cli {
    /// Which benchmark to run.
    #[arg(value_enum, default_value = "all")]
    what: What,
    /// Small sizes: a smoke run (< 60 s).
    #[arg(long)]
    quick: bool,
    /// Print only the markdown block.
    #[arg(long)]
    markdown: bool,
    /// hsm: requests in flight (default 64).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    hsm_concurrency: Option<u32>,
    /// hsm: measured seconds per run (default 10; 2 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    hsm_seconds: Option<u32>,
    /// hsm: repetitions (default 3; 1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    hsm_repetitions: Option<u32>,
    /// ki: devices injected per ECDH repetition (default 10,000; 300 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    ki_devices: Option<u32>,
    /// ki: devices injected per TR-34 repetition, 0 for none (default 10,000; 100 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    ki_tr34_devices: Option<u32>,
    /// ki: devices in flight (default 256).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    ki_concurrency: Option<u32>,
    /// ki: key-injection's derivation workers (default 8, as MPOS_KI_WORKERS).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    ki_workers: Option<u32>,
    /// payments: load levels, PEDs paying in a closed loop, comma-separated (default 1,4,32;
    /// 1,4 with --quick); 0 alone for none.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(0..=10_000))]
    payments_peds: Option<Vec<u32>>,
    /// payments: offered rates (payments/s) run in an open loop, comma-separated (default 1000;
    /// none with --quick); 0 alone for none.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(0..=100_000))]
    payments_rates: Option<Vec<u32>>,
    /// payments: PEDs serving the open loop (default 32).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    payments_open_peds: Option<u32>,
    /// payments: measured seconds per repetition (default 20; 3 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    payments_seconds: Option<u32>,
    /// payments: repetitions per deployment (default 3; 1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    payments_repetitions: Option<u32>,
    /// payments: only `mposd` or only `distributed` (default both).
    #[arg(long)]
    payments_only: Option<String>,
    /// ki: repetitions, each on fresh services and devices (default 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    ki_repetitions: Option<u32>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let urls = Urls::from_env();
    let mut report = Report {
        command: std::iter::once("mpos-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        ..Report::default()
    };
    eprintln!("mpos-bench: collecting machine info …");
    report.machine = Some(machine::collect(&urls.postgres).await);
    let backends = [Backend::Sqlite, Backend::Postgres];
    let mut failed = false;

    if matches!(cli.what, What::Append | What::All) {
        let config = if cli.quick {
            AppendConfig::quick()
        } else {
            AppendConfig::full()
        };
        match append::run(&config, &backends, &urls).await {
            Ok(results) => report.add_append(&results),
            Err(error) => {
                failed = true;
                report.notes.push(format!("append FAILED: {error:#}"));
            }
        }
    }
    if matches!(cli.what, What::Replay | What::All) {
        let config = if cli.quick {
            ReplayConfig::quick()
        } else {
            ReplayConfig::full()
        };
        match replay::run(&config, &backends, &urls).await {
            Ok(results) => report.add_replay(&results),
            Err(error) => {
                failed = true;
                report.notes.push(format!("replay FAILED: {error:#}"));
            }
        }
        match replay::run_kafka(&config, &urls).await {
            Ok(result) => report.add_kafka_replay(&result),
            Err(error) => {
                failed = true;
                report
                    .notes
                    .push(format!("replay from Kafka FAILED: {error:#}"));
            }
        }
    }
    if matches!(cli.what, What::Outbox | What::All) {
        let config = if cli.quick {
            OutboxConfig::quick()
        } else {
            OutboxConfig::full()
        };
        report.notes.push(format!(
            "outbox: writer appends {} events every {} ms (one event per append, or ten per append, as the case says; each append is one transaction); the relay is OutboxRelay::run (batch 500, wakes on every append, poll 1 s); lag = receive time − envelope.occurred_at; floor = the same envelopes published straight to the bus at the same pace (one publish per tick)",
            config.per_tick(),
            config.tick.as_millis()
        ));
        for bus in [BusKind::Nats, BusKind::Kafka] {
            match outbox::run(&config, &[bus], &urls).await {
                Ok(results) => report.add_outbox(&results),
                Err(error) => {
                    failed = true;
                    report.notes.push(format!("outbox {bus} FAILED: {error:#}"));
                }
            }
        }
    }
    if matches!(cli.what, What::Token | What::All) {
        let config = if cli.quick {
            mpos_bench::token::TokenBenchConfig::quick()
        } else {
            mpos_bench::token::TokenBenchConfig::full()
        };
        match mpos_bench::token::run(&config) {
            Ok(runs) => mpos_bench::token::add_to(&mut report, &config, &runs),
            Err(error) => {
                failed = true;
                report.notes.push(format!("token FAILED: {error:#}"));
            }
        }
    }
    if matches!(cli.what, What::Attestation | What::All) {
        let config = if cli.quick {
            mpos_bench::attestation::AttestationBenchConfig::quick()
        } else {
            mpos_bench::attestation::AttestationBenchConfig::full()
        };
        match mpos_bench::attestation::run(&config) {
            Ok(result) => mpos_bench::attestation::add_to(&mut report, &config, &result),
            Err(error) => {
                failed = true;
                report.notes.push(format!("attestation FAILED: {error:#}"));
            }
        }
    }
    if matches!(cli.what, What::Hsm | What::All) {
        let mut config = if cli.quick {
            HsmBenchConfig::quick()
        } else {
            HsmBenchConfig::full()
        };
        if let Some(concurrency) = cli.hsm_concurrency {
            config.concurrency = concurrency as usize;
        }
        if let Some(seconds) = cli.hsm_seconds {
            config.duration = std::time::Duration::from_secs(seconds.into());
        }
        if let Some(repetitions) = cli.hsm_repetitions {
            config.repetitions = repetitions as usize;
        }
        report.notes.push(format!(
            "hsm: hsm-proxy in process (SQLite store in a temp dir, soft:// backend, NATS at {}), BDK and ZPK imported as components through ImportKey; closed loop of {} workers on a separate NATS connection for {} s after {:.1} s of warm-up, {} repetitions alternating with the floor; floor = a NATS request-reply echo of the same request payload, responder in this process on a third connection (same mpos-bus adapter), same concurrency and duration",
            urls.nats,
            config.concurrency,
            config.duration.as_secs_f64(),
            config.warmup.as_secs_f64(),
            config.repetitions
        ));
        match hsm::run(&config, &urls).await {
            Ok(result) => {
                if result.failures() > 0 {
                    failed = true;
                }
                report.add_hsm(&result);
            }
            Err(error) => {
                failed = true;
                report.notes.push(format!("hsm FAILED: {error:#}"));
            }
        }
    }

    if matches!(cli.what, What::Tms | What::All) {
        let config = if cli.quick {
            tms::TmsBenchConfig::quick()
        } else {
            tms::TmsBenchConfig::full()
        };
        report.notes.push(format!(
            "tms: terminal-management in process (SQLite in a temp dir, in-process bus, device API on mTLS over loopback); 10 merchants × 10 stores × 10 groups; {} terminals of which {} PEDs bound with their certificates and activated over mTLS, the rest appended to the log; tenant set with 20 blocked BIN ranges and 200 blocked card tokens; recompute = ParameterSets::issue_all on every core after a tenant-level change; downloads: {} in flight for {} s, each PED on its own keep-alive connection",
            config.terminals,
            config.devices,
            config.concurrency,
            config.duration.as_secs()
        ));
        match tms::run(&config).await {
            Ok(result) => tms::add_to(&mut report, &result),
            Err(error) => {
                failed = true;
                report.notes.push(format!("tms FAILED: {error:#}"));
            }
        }
    }

    if cli.what == What::Ki {
        let mut config = if cli.quick {
            ki::KiBenchConfig::quick()
        } else {
            ki::KiBenchConfig::full()
        };
        if let Some(devices) = cli.ki_devices {
            config.devices = devices as usize;
        }
        if let Some(devices) = cli.ki_tr34_devices {
            config.tr34_devices = devices as usize;
        }
        if let Some(concurrency) = cli.ki_concurrency {
            config.concurrency = concurrency as usize;
        }
        if let Some(workers) = cli.ki_workers {
            config.workers = workers as usize;
        }
        if let Some(repetitions) = cli.ki_repetitions {
            config.repetitions = repetitions as usize;
        }
        report.notes.push(format!(
            "ki: embedded deployment as mposd runs it: hsm-proxy (soft:// backend), terminal-management and key-injection in this process, each on its own SQLite log, one in-process memory:// bus, key-injection reading terminal-management's log directly; {} workers; devices = the terminal simulator over mTLS on mposd's one device listener (activate on terminal-management's routes, then long-poll/download/unwrap/confirm on key-injection's, one connection per device), {} in flight; timed from the first activation to the last confirmation; TR-34 device certificates share {} RSA keys; floor = up to {} bare hsm-proxy ExportKey calls of the same format over the same bus, at the same concurrency and one at a time (the better of the two is the floor; the hsm-proxy records a BDK's concurrent exports together, conflicts are retried and counted)",
            config.workers, config.concurrency, config.rsa_pool, config.floor_calls
        ));
        match ki::run(&config).await {
            Ok(series) => ki::add_to(&mut report, &config, &series),
            Err(error) => {
                failed = true;
                report.notes.push(format!("ki FAILED: {error:#}"));
            }
        }
    }

    if matches!(cli.what, What::Payments | What::All) {
        let mut config = if cli.quick {
            mpos_bench::payments::PaymentsBenchConfig::quick()
        } else {
            mpos_bench::payments::PaymentsBenchConfig::full()
        };
        if let Some(levels) = cli.payments_peds {
            config.levels = levels
                .into_iter()
                .filter(|level| *level > 0)
                .map(|level| level as usize)
                .collect();
        }
        if let Some(rates) = cli.payments_rates {
            config.rates = rates.into_iter().filter(|rate| *rate > 0).collect();
        }
        if let Some(peds) = cli.payments_open_peds {
            config.open_peds = peds as usize;
        }
        if let Some(seconds) = cli.payments_seconds {
            config.duration = std::time::Duration::from_secs(seconds.into());
        }
        if let Some(repetitions) = cli.payments_repetitions {
            config.repetitions = repetitions as usize;
        }
        match cli.payments_only.as_deref() {
            None => {}
            Some("mposd") => config.layouts = vec![mpos_e2e::processes::Layout::Mposd],
            Some("distributed") => {
                config.layouts = vec![mpos_e2e::processes::Layout::PerService];
            }
            Some(other) => {
                eprintln!("--payments-only: mposd or distributed, not {other}");
                return std::process::ExitCode::FAILURE;
            }
        }
        match mpos_bench::payments::run(&config, &urls).await {
            Ok(series) => mpos_bench::payments::add_to(&mut report, &config, &series),
            Err(error) => {
                failed = true;
                report.notes.push(format!("payments FAILED: {error:#}"));
            }
        }
    }

    if cli.markdown {
        print!("{}", report.markdown());
    } else {
        println!("{}", report.text());
        println!("--- markdown ---\n");
        print!("{}", report.markdown());
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
