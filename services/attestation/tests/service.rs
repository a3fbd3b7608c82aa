//! The attestation service end to end over real PostgreSQL and NATS JetStream, with
//! terminal-management in the same process (tenants, API keys, SoftPOS terminals, read from
//! its event stream on NATS) and simulated SoftPOS phones (terminal-sim's attestation PKI, a
//! simulator root the service is told to trust): verdicts for good and bad evidence, replays,
//! policy edits re-judging devices, tenant isolation, trust anchors replaced at run time, Play
//! Integrity when asked, tokens checked by the verifier the authorization service uses, and
//! the events on the bus.

use std::time::{Duration, Instant};

use attestation_token::{Expected, TokenError};
use base64::Engine as _;
use mpos_config::Vars;
use mpos_service::{CommonConfig, Infrastructure};
use secrecy::SecretString;
use serde_json::{Value, json};
use terminal_sim::softpos::{AttestOptions, AttestationPki, SecurityLevel, SoftPosProfile};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "operator-token-for-attestation-test-0123456789";

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, token, path, Some(body))
            .await
    }

    async fn put(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, token, path, Some(body))
            .await
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, token, path, None).await
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_str().expect("base64 string"))
        .expect("base64")
}

/// A phone of a tenant that attests through the API.
struct Phone<'a> {
    api: &'a Api,
    tenant: &'a str,
    device: &'a str,
}

