//! The document of real platform messages, from `mpos_proto::FILE_DESCRIPTOR_SET`, checked
//! against what pbjson really serialises.

mod common;

use common::{INFO, check, parse_openapi};
use mpos_openapi::{Auth, Method, QueryParam, Route, check_or_update, openapi, render};
use mpos_proto::terminal_management as tm;
use serde_json::{Value, json};

const ROUTES: &[Route] = &[
    Route {
        method: Method::Post,
        path: "/v1/tenants",
        operation_id: "createTenant",
        summary: "Onboard a tenant",
        description: "",
        tag: "tenants",
        request: Some("mpos.terminal_management.v1.CreateTenantRequest"),
        response: Some("mpos.terminal_management.v1.Tenant"),
        success_status: 201,
        auth: Auth::Operator,
        query: &[],
        errors: &[409],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants",
        operation_id: "listTenants",
        summary: "List tenants",
        description: "",
        tag: "tenants",
        request: None,
        response: Some("mpos.terminal_management.v1.ListTenantsResponse"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[QueryParam {
            name: "status",
            description: "Only tenants in this status.",
            required: false,
        }],
        errors: &[],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/api-keys",
        operation_id: "issueApiKey",
        summary: "Issue an API key",
        description: "The secret is shown once, in this response.",
        tag: "api-keys",
        request: Some("mpos.terminal_management.v1.IssueApiKeyRequest"),
        response: Some("mpos.terminal_management.v1.ApiKey"),
        success_status: 201,
        auth: Auth::OperatorOrTenantKey("admin"),
        query: &[],
        errors: &[404],
    },
];

fn document() -> Value {
    openapi(INFO, ROUTES, mpos_proto::FILE_DESCRIPTOR_SET).expect("document")
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

#[test]
fn create_tenant_references_its_request_and_tenant() {
    let doc = document();
    let create = &doc["paths"]["/v1/tenants"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"],
        schema_ref("mpos.terminal_management.v1.CreateTenantRequest")
    );
    assert_eq!(
        create["responses"]["201"]["content"]["application/json"]["schema"],
        schema_ref("mpos.terminal_management.v1.Tenant")
    );
    let tenant = &doc["components"]["schemas"]["mpos.terminal_management.v1.Tenant"];
    assert_eq!(
        tenant["properties"],
        json!({
            "tenantId": {"type": "string"},
            "name": {"type": "string"},
            "status": {"$ref": "#/components/schemas/mpos.terminal_management.v1.TenantStatus"},
            "version": {
                "type": "string",
                "format": "uint64",
                "pattern": "^[0-9]+$",
                "description": "Sequence of the last event applied to this view.",
            },
        })
    );
    assert_eq!(
        doc["components"]["schemas"]["mpos.terminal_management.v1.TenantStatus"]["enum"],
        json!([
            "TENANT_STATUS_UNSPECIFIED",
            "TENANT_STATUS_ACTIVE",
            "TENANT_STATUS_SUSPENDED"
        ])
    );
}

#[test]
fn comments_of_the_proto_source_reach_the_document() {
    // mpos-proto compiles with protox, which keeps source info.
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["mpos.terminal_management.v1.ApiKey"]["description"],
        "An API key as the API shows it (never its secret, except `secret` in the issuing\nresponse)."
    );
    assert_eq!(
        schemas["mpos.terminal_management.v1.ApiKeyRole"]["description"],
        "What a tenant API key may do.\n\n\
         - `API_KEY_ROLE_ADMIN`: Everything in the tenant, including API keys.\n\
         - `API_KEY_ROLE_OPERATOR`: Changes to the estate, terminals and parameters; no API keys.\n\
         - `API_KEY_ROLE_READ_ONLY`: Reads only."
    );
}

#[test]
fn the_schemas_describe_what_pbjson_serialises() {
    let doc = document();
    let tenant = tm::Tenant {
        tenant_id: "acme".into(),
        name: "Acme Pay".into(),
        status: tm::TenantStatus::Suspended.into(),
        version: u64::MAX,
    };
    let key = tm::ApiKey {
        tenant_id: "acme".into(),
        key_id: "k1".into(),
        role: tm::ApiKeyRole::Admin.into(),
        label: "ops".into(),
        revoked: true,
        created_at: Some(mpos_proto::timestamp_from_micros(1_700_000_000_123_456)),
        secret: "mpos_k1_secret".into(),
    };
    let list = tm::ListTenantsResponse {
        tenants: vec![tenant.clone(), tm::Tenant::default()],
    };
    let samples = [
        (
            "mpos.terminal_management.v1.Tenant",
            serde_json::to_value(&tenant),
        ),
        (
            "mpos.terminal_management.v1.ApiKey",
            serde_json::to_value(&key),
        ),
        (
            "mpos.terminal_management.v1.ListTenantsResponse",
            serde_json::to_value(&list),
        ),
    ];
    for (name, value) in samples {
        let value = value.expect("serialise");
        check(&doc, &schema_ref(name), &value, name);
    }
    // And the checker does bite: a 64-bit number as a JSON number is not the mapping.
    let wrong = json!({"version": 5});
    let result = std::panic::catch_unwind(|| {
        check(
            &doc,
            &schema_ref("mpos.terminal_management.v1.Tenant"),
            &wrong,
            "wrong",
        );
    });
    assert!(result.is_err());
}

#[test]
fn the_platform_document_parses_as_openapi_3_0() {
    let parsed = parse_openapi(&document());
    assert_eq!(parsed.paths.paths.len(), 2);
    let create = match &parsed.paths.paths["/v1/tenants"] {
        openapiv3::ReferenceOr::Item(item) => item.post.clone().expect("post"),
        openapiv3::ReferenceOr::Reference { .. } => panic!("inline path item"),
    };
    assert_eq!(create.operation_id.as_deref(), Some("createTenant"));
}

#[test]
fn a_published_copy_is_checked_and_rewritten_on_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("docs/openapi/terminal-management.json");
    let doc = document();

    let missing = check_or_update(&doc, &path, false).expect_err("nothing committed yet");
    assert!(missing.contains("MPOS_UPDATE_OPENAPI=1"), "{missing}");

    check_or_update(&doc, &path, true).expect("write");
    let written = std::fs::read_to_string(&path).expect("read");
    assert_eq!(written, render(&doc));
    assert!(written.ends_with("}\n"));
    assert!(
        written.starts_with("{\n  \"components\": {"),
        "pretty-printed"
    );
    check_or_update(&doc, &path, false).expect("up to date");

    let stale = written.replacen("Onboard a tenant", "Create a tenant", 1);
    std::fs::write(&path, &stale).expect("write stale");
    let line = stale
        .lines()
        .position(|line| line.contains("Create a tenant"))
        .expect("changed line")
        + 1;
    let error = check_or_update(&doc, &path, false).expect_err("stale");
    assert!(
        error.contains(&format!("out of date (first difference at line {line})")),
        "{error}"
    );

    // A shorter committed file differs after its last line.
    std::fs::write(&path, "{\n").expect("write short");
    let error = check_or_update(&doc, &path, false).expect_err("short");
    assert!(error.contains("line 2"), "{error}");
}

#[test]
fn what_the_schemas_describe_pbjson_accepts() {
    let doc = document();
    let request = json!({"role": "API_KEY_ROLE_OPERATOR", "label": "ops"});
    check(
        &doc,
        &schema_ref("mpos.terminal_management.v1.IssueApiKeyRequest"),
        &request,
        "request",
    );
    let parsed: tm::IssueApiKeyRequest = serde_json::from_value(request).expect("pbjson parses");
    assert_eq!(parsed.role(), tm::ApiKeyRole::Operator);
    assert_eq!(parsed.label, "ops");

    let tenant = json!({
        "tenantId": "acme",
        "status": "TENANT_STATUS_ACTIVE",
        "version": "18446744073709551615",
    });
    check(
        &doc,
        &schema_ref("mpos.terminal_management.v1.Tenant"),
        &tenant,
        "tenant",
    );
    let parsed: tm::Tenant = serde_json::from_value(tenant).expect("pbjson parses");
    assert_eq!(parsed.version, u64::MAX);
    assert_eq!(parsed.status(), tm::TenantStatus::Active);
}
