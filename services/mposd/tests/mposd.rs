//! `mposd` as a newcomer runs it: the real binary, a fresh data directory, nothing else.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Mposd {
    child: Child,
    api: String,
    devices: String,
    hsm: String,
    keys: String,
    attest: String,
    routing: String,
    payments: String,
    console: String,
    admin: String,
    lines: std::sync::mpsc::Receiver<String>,
}

/// A failing test must not leave mposd running (it would hold its ports and data directory).
impl Drop for Mposd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start(data_dir: &std::path::Path) -> Mposd {
    start_with(data_dir, &[])
}

/// An https URL nothing listens at: Google's status list as seen from a machine without
/// network, so that the tests do not depend on the network.
fn unreachable_status_list() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("https://127.0.0.1:{port}/attestation/status")
}

/// Starts mposd on `data_dir` with every listener on a free port, the attestation status list
/// unreachable, and `more` (which may override those).
fn start_with(data_dir: &std::path::Path, more: &[(&str, String)]) -> Mposd {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mposd"))
        .env_clear()
        .env("MPOS_DATA_DIR", data_dir)
        .env("MPOS_HTTP_ADDR", "127.0.0.1:0")
        .env("MPOS_ADMIN_ADDR", "127.0.0.1:0")
        .env("MPOS_HSM_HTTP_ADDR", "127.0.0.1:0")
        .env("MPOS_DEVICE_ADDR", "127.0.0.1:0")
        .env("MPOS_KI_HTTP_ADDR", "127.0.0.1:0")
        .env("MPOS_ATT_HTTP_ADDR", "127.0.0.1:0")
        .env("MPOS_ROUTING_HTTP_ADDR", "127.0.0.1:0")
        .env("MPOS_AUTH_HTTP_ADDR", "127.0.0.1:0")
        .env("MPOS_CONSOLE_ADDR", "127.0.0.1:0")
        .env("MPOS_ATT_STATUS_LIST", unreachable_status_list())
        .env("MPOS_LOG", "warn")
        .envs(more.iter().map(|(name, value)| (*name, value.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mposd");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let (mut api, mut devices, mut hsm, mut keys, mut attest, mut admin) =
        (None, None, None, None, None, None);
    let (mut routing, mut payments, mut console) = (None, None, None);
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("mposd prints where it listens");
        if let Some(rest) = line.strip_prefix("mposd: api   ") {
            api = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: devices ") {
            devices = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: hsm   ") {
            hsm = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: keys  ") {
            keys = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: attest ") {
            attest = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: routing ") {
            routing = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: payments ") {
            payments = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: console ") {
            console = rest
                .split_whitespace()
                .next()
                .and_then(|url| url.strip_suffix("/console/"))
                .map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: admin ") {
            admin = rest.split_whitespace().next().map(str::to_owned);
        }
        if line == "mposd: ready; press Ctrl-C to stop" {
            break;
        }
    }
    Mposd {
        child,
        api: api.expect("api"),
        devices: devices.expect("devices"),
        hsm: hsm.expect("hsm"),
        keys: keys.expect("key-injection"),
        attest: attest.expect("attestation"),
        routing: routing.expect("routing"),
        payments: payments.expect("payments"),
        console: console.expect("console"),
        admin: admin.expect("admin"),
        lines,
    }
}

fn interrupt(mposd: &mut Mposd) {
    let status = Command::new("kill")
        .args(["-INT", &mposd.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = mposd.child.wait().expect("wait");
    assert!(exit.success(), "clean shutdown on Ctrl-C, got {exit:?}");
    // The reader thread ends at end of file: everything printed is in the channel then.
    let rest: Vec<String> =
        std::iter::from_fn(|| mposd.lines.recv_timeout(Duration::from_secs(10)).ok()).collect();
    assert!(rest.iter().any(|line| line == "mposd: stopped"), "{rest:?}");
}

#[tokio::test]
async fn mposd_starts_on_a_fresh_data_dir_serves_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mposd = start(dir.path());
    let token = std::fs::read_to_string(dir.path().join("operator-token"))
        .expect("token file")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    let client = reqwest::Client::new();

    let ready = client
        .get(format!("{}/readyz", mposd.admin))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let response = client
        .post(format!("{}/v1/tenants", mposd.api))
        .bearer_auth(&token)
        .json(&serde_json::json!({"tenantId": "acme", "name": "Acme Pay"}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status().as_u16(), 201);
    // Routing and the payments API run beside it: the tenant has no acquirers yet, and no
    // payment answers like a missing one.
    let response = client
        .get(format!("{}/v1/tenants/acme/acquirers", mposd.routing))
        .bearer_auth(&token)
        .send()
        .await
        .expect("acquirers");
    assert_eq!(response.status().as_u16(), 200);
    let response = client
        .get(format!(
            "{}/v1/tenants/acme/payments/p-unknown",
            mposd.payments
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("payment");
    assert_eq!(response.status().as_u16(), 404);
    let response = client
        .get(format!("{}/openapi.json", mposd.payments))
        .send()
        .await
        .expect("openapi");
    assert_eq!(response.status().as_u16(), 200);
    // The hsm-proxy runs beside it, on a soft:// backend in the data directory.
    let response = client
        .post(format!("{}/v1/tenants/acme/keys", mposd.hsm))
        .bearer_auth(&token)
        .json(&serde_json::json!({"attributes": {"algorithm": "KEY_ALGORITHM_TDES_2KEY", "keyUsage": "P0"}, "alias": "zpk"}))
        .send()
        .await
        .expect("create key");
    assert_eq!(response.status().as_u16(), 201);
    let key: serde_json::Value = response.json().await.expect("json");
    // key-injection runs beside them: a BDK of the hsm-proxy is assigned to the tenant, and
    // the tenant's API key (issued by terminal-management) reaches key-injection.
    let response = client
        .post(format!("{}/v1/tenants/acme/keys", mposd.hsm))
        .bearer_auth(&token)
        .json(&serde_json::json!({"attributes": {"algorithm": "KEY_ALGORITHM_TDES_2KEY", "keyUsage": "B0", "modeOfUse": "X"}, "alias": "bdk"}))
        .send()
        .await
        .expect("create bdk");
    assert_eq!(response.status().as_u16(), 201);
    let response = client
        .post(format!("{}/v1/tenants/acme/bdks", mposd.keys))
        .bearer_auth(&token)
        .json(&serde_json::json!({"bdkId": "bdk-1", "hsmKeyId": "alias/bdk", "algorithm": "DUKPT_ALGORITHM_TDES", "keySetId": "FFFF987654"}))
        .send()
        .await
        .expect("assign bdk");
    assert_eq!(response.status().as_u16(), 201);
    let response = client
        .post(format!("{}/v1/tenants/acme/api-keys", mposd.api))
        .bearer_auth(&token)
        .json(&serde_json::json!({"role": "API_KEY_ROLE_READ_ONLY", "label": "auditor"}))
        .send()
        .await
        .expect("api key");
    assert_eq!(response.status().as_u16(), 201);
    let api_key: serde_json::Value = response.json().await.expect("json");
    let api_key = api_key["secret"].as_str().expect("secret").to_owned();
    console_calls_the_services_and_verifies_the_audit_trail(&mposd, &token, &api_key).await;
    let mut matrix = serde_json::Value::Null;
    for _ in 0..100 {
        let response = client
            .get(format!("{}/v1/tenants/acme/key-matrix", mposd.keys))
            .bearer_auth(&api_key)
            .send()
            .await
            .expect("matrix");
        if response.status().as_u16() == 200 {
            matrix = response.json().await.expect("json");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        matrix["entries"]
            .as_array()
            .is_some_and(|entries| entries.iter().any(|entry| entry["keyUsage"] == "B0")),
        "{matrix}"
    );
    // attestation started although its status list cannot be fetched and nothing is cached:
    // with an empty list, flagged stale.
    let trust: serde_json::Value = client
        .get(format!("{}/v1/attestation/trust", mposd.attest))
        .bearer_auth(&token)
        .send()
        .await
        .expect("trust")
        .json()
        .await
        .expect("json");
    assert_eq!(trust["stale"], true, "{trust}");
    assert_eq!(trust["entries"], 0, "{trust}");
    assert!(trust["last_error"].is_string(), "{trust}");
    let metrics = client
        .get(format!("{}/metrics", mposd.admin))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("mpos_http_requests_total"), "{text}");
    // The hsm-proxy's per-operation, per-backend metrics and the pool's health gauge.
    assert!(
        text.lines()
            .any(|line| line.starts_with("mpos_hsm_operations_total")
                && line.contains("operation=\"CreateKey\"")
                && line.contains("backend=\"soft\"")
                && line.contains("status=\"ok\"")),
        "{text}"
    );
    assert!(
        text.contains("mpos_hsm_operation_duration_seconds"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("mpos_hsm_backend_healthy") && line.ends_with(" 1")),
        "{text}"
    );
    interrupt(&mut mposd);

    // The data survives a restart; the same token and signing key are reused.
    let mut again = start(dir.path());
    let response = client
        .get(format!("{}/v1/tenants/acme", again.api))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["name"], "Acme Pay");
    let response = client
        .get(format!("{}/v1/tenants/acme/keys/alias%2Fzpk", again.hsm))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get key");
    assert_eq!(response.status().as_u16(), 200);
    let again_key: serde_json::Value = response.json().await.expect("json");
    assert_eq!(again_key["kcv"], key["kcv"]);
    let consistency: serde_json::Value = client
        .get(format!("{}/v1/backends/consistency", again.hsm))
        .bearer_auth(&token)
        .send()
        .await
        .expect("consistency")
        .json()
        .await
        .expect("json");
    assert_eq!(consistency["consistent"], true, "{consistency}");
    // key-injection kept what it learnt from terminal-management across the restart.
    let response = client
        .get(format!("{}/v1/tenants/acme/key-matrix", again.keys))
        .bearer_auth(&api_key)
        .send()
        .await
        .expect("matrix");
    assert_eq!(response.status().as_u16(), 200);
    interrupt(&mut again);
    assert!(dir.path().join("hsm-proxy.db").exists());
    assert!(dir.path().join("hsm-soft-lmk.key").exists());
    assert!(dir.path().join("terminal-management.db").exists());
    assert!(dir.path().join("key-injection.db").exists());
    assert!(dir.path().join("attestation.db").exists());
    assert!(dir.path().join("attestation-token.key").exists());
    assert!(dir.path().join("chain-signing.key").exists());
}

/// The operator console: its page under a strict content security policy, the services'
/// APIs behind it answering as they would directly (the caller's token decides), and the
/// audit trail of the six logs verified for the platform operator only.
async fn console_calls_the_services_and_verifies_the_audit_trail(
    mposd: &Mposd,
    token: &str,
    api_key: &str,
) {
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{}/console/", mposd.console))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 200);
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(page.text().await.expect("text").contains("app.js"));
    let get = |url: String, bearer: Option<&str>| {
        let mut request = client.get(url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move {
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    let tenant = |bearer| {
        get(
            format!(
                "{}/console/api/svc/terminal-management/v1/tenants/acme",
                mposd.console
            ),
            bearer,
        )
    };
    let (status, body) = tenant(Some(token)).await;
    assert_eq!(
        (status, &body["name"]),
        (200, &serde_json::json!("Acme Pay"))
    );
    assert_eq!(tenant(Some(api_key)).await.0, 200);
    let (status, body) = tenant(None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthenticated", "{body}");
    let (status, body) = get(
        format!(
            "{}/console/api/svc/authorization/v1/tenants/acme/payments",
            mposd.console
        ),
        Some(api_key),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("payments")
            .is_none_or(|list| list == &serde_json::json!([])),
        "{body}"
    );
    let (status, body) = get(
        format!("{}/console/api/svc/routing/metrics", mposd.console),
        Some(token),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &serde_json::json!("not_found"))
    );
    let verify = |bearer: &str| {
        client
            .post(format!("{}/console/api/audit/verify", mposd.console))
            .bearer_auth(bearer)
            .send()
    };
    let refused = verify(api_key).await.expect("verify");
    assert_eq!(refused.status().as_u16(), 403);
    let report: serde_json::Value = verify(token)
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    assert_eq!(report["intact"], true, "{report}");
    let services = report["services"].as_array().expect("services");
    assert_eq!(services.len(), 6, "{report}");
    let tm = services
        .iter()
        .find(|service| service["service"] == "terminal-management")
        .expect("terminal-management");
    assert!(tm["eventsChecked"].as_u64() >= Some(2), "{report}");
}

/// Runs mposd with `name=value` on a fresh data directory; it must stop with exit code 78 and
/// print exactly one line, which is returned.
fn refused_with(name: &str, value: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_mposd"))
        .env_clear()
        .env("MPOS_DATA_DIR", dir.path())
        .env(name, value)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_owned()
}

#[test]
fn a_bad_variable_stops_mposd_with_one_clear_line() {
    let line = refused_with("MPOS_HTTP_ADDR", "not-an-address");
    assert!(line.starts_with("MPOS_HTTP_ADDR: expected"), "{line}");
}

#[test]
fn a_separate_key_injection_device_listener_is_refused_with_one_clear_line() {
    let line = refused_with("MPOS_KI_DEVICE_ADDR", "127.0.0.1:8444");
    assert!(
        line.starts_with(
            "MPOS_KI_DEVICE_ADDR: mposd serves key-injection's device api on MPOS_DEVICE_ADDR"
        ),
        "{line}"
    );
}

/// A newcomer's first PED, with the real terminal simulator: a vendor CA registered, the
/// device bound to a terminal, then first boot against mposd's one device listener —
/// activation (terminal-management) and its DUKPT initial key by ECDH + TR-31
/// (key-injection, the hsm-proxy's soft backend), confirmed by KCV — over one mTLS connection.
#[tokio::test]
async fn a_ped_boots_and_receives_its_key_on_the_one_device_listener() {
    use terminal_sim::terminal::{Terminal, TerminalConfig};
    use terminal_sim::{DeviceKeyKind, ManufacturerCa};

    let dir = tempfile::tempdir().expect("tempdir");
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("device.pem"), dir.path().join("device.key"));
    std::fs::write(&cert_path, server.cert.pem()).expect("write");
    std::fs::write(&key_path, server.signing_key.serialize_pem()).expect("write");
    let data = dir.path().join("data");
    let mut mposd = start_with(
        &data,
        &[
            ("MPOS_DEVICE_TLS_CERT", cert_path.display().to_string()),
            ("MPOS_DEVICE_TLS_KEY", key_path.display().to_string()),
        ],
    );
    let token = std::fs::read_to_string(data.join("operator-token"))
        .expect("token file")
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    let post = |base: &str, path: &str, body: serde_json::Value| {
        let request = client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body);
        let path = path.to_owned();
        async move {
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert!(status == 200 || status == 201, "{path}: {status} {body}");
            body
        }
    };
    post(
        &mposd.api,
        "/v1/tenants",
        serde_json::json!({"tenantId": "acme", "name": "Acme Pay"}),
    )
    .await;
    for (node, kind, parent) in [
        ("m-1", "NODE_KIND_MERCHANT", ""),
        ("s-1", "NODE_KIND_STORE", "m-1"),
        ("g-1", "NODE_KIND_TERMINAL_GROUP", "s-1"),
    ] {
        post(
            &mposd.api,
            "/v1/tenants/acme/nodes",
            serde_json::json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
        )
        .await;
    }
    let vendor = ManufacturerCa::generate("Vendor P CA").expect("vendor CA");
    post(
        &mposd.api,
        "/v1/manufacturer-cas",
        serde_json::json!({"name": "Vendor P", "certificatePem": vendor.certificate_pem()}),
    )
    .await;
    let identity = vendor
        .issue(&[0x70, 0x01], DeviceKeyKind::P256)
        .expect("device");
    post(
        &mposd.api,
        "/v1/tenants/acme/terminals",
        serde_json::json!({"terminalId": "t-1", "kind": "TERMINAL_KIND_PED", "parentId": "g-1", "certificatePem": identity.certificate_pem()}),
    )
    .await;
    post(
        &mposd.hsm,
        "/v1/tenants/acme/keys",
        serde_json::json!({"attributes": {"algorithm": "KEY_ALGORITHM_TDES_2KEY", "keyUsage": "B0", "modeOfUse": "X"}, "alias": "bdk"}),
    )
    .await;
    post(
        &mposd.keys,
        "/v1/tenants/acme/bdks",
        serde_json::json!({"bdkId": "bdk-1", "hsmKeyId": "alias/bdk", "algorithm": "DUKPT_ALGORITHM_TDES", "keySetId": "FFFF987654"}),
    )
    .await;

    let port = mposd
        .devices
        .rsplit(':')
        .next()
        .expect("device port")
        .to_owned();
    let device_url = format!("https://localhost:{port}");
    let mut terminal = Terminal::new(TerminalConfig {
        terminal_id: "t-1".to_owned(),
        identity,
        tms_url: device_url.clone(),
        ki_url: device_url,
        server_roots: vec![server.cert.der().to_vec()],
        kdh_trust: Vec::new(),
        parameter_verifying_key: None,
    })
    .expect("terminal");
    let activated = terminal.activate().await.expect("activated");
    assert_eq!(activated.state, "TERMINAL_STATE_ACTIVE");
    // The key-injection BDK assignment and the activation reach key-injection's feed; the
    // device waits for its key (long poll) on the same listener.
    let installed = tokio::time::timeout(
        Duration::from_secs(90),
        terminal.receive_key(std::time::Instant::now() + Duration::from_secs(85)),
    )
    .await
    .expect("in time")
    .expect("key installed");
    assert_eq!(
        installed.algorithm,
        mpos_proto::key_injection::DukptAlgorithm::Tdes
    );
    assert_eq!(installed.initial_key_id.len(), 20);
    assert!(
        installed.initial_key_id.starts_with("FFFF987654"),
        "{installed:?}"
    );
    assert_eq!(installed.kcv.len(), 6);
    interrupt(&mut mposd);
}

/// A simulated SoftPOS phone's evidence for `challenge` (the response of the challenges
/// route), as the attestation API takes it.
fn attest_request(
    pki: &terminal_sim::softpos::AttestationPki,
    challenge: &serde_json::Value,
) -> serde_json::Value {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let profile = terminal_sim::softpos::SoftPosProfile::default();
    let bytes = engine
        .decode(challenge["challenge"].as_str().expect("challenge"))
        .expect("base64");
    let chain: Vec<String> = pki
        .attest(&profile, &bytes)
        .expect("chain")
        .iter()
        .map(|der| engine.encode(der))
        .collect();
    let signals = serde_json::to_value(profile.signals()).expect("signals");
    serde_json::json!({
        "challengeId": challenge["challengeId"],
        "keyAttestationChain": chain,
        "signals": {
            "rooted": signals["rooted"], "emulator": signals["emulator"],
            "debuggerAttached": signals["debugger_attached"], "hookingFramework": signals["hooking_framework"],
            "appTampered": signals["app_tampered"], "osVersion": signals["os_version"],
            "sdkVersion": signals["sdk_version"], "appVersion": signals["app_version"],
            "appVersionCode": signals["app_version_code"].to_string(),
            "securityPatchLevel": signals["security_patch_level"], "packageName": signals["package_name"],
        },
    })
}

/// The phone's whole round against mposd's attestation API: a challenge (waiting until the
/// terminal reached attestation through terminal-management's log), then its evidence.
async fn attest_phone(
    client: &reqwest::Client,
    base: &str,
    pki: &terminal_sim::softpos::AttestationPki,
) -> serde_json::Value {
    let device = format!("{base}/v1/tenants/acme/devices/phone-1");
    let started = std::time::Instant::now();
    let challenge: serde_json::Value = loop {
        let response = client
            .post(format!("{device}/challenges"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("challenge");
        let status = response.status().as_u16();
        if status == 200 {
            break response.json().await.expect("json");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the terminal never reached attestation ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let response = client
        .post(format!("{device}/attestations"))
        .json(&attest_request(pki, &challenge))
        .send()
        .await
        .expect("attest");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    body
}

/// The verifier the authorization service builds from the published token keys.
async fn published_verifier(
    client: &reqwest::Client,
    base: &str,
) -> attestation_token::TokenVerifier {
    use base64::Engine as _;
    let keys: serde_json::Value = client
        .get(format!("{base}/v1/attestation/token-keys"))
        .send()
        .await
        .expect("token keys")
        .json()
        .await
        .expect("json");
    let key = &keys["keys"][0];
    let sec1 = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key["sec1"].as_str().expect("sec1"))
        .expect("base64url");
    attestation_token::TokenVerifier::new().with_key(
        key["kid"].as_str().expect("kid"),
        attestation_token::PublicKey::from_sec1(&sec1).expect("key"),
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A SoftPOS phone attested by mposd's attestation service: the terminal created through
/// terminal-management's API reaches attestation from terminal-management's log, the operator
/// trusts the simulator's root at run time, the phone is allowed with a token that verifies
/// with the published key — and still does after a restart (the key file in the data
/// directory). The run-time anchors do not outlive the restart: the second run is given them
/// by `MPOS_ATT_ANCHORS`. The status list is an empty file (the default, Google's, would make
/// the test depend on the network).
#[tokio::test]
async fn a_softpos_phone_is_attested_and_its_token_outlives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let status_list = dir.path().join("status.json");
    std::fs::write(&status_list, r#"{"entries": {}}"#).expect("write");
    let list = [("MPOS_ATT_STATUS_LIST", status_list.display().to_string())];
    let mut mposd = start_with(&data, &list);
    let token = std::fs::read_to_string(data.join("operator-token"))
        .expect("token file")
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        let request = client
            .post(format!("{}{path}", mposd.api))
            .bearer_auth(&token)
            .json(&body);
        let path = path.to_owned();
        async move {
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert_eq!(status, 201, "{path}: {body}");
        }
    };
    post(
        "/v1/tenants",
        serde_json::json!({"tenantId": "acme", "name": "Acme Pay"}),
    )
    .await;
    for (node, kind, parent) in [
        ("m-1", "NODE_KIND_MERCHANT", ""),
        ("s-1", "NODE_KIND_STORE", "m-1"),
    ] {
        post(
            "/v1/tenants/acme/nodes",
            serde_json::json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
        )
        .await;
    }
    post(
        "/v1/tenants/acme/terminals",
        serde_json::json!({"terminalId": "phone-1", "kind": "TERMINAL_KIND_SOFTPOS", "parentId": "s-1"}),
    )
    .await;

    // Google's roots do not know the simulator: blocked until the operator trusts its root.
    let pki = terminal_sim::softpos::AttestationPki::new().expect("pki");
    let body = attest_phone(&client, &mposd.attest, &pki).await;
    assert_eq!(body["verdict"], "VERDICT_BLOCK", "{body}");
    let response = client
        .put(format!("{}/v1/attestation/trust/anchors", mposd.attest))
        .bearer_auth(&token)
        .body(pki.root_pem().to_owned())
        .send()
        .await
        .expect("anchors");
    assert_eq!(response.status().as_u16(), 200);
    let body = attest_phone(&client, &mposd.attest, &pki).await;
    assert_eq!(body["verdict"], "VERDICT_ALLOW", "{body}");
    assert!(
        body["findings"]
            .as_array()
            .is_none_or(|findings| findings.is_empty()),
        "{body}"
    );
    let allowed = body["token"].as_str().expect("token").to_owned();
    let expected = |now_unix| attestation_token::Expected {
        tenant: "acme",
        device: "phone-1",
        now_unix,
        leeway_seconds: 5,
    };
    let verifier = published_verifier(&client, &mposd.attest).await;
    verifier
        .verify(&allowed, &expected(now_unix()))
        .expect("the token verifies with the published key");
    interrupt(&mut mposd);

    // The key file is the operator's secret, generated once.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("attestation-token.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(data.join("attestation-status-list.json").exists());

    // After a restart on the same data directory: the same key is published, so the token
    // issued before still verifies; the terminal is still known and, with the simulator's
    // root configured, the phone is allowed again.
    let anchors = dir.path().join("anchors.pem");
    std::fs::write(&anchors, pki.root_pem()).expect("write");
    let mut again = start_with(
        &data,
        &[
            list[0].clone(),
            ("MPOS_ATT_ANCHORS", anchors.display().to_string()),
        ],
    );
    let verifier = published_verifier(&client, &again.attest).await;
    verifier
        .verify(&allowed, &expected(now_unix()))
        .expect("the token still verifies after the restart");
    let body = attest_phone(&client, &again.attest, &pki).await;
    assert_eq!(body["verdict"], "VERDICT_ALLOW", "{body}");
    interrupt(&mut again);
}
