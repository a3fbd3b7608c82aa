//! `mposctl sim`: the terminal simulator ([`terminal_sim`]) on the command line.
//!
//! * `sim ca`: a manufacturer CA (`ca.pem`, `ca.key`);
//! * `sim device`: a device identity issued by that CA (`device.pem`, `device.key`);
//! * `sim terminal`: boots a simulated PED against the platform's device APIs and prints one
//!   JSON line per step (activation, key receipt, parameters, each payment), the last one a
//!   summary. No key material is printed; PANs are masked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use paycrypto::pin::{Pan, Pin};
use serde_json::{Value, json};
use terminal_sim::session::{self, Session};
use terminal_sim::{
    DeviceIdentity, DeviceKeyKind, ManufacturerCa, Terminal, TerminalConfig, Track2,
};
use zeroize::Zeroizing;

use crate::error::CliError;

type Result<T> = std::result::Result<T, CliError>;

/// `mposctl sim`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// What to do.
    #[command(subcommand)]
    op: SimCommand,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Creates a manufacturer CA: DIR/ca.pem and DIR/ca.key.
    Ca(CaArgs),
    /// Issues a device identity with the CA of --ca: DIR/device.pem and DIR/device.key.
    Device(DeviceArgs),
    /// Runs a simulated PED: activation, initial key, parameters, payments.
    Terminal(TerminalArgs),
}

/// A key kind on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// RSA-2048 (TR-34 key transport).
    Rsa,
    /// P-256 (ECDH).
    Ec,
}

impl Kind {
    fn device_kind(self) -> DeviceKeyKind {
        match self {
            Self::Rsa => DeviceKeyKind::Rsa2048,
            Self::Ec => DeviceKeyKind::P256,
        }
    }
}

#[derive(Debug, Args)]
struct CaArgs {
    /// The CA's common name.
    #[arg(long)]
    name: String,
    /// The directory to write ca.pem and ca.key into (created).
    #[arg(long)]
    out: PathBuf,
    /// The CA's key.
    #[arg(long, value_enum, default_value = "ec")]
    kind: Kind,
}

#[derive(Debug, Args)]
struct DeviceArgs {
    /// The CA directory (ca.pem, ca.key).
    #[arg(long)]
    ca: PathBuf,
    /// The certificate serial number, hex.
    #[arg(long)]
    serial: String,
    /// The device key: rsa (TR-34) or ec (ECDH).
    #[arg(long, value_enum)]
    kind: Kind,
    /// The directory to write device.pem and device.key into (created).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct TerminalArgs {
    /// The terminal id the device is bound to.
    #[arg(long)]
    terminal_id: String,
    /// The device directory (device.pem, device.key).
    #[arg(long)]
    device: PathBuf,
    /// terminal-management's device API (https://…).
    #[arg(long)]
    tms_url: String,
    /// key-injection's device API (https://…).
    #[arg(long)]
    ki_url: String,
    /// PEM file of the CA certificate(s) of the platform's TLS servers.
    #[arg(long)]
    server_ca: PathBuf,
    /// PEM file of the CA certificate the KDH certificate must chain to (TR-34).
    #[arg(long)]
    kdh_ca: PathBuf,
    /// The parameter-signing public key (Ed25519, 64 hex digits or base64). Without it the
    /// device fetches the platform's key on first use.
    #[arg(long)]
    parameter_key: Option<String>,
    /// How many payments (one PIN block and one card data encipherment each).
    #[arg(long, default_value_t = 1)]
    payments: u32,
    /// How long to wait for the initial key, seconds.
    #[arg(long, default_value_t = 120)]
    key_wait_secs: u64,
    /// The test card's PAN.
    #[arg(long, default_value = "4012345678909")]
    pan: String,
    /// The test PIN.
    #[arg(long, default_value = "1234")]
    pin: String,
}