impl Phone<'_> {
    fn path(&self, tail: &str) -> String {
        format!("/v1/tenants/{}/devices/{}/{tail}", self.tenant, self.device)
    }

    async fn challenge(&self) -> Value {
        let (status, body) = self.api.post("", &self.path("challenges"), json!({})).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn send(
        &self,
        challenge_id: &Value,
        chain: &[Vec<u8>],
        profile: &SoftPosProfile,
        play_integrity: Option<String>,
    ) -> (u16, Value) {
        let chain: Vec<String> = chain.iter().map(|der| b64(der)).collect();
        let signals = serde_json::to_value(profile.signals()).expect("signals");
        let signals = json!({
            "rooted": signals["rooted"], "emulator": signals["emulator"],
            "debuggerAttached": signals["debugger_attached"], "hookingFramework": signals["hooking_framework"],
            "appTampered": signals["app_tampered"], "osVersion": signals["os_version"],
            "sdkVersion": signals["sdk_version"], "appVersion": signals["app_version"],
            "appVersionCode": signals["app_version_code"].to_string(),
            "securityPatchLevel": signals["security_patch_level"], "packageName": signals["package_name"],
        });
        self.api
            .post(
                "",
                &self.path("attestations"),
                json!({
                    "challengeId": challenge_id,
                    "keyAttestationChain": chain,
                    "playIntegrityVerdict": play_integrity.unwrap_or_default(),
                    "signals": signals,
                }),
            )
            .await
    }

    /// A fresh challenge answered with a chain from `pki` built by `options`.
    async fn attest(
        &self,
        pki: &AttestationPki,
        profile: &SoftPosProfile,
        options: &AttestOptions,
    ) -> Value {
        let challenge = self.challenge().await;
        let bytes = unb64(&challenge["challenge"]);
        let chain = pki.attest_with(profile, &bytes, options).expect("chain");
        let (status, body) = self
            .send(&challenge["challengeId"], &chain, profile, None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn codes(body: &Value) -> Vec<String> {
    body["findings"]
        .as_array()
        .map(|findings| {
            findings
                .iter()
                .map(|f| f["code"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn verdict(body: &Value) -> &str {
    body["verdict"].as_str().unwrap_or_default()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softpos_devices_over_postgres_and_nats() {
    let postgres = std::env::var("MPOS_TEST_POSTGRES_URL").expect("MPOS_TEST_POSTGRES_URL");
    let bus_url = std::env::var("MPOS_TEST_NATS_URL").expect("MPOS_TEST_NATS_URL");
    scenario(
        &bus_url,
        &|_| format!("{postgres}?schema={}", unique("att_")),
        false,
        true,
    )
    .await;
}

/// The embedded variant (`mposd`'s): SQLite logs, an in-process bus, terminal-management's
/// events read from its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softpos_devices_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    scenario(
        "memory://",
        &move |service| format!("sqlite://{}", path.join(format!("{service}.db")).display()),
        true,
        false,
    )
    .await;
}

/// Everything the service promises, on the given bus and databases; `from_store`: the feed
/// reads terminal-management's log instead of the bus; `tls`: the device API on its own TLS
/// listener (else beside the admin routes).
async fn scenario(bus_url: &str, database: &dyn Fn(&str) -> String, from_store: bool, tls: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("server");
    let server_der = server.cert.der().to_vec();
    let device_tls = tls.then(|| {
        let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
        std::fs::write(&cert, server.cert.pem()).expect("write");
        std::fs::write(&key, server.signing_key.serialize_pem()).expect("write");
        device_identity::ServerIdentity::from_pem_files(&cert, &key).expect("tls identity")
    });
    let cancel = CancellationToken::new();
    let token = SecretString::from(TOKEN.to_owned());
    let config = |service: &str| {
        let vars = Vars::from_pairs(vec![
            ("MPOS_DATABASE_URL", database(service)),
            ("MPOS_BUS_URL", bus_url.to_owned()),
            ("MPOS_CHAIN_SIGNING_KEY", "2a".repeat(32)),
            ("MPOS_POLL_INTERVAL_MS", "20".to_owned()),
        ]);
        CommonConfig::from_vars(&vars, service, "127.0.0.1:0", "127.0.0.1:0").expect("config")
    };

    // terminal-management: tenants, keys, estate, SoftPOS terminals.
    let tms_common = config(terminal_management::SERVICE);
    let tms_infrastructure = Infrastructure::default();
    let (tms_store, tms_bus) = tms_infrastructure
        .connect(&tms_common, &cancel)
        .await
        .expect("tms infrastructure");
    let tms_feed = from_store.then(|| mpos_feed::follow::FeedSource::Store {
        store: tms_store.clone(),
        codec: std::sync::Arc::new(terminal_management::codec()),
    });
    let tms_running = terminal_management::service::start(
        &tms_common,
        tms_store,
        &tms_bus,
        &tms_infrastructure,
        &terminal_management::service::TmOptions {
            operator_token: token.clone(),
            parameter_signing_key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
            device_addr: "127.0.0.1:0".parse().expect("addr"),
            device_tls: None,
            more_device_routes: None,
            attestation_feed: None,
        },
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        &cancel,
    )
    .await
    .expect("terminal-management");
    let tms = Api {
        client: reqwest::Client::new(),
        base: format!("http://{}", tms_running.http_addr),
    };
    // Tenant names unique per run: terminal-management's stream on NATS outlives the run.
    let acme = unique("acme");
    let other = unique("other");
    let mut keys = std::collections::HashMap::new();
    for tenant in [&acme, &other] {
        let (status, body) = tms
            .post(
                TOKEN,
                "/v1/tenants",
                json!({"tenantId": tenant, "name": tenant}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        for role in ["API_KEY_ROLE_ADMIN", "API_KEY_ROLE_READ_ONLY"] {
            let (status, body) = tms
                .post(
                    TOKEN,
                    &format!("/v1/tenants/{tenant}/api-keys"),
                    json!({"role": role, "label": "att"}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            keys.insert(
                (tenant.clone(), role),
                body["secret"].as_str().expect("secret").to_owned(),
            );
        }
        let admin = keys[&(tenant.clone(), "API_KEY_ROLE_ADMIN")].clone();
        for (node, kind, parent) in [
            ("m-1", "NODE_KIND_MERCHANT", ""),
            ("s-1", "NODE_KIND_STORE", "m-1"),
        ] {
            let (status, body) = tms
                .post(
                    &admin,
                    &format!("/v1/tenants/{tenant}/nodes"),
                    json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
        for phone in ["phone-1", "phone-2", "phone-3"] {
            let (status, body) = tms
                .post(&admin, &format!("/v1/tenants/{tenant}/terminals"), json!({"terminalId": phone, "kind": "TERMINAL_KIND_SOFTPOS", "parentId": "s-1"}))
                .await;
            assert_eq!(status, 201, "{body}");
        }
    }
    let acme_admin = keys[&(acme.clone(), "API_KEY_ROLE_ADMIN")].clone();
    let acme_reader = keys[&(acme.clone(), "API_KEY_ROLE_READ_ONLY")].clone();
    let other_admin = keys[&(other.clone(), "API_KEY_ROLE_ADMIN")].clone();

    // The simulated phones' attestation roots: `good` and `revoked` trusted (the latter's
    // intermediate on the status list), `later` trusted only after a run-time replacement.
    let good = AttestationPki::new().expect("pki");
    let revoked = AttestationPki::new().expect("pki");
    let later = AttestationPki::new().expect("pki");
    let anchors = dir.path().join("anchors.pem");
    std::fs::write(
        &anchors,
        format!("{}{}", good.root_pem(), revoked.root_pem()),
    )
    .expect("write");
    let (_, intermediate) =
        x509_parser::parse_x509_certificate(revoked.intermediate_der()).expect("intermediate");
    let serial = android_attestation::serial_hex(intermediate.raw_serial());
    let status_list = dir.path().join("status.json");
    std::fs::write(
        &status_list,
        json!({"entries": {serial: {"status": "REVOKED", "reason": "KEY_COMPROMISE"}}}).to_string(),
    )
    .expect("write");

    // The attestation service, following terminal-management's stream on NATS.
    let att_common = config(attestation::SERVICE);
    let att_infrastructure = Infrastructure::default();
    let (att_store, att_bus) = att_infrastructure
        .connect(&att_common, &cancel)
        .await
        .expect("attestation infrastructure");
    let issuer = attestation::service::generated_issuer("att-test".into()).expect("issuer");
    let options = attestation::service::AttOptions {
        operator_token: token.clone(),
        token_issuer: std::sync::Arc::new(issuer),
        trust: attestation_trust::TrustConfig::new(
            attestation_trust::Source::File(anchors.clone()),
            Some(attestation_trust::Source::File(status_list.clone())),
        ),
        challenge_ttl: Duration::from_secs(120),
        monitor_interval: Duration::from_secs(3_600),
        feed: tms_feed,
        device_addr: device_tls
            .is_some()
            .then(|| "127.0.0.1:0".parse().expect("addr")),
        device_tls: device_tls.clone(),
    };
    let running = attestation::service::start(
        &att_common,
        att_store.clone(),
        &att_bus,
        &att_infrastructure,
        &options,
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        &cancel,
    )
    .await
    .expect("attestation");
    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://{}", running.http_addr),
    };
    // The phones reach the device API over TLS when it has its own listener.
    let device_api = match (&device_tls, running.device_addr) {
        (Some(_), Some(address)) => Api {
            client: reqwest::Client::builder()
                .add_root_certificate(
                    reqwest::Certificate::from_der(&server_der).expect("server certificate"),
                )
                .build()
                .expect("tls client"),
            base: format!("https://localhost:{}", address.port()),
        },
        _ => api.clone(),
    };
    if device_tls.is_some() {
        let (status, _) = api
            .post("", "/v1/tenants/x/devices/y/challenges", json!({}))
            .await;
        assert_eq!(status, 404, "device routes only on the TLS listener");
    }
    let phone = |tenant, device| Phone {
        api: &device_api,
        tenant,
        device,
    };
    let p1 = phone(&acme, "phone-1");
    let p2 = phone(&acme, "phone-2");
    let p3 = phone(&acme, "phone-3");
    let x1 = phone(&other, "phone-1");

    // The feed brings the terminals.
    let start = Instant::now();
    loop {
        let (status, _) = device_api.post("", &x1.path("challenges"), json!({})).await;
        if status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "terminals never arrived ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The verifier the authorization service uses, from the published key.
    let (status, keys_body) = api.get("", "/v1/attestation/token-keys").await;
    assert_eq!(status, 200, "{keys_body}");
    let published: attestation_token::PublishedKeys =
        serde_json::from_value(keys_body).expect("published keys");
    let verifier = published.verifier().expect("verifier");

    // 1. A healthy phone is allowed, with a token for it.
    let healthy = SoftPosProfile::default();
    let body = p1.attest(&good, &healthy, &AttestOptions::default()).await;
    assert_eq!(verdict(&body), "VERDICT_ALLOW", "{body}");
    assert!(codes(&body).is_empty(), "{body}");
    let token_1 = body["token"].as_str().expect("token").to_owned();
    let checked = verifier
        .verify(
            &token_1,
            &Expected {
                tenant: &acme,
                device: "phone-1",
                now_unix: now_s(),
                leeway_seconds: 5,
            },
        )
        .expect("a valid token");
    assert_eq!(checked.claims.policy_version, 0);
    // ...which the authorization side refuses once expired, forged, or for another tenant
    // or device.
    let exp = checked.claims.exp;
    assert!(matches!(
        verifier.verify(
            &token_1,
            &Expected {
                tenant: &acme,
                device: "phone-1",
                now_unix: exp + 60,
                leeway_seconds: 5
            }
        ),
        Err(TokenError::Expired { .. })
    ));
    let mut forged = token_1.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert!(matches!(
        verifier.verify(
            &forged,
            &Expected {
                tenant: &acme,
                device: "phone-1",
                now_unix: now_s(),
                leeway_seconds: 5
            }
        ),
        Err(TokenError::BadSignature | TokenError::Malformed(_))
    ));
    let body = x1.attest(&good, &healthy, &AttestOptions::default()).await;
    let other_token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(
        verifier.verify(
            &other_token,
            &Expected {
                tenant: &acme,
                device: "phone-1",
                now_unix: now_s(),
                leeway_seconds: 5
            }
        ),
        Err(TokenError::WrongTenant)
    );
    assert_eq!(
        verifier.verify(
            &token_1,
            &Expected {
                tenant: &acme,
                device: "phone-2",
                now_unix: now_s(),
                leeway_seconds: 5
            }
        ),
        Err(TokenError::WrongDevice)
    );

    // 2. A replayed challenge is refused and changes nothing.
    let challenge = p2.challenge().await;
    let chain = good
        .attest(&healthy, &unb64(&challenge["challenge"]))
        .expect("chain");
    let (status, body) = p2
        .send(&challenge["challengeId"], &chain, &healthy, None)
        .await;
    assert_eq!((status, verdict(&body)), (200, "VERDICT_ALLOW"), "{body}");
    let before = att_store.read_after(0, 100_000).await.expect("log").len();
    let (status, body) = p2
        .send(&challenge["challengeId"], &chain, &healthy, None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "conflict", "{body}");
    let (status, body) = p2
        .send(&json!("no-such-challenge"), &chain, &healthy, None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        att_store.read_after(0, 100_000).await.expect("log").len(),
        before
    );

    // 3. Bad evidence blocks, with its reason and no token.
    let blocked = |body: &Value, code: &str| {
        assert_eq!(verdict(body), "VERDICT_BLOCK", "{body}");
        assert!(
            codes(body).iter().any(|c| c == code),
            "{code} expected: {body}"
        );
        assert_eq!(body["token"].as_str().unwrap_or_default(), "", "{body}");
    };
    let challenge = p3.challenge().await;
    let chain = good
        .attest(&healthy, b"a challenge the service never issued")
        .expect("chain");
    let (_, body) = p3
        .send(&challenge["challengeId"], &chain, &healthy, None)
        .await;
    blocked(&body, "KA_CHALLENGE_MISMATCH");
    for options in [
        AttestOptions {
            leaf_expired: true,
            ..AttestOptions::default()
        },
        AttestOptions {
            corrupt_leaf_signature: true,
            ..AttestOptions::default()
        },
        AttestOptions {
            extension_on_intermediate: true,
            ..AttestOptions::default()
        },
        AttestOptions {
            extended_past_leaf: true,
            ..AttestOptions::default()
        },
    ] {
        blocked(
            &p3.attest(&good, &healthy, &options).await,
            "KA_CHAIN_INVALID",
        );
    }
    blocked(
        &p3.attest(&later, &healthy, &AttestOptions::default()).await,
        "KA_CHAIN_INVALID",
    );
    let body = p3
        .attest(&revoked, &healthy, &AttestOptions::default())
        .await;
    blocked(&body, "KA_CHAIN_INVALID");
    assert!(
        body["findings"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("REVOKED")
            || body["findings"][0]["detail"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains("revoked"),
        "{body}"
    );
    let software = SoftPosProfile {
        attestation_security_level: SecurityLevel::Software,
        keymint_security_level: SecurityLevel::Software,
        ..SoftPosProfile::default()
    };
    blocked(
        &p3.attest(&good, &software, &AttestOptions::default()).await,
        "SECURITY_LEVEL_TOO_LOW",
    );
    let rooted = SoftPosProfile {
        rooted: true,
        hooking_framework: true,
        ..SoftPosProfile::default()
    };
    let body = p3.attest(&good, &rooted, &AttestOptions::default()).await;
    blocked(&body, "SIGNAL_ROOTED");
    assert!(
        codes(&body).contains(&"SIGNAL_HOOKING_FRAMEWORK".to_owned()),
        "{body}"
    );
    assert!(
        body["findings"][0]["advice"]
            .as_str()
            .is_some_and(|a| !a.is_empty()),
        "{body}"
    );

    // 4. Policies: only the tenant's admin edits, another tenant sees nothing.
    let policy_path = format!("/v1/tenants/{acme}/attestation-policy");
    let strict = json!({"policy": {
        "minPatchLevel": 202612, "actions": {"PATCH_LEVEL_TOO_OLD": "RULE_ACTION_BLOCK"},
        "allowedPackages": ["com.mpos.softpos"], "requireVerifiedBoot": true,
    }, "comment": "december patch required"});
    let (status, _) = api.put(&acme_reader, &policy_path, strict.clone()).await;
    assert_eq!(status, 403);
    let (status, _) = api.put(&other_admin, &policy_path, strict.clone()).await;
    assert_eq!(status, 404);
    let (status, _) = api.get(&other_admin, &policy_path).await;
    assert_eq!(status, 404);
    let (status, body) = api
        .put(
            &acme_admin,
            &policy_path,
            json!({"policy": {"minPatchLevel": 202613}}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    // phone-1 and phone-2 (patch 2026-11) turn to BLOCK: the edit re-judged them.
    let (status, body) = api.put(&acme_admin, &policy_path, strict).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], "1", "{body}");
    assert_eq!(body["verdictsChanged"], "2", "{body}");
    let (status, history) = api
        .get(&acme_reader, &format!("/v1/tenants/{acme}/devices/phone-1"))
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["device"]["verdict"], "VERDICT_BLOCK", "{history}");
    let last = history["entries"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        last["eventType"], "mpos.attestation.v1.DeviceVerdictChanged",
        "{history}"
    );
    assert_eq!(last["reasons"][0], "PATCH_LEVEL_TOO_OLD", "{history}");
    assert!(
        last["actor"]
            .as_str()
            .unwrap_or_default()
            .starts_with("api-key:"),
        "{history}"
    );
    // A new attestation under the policy: a patched phone passes, an old one is blocked.
    let patched = SoftPosProfile {
        os_patch_level: 202_612,
        ..SoftPosProfile::default()
    };
    let body = p1.attest(&good, &patched, &AttestOptions::default()).await;
    assert_eq!(
        (verdict(&body), body["policyVersion"].as_str()),
        ("VERDICT_ALLOW", Some("1")),
        "{body}"
    );
    // Flag instead of block: an edit from an old version is refused, from the current one
    // takes effect.
    let flag = json!({"policy": {"minPatchLevel": 202612, "actions": {"PATCH_LEVEL_TOO_OLD": "RULE_ACTION_FLAG"}}, "expectedVersion": "7"});
    let (status, _) = api.put(&acme_admin, &policy_path, flag.clone()).await;
    assert_eq!(status, 409);
    let mut flag = flag;
    flag["expectedVersion"] = json!("1");
    let (status, body) = api.put(&acme_admin, &policy_path, flag).await;
    assert_eq!(
        (status, body["version"].as_str()),
        (200, Some("2")),
        "{body}"
    );
    let (_, history) = api
        .get(&acme_admin, &format!("/v1/tenants/{acme}/devices/phone-2"))
        .await;
    assert_eq!(history["device"]["verdict"], "VERDICT_FLAG", "{history}");
    // The other tenant's phone was never touched.
    let (_, history) = api
        .get(
            &other_admin,
            &format!("/v1/tenants/{other}/devices/phone-1"),
        )
        .await;
    assert_eq!(history["device"]["verdict"], "VERDICT_ALLOW", "{history}");
    let (status, _) = api
        .get(&other_admin, &format!("/v1/tenants/{acme}/devices/phone-1"))
        .await;
    assert_eq!(status, 404);

    // 5. Play Integrity when the policy asks for it, within the quota.
    let pi_policy = json!({"policy": {"playIntegrityIntervalSeconds": "3600", "requiredDeviceLabels": ["MEETS_DEVICE_INTEGRITY"], "playIntegrityDailyQuota": 1}});
    let (status, body) = api.put(&acme_admin, &policy_path, pi_policy).await;
    assert_eq!(status, 200, "{body}");
    let challenge = p1.challenge().await;
    assert_eq!(challenge["playIntegrityRequested"], true, "{challenge}");
    let bytes = unb64(&challenge["challenge"]);
    let request_hash = challenge["requestHash"]
        .as_str()
        .expect("request hash")
        .to_owned();
    let millis = now_s() * 1_000;
    let verdict_json =
        terminal_sim::softpos::play_integrity_verdict(&patched, &request_hash, millis);
    let chain = good.attest(&patched, &bytes).expect("chain");
    let (status, body) = p1
        .send(
            &challenge["challengeId"],
            &chain,
            &patched,
            Some(verdict_json),
        )
        .await;
    assert_eq!((status, verdict(&body)), (200, "VERDICT_ALLOW"), "{body}");
    // The day's quota (1) is used: the next device is not asked, and is flagged as due.
    let challenge = p2.challenge().await;
    assert_eq!(
        challenge["playIntegrityRequested"].as_bool(),
        None,
        "{challenge}"
    );
    let chain = good
        .attest(&patched, &unb64(&challenge["challenge"]))
        .expect("chain");
    let (_, body) = p2
        .send(&challenge["challengeId"], &chain, &patched, None)
        .await;
    assert_eq!(codes(&body), ["PI_DUE"], "{body}");
    // A verdict for another request is invalid evidence.
    let challenge = p1.challenge().await;
    let chain = good
        .attest(&patched, &unb64(&challenge["challenge"]))
        .expect("chain");
    let stale = terminal_sim::softpos::play_integrity_verdict(&patched, "another-request", millis);
    let (_, body) = p1
        .send(&challenge["challengeId"], &chain, &patched, Some(stale))
        .await;
    blocked(&body, "PI_REQUEST_HASH_MISMATCH");

    // 6. Trust anchors replaced at run time (operator only): `later` is trusted, `good` no
    // longer.
    let replace = |token: &'static str| {
        api.client
            .put(format!("{}/v1/attestation/trust/anchors", api.base))
            .bearer_auth(token)
            .body(later.root_pem().to_owned())
            .send()
    };
    let response = api
        .client
        .put(format!("{}/v1/attestation/trust/anchors", api.base))
        .bearer_auth(&acme_admin)
        .body(later.root_pem().to_owned())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 403);
    let response = replace(TOKEN).await.expect("send");
    assert_eq!(response.status().as_u16(), 200);
    let response = api
        .client
        .put(format!("{}/v1/attestation/trust/anchors", api.base))
        .bearer_auth(TOKEN)
        .body("not a pem")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    let (status, trust) = api.get(TOKEN, "/v1/attestation/trust").await;
    assert_eq!(
        (status, trust["anchors"].as_u64()),
        (200, Some(1)),
        "{trust}"
    );
    let relaxed = json!({"policy": {}});
    let (status, _) = api.put(&acme_admin, &policy_path, relaxed).await;
    assert_eq!(status, 200);
    assert_eq!(
        verdict(&p3.attest(&later, &healthy, &AttestOptions::default()).await),
        "VERDICT_ALLOW"
    );
    blocked(
        &p3.attest(&good, &healthy, &AttestOptions::default()).await,
        "KA_CHAIN_INVALID",
    );

    // 7. The dashboard.
    let (status, board) = api
        .get(
            &acme_reader,
            &format!("/v1/tenants/{acme}/attestation/dashboard"),
        )
        .await;
    assert_eq!(status, 200, "{board}");
    assert_eq!(board["devices"], "3", "{board}");
    assert_eq!(board["activeDevices"], "3", "{board}");
    let adoption = &board["adoption"][0];
    assert_eq!(adoption["newDevices"], "3", "{board}");
    assert!(board["osVersions"][0]["value"] == "150000", "{board}");
    let (status, _) = api
        .get(
            &other_admin,
            &format!("/v1/tenants/{acme}/attestation/dashboard"),
        )
        .await;
    assert_eq!(status, 404);

    // 8. Monitoring: nothing is overdue now; 25 hours later (the default interval is 24 h)
    // every device missed its re-attestation, once, and is blocked.
    let actor = attestation::engine::Actor("service:attestation".into());
    assert_eq!(running.attestor.monitor(&actor).await.expect("monitor"), 0);
    let later_us = i64::try_from(now_s() + 25 * 3_600).expect("time") * 1_000_000;
    assert_eq!(
        running
            .attestor
            .monitor_at(&actor, later_us)
            .await
            .expect("monitor"),
        4
    );
    assert_eq!(
        running
            .attestor
            .monitor_at(&actor, later_us + 60_000_000)
            .await
            .expect("monitor"),
        0
    );
    let (_, history) = api
        .get(&acme_reader, &format!("/v1/tenants/{acme}/devices/phone-1"))
        .await;
    assert_eq!(history["device"]["verdict"], "VERDICT_BLOCK", "{history}");
    assert_eq!(history["device"]["reattestationMissed"], true, "{history}");
    let types: Vec<&str> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .rev()
        .take(2)
        .map(|e| e["eventType"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "mpos.attestation.v1.DeviceVerdictChanged",
            "mpos.attestation.v1.ReattestationMissed"
        ],
        "{history}"
    );
    let (_, board) = api
        .get(
            &acme_reader,
            &format!("/v1/tenants/{acme}/attestation/dashboard"),
        )
        .await;
    assert_eq!(
        board["activeDevices"].as_str(),
        None,
        "no active device: {board}"
    );
    assert!(
        board["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|b| b["value"] == "REATTESTATION_MISSED"),
        "{board}"
    );
    // A new attestation clears it.
    let body = p1.attest(&later, &healthy, &AttestOptions::default()).await;
    assert_eq!(verdict(&body), "VERDICT_ALLOW", "{body}");

    // 9. Every event reaches the bus through the outbox; none carries a token.
    let mut stream = att_bus
        .subscriber
        .subscribe(mpos_bus::SubscribeOptions::new(
            attestation::SERVICE,
            unique("att-test-"),
        ))
        .await
        .expect("subscribe");
    let expected: Vec<String> = att_store
        .read_after(0, 100_000)
        .await
        .expect("log")
        .into_iter()
        .map(|stored| stored.event.event_id)
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut types = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < expected.len() {
        let next = tokio::time::timeout_at(deadline.into(), stream.next())
            .await
            .expect("every event on the bus in time")
            .expect("stream")
            .expect("delivery");
        let envelope = next.envelope.clone();
        let _ = next.ack().await;
        if expected.contains(&envelope.event_id) {
            let payload = String::from_utf8_lossy(&envelope.payload).to_string();
            for secret in [&token_1, &other_token] {
                let signature = secret.rsplit('.').next().unwrap_or_default();
                assert!(!payload.contains(signature), "a token on the bus");
            }
            types.insert(envelope.event_type.clone());
            seen.insert(envelope.event_id);
        }
    }
    for event_type in [
        "mpos.attestation.v1.ChallengeIssued",
        "mpos.attestation.v1.DeviceAttested",
        "mpos.attestation.v1.DeviceVerdictChanged",
        "mpos.attestation.v1.PolicyPublished",
    ] {
        assert!(types.contains(event_type), "{event_type} not on the bus");
    }

    cancel.cancel();
    running.join().await;
}
