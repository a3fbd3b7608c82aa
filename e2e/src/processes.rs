//! The platform as processes: the release or test binaries of the workspace started from
//! their directory ([`bin_dir`]), configured only by their documented `MPOS_*` variables, as
//! a provider runs them.
//!
//! - [`Layout::PerService`]: hsm-proxy, terminal-management, key-injection, attestation,
//!   routing and authorization each as its own process, on the given [`Backends`] (each its
//!   own PostgreSQL schema, NATS; feeds over the bus), each with its own device listener where
//!   it has device routes.
//! - [`Layout::Mposd`]: the one `mposd` process on its embedded defaults (SQLite in a data
//!   directory, in-process bus), every device route on its one device listener.
//!
//! The two acquirer simulators are `acquirer-sim` processes. With an hsm-proxy reachable over
//! the bus (per service), they hold their keys in it, as in process; beside `mposd`, whose bus
//! is inside it, they verify MACs with the clear zone MAC key (test keys) and apply only rules
//! without PIN or ARQC checks.
//!
//! Each process writes its log (JSON lines) to `<name>.log` in the platform's directory.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestation_token::TokenIssuer;
use mpos_es::EventStore;
use tokio_util::sync::CancellationToken;

use crate::{Backends, CHAIN_SIGNING_KEY, LMK, Log, OPERATOR_TOKEN, Platform, SIM_TENANTS, ZAK};

/// How the services are laid out in processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Every service its own process.
    PerService,
    /// `mposd`: every service in one process on the embedded defaults.
    Mposd,
}

/// Where the acquirer simulators' keys are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimKeys {
    /// In the platform's hsm-proxy, under each simulator's tenant, over the bus: MACs, PIN
    /// checks and ARQCs verified there ([`Layout::PerService`] only).
    Hsm,
    /// The clear zone MAC key (test keys): MACs verified in the simulator, no PIN or ARQC
    /// checks, so the platform's HSM does no work for the acquirer.
    Clear,
}

/// A started process; killed when dropped.
#[derive(Debug)]
pub struct Child {
    name: String,
    child: tokio::process::Child,
}

impl Child {
    /// Stops the process: SIGTERM through `kill(1)`, then SIGKILL after a grace period.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(process = %self.name, "process ignored sigterm, killing it");
            let _ = self.child.kill().await;
        }
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where the workspace's binaries are: `MPOS_BIN_DIR`, else the directory of the running
/// executable (`target/<profile>`, or its parent when run from `target/<profile>/deps`, as
/// `cargo test` runs test binaries).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MPOS_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("current executable");
    let mut dir = exe.parent().expect("executable's directory").to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A free loopback port for a process to bind: chosen at random below the kernel's
/// ephemeral range (32768–60999 by default), so that no outgoing connection of this machine
/// can take it between this check and the process binding it; checked bindable now, and
/// never handed out twice by this test process (a platform asks for some twenty ports, and
/// two platforms may start side by side: a port drawn twice is bindable at both checks and
/// then taken by whichever process binds it first).
fn free_addr() -> SocketAddr {
    use rand::Rng as _;
    static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rng = rand::thread_rng();
    for _ in 0..1_000 {
        let port: u16 = rng.gen_range(20_000..32_000);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            handed_out.insert(port);
            return listener.local_addr().expect("addr");
        }
    }
    panic!("no free port between 20000 and 32000");
}

fn spawn(dir: &Path, name: &str, binary: &str, vars: &[(String, String)]) -> Child {
    let path = bin_dir().join(binary);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (`cargo build --bins`, or \
         `--release` for the benchmarks), or set MPOS_BIN_DIR",
        path.display()
    );
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let errors = log.try_clone().expect("log file");
    let mut command = tokio::process::Command::new(&path);
    command
        .envs(vars.iter().map(|(name, value)| (name, value)))
        .env("MPOS_LOG_FORMAT", "json")
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(errors)
        .kill_on_drop(true);
    let child = command.spawn().expect("spawn");
    Child {
        name: name.to_owned(),
        child,
    }
}

