//! The `acquirer-sim` binary's settings, from `MPOS_ACQSIM_*` variables ([`vars`]).
//!
//! Keys come either from the hsm-proxy over the bus (`MPOS_ACQSIM_BUS_URL` set: the key
//! variables name key ids or aliases of `MPOS_ACQSIM_TENANT`) or, for tests and demos, as
//! clear hexadecimal test keys (`MPOS_ACQSIM_CLEAR_*`). Without either, the simulator
//! checks no MAC and answers PIN and ARQC checks with `96`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use acquirer_link::{HsmMac, MacProvider, SoftMac};
use hsm_proxy::rpc::HsmClient;
use iso8583::Spec;
use iso8583::framing::{Framing, LengthPrefix};
use mpos_config::{ConfigError, Vars};
use paycrypto::SecretBytes;
use secrecy::ExposeSecret;

use crate::issuer::{ClearIssuer, HsmIssuer, IssuerCrypto};
use crate::{BadMacPolicy, RuleSet, SimConfig};

/// The variables, all optional.
pub mod vars {
    /// Where the ISO 8583 listener binds (default `0.0.0.0:8583`).
    pub const LISTEN_ADDR: &str = "MPOS_ACQSIM_LISTEN_ADDR";
    /// Where the admin HTTP API binds, a loopback address (default `127.0.0.1:8584`).
    pub const ADMIN_ADDR: &str = "MPOS_ACQSIM_ADMIN_ADDR";
    /// A builtin spec: `ascii-1987` (default) or `bcd-1987`.
    pub const SPEC: &str = "MPOS_ACQSIM_SPEC";
    /// A spec file (TOML, `iso8583::Spec::from_toml`); wins over `MPOS_ACQSIM_SPEC`.
    pub const SPEC_FILE: &str = "MPOS_ACQSIM_SPEC_FILE";
    /// The length prefix: `binary2` (default), `binary4`, `ascii4`, `bcd2` or `none`.
    pub const FRAMING: &str = "MPOS_ACQSIM_FRAMING";
    /// A header after the length prefix, in hex (e.g. a TPDU `6000000000`); default none.
    pub const HEADER_HEX: &str = "MPOS_ACQSIM_HEADER_HEX";
    /// The acquiring institution id (field 32) to accept; others are declined `31`.
    pub const ACQUIRER_ID: &str = "MPOS_ACQSIM_ACQUIRER_ID";
    /// The rules file (JSON, see the `rules` module); default: approve everything.
    pub const RULES: &str = "MPOS_ACQSIM_RULES";
    /// What a bad MAC gets: `respond96` (default) or `drop`.
    pub const BAD_MAC: &str = "MPOS_ACQSIM_BAD_MAC";
    /// The largest message accepted, in bytes (default 65536).
    pub const MAX_MESSAGE_LEN: &str = "MPOS_ACQSIM_MAX_MESSAGE_LEN";
    /// The bus of the hsm-proxy (`nats://…` or `memory://…`); set: keys are in the HSM.
    pub const BUS_URL: &str = "MPOS_ACQSIM_BUS_URL";
    /// The simulator's tenant in the hsm-proxy (default `acquirer-sim`).
    pub const TENANT: &str = "MPOS_ACQSIM_TENANT";
    /// How long an hsm-proxy call may take, in milliseconds (default 2000).
    pub const HSM_TIMEOUT_MS: &str = "MPOS_ACQSIM_HSM_TIMEOUT_MS";
    /// The zone MAC key (M3) in the hsm-proxy: id or `alias/…`; unset: no MAC.
    pub const MAC_KEY: &str = "MPOS_ACQSIM_MAC_KEY";
    /// The zone PIN key (P0) in the hsm-proxy.
    pub const PIN_KEY: &str = "MPOS_ACQSIM_PIN_KEY";
    /// The PIN verification key (V2, Visa PVV) in the hsm-proxy.
    pub const PVK: &str = "MPOS_ACQSIM_PVK";
    /// The issuer master key for application cryptograms (E0) in the hsm-proxy.
    pub const IMK_AC: &str = "MPOS_ACQSIM_IMK_AC";
    /// A clear zone MAC key, 32 hex characters (test keys only; without a bus URL).
    pub const CLEAR_MAC_KEY: &str = "MPOS_ACQSIM_CLEAR_MAC_KEY";
    /// A clear zone PIN key, 32 hex characters (test keys only).
    pub const CLEAR_PIN_KEY: &str = "MPOS_ACQSIM_CLEAR_PIN_KEY";
    /// A clear PIN verification key, 32 hex characters (test keys only).
    pub const CLEAR_PVK: &str = "MPOS_ACQSIM_CLEAR_PVK";
    /// A clear issuer master key for application cryptograms, 32 hex characters.
    pub const CLEAR_IMK_AC: &str = "MPOS_ACQSIM_CLEAR_IMK_AC";
}

