//! `mposd` as a newcomer runs it: the real binary, a fresh data directory, nothing else.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Mposd {
    child: Child,
    api: String,
    hsm: String,
    keys: String,
    admin: String,
    lines: std::sync::mpsc::Receiver<String>,
}

fn start(data_dir: &std::path::Path) -> Mposd {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mposd"))
        .env_clear()
        .env("MPOS_DATA_DIR", data_dir)
        .env("MPOS_HTTP_ADDR", "127.0.0.1:0")
        .env("MPOS_ADMIN_ADDR", "127.0.0.1:0")
        .env("MPOS_HSM_HTTP_ADDR", "127.0.0.1:0")
        .env("MPOS_DEVICE_ADDR", "127.0.0.1:0")
        .env("MPOS_KI_HTTP_ADDR", "127.0.0.1:0")
        .env("MPOS_KI_DEVICE_ADDR", "127.0.0.1:0")
        .env("MPOS_LOG", "warn")
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
    let (mut api, mut hsm, mut keys, mut admin) = (None, None, None, None);
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("mposd prints where it listens");
        if let Some(rest) = line.strip_prefix("mposd: api   ") {
            api = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: hsm   ") {
            hsm = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("mposd: keys  ") {
            keys = rest.split_whitespace().next().map(str::to_owned);
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
        hsm: hsm.expect("hsm"),
        keys: keys.expect("key-injection"),
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
    assert!(dir.path().join("chain-signing.key").exists());
}

#[test]
fn a_bad_variable_stops_mposd_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_mposd"))
        .env_clear()
        .env("MPOS_DATA_DIR", dir.path())
        .env("MPOS_HTTP_ADDR", "not-an-address")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("MPOS_HTTP_ADDR: expected"), "{stderr}");
}