fn pairs(list: &[(&str, String)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

/// Waits until `url` answers 200 (a readiness probe), or fails naming the process and the
/// end of its log.
async fn ready(http: &reqwest::Client, dir: &Path, name: &str, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(url).send().await
            && response.status().as_u16() == 200
        {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!("{name} never became ready at {url}: {tail:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Platform {
    /// Starts the platform as processes in `layout` (see the module documentation), the
    /// simulators with `sim_rules`. [`Layout::PerService`] runs on `backends` (PostgreSQL and
    /// NATS, [`Backends::postgres_and_nats`]); [`Layout::Mposd`] takes none: `mposd` runs on
    /// its embedded defaults in the platform's directory.
    pub async fn start_processes(
        layout: Layout,
        backends: Option<Backends>,
        sim_rules: &str,
    ) -> Self {
        let keys = match layout {
            Layout::PerService => SimKeys::Hsm,
            Layout::Mposd => SimKeys::Clear,
        };
        Self::start_processes_with(layout, backends, sim_rules, keys).await
    }

    /// As [`Platform::start_processes`], with the simulators' keys where `sim_keys` says.
    pub async fn start_processes_with(
        layout: Layout,
        backends: Option<Backends>,
        sim_rules: &str,
        sim_keys: SimKeys,
    ) -> Self {
        assert!(
            sim_keys == SimKeys::Clear || layout == Layout::PerService,
            "beside mposd the simulators cannot reach its in-process bus"
        );
        // MPOS_E2E_KEEP_DIR=1 keeps the directory (logs, data) for a look after the run.
        let dir = tempfile::Builder::new()
            .prefix("mpos-e2e-")
            .disable_cleanup(std::env::var_os("MPOS_E2E_KEEP_DIR").is_some())
            .tempdir()
            .expect("tempdir");
        let path = dir.path();
        eprintln!("platform processes in {}", path.display());
        let http = reqwest::Client::new();
        let backends = match (layout, backends) {
            (Layout::PerService, Some(backends)) => {
                assert!(
                    !backends.embedded,
                    "per-service processes need a shared bus"
                );
                backends
            }
            (Layout::PerService, None) => panic!("per-service processes need their backends"),
            // mposd's own layout: a SQLite log per service in its data directory.
            (Layout::Mposd, None) => Backends::sqlite(&path.join("data")),
            (Layout::Mposd, Some(_)) => panic!("mposd runs on its embedded defaults"),
        };

        // The platform's TLS identity for devices, the attestation token key, the simulators'
        // attestation root and an empty status list, as files.
        let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("server certificate");
        let (cert_path, key_path) = (path.join("server.pem"), path.join("server.key"));
        std::fs::write(&cert_path, server.cert.pem()).expect("write");
        std::fs::write(&key_path, server.signing_key.serialize_pem()).expect("write");
        let token_key = rcgen::KeyPair::generate().expect("token key");
        let token_key_path = path.join("token.key");
        std::fs::write(&token_key_path, token_key.serialize_pem()).expect("write");
        let token_issuer = Arc::new(
            TokenIssuer::from_pem("att-e2e", &token_key.serialize_pem()).expect("token issuer"),
        );
        let attestation_pki = terminal_sim::softpos::AttestationPki::new().expect("pki");
        let anchors = path.join("anchors.pem");
        std::fs::write(&anchors, attestation_pki.root_pem()).expect("write");
        let status_list = path.join("status.json");
        std::fs::write(&status_list, r#"{"entries": {}}"#).expect("write");
        let rules_path = path.join("sim-rules.json");
        std::fs::write(&rules_path, sim_rules).expect("write");
        let display = |path: &Path| path.display().to_string();

        let common = |service: &str| {
            let mut list = vec![
                ("MPOS_DATABASE_URL", (backends.database)(service)),
                ("MPOS_BUS_URL", backends.bus_url.clone()),
                ("MPOS_CHAIN_SIGNING_KEY", CHAIN_SIGNING_KEY.to_owned()),
                ("MPOS_POLL_INTERVAL_MS", "50".to_owned()),
                ("MPOS_OPERATOR_TOKEN", OPERATOR_TOKEN.to_owned()),
            ];
            if let Some(kafka) = &backends.kafka_url {
                list.push(("MPOS_KAFKA_URL", kafka.clone()));
            }
            list
        };
        let tls = |prefix: &str| {
            [
                (format!("{prefix}_TLS_CERT"), display(&cert_path)),
                (format!("{prefix}_TLS_KEY"), display(&key_path)),
            ]
        };
        let (tm_http, hsm_http, ki_http, att_http, routing_http, auth_http) = (
            free_addr(),
            free_addr(),
            free_addr(),
            free_addr(),
            free_addr(),
            free_addr(),
        );
        let (tm_devices, ki_devices, auth_devices, softpos, att_devices, ki_softpos) = (
            free_addr(),
            free_addr(),
            free_addr(),
            free_addr(),
            free_addr(),
            free_addr(),
        );
        let routing_vars = [
            ("MPOS_ROUTING_REVERSAL_BACKOFF_MIN_MS", "100".to_owned()),
            ("MPOS_ROUTING_REVERSAL_BACKOFF_MAX_MS", "400".to_owned()),
            ("MPOS_ROUTING_CONNECT_TIMEOUT_MS", "500".to_owned()),
            ("MPOS_ROUTING_RECONNECT_MIN_MS", "20".to_owned()),
            ("MPOS_ROUTING_RECONNECT_MAX_MS", "100".to_owned()),
            ("MPOS_ROUTING_FORWARD_POLL_MS", "100".to_owned()),
        ];
        let shared = [
            ("MPOS_HSM_SOFT_LMK", LMK.to_owned()),
            ("MPOS_HSM_SEALED_CARD_DATA", "require".to_owned()),
            ("MPOS_PARAMETER_SIGNING_KEY", hex::encode([7_u8; 32])),
            ("MPOS_ATT_ANCHORS", display(&anchors)),
            ("MPOS_ATT_STATUS_LIST", display(&status_list)),
            ("MPOS_ATT_TOKEN_KEY", display(&token_key_path)),
            ("MPOS_ATT_TOKEN_KID", "att-e2e".to_owned()),
            ("MPOS_KI_WORKERS", "2".to_owned()),
            ("MPOS_KI_SWEEP_INTERVAL_MS", "1000".to_owned()),
            ("MPOS_AUTH_ROUTING_TIMEOUT_MS", "10000".to_owned()),
            ("MPOS_AUTH_HSM_TIMEOUT_MS", "5000".to_owned()),
        ];
        let mut children = Vec::new();
        let mut admins = Vec::new();
        match layout {
            Layout::PerService => {
                let service = |name: &str, http: SocketAddr, extra: Vec<(String, String)>| {
                    let admin = free_addr();
                    let mut vars = pairs(&common(name));
                    vars.extend(pairs(&shared));
                    vars.push(("MPOS_HTTP_ADDR".into(), http.to_string()));
                    vars.push(("MPOS_ADMIN_ADDR".into(), admin.to_string()));
                    vars.extend(extra);
                    (name.to_owned(), admin, vars)
                };
                let hsm_backend = format!("soft://{}", display(&path.join("keys")));
                let att_keys = format!("http://{att_http}/v1/attestation/token-keys");
                let mut tm_extra = vec![("MPOS_DEVICE_ADDR".to_owned(), tm_devices.to_string())];
                tm_extra.extend(tls("MPOS_DEVICE"));
                let mut ki_extra = pairs(&[
                    ("MPOS_KI_DEVICE_ADDR", ki_devices.to_string()),
                    ("MPOS_KI_SOFTPOS_ADDR", ki_softpos.to_string()),
                    ("MPOS_KI_TOKEN_KEYS_URL", att_keys.clone()),
                ]);
                ki_extra.extend(tls("MPOS_KI_DEVICE"));
                let mut att_extra =
                    vec![("MPOS_ATT_DEVICE_ADDR".to_owned(), att_devices.to_string())];
                att_extra.extend(tls("MPOS_ATT_DEVICE"));
                let mut auth_extra = pairs(&[
                    ("MPOS_AUTH_DEVICE_ADDR", auth_devices.to_string()),
                    ("MPOS_AUTH_SOFTPOS_ADDR", softpos.to_string()),
                    ("MPOS_AUTH_TOKEN_KEYS_URL", att_keys),
                ]);
                auth_extra.extend(tls("MPOS_AUTH_DEVICE"));
                for (name, http, extra) in [
                    (
                        hsm_proxy::SERVICE,
                        hsm_http,
                        pairs(&[("MPOS_HSM_BACKENDS", hsm_backend)]),
                    ),
                    (terminal_management::SERVICE, tm_http, tm_extra),
                    (key_injection::SERVICE, ki_http, ki_extra),
                    (attestation::SERVICE, att_http, att_extra),
                    (routing::SERVICE, routing_http, pairs(&routing_vars)),
                    (authorization::SERVICE, auth_http, auth_extra),
                ] {
                    let (name, admin, vars) = service(name, http, extra);
                    children.push(spawn(path, &name, &name, &vars));
                    admins.push((name, format!("http://{admin}/readyz")));
                }
            }
            Layout::Mposd => {
                let admin = free_addr();
                let mut vars = pairs(&shared);
                vars.extend(pairs(&routing_vars));
                vars.extend(pairs(&[
                    ("MPOS_DATA_DIR", display(&path.join("data"))),
                    ("MPOS_OPERATOR_TOKEN", OPERATOR_TOKEN.to_owned()),
                    ("MPOS_CHAIN_SIGNING_KEY", CHAIN_SIGNING_KEY.to_owned()),
                    ("MPOS_HTTP_ADDR", tm_http.to_string()),
                    ("MPOS_HSM_HTTP_ADDR", hsm_http.to_string()),
                    ("MPOS_KI_HTTP_ADDR", ki_http.to_string()),
                    ("MPOS_ATT_HTTP_ADDR", att_http.to_string()),
                    ("MPOS_ROUTING_HTTP_ADDR", routing_http.to_string()),
                    ("MPOS_AUTH_HTTP_ADDR", auth_http.to_string()),
                    ("MPOS_ADMIN_ADDR", admin.to_string()),
                    ("MPOS_DEVICE_ADDR", tm_devices.to_string()),
                ]));
                vars.extend(tls("MPOS_DEVICE"));
                children.push(spawn(path, "mposd", "mposd", &vars));
                admins.push(("mposd".to_owned(), format!("http://{admin}/readyz")));
            }
        }

        // The acquirer simulators.
        let mut acquirers = Vec::new();
        for (index, tenant) in SIM_TENANTS.iter().enumerate() {
            let (listen, admin) = (free_addr(), free_addr());
            let mut vars = pairs(&[
                ("MPOS_ACQSIM_LISTEN_ADDR", listen.to_string()),
                ("MPOS_ACQSIM_ADMIN_ADDR", admin.to_string()),
                ("MPOS_ACQSIM_SPEC", "ascii-1987".to_owned()),
                ("MPOS_ACQSIM_FRAMING", "binary2".to_owned()),
                ("MPOS_ACQSIM_RULES", display(&rules_path)),
            ]);
            match sim_keys {
                SimKeys::Hsm => vars.extend(pairs(&[
                    ("MPOS_ACQSIM_BUS_URL", backends.bus_url.clone()),
                    ("MPOS_ACQSIM_TENANT", (*tenant).to_owned()),
                    ("MPOS_ACQSIM_MAC_KEY", "alias/zak".to_owned()),
                    ("MPOS_ACQSIM_PIN_KEY", "alias/zpk".to_owned()),
                    ("MPOS_ACQSIM_PVK", "alias/pvk".to_owned()),
                    ("MPOS_ACQSIM_IMK_AC", "alias/imk".to_owned()),
                ])),
                SimKeys::Clear => vars.extend(pairs(&[(
                    "MPOS_ACQSIM_CLEAR_MAC_KEY",
                    ZAK[index].to_owned(),
                )])),
            }
            let name = format!("acquirer-sim-{}", ["a", "b"][index]);
            children.push(spawn(path, &name, "acquirer-sim", &vars));
            admins.push((name, format!("http://{admin}/healthz")));
            acquirers.push(listen);
        }
        for (name, url) in &admins {
            ready(&http, path, name, url).await;
        }

        // Every service's log, opened beside the process that writes it (for the waits and
        // the scans).
        let mut logs = Vec::new();
        for service in [
            terminal_management::SERVICE,
            hsm_proxy::SERVICE,
            key_injection::SERVICE,
            attestation::SERVICE,
            routing::SERVICE,
            authorization::SERVICE,
        ] {
            let store = EventStore::connect(&(backends.database)(service), service)
                .await
                .expect("store");
            logs.push(Log { service, store });
        }

        let (att_devices_url, ki_devices_url, auth_devices_url, softpos_url, ki_softpos_url) =
            match layout {
                Layout::PerService => (
                    format!("https://localhost:{}", att_devices.port()),
                    format!("https://localhost:{}", ki_devices.port()),
                    format!("https://localhost:{}", auth_devices.port()),
                    format!("https://localhost:{}", softpos.port()),
                    format!("https://localhost:{}", ki_softpos.port()),
                ),
                Layout::Mposd => (
                    format!("http://{att_http}"),
                    format!("https://localhost:{}", tm_devices.port()),
                    format!("https://localhost:{}", tm_devices.port()),
                    format!("http://localhost:{}", auth_http.port()),
                    format!("http://localhost:{}", ki_http.port()),
                ),
            };
        Self {
            backends,
            tm_api: format!("http://{tm_http}"),
            hsm_api: format!("http://{hsm_http}"),
            ki_api: format!("http://{ki_http}"),
            att_api: format!("http://{att_http}"),
            att_devices_url,
            routing_api: format!("http://{routing_http}"),
            auth_api: format!("http://{auth_http}"),
            devices_url: format!("https://localhost:{}", tm_devices.port()),
            ki_devices_url,
            auth_devices_url,
            softpos_url,
            ki_softpos_url,
            server_root: server.cert.der().to_vec(),
            token_issuer,
            sims: Vec::new(),
            taps: Vec::new(),
            acquirers: [acquirers[0], acquirers[1]],
            logs,
            http,
            attestation_pki,
            dir,
            cancel: CancellationToken::new(),
            joins: Vec::new(),
            children,
        }
    }

    /// The processes, by name (empty when the platform runs in this process).
    pub fn process_names(&self) -> Vec<&str> {
        self.children.iter().map(Child::name).collect()
    }

    /// Kills the process named `name` at once (SIGKILL) and starts nothing in its place.
    pub async fn kill(&mut self, name: &str) {
        let index = self
            .children
            .iter()
            .position(|child| child.name == name)
            .expect("a process of that name");
        let mut child = self.children.remove(index);
        child.child.kill().await.expect("kill");
    }

    /// The log lines a process wrote so far.
    pub fn process_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{name}.log"))).unwrap_or_default()
    }
}