/// Where the keys are.
#[derive(Debug)]
pub enum Keys {
    /// In the hsm-proxy.
    Hsm {
        /// The bus URL.
        bus_url: String,
        /// The tenant.
        tenant: String,
        /// Call timeout.
        timeout: Duration,
        /// MAC key id or alias.
        mac_key: Option<String>,
        /// Zone PIN key.
        pin_key: Option<String>,
        /// PIN verification key.
        pvk: Option<String>,
        /// Issuer master key (AC).
        imk_ac: Option<String>,
    },
    /// Clear test keys.
    Clear {
        /// MAC key.
        mac_key: Option<SecretBytes>,
        /// PIN and ARQC keys.
        issuer: ClearIssuer,
    },
}

/// Everything the binary needs.
#[derive(Debug)]
pub struct Settings {
    /// ISO 8583 listener.
    pub listen: SocketAddr,
    /// Admin API listener.
    pub admin: SocketAddr,
    /// Spec.
    pub spec: Arc<Spec>,
    /// Framing.
    pub framing: Framing,
    /// Accepted acquirer.
    pub acquirer_id: Option<String>,
    /// Rules.
    pub rules: RuleSet,
    /// Bad MAC policy.
    pub bad_mac: BadMacPolicy,
    /// Largest message.
    pub max_message_len: usize,
    /// Keys.
    pub keys: Keys,
}

fn clear_key(vars: &Vars, name: &str) -> Result<Option<SecretBytes>, ConfigError> {
    const EXPECTED: &str = "32 hexadecimal characters (a double-length test key)";
    let Some(secret) = vars.optional_secret(name, 32)? else {
        return Ok(None);
    };
    let key = SecretBytes::from_hex("test key", secret.expose_secret())
        .map_err(|_| ConfigError::hidden(name, EXPECTED))?;
    if key.len() != 16 {
        return Err(ConfigError::hidden(name, EXPECTED));
    }
    Ok(Some(key))
}

fn optional(vars: &Vars, name: &str, expected: &str) -> Result<Option<String>, ConfigError> {
    if vars.is_set(name) {
        vars.string(name, None, expected).map(Some)
    } else {
        Ok(None)
    }
}

/// Parses a framing name (`binary2`, `binary4`, `ascii4`, `bcd2`, `none`) and a hex header.
pub fn parse_framing(name: &str, header_hex: &str) -> Option<Framing> {
    let prefix = name.parse::<LengthPrefix>().ok()?;
    let header = hex::decode(header_hex).ok()?;
    Some(Framing::new(prefix, header))
}

