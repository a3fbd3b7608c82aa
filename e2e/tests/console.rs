//! The operator console in a real browser: the embedded platform (every service in process on
//! SQLite), the console in front of it, and `e2e/console/console.mjs` driving Debian's
//! Chromium with Playwright — log in, change the EUR floor limit and watch the terminal
//! acknowledge it, see the SoftPOS charts render, see a payment appear live and open its
//! story, verify the audit trail. The script asks this test, step by step, to do what a
//! terminal would (download its parameters, pay); its screenshots are kept in
//! `$MPOS_ARTIFACTS_DIR/console` (default `artifacts/console` in the workspace) for CI.
//!
//! Needs Node.js, the script's `npm ci` and Chromium: `infra/test.sh` installs them and sets
//! `MPOS_TEST_CHROMIUM`; without it the test says so and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mpos_e2e::{Backends, OPERATOR_TOKEN, Platform, TENANT, chip, test_card_rules, visa};
use serde_json::{Value, json};
use terminal_sim::emv::CardDecision;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The whole walk through the console, at most.
const WALK: Duration = Duration::from_secs(240);

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_walks_through_the_console_in_chromium() {
    let Ok(chromium) = std::env::var("MPOS_TEST_CHROMIUM") else {
        eprintln!("skipped: MPOS_TEST_CHROMIUM names no Chromium (infra/test.sh sets it)");
        return;
    };
    let script_dir = workspace().join("e2e/console");
    assert!(
        script_dir.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in {} first (infra/test.sh does)",
        script_dir.display()
    );
    let screenshots = std::env::var_os("MPOS_ARTIFACTS_DIR")
        .map_or_else(|| workspace().join("artifacts"), PathBuf::from)
        .join("console");
    let _ = std::fs::remove_dir_all(&screenshots);

    let dir = tempfile::tempdir().expect("tempdir");
    let platform = Platform::start(Backends::sqlite(dir.path()), &test_card_rules()).await;
    let mut terminal = platform.provision().await;
    let terminal_id = terminal.terminal_id().to_owned();
    // A SoftPOS phone attested, so the dashboard has something to chart.
    let verdict = platform.attest_phone().await;
    assert!(verdict["token"].is_string(), "{verdict}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let console_url = format!("http://{}/console/", listener.local_addr().expect("addr"));
    let router = platform.console().router();
    tokio::spawn(async move { axum_serve(listener, router).await });

    let mut script = tokio::process::Command::new("node")
        .arg(script_dir.join("console.mjs"))
        .current_dir(&script_dir)
        .env("CONSOLE_URL", &console_url)
        .env("CONSOLE_TOKEN", OPERATOR_TOKEN)
        .env("CONSOLE_TENANT", TENANT)
        .env("TERMINAL_ID", &terminal_id)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (infra/test.sh installs Node.js)");
    let mut stdin = script.stdin.take().expect("stdin");
    let mut lines = BufReader::new(script.stdout.take().expect("stdout")).lines();
    let mut steps = Vec::new();
    let walk = async {
        while let Some(line) = lines.next_line().await.expect("read the script") {
            eprintln!("console.mjs: {line}");
            if line == "DONE" {
                steps.push("DONE".to_owned());
                break;
            }
            let Some(step) = line.strip_prefix("STEP ") else {
                continue;
            };
            let (name, data) = step.split_once(' ').unwrap_or((step, "{}"));
            let data: Value = serde_json::from_str(data).expect("the step's json");
            let answer = match name {
                "floor-limit" => {
                    // What the operator saved is the tenant's parameters now; the terminal
                    // downloads and acknowledges them.
                    let parameters = platform
                        .call(
                            reqwest::Method::GET,
                            &format!("{}/v1/tenants/{TENANT}/parameters", platform.tm_api),
                            None,
                        )
                        .await;
                    let eur = parameters["floorLimits"]
                        .as_array()
                        .and_then(|limits| limits.iter().find(|limit| limit["currency"] == "EUR"))
                        .cloned()
                        .unwrap_or_default();
                    assert_eq!(eur["amount"], "7000", "{parameters}");
                    assert_eq!(
                        parameters["terminalActionCodes"]["denial"], "0000000000",
                        "{parameters}"
                    );
                    assert_eq!(data["amount"], "7000", "{data}");
                    let installed = terminal
                        .download_parameters()
                        .await
                        .expect("the terminal downloads its parameters");
                    let values = installed
                        .set
                        .parameters
                        .and_then(|parameters| parameters.values)
                        .unwrap_or_default();
                    assert!(
                        values
                            .floor_limits
                            .iter()
                            .any(|limit| limit.currency == "EUR" && limit.amount == 7_000),
                        "the terminal installed the new floor limit: {values:?}"
                    );
                    assert_eq!(
                        values
                            .terminal_action_codes
                            .as_ref()
                            .and_then(|codes| codes.denial.as_deref()),
                        Some("0000000000")
                    );
                    assert!(
                        values.blocked_card_tokens.contains(&vec![0xab; 32]),
                        "the terminal installed the blocked card token: {values:?}"
                    );
                    json!({})
                }
                "payment" => {
                    let (payment, _) = chip(&visa(), "console-1", 1_250, CardDecision::Arqc, 30);
                    let response = terminal.pay(payment).await.expect("pay");
                    assert!(response.approved, "{response:?}");
                    json!({ "paymentId": response.payment_id })
                }
                other => panic!("the script asks for an unknown step {other:?}"),
            };
            steps.push(name.to_owned());
            stdin
                .write_all(format!("OK {name} {answer}\n").as_bytes())
                .await
                .expect("answer the script");
            stdin.flush().await.expect("flush");
        }
    };
    tokio::time::timeout(WALK, walk)
        .await
        .expect("the walk through the console ends in time");
    let status = tokio::time::timeout(Duration::from_secs(30), script.wait())
        .await
        .expect("the script exits")
        .expect("wait");
    assert!(status.success(), "console.mjs failed: {status}");
    assert_eq!(steps, ["floor-limit", "payment", "DONE"]);
    for shot in [
        "01-estate.png",
        "02-floor-limit.png",
        "03-softpos.png",
        "04-payments.png",
        "05-payment-story.png",
        "06-audit.png",
        "07-replay.png",
    ] {
        let bytes = std::fs::read(screenshots.join(shot)).expect("screenshot");
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1_000,
            "{shot} is a picture"
        );
    }
    platform.stop().await;
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    if let Err(error) = axum::serve(listener, router).await {
        eprintln!("console server: {error}");
    }
}
