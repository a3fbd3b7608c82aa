//! Risk parameters over the admin API: inheritance with sources, validation in combination,
//! versions, signing, and the version status — against the real service.

mod common;

use common::{TestService, embedded};
use mpos_proto::terminal_management as pb;
use serde_json::json;

/// acme with m-1 → s-1 → g-1, terminals t-1 (in g-1) and t-2 (in s-1); returns an operator key.
async fn setup(service: &TestService) -> String {
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
    for (terminal, parent) in [("t-1", "g-1"), ("t-2", "s-1")] {
        let (status, body) = service
            .post_as(
                &key,
                "/v1/tenants/acme/terminals",
                json!({"terminalId": terminal, "kind": "TERMINAL_KIND_SOFTPOS", "parentId": parent}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    key
}

async fn put(
    service: &TestService,
    key: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    service
        .call_as(key, reqwest::Method::PUT, path, Some(body))
        .await
}

fn tenant_parameters() -> serde_json::Value {
    json!({
        "floorLimits": [{"currency": "EUR", "amount": "5000"}],
        "terminalActionCodes": {"denial": "0010000000", "online": "FC50BCF800", "defaultCode": "FC50BCA000"},
        "merchantCategoryCode": "5411",
        "transactionCurrency": "EUR",
        "terminalCountryCode": "276",
        "contactlessTransactionLimit": "15000",
        "contactlessFloorLimit": "5000",
        "blockedBinRanges": [{"low": "400000", "high": "400099"}]
    })
}

fn source<'a>(effective: &'a serde_json::Value, field: &str) -> (&'a str, &'a str) {
    let source = effective["parameters"]["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|source| source["field"] == field)
        .unwrap_or_else(|| panic!("no source for {field}: {effective}"));
    (
        source["level"].as_str().unwrap_or(""),
        source["nodeId"].as_str().unwrap_or(""),
    )
}

#[tokio::test]
async fn parameters_inherit_down_the_estate_with_their_sources() {
    let service = embedded().await;
    let key = setup(&service).await;

    // Nothing set yet: the effective set names what is missing.
    let (status, body) = service
        .get_as(&key, "/v1/tenants/acme/terminals/t-1/effective-parameters")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["missing"].as_array().is_some_and(|missing| missing
            .iter()
            .any(|field| field == "merchant_category_code")),
        "{body}"
    );

    let (status, body) = put(
        &service,
        &key,
        "/v1/tenants/acme/parameters",
        tenant_parameters(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["terminalActionCodes"]["online"], "FC50BCF800");
    // The merchant lowers the contactless limit, the store blocks another range and sets its
    // own floor limit, terminal t-1 has its own MCC.
    let (status, body) = put(
        &service,
        &key,
        "/v1/tenants/acme/nodes/m-1/parameters",
        json!({"contactlessTransactionLimit": "10000"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put(
        &service,
        &key,
        "/v1/tenants/acme/nodes/s-1/parameters",
        json!({"floorLimits": [{"currency": "EUR", "amount": "3000"}], "blockedBinRanges": [{"low": "510000", "high": "510999"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put(
        &service,
        &key,
        "/v1/tenants/acme/terminals/t-1/parameters",
        json!({"merchantCategoryCode": "5812"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, t1) = service
        .get_as(&key, "/v1/tenants/acme/terminals/t-1/effective-parameters")
        .await;
    assert_eq!(status, 200, "{t1}");
    assert_eq!(t1["missing"].as_array().map_or(0, Vec::len), 0, "{t1}");
    let values = &t1["parameters"]["values"];
    assert_eq!(values["merchantCategoryCode"], "5812");
    assert_eq!(values["contactlessTransactionLimit"], "10000");
    assert_eq!(values["floorLimits"][0]["amount"], "3000");
    assert_eq!(values["terminalCountryCode"], "276");
    assert_eq!(t1["parameters"]["transactionCurrencyNumeric"], 978);
    let blocked: Vec<&str> = values["blockedBinRanges"]
        .as_array()
        .expect("blocked")
        .iter()
        .filter_map(|range| range["low"].as_str())
        .collect();
    assert_eq!(
        blocked,
        vec!["400000", "510000"],
        "blocked ranges accumulate"
    );
    assert_eq!(
        source(&t1, "merchant_category_code"),
        ("PARAMETER_LEVEL_TERMINAL", "t-1")
    );
    assert_eq!(
        source(&t1, "contactless_transaction_limit"),
        ("PARAMETER_LEVEL_MERCHANT", "m-1")
    );
    assert_eq!(
        source(&t1, "floor_limits[EUR]"),
        ("PARAMETER_LEVEL_STORE", "s-1")
    );
    assert_eq!(
        source(&t1, "terminal_country_code"),
        ("PARAMETER_LEVEL_TENANT", "acme")
    );

    // t-2 sits directly in the store: the store's values, the tenant's MCC.
    let (_, t2) = service
        .get_as(&key, "/v1/tenants/acme/terminals/t-2/effective-parameters")
        .await;
    assert_eq!(t2["parameters"]["values"]["merchantCategoryCode"], "5411");
    assert_eq!(
        source(&t2, "merchant_category_code"),
        ("PARAMETER_LEVEL_TENANT", "acme")
    );

    // The stored set of a level reads back; setting the same set again writes nothing.
    let (_, stored) = service
        .get_as(&key, "/v1/tenants/acme/nodes/m-1/parameters")
        .await;
    assert_eq!(stored, json!({"contactlessTransactionLimit": "10000"}));
    let before = service.event_count().await;
    let (status, _) = put(
        &service,
        &key,
        "/v1/tenants/acme/nodes/m-1/parameters",
        json!({"contactlessTransactionLimit": "10000"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        service.event_count().await,
        before,
        "an unchanged set is no event"
    );

    // Versions: a tenant-level change gives every terminal a new, higher version.
    let v1 = t1["version"]
        .as_str()
        .expect("version")
        .parse::<u64>()
        .expect("u64");
    let mut changed = tenant_parameters();
    changed["terminalCountryCode"] = json!("040");
    let (status, _) = put(&service, &key, "/v1/tenants/acme/parameters", changed).await;
    assert_eq!(status, 200);
    let (_, t1_after) = service
        .get_as(&key, "/v1/tenants/acme/terminals/t-1/effective-parameters")
        .await;
    let v2 = t1_after["version"]
        .as_str()
        .expect("version")
        .parse::<u64>()
        .expect("u64");
    assert!(v2 > v1, "{v1} → {v2}");
    let (_, status_body) = service
        .get_as(&key, "/v1/tenants/acme/parameter-status")
        .await;
    assert_eq!(status_body["total"], 2);
    assert_eq!(status_body["behind"], 2, "no device installed anything yet");

    // The events carry the level, its node and the canonical set, with the actor.
    let events = service.store.read_after(0, 1_000).await.expect("read");
    let set_events: Vec<&mpos_es::StoredEvent> = events
        .iter()
        .filter(|event| event.event.event_type == "mpos.terminal_management.v1.ParametersSet")
        .collect();
    assert_eq!(
        set_events
            .iter()
            .map(|event| event.event.aggregate_type.as_str())
            .collect::<Vec<_>>(),
        vec!["tenant", "estate_node", "estate_node", "terminal", "tenant"]
    );
    let mut payload: serde_json::Value =
        serde_json::from_str(&set_events[0].event.payload).expect("json");
    payload.as_object_mut().expect("object").remove("@type");
    let first: pb::ParametersSet = serde_json::from_value(payload).expect("ParametersSet payload");
    assert_eq!(
        (first.level, first.node_id.as_str()),
        (pb::ParameterLevel::Tenant as i32, "acme")
    );
    service.stop().await;
}

#[tokio::test]
async fn a_change_that_breaks_a_combined_set_is_refused_naming_field_and_level() {
    let service = embedded().await;
    let key = setup(&service).await;
    let (status, _) = put(
        &service,
        &key,
        "/v1/tenants/acme/parameters",
        tenant_parameters(),
    )
    .await;
    assert_eq!(status, 200);
    let before = service.event_count().await;
    let cases = [
        // The store's contactless floor limit above the tenant's contactless limit.
        (
            "/v1/tenants/acme/nodes/s-1/parameters",
            json!({"contactlessFloorLimit": "20000"}),
            "contactless_floor_limit (set at store s-1)",
        ),
        // A terminal-level limit below the tenant's contactless floor limit.
        (
            "/v1/tenants/acme/terminals/t-1/parameters",
            json!({"contactlessTransactionLimit": "1000"}),
            "contactless_floor_limit",
        ),
        // Invalid on its own.
        (
            "/v1/tenants/acme/nodes/m-1/parameters",
            json!({"terminalActionCodes": {"online": "XYZ"}}),
            "terminal_action_codes.online",
        ),
        (
            "/v1/tenants/acme/parameters",
            json!({"merchantCategoryCode": "54110"}),
            "merchant_category_code",
        ),
        (
            "/v1/tenants/acme/nodes/g-1/parameters",
            json!({"blockedBinRanges": [{"low": "400099", "high": "400000"}]}),
            "blocked_bin_ranges",
        ),
        (
            "/v1/tenants/acme/nodes/g-1/parameters",
            json!({"randomSelection": {"targetPercent": 50, "maxTargetPercent": 20}}),
            "random_selection",
        ),
    ];
    for (path, body, field) in cases {
        let (status, response) = put(&service, &key, path, body.clone()).await;
        assert_eq!(
            (status, response["code"].as_str()),
            (400, Some("bad_request")),
            "{path} {body}: {response}"
        );
        assert!(
            response["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(field)),
            "{path} {body}: {response}"
        );
    }
    // A negative limit does not even parse as the unsigned amount it must be; the message
    // names the field.
    let (status, response) = put(
        &service,
        &key,
        "/v1/tenants/acme/parameters",
        json!({"contactlessFloorLimit": "-5"}),
    )
    .await;
    assert_eq!(status, 400, "{response}");
    assert!(
        response["message"]
            .as_str()
            .is_some_and(|m| m.contains("contactlessFloorLimit")),
        "{response}"
    );
    assert_eq!(
        service.event_count().await,
        before,
        "refused changes wrote nothing"
    );
    // The tenant lowering its contactless limit below a store's floor limit is refused too:
    // the check covers every level below the change.
    let (status, _) = put(
        &service,
        &key,
        "/v1/tenants/acme/nodes/s-1/parameters",
        json!({"contactlessFloorLimit": "12000"}),
    )
    .await;
    assert_eq!(status, 200);
    let before = service.event_count().await;
    let mut lower = tenant_parameters();
    lower["contactlessTransactionLimit"] = json!("11000");
    let (status, response) = put(&service, &key, "/v1/tenants/acme/parameters", lower).await;
    assert_eq!(status, 400, "{response}");
    assert!(
        response["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("contactless_floor_limit")),
        "{response}"
    );
    assert_eq!(service.event_count().await, before);
    service.stop().await;
}

#[tokio::test]
async fn the_signing_key_is_published_and_roles_apply_to_parameters() {
    let service = embedded().await;
    let key = setup(&service).await;
    let (status, body) = service.get_as(&key, "/v1/parameter-signing-key").await;
    assert_eq!(status, 200);
    assert_eq!(body["algorithm"], "Ed25519");
    let public = ed25519_dalek::SigningKey::from_bytes(&common::PARAMETER_SEED).verifying_key();
    use base64::Engine as _;
    assert_eq!(
        body["publicKey"].as_str(),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(public.as_bytes())
                .as_str()
        )
    );
    let reader = service.key("acme", "API_KEY_ROLE_READ_ONLY").await;
    let (status, _) = put(
        &service,
        &reader,
        "/v1/tenants/acme/parameters",
        tenant_parameters(),
    )
    .await;
    assert_eq!(status, 403);
    let other = service
        .tenant_with_key("globex", "API_KEY_ROLE_ADMIN")
        .await;
    for path in [
        "/v1/tenants/acme/parameters",
        "/v1/tenants/acme/nodes/m-1/parameters",
        "/v1/tenants/acme/terminals/t-1/parameters",
    ] {
        let (status, _) = put(&service, &other, path, tenant_parameters()).await;
        assert_eq!(status, 404, "{path}");
        let (status, _) = service.get_as(&other, path).await;
        assert_eq!(status, 404, "{path}");
    }
    for path in [
        "/v1/tenants/acme/terminals/t-1/effective-parameters",
        "/v1/tenants/acme/parameter-status",
    ] {
        let (status, _) = service.get_as(&other, path).await;
        assert_eq!(status, 404, "{path}");
    }
    service.stop().await;
}

/// Replaying the log into a fresh model gives the same effective sets, versions and sources
/// as the live service, and signing is deterministic: two rebuilds sign identical bytes.
#[tokio::test]
async fn effective_sets_and_signatures_rebuilt_from_the_log_are_identical() {
    let service = embedded().await;
    let key = setup(&service).await;
    put(
        &service,
        &key,
        "/v1/tenants/acme/parameters",
        tenant_parameters(),
    )
    .await;
    put(
        &service,
        &key,
        "/v1/tenants/acme/nodes/s-1/parameters",
        json!({"floorLimits": [{"currency": "EUR", "amount": "3000"}], "blockedBinRanges": [{"low": "510000", "high": "510999"}]}),
    )
    .await;
    put(
        &service,
        &key,
        "/v1/tenants/acme/terminals/t-1/parameters",
        json!({"merchantCategoryCode": "5812"}),
    )
    .await;
    let mut signed = Vec::new();
    for _ in 0..2 {
        let model = terminal_management::model::Model::new(service.store.clone());
        model.catch_up().await.expect("replay");
        for terminal in ["t-1", "t-2"] {
            let (_, live) = service
                .get_as(
                    &key,
                    &format!("/v1/tenants/acme/terminals/{terminal}/effective-parameters"),
                )
                .await;
            let path = model.terminal_path("acme", terminal).expect("path");
            let effective =
                terminal_management::parameters::resolve_levels(&path.levels).expect("resolves");
            assert_eq!(
                live["version"].as_str().and_then(|v| v.parse::<u64>().ok()),
                Some(path.version.position),
                "{terminal}"
            );
            assert_eq!(
                live["parameters"],
                serde_json::to_value(effective.to_proto()).expect("json"),
                "{terminal}"
            );
        }
        let sets = terminal_management::parameters::ParameterSets::new(
            terminal_management::parameters::ParameterSigner::new(
                ed25519_dalek::SigningKey::from_bytes(&common::PARAMETER_SEED),
            ),
        );
        let issued = sets.issue(&model, "acme", "t-1").expect("complete set");
        signed.push((
            issued.signed.payload.clone(),
            issued.signed.signature.clone(),
        ));
        // The whole-tenant run (which resolves once per parent) signs what a single issue
        // signs.
        let all = terminal_management::parameters::ParameterSets::new(
            terminal_management::parameters::ParameterSigner::new(
                ed25519_dalek::SigningKey::from_bytes(&common::PARAMETER_SEED),
            ),
        );
        assert_eq!(all.issue_all(&model, "acme", 2), (2, 0));
        for terminal in ["t-1", "t-2"] {
            assert_eq!(
                all.issue(&model, "acme", terminal).expect("cached").signed,
                sets.issue(&model, "acme", terminal).expect("fresh").signed,
                "{terminal}"
            );
        }
    }
    assert_eq!(signed[0], signed[1], "same log, same signed bytes");
    service.stop().await;
}
