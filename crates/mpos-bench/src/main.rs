//! `mpos-bench [append|replay|outbox|all] [--quick] [--markdown]`: kernel benchmarks, each
//! figure next to a floor measured in the same run.

use clap::{Parser, ValueEnum};
use mpos_bench::append::{self, AppendConfig};
use mpos_bench::outbox::{self, BusKind, OutboxConfig};
use mpos_bench::replay::{self, ReplayConfig};
use mpos_bench::report::Report;
use mpos_bench::{Backend, Urls, machine};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum What {
    Append,
    Replay,
    Outbox,
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