/// Runs `mposctl sim …`.
pub(crate) fn run(args: SimArgs) -> Result<Value> {
    match args.op {
        SimCommand::Ca(args) => ca(&args),
        SimCommand::Device(args) => device(&args),
        SimCommand::Terminal(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| CliError::failed(format!("tokio runtime: {error}")))?;
            runtime.block_on(terminal(args))
        }
    }
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

fn ca(args: &CaArgs) -> Result<Value> {
    let ca = ManufacturerCa::generate_with(&args.name, args.kind.device_kind())?;
    ca.save(&args.out)?;
    Ok(json!({
        "step": "ca",
        "name": ca.name(),
        "kind": args.kind.device_kind().name(),
        "certificate": path_text(&args.out.join(terminal_sim::pki::CA_CERTIFICATE_FILE)),
        "key": path_text(&args.out.join(terminal_sim::pki::CA_KEY_FILE)),
    }))
}

fn device(args: &DeviceArgs) -> Result<Value> {
    let serial = hex::decode(args.serial.trim())
        .map_err(|_| CliError::bad_request("--serial: not hexadecimal"))?;
    let ca = ManufacturerCa::load(&args.ca)?;
    let identity = ca.issue(&serial, args.kind.device_kind())?;
    identity.save(&args.out)?;
    Ok(json!({
        "step": "device",
        "serial": hex::encode_upper(&serial),
        "kind": identity.kind().name(),
        "issuer": ca.name(),
        "certificate": path_text(&args.out.join(terminal_sim::pki::DEVICE_CERTIFICATE_FILE)),
        "key": path_text(&args.out.join(terminal_sim::pki::DEVICE_KEY_FILE)),
    }))
}

fn read_certificates(flag: &str, path: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| CliError::bad_request(format!("{flag}: {}: {error}", path.display())))?;
    terminal_sim::pki::certificates_from_pem(&text)
        .map_err(|error| CliError::bad_request(format!("{flag}: {error}")))
}

fn parameter_key(text: &str) -> Result<ed25519_dalek::VerifyingKey> {
    use base64::Engine as _;
    let text = text.trim();
    let bytes = hex::decode(text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .ok_or_else(|| CliError::bad_request("--parameter-key: neither hex nor base64"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CliError::bad_request("--parameter-key: not 32 bytes"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| CliError::bad_request("--parameter-key: not an Ed25519 public key"))
}

async fn terminal(args: TerminalArgs) -> Result<Value> {
    let pan = Pan::new(&args.pan).map_err(|_| CliError::bad_request("--pan: not a PAN"))?;
    let pin = Zeroizing::new(args.pin);
    let pin = Pin::new(&pin).map_err(|_| CliError::bad_request("--pin: 4 to 12 digits"))?;
    let track2 = Track2::parse(&format!("{}D3012101", args.pan))?;
    let config = TerminalConfig {
        terminal_id: args.terminal_id,
        identity: DeviceIdentity::load(&args.device)?,
        tms_url: args.tms_url,
        ki_url: args.ki_url,
        server_roots: read_certificates("--server-ca", &args.server_ca)?,
        kdh_trust: read_certificates("--kdh-ca", &args.kdh_ca)?
            .into_iter()
            .next()
            .unwrap_or_default(),
        parameter_verifying_key: args
            .parameter_key
            .as_deref()
            .map(parameter_key)
            .transpose()?,
    };
    let mut terminal = Terminal::new(config)?;
    let session = Session {
        key_wait: Duration::from_secs(args.key_wait_secs),
        payments: args.payments,
        pan,
        pin,
        track2,
    };
    // One JSON line per step on stdout, as it completes.
    session::run(&mut terminal, &session, |step| {
        println!("{}", step.to_json())
    })
    .await
    .map_err(|failed| CliError::from(failed.error).in_step(failed.step))?;
    Ok(json!({
        "step": "done",
        "terminalId": terminal.terminal_id(),
        "payments": args.payments,
        "parameterVersion": terminal.installed_parameter_version(),
        "nextCounter": terminal.counter(),
    }))
}
