//! Device identity end to end, over real TLS: manufacturer CAs registered by the operator,
//! PEDs bound by their certificates (one by one or in bulk), first boot over mTLS, signed
//! parameter downloads and acknowledgements; unknown, expired, revoked and anonymous devices
//! refused at the handshake.

mod common;

use common::pki::{TestCa, TestDevice, anonymous_client};
use common::{TestService, embedded, embedded_with_device_routes};
use mpos_proto::terminal_management as pb;
use serde_json::json;

async fn register_ca(service: &TestService, ca: &TestCa, name: &str) -> String {
    let (status, body) = service
        .post(
            "/v1/manufacturer-cas",
            json!({"name": name, "certificatePem": ca.pem}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["caId"].as_str().expect("ca id").to_owned()
}

/// acme with m-1 → s-1 → g-1; returns an operator key.
async fn estate(service: &TestService) -> String {
    let key = service
        .tenant_with_key("acme", "API_KEY_ROLE_OPERATOR")
        .await;
    for (node, kind, parent) in [
        ("m-1", "NODE_KIND_MERCHANT", ""),
        ("s-1", "NODE_KIND_STORE", "m-1"),
        ("g-1", "NODE_KIND_TERMINAL_GROUP", "s-1"),
    ] {
        let (status, body) = service
            .post_as(
                &key,
                "/v1/tenants/acme/nodes",
                json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    key
}

async fn bind_ped(
    service: &TestService,
    key: &str,
    terminal: &str,
    device: &TestDevice,
) -> (u16, serde_json::Value) {
    service
        .post_as(
            key,
            "/v1/tenants/acme/terminals",
            json!({"terminalId": terminal, "kind": "TERMINAL_KIND_PED", "parentId": "g-1", "certificatePem": device.pem}),
        )
        .await
}

async fn device_call(
    service: &TestService,
    client: &reqwest::Client,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> reqwest::Result<(u16, serde_json::Value)> {
    let mut request = client.request(method, format!("{}{path}", service.device_base));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    ))
}

async fn activate(
    service: &TestService,
    device: &TestDevice,
) -> reqwest::Result<(u16, serde_json::Value)> {
    device_call(
        service,
        &device.client(),
        reqwest::Method::POST,
        "/v1/devices/activate",
        Some(json!({})),
    )
    .await
}

fn complete_parameters() -> serde_json::Value {
    json!({
        "floorLimits": [{"currency": "EUR", "amount": "5000"}],
        "terminalActionCodes": {"denial": "0010000000", "online": "FC50BCF800", "defaultCode": "FC50BCA000"},
        "merchantCategoryCode": "5411",
        "transactionCurrency": "EUR",
        "terminalCountryCode": "276"
    })
}

fn b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

#[tokio::test]
async fn a_ped_binds_by_certificate_boots_over_mtls_and_downloads_signed_parameters() {
    let service = embedded().await;
    let vendor = TestCa::new("Vendor A Device CA");
    let ca_id = register_ca(&service, &vendor, "Vendor A").await;
    assert_eq!(ca_id.len(), 64);
    let key = estate(&service).await;
    let (status, body) = service.get_as(&key, "/v1/manufacturer-cas").await;
    assert_eq!(status, 200, "tenants see the trusted vendors");
    assert_eq!(body["cas"][0]["caId"], ca_id.as_str());

    let ped = vendor.device(&[0x0A, 0x01]);
    let (status, body) = bind_ped(&service, &key, "t-1", &ped).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["device"]["serial"], "0A01");
    assert_eq!(body["device"]["issuerSha256"], ca_id.as_str());
    assert_eq!(body["state"], "TERMINAL_STATE_BOUND");
    // One device, one live terminal.
    let (status, body) = bind_ped(&service, &key, "t-2", &ped).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_exists")),
        "{body}"
    );
    // A device of an unregistered vendor cannot be bound.
    let stranger = TestCa::new("Vendor X").device(&[0x0B, 0x01]);
    let (status, body) = bind_ped(&service, &key, "t-3", &stranger).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("certificate_pem:"))
    );

    // First boot over mTLS activates; a second boot changes nothing.
    let (status, body) = activate(&service, &ped).await.expect("tls");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "TERMINAL_STATE_ACTIVE");
    assert_eq!(
        body["activationMethod"],
        "ACTIVATION_METHOD_DEVICE_CERTIFICATE"
    );
    let events = service.event_count().await;
    let (status, _) = activate(&service, &ped).await.expect("tls");
    assert_eq!(status, 200);
    assert_eq!(service.event_count().await, events);

    let client = ped.client();
    // No complete parameters yet: nothing to download.
    let (status, body) = device_call(
        &service,
        &client,
        reqwest::Method::GET,
        "/v1/devices/t-1/parameters",
        None,
    )
    .await
    .expect("tls");
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    let (status, body) = service
        .call_as(
            &key,
            reqwest::Method::PUT,
            "/v1/tenants/acme/parameters",
            Some(complete_parameters()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, signed) = device_call(
        &service,
        &client,
        reqwest::Method::GET,
        "/v1/devices/t-1/parameters",
        None,
    )
    .await
    .expect("tls");
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["algorithm"], "Ed25519");

    // The set verifies under the published key and says what the admin API says.
    let (_, published) = service.get_as(&key, "/v1/parameter-signing-key").await;
    let public: [u8; 32] = b64(published["publicKey"].as_str().expect("key"))
        .try_into()
        .expect("32 bytes");
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("key");
    let wire = pb::SignedParameterSet {
        payload: b64(signed["payload"].as_str().expect("payload")),
        signature: b64(signed["signature"].as_str().expect("signature")),
        key_id: signed["keyId"].as_str().expect("key id").to_owned(),
        algorithm: "Ed25519".into(),
        tenant_id: "acme".into(),
        terminal_id: "t-1".into(),
        version: signed["version"]
            .as_str()
            .expect("version")
            .parse()
            .expect("u64"),
    };
    let set = tms_params::verify(&wire, &verifying).expect("valid signature");
    assert_eq!(
        (set.tenant_id.as_str(), set.terminal_id.as_str()),
        ("acme", "t-1")
    );
    let values = set.parameters.and_then(|p| p.values).expect("values");
    assert_eq!(values.merchant_category_code.as_deref(), Some("5411"));
    let (_, effective) = service
        .get_as(&key, "/v1/tenants/acme/terminals/t-1/effective-parameters")
        .await;
    assert_eq!(effective["version"], signed["version"]);
    let mut tampered = wire.clone();
    tampered.payload[3] ^= 1;
    assert!(tms_params::verify(&tampered, &verifying).is_err());

    // The same set as protobuf.
    let response = client
        .get(format!("{}/v1/devices/t-1/parameters", service.device_base))
        .header("accept", "application/x-protobuf")
        .send()
        .await
        .expect("tls");
    assert_eq!(response.status().as_u16(), 200);
    let protobuf: pb::SignedParameterSet =
        prost::Message::decode(response.bytes().await.expect("body")).expect("protobuf");
    assert_eq!(protobuf.payload, wire.payload);

    // The device acknowledges what it installed.
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(&wire.payload);
    let bad = device_call(
        &service,
        &client,
        reqwest::Method::POST,
        "/v1/devices/t-1/parameters/ack",
        Some(json!({"version": signed["version"], "payloadSha256": base64_of(&[0; 32])})),
    )
    .await
    .expect("tls");
    assert_eq!(bad.0, 400, "{}", bad.1);
    let (status, body) = device_call(
        &service,
        &client,
        reqwest::Method::POST,
        "/v1/devices/t-1/parameters/ack",
        Some(json!({"version": signed["version"], "payloadSha256": base64_of(&digest)})),
    )
    .await
    .expect("tls");
    assert_eq!(status, 200, "{body}");
    // proto3 JSON leaves `false` out.
    assert!(!body["behind"].as_bool().unwrap_or(false), "{body}");
    assert_eq!(body["installedVersion"], signed["version"]);
    let (_, status_body) = service
        .get_as(&key, "/v1/tenants/acme/parameter-status")
        .await;
    assert_eq!(
        (
            status_body["upToDate"].as_u64(),
            status_body["behind"].as_u64()
        ),
        (Some(1), None)
    );
    // A change makes it behind.
    let mut changed = complete_parameters();
    changed["merchantCategoryCode"] = json!("5812");
    service
        .call_as(
            &key,
            reqwest::Method::PUT,
            "/v1/tenants/acme/parameters",
            Some(changed),
        )
        .await;
    let (_, status_body) = service
        .get_as(&key, "/v1/tenants/acme/parameter-status")
        .await;
    assert_eq!(status_body["behind"], 1, "{status_body}");

    // A device only reads its own terminal, and only while active.
    let (status, _) = device_call(
        &service,
        &client,
        reqwest::Method::GET,
        "/v1/devices/t-9/parameters",
        None,
    )
    .await
    .expect("tls");
    assert_eq!(status, 403);
    service
        .post_as(
            &key,
            "/v1/tenants/acme/terminals/t-1/suspend",
            json!({"reason": "lost"}),
        )
        .await;
    let (status, body) = device_call(
        &service,
        &client,
        reqwest::Method::GET,
        "/v1/devices/t-1/parameters",
        None,
    )
    .await
    .expect("tls");
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("the terminal is suspended"))
    );

    // The device's own actions are events with the device as actor.
    let stored = service.store.read_after(0, 1_000).await.expect("read");
    let activated = stored
        .iter()
        .find(|event| event.event.event_type == "mpos.terminal_management.v1.TerminalActivated")
        .expect("activated");
    assert!(
        activated.event.metadata.contains("device:t-1"),
        "{}",
        activated.event.metadata
    );
    service.stop().await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn unknown_expired_revoked_and_anonymous_devices_are_refused_at_the_handshake() {
    let service = embedded().await;
    let vendor = TestCa::new("Vendor A Device CA");
    let ca_id = register_ca(&service, &vendor, "Vendor A").await;
    let key = estate(&service).await;

    let good = vendor.device(&[0x01]);
    let (status, _) = bind_ped(&service, &key, "t-1", &good).await;
    assert_eq!(status, 201);
    assert_eq!(activate(&service, &good).await.expect("tls").0, 200);

    // Unknown vendor, expired certificate, no certificate: no TLS session at all.
    let unknown = TestCa::new("Vendor X").device(&[0x02]);
    assert!(activate(&service, &unknown).await.is_err(), "unknown CA");
    let expired = vendor.device_until(&[0x03], 2025);
    assert!(activate(&service, &expired).await.is_err(), "expired");
    let anonymous = anonymous_client()
        .post(format!("{}/v1/devices/activate", service.device_base))
        .send()
        .await;
    assert!(anonymous.is_err(), "no client certificate");
    // A certificate of a trusted vendor that no tenant bound: refused by the API.
    let unbound = vendor.device(&[0x04]);
    let (status, body) = activate(&service, &unbound).await.expect("tls");
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    // Revoked by the vendor's CRL: refused from the next connection on.
    let (status, body) = service
        .post(
            &format!("/v1/manufacturer-cas/{ca_id}/crl"),
            json!({"crlPem": vendor.crl(&[&[0x01]], 2025)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["crlRevokedCount"], 1);
    assert!(activate(&service, &good).await.is_err(), "revoked");
    // An older CRL cannot roll the revocation back.
    let (status, _) = service
        .post(
            &format!("/v1/manufacturer-cas/{ca_id}/crl"),
            json!({"crlPem": vendor.crl(&[], 2024)}),
        )
        .await;
    assert_eq!(status, 409);
    // A CRL signed by another CA is refused.
    let (status, _) = service
        .post(
            &format!("/v1/manufacturer-cas/{ca_id}/crl"),
            json!({"crlPem": TestCa::new("Vendor X").crl(&[], 2026)}),
        )
        .await;
    assert_eq!(status, 400);

    // A vendor registered while the service runs is trusted at once.
    let later = TestCa::new("Vendor B Device CA");
    let newcomer = later.device(&[0x05]);
    assert!(activate(&service, &newcomer).await.is_err());
    register_ca(&service, &later, "Vendor B").await;
    let (status, body) = bind_ped(&service, &key, "t-5", &newcomer).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(activate(&service, &newcomer).await.expect("tls").0, 200);
    // Removing a vendor stops its devices.
    let (status, _) = service
        .post(
            &format!("/v1/manufacturer-cas/{ca_id}/remove"),
            json!({"reason": "compromised"}),
        )
        .await;
    assert_eq!(status, 200);
    let other = vendor.device(&[0x06]);
    assert!(activate(&service, &other).await.is_err(), "removed CA");

    // Only the platform operator manages CAs.
    let (status, _) = service
        .post_as(
            &key,
            "/v1/manufacturer-cas",
            json!({"name": "x", "certificatePem": later.pem}),
        )
        .await;
    assert_eq!(status, 403);
    // The trust store rebuilt from the log equals the live one.
    let fresh = terminal_management::model::Model::new(service.store.clone());
    fresh.catch_up().await.expect("replay");
    assert_eq!(fresh.trust().len(), 1);
    assert_eq!(fresh.cas().len(), 2);
    service.stop().await;
}

fn der_base64(pem: &str) -> String {
    pem.lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<String>()
}

#[tokio::test]
async fn peds_are_imported_in_bulk_whole_or_not_at_all() {
    let service = embedded().await;
    let vendor = TestCa::new("Vendor A Device CA");
    register_ca(&service, &vendor, "Vendor A").await;
    let key = estate(&service).await;
    let (a, b) = (vendor.device(&[0xA1]), vendor.device(&[0xA2]));
    let csv = format!(
        "serial,certificate\nA1,{}\nA2,{}\n",
        der_base64(&a.pem),
        der_base64(&b.pem)
    );
    let import = |body: String, content_type: &'static str| {
        let service = &service;
        let key = key.clone();
        async move {
            let response = service
                .client
                .post(service.url("/v1/tenants/acme/terminal-imports?parent=g-1"))
                .bearer_auth(key)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("send");
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
    let (status, body) = import(csv.clone(), "text/csv").await;
    assert_eq!(status, 201, "{body}");
    let ids: Vec<&str> = body["terminals"]
        .as_array()
        .expect("terminals")
        .iter()
        .filter_map(|terminal| terminal["terminalId"].as_str())
        .collect();
    assert_eq!(ids, vec!["A1", "A2"]);

    // The same file again: refused whole, nothing written.
    let before = service.event_count().await;
    let (status, body) = import(csv, "text/csv").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("row 1:"))
    );
    // A file with a good row and a bad one: nothing written either.
    let c = vendor.device(&[0xA3]);
    let stranger = TestCa::new("Vendor X").device(&[0xA4]);
    let mixed = json!([
        {"serial": "A3", "certificate": c.pem},
        {"serial": "A4", "certificate": stranger.pem},
    ])
    .to_string();
    let (status, body) = import(mixed, "application/json").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("row 2: certificate")),
        "{body}"
    );
    let mismatch = json!([{"serial": "FF", "certificate": c.pem}]).to_string();
    let (status, _) = import(mismatch, "application/json").await;
    assert_eq!(status, 400);
    let (status, _) = import("x".into(), "text/plain").await;
    assert_eq!(status, 400);
    assert_eq!(service.event_count().await, before);
    // JSON works.
    let (status, body) = import(
        json!([{"serial": "A3", "certificate": c.pem}]).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Another tenant cannot import into acme.
    let globex = service
        .tenant_with_key("globex", "API_KEY_ROLE_ADMIN")
        .await;
    let response = service
        .client
        .post(service.url("/v1/tenants/acme/terminal-imports?parent=g-1"))
        .bearer_auth(globex)
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 404);
    service.stop().await;
}