impl Settings {
    /// Reads and checks the variables (and the spec and rules files they name).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let listen = vars.socket_addr(vars::LISTEN_ADDR, "0.0.0.0:8583")?;
        let admin = vars.socket_addr(vars::ADMIN_ADDR, "127.0.0.1:8584")?;
        if !admin.ip().is_loopback() {
            return Err(ConfigError::invalid(
                vars::ADMIN_ADDR,
                "a loopback address (the admin API has no authentication)",
                &admin.to_string(),
            ));
        }
        let spec = match vars.optional_path(vars::SPEC_FILE)? {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::invalid(
                        vars::SPEC_FILE,
                        "a readable TOML file",
                        &error.to_string(),
                    )
                })?;
                Spec::from_toml(&text).map_err(|error| {
                    ConfigError::invalid(vars::SPEC_FILE, "an iso8583 spec", &error.to_string())
                })?
            }
            None => {
                let name = vars.string(vars::SPEC, Some("ascii-1987"), "ascii-1987 or bcd-1987")?;
                Spec::builtin(&name).map_err(|_| {
                    ConfigError::invalid(vars::SPEC, "ascii-1987 or bcd-1987", &name)
                })?
            }
        };
        let framing_name = vars.string(
            vars::FRAMING,
            Some("binary2"),
            "binary2, binary4, ascii4, bcd2 or none",
        )?;
        let header_hex = vars.string(vars::HEADER_HEX, Some(""), "hexadecimal bytes")?;
        let framing = parse_framing(&framing_name, &header_hex).ok_or_else(|| {
            ConfigError::invalid(
                vars::FRAMING,
                "binary2, binary4, ascii4, bcd2 or none, with a hex MPOS_ACQSIM_HEADER_HEX",
                &framing_name,
            )
        })?;
        let rules = match vars.optional_path(vars::RULES)? {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::invalid(vars::RULES, "a readable JSON file", &error.to_string())
                })?;
                RuleSet::from_json(&text).map_err(|error| {
                    ConfigError::invalid(vars::RULES, "a rules file", &error.to_string())
                })?
            }
            None => RuleSet::approve_all(),
        };
        let bad_mac = match vars
            .string(vars::BAD_MAC, Some("respond96"), "respond96 or drop")?
            .as_str()
        {
            "respond96" => BadMacPolicy::Respond96,
            "drop" => BadMacPolicy::Drop,
            other => {
                return Err(ConfigError::invalid(
                    vars::BAD_MAC,
                    "respond96 or drop",
                    other,
                ));
            }
        };
        let keys = if vars.is_set(vars::BUS_URL) {
            let url = vars.url(vars::BUS_URL, None, &["nats", "memory"])?;
            let key = |name| optional(vars, name, "a key id or alias/<name>");
            Keys::Hsm {
                bus_url: url.to_string(),
                tenant: vars.string(vars::TENANT, Some("acquirer-sim"), "a tenant id")?,
                timeout: vars.duration_ms(vars::HSM_TIMEOUT_MS, 2_000)?,
                mac_key: key(vars::MAC_KEY)?,
                pin_key: key(vars::PIN_KEY)?,
                pvk: key(vars::PVK)?,
                imk_ac: key(vars::IMK_AC)?,
            }
        } else {
            Keys::Clear {
                mac_key: clear_key(vars, vars::CLEAR_MAC_KEY)?,
                issuer: ClearIssuer {
                    zpk: clear_key(vars, vars::CLEAR_PIN_KEY)?,
                    pvk: clear_key(vars, vars::CLEAR_PVK)?,
                    imk_ac: clear_key(vars, vars::CLEAR_IMK_AC)?,
                },
            }
        };
        Ok(Self {
            listen,
            admin,
            spec: Arc::new(spec),
            framing,
            acquirer_id: optional(vars, vars::ACQUIRER_ID, "1 to 11 digits")?,
            rules,
            bad_mac,
            max_message_len: vars.parse(
                vars::MAX_MESSAGE_LEN,
                Some(64 * 1024),
                "a number of bytes",
            )?,
            keys,
        })
    }

    /// The simulator's configuration; in HSM mode this connects to the bus.
    pub async fn sim_config(&self) -> Result<SimConfig, String> {
        let mut config = SimConfig::new(Arc::clone(&self.spec), self.framing.clone());
        config.acquirer_id.clone_from(&self.acquirer_id);
        config.rules = self.rules.clone();
        config.bad_mac = self.bad_mac;
        config.max_message_len = self.max_message_len;
        match &self.keys {
            Keys::Hsm {
                bus_url,
                tenant,
                timeout,
                mac_key,
                pin_key,
                pvk,
                imk_ac,
            } => {
                let bus = mpos_bus::connect(bus_url)
                    .await
                    .map_err(|error| format!("bus: {error}"))?;
                let requests = bus
                    .requests
                    .ok_or_else(|| "the bus has no request-reply".to_owned())?;
                let sealer =
                    mpos_seal::Sealer::new().map_err(|error| format!("sealer: {error}"))?;
                let client = HsmClient::new(requests, "service:acquirer-sim", *timeout)
                    .with_sealer(Arc::new(sealer));
                config.mac = mac_key.as_ref().map(|key| {
                    Arc::new(HsmMac::new(client.clone(), tenant.clone(), key.clone()))
                        as Arc<dyn MacProvider>
                });
                config.issuer = Some(Arc::new(HsmIssuer {
                    client,
                    tenant_id: tenant.clone(),
                    zpk: pin_key.clone(),
                    pvk: pvk.clone(),
                    imk_ac: imk_ac.clone(),
                }) as Arc<dyn IssuerCrypto>);
            }
            Keys::Clear { mac_key, issuer } => {
                if let Some(key) = mac_key {
                    let provider = SoftMac::new(key.clone()).map_err(|error| error.to_string())?;
                    config.mac = Some(Arc::new(provider));
                }
                config.issuer = Some(Arc::new(issuer.clone()));
            }
        }
        Ok(config)
    }
}
