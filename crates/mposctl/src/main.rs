//! `mposctl`: the mPOS platform's operator command line.
//!
//! Commands: [`calc`], the operator's payment-crypto calculator over the `paycrypto` crate
//! (hex in, one JSON object out), and [`sim`], the terminal simulator (`sim terminal` prints
//! one JSON line per step, the last one the summary or the error), and [`audit`]
//! (`audit verify`: every service's hash chain and signed checkpoints, with the first bad
//! position of a log that is not intact), and [`inspect`] (one aggregate's state, rebuilt from
//! its events, and its history) and [`events`] (`events tail`: a service's events followed
//! live on the broker, one JSON line each) and [`replay`] (a service's events from its log,
//! filtered, into a JSON-lines file for an auditor).
//!
//! Output contract (every command):
//!
//! * success: exactly one JSON object on stdout, exit status 0 (the streaming commands,
//!   `sim terminal` and `events tail`, print one JSON line per step or event first, the last
//!   line being the summary or the error);
//! * a caller error (bad hex, wrong length, unknown value, missing argument, nothing found):
//!   one JSON object `{"code":"bad_request"|"unsupported"|"not_found","message":"…"}` on
//!   stdout, exit status 2;
//! * a verification that does not match (MAC, CVV, KCV, an audit trail that is not intact):
//!   `{"code":"verification_failed",…}` (with the full `report` for `audit verify`), exit
//!   status 1; a broker or database that cannot be reached: `{"code":"unavailable",…}`, exit
//!   status 1.
//!
//! Error messages never contain key bytes, PINs or PANs.

mod audit;
mod calc;
mod error;
mod events;
mod inspect;
mod read_models;
mod replay;
mod sim;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// The mPOS platform's operator command line.
#[derive(Debug, Parser)]
#[command(name = "mposctl", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Payment-crypto calculator: one subcommand per paycrypto operation, hex in, JSON out.
    Calc(calc::CalcArgs),
    /// Terminal simulator: manufacturer CA, device identities, and a simulated PED run
    /// against the platform's device APIs.
    Sim(sim::SimArgs),
    /// The audit trail: `audit verify` checks every service's hash chain and signed
    /// checkpoints, embedded (`--data-dir`) or distributed (`--database SERVICE=URL`).
    Audit(audit::AuditArgs),
    /// One aggregate's current state, rebuilt from its events, and its full event history,
    /// embedded (`--data-dir`) or distributed (`--database URL`).
    Inspect(inspect::InspectArgs),
    /// The platform's events on the broker: `events tail` follows a service's stream live,
    /// one JSON line per event, its payload decoded.
    Events(events::EventsArgs),
    /// A service's events from its log, filtered, into a JSON-lines file for an auditor,
    /// with the file's SHA-256.
    Replay(replay::ReplayArgs),
}

fn run(cli: Cli) -> Result<serde_json::Value, CliError> {
    match cli.command {
        Command::Calc(args) => calc::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Events(args) => events::run(args),
        Command::Replay(args) => replay::run(&args),
    }
}

/// Writes one JSON object and a newline on stdout.
fn emit(value: &serde_json::Value) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{value}").and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return error::report_clap(&err),
    };
    match run(cli) {
        Ok(value) => emit(&value),
        Err(err) => {
            let status = emit(&err.to_json());
            if status == ExitCode::SUCCESS {
                ExitCode::from(err.exit_status())
            } else {
                status
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Clap's own consistency checks over every subcommand (unique names, valid groups).
    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