/// `mposd` serves key-injection's device routes on terminal-management's device listener, so a
/// device makes one mTLS connection for its activation and its key: routes merged in are
/// served only after the same handshake and get the verified device; terminal-management's own
/// routes and its typed answer for unknown paths stay.
#[tokio::test]
async fn another_services_device_routes_share_the_mtls_listener() {
    use axum::extract::Path;
    use axum::{Extension, Json};
    use device_identity::PeerCertificate;
    let keys = axum::Router::new().route(
        "/v1/devices/{terminal_id}/keys",
        axum::routing::get(
            |Path(terminal): Path<String>, Extension(peer): Extension<PeerCertificate>| async move {
                Json(json!({"terminal": terminal, "serial": peer.verified.serial.to_string()}))
            },
        ),
    );
    let service = embedded_with_device_routes(keys).await;
    let vendor = TestCa::new("Vendor S Device CA");
    register_ca(&service, &vendor, "Vendor S").await;
    let key = estate(&service).await;
    let ped = vendor.device(&[0x5A, 0x01]);
    let (status, body) = bind_ped(&service, &key, "t-1", &ped).await;
    assert_eq!(status, 201, "{body}");

    let client = ped.client();
    let (status, body) = device_call(
        &service,
        &client,
        reqwest::Method::POST,
        "/v1/devices/activate",
        Some(json!({})),
    )
    .await
    .expect("activate");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "TERMINAL_STATE_ACTIVE");
    let (status, body) = device_call(
        &service,
        &client,
        reqwest::Method::GET,
        "/v1/devices/t-1/keys",
        None,
    )
    .await
    .expect("keys");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"terminal": "t-1", "serial": "5A01"}));
    // terminal-management's answer for a path nobody serves.
    let (status, body) = device_call(
        &service,
        &client,
        reqwest::Method::GET,
        "/v1/devices/t-1/nothing",
        None,
    )
    .await
    .expect("unknown path");
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // Without a device certificate the merged routes are out of reach too.
    assert!(
        device_call(
            &service,
            &anonymous_client(),
            reqwest::Method::GET,
            "/v1/devices/t-1/keys",
            None,
        )
        .await
        .is_err()
    );
}
