//! `payshield-sim`: runs the payShield simulator until Ctrl-C.
//!
//! ```text
//! payshield-sim [--listen 127.0.0.1:1500] --lmk-hex <64 hex digits> [--header-len 4]
//! ```

#![forbid(unsafe_code)]

use std::process::ExitCode;

use paycrypto::SecretBytes;
use payshield_sim::{SimConfig, Simulator};

const USAGE: &str =
    "usage: payshield-sim [--listen ADDR] --lmk-hex HEX64 [--header-len N] [--max-message-len N]";

struct Args {
    listen: String,
    lmk_hex: String,
    header_len: usize,
    max_message_len: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:1500".to_owned(),
        lmk_hex: String::new(),
        header_len: 4,
        max_message_len: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--lmk-hex" => args.lmk_hex = value()?,
            "--header-len" => {
                args.header_len = value()?
                    .parse()
                    .map_err(|_| "--header-len is not a number".to_owned())?;
            }
            "--max-message-len" => {
                args.max_message_len = Some(
                    value()?
                        .parse()
                        .map_err(|_| "--max-message-len is not a number".to_owned())?,
                );
            }
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.lmk_hex.is_empty() {
        return Err(format!("--lmk-hex is required\n{USAGE}"));
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let lmk = match SecretBytes::from_hex("LMK", &args.lmk_hex) {
        Ok(lmk) => lmk,
        Err(error) => {
            eprintln!("--lmk-hex: {error}");
            return ExitCode::from(2);
        }
    };
    let mut config = SimConfig::new(lmk);
    config.header_len = args.header_len;
    if let Some(max) = args.max_message_len {
        config.max_message_len = max;
    }
    let sim = match Simulator::bind(&args.listen, config).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("payshield-sim: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("payshield-sim listening on {}", sim.local_addr());
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}
