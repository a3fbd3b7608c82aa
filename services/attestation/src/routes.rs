//! The route tables of the device and admin APIs: each router is built from its table (so
//! that no route exists undocumented), and the OpenAPI document is generated from them.

use mpos_openapi::{ApiInfo, Auth, Method, RawBody, Route, RouteMedia};
use serde_json::Value;

/// The document-level facts of the attestation API.
pub const INFO: ApiInfo = ApiInfo {
    title: "mPOS SoftPOS attestation API",
    version: env!("CARGO_PKG_VERSION"),
    description: "SoftPOS attestation & monitoring: a SoftPOS phone asks for a one-time \
                  challenge and answers it with evidence (an Android key attestation chain, a \
                  Play Integrity verdict when asked, the SDK's app signals); the service \
                  verifies it, judges it by the tenant's policy and answers a verdict, with a \
                  signed attestation token when payments are allowed.\n\n\
                  Two listeners: the **device API** (tag `Devices`) for the SoftPOS app, served \
                  over TLS without a client certificate — the evidence, bound to the one-time \
                  challenge, is what authenticates the device; and the **admin API** (bearer \
                  token: the platform operator's token, or a tenant API key `mpk_...` issued by \
                  terminal-management, whose `read_only` role may only read; a tenant's key sees \
                  only its own tenant, and another tenant's data answers exactly like missing \
                  data). When the device API has no listener of its own (`mposd` on localhost), \
                  the admin listener serves the device routes too. The token verification keys \
                  are public on both.\n\n\
                  Bodies are the proto3 JSON mapping of the `mpos.attestation.v1` messages.",
};

/// The note every device route starts its description with.
macro_rules! device_note {
    () => {
        "Device API (the SoftPOS app): served over TLS on the device listener, without a \
         client certificate — the evidence authenticates the device — or beside the admin \
         routes when the device API has no listener of its own. The device must be a SoftPOS \
         terminal of a live tenant in terminal-management. "
    };
}

/// `POST .../challenges`.
const CHALLENGE: Route = Route {
    method: Method::Post,
    path: "/v1/tenants/{tenant_id}/devices/{device_id}/challenges",
    operation_id: "issueChallenge",
    summary: "Get a one-time attestation challenge",
    description: concat!(
        device_note!(),
        "Issues a one-time challenge: the app generates its attestation key with it as the \
         attestation challenge, then sends the evidence to `attestations` before it expires. \
         Says whether a Play Integrity verdict is wanted with this attestation, and its \
         request hash. The request body, if any, is ignored.\n\nErrors: 400 for a malformed \
         tenant or device id; 404 when the device is unknown, not a SoftPOS terminal, or \
         another tenant's; 403 when the tenant is suspended or the device is out of service \
         in terminal-management (blacklisted, swapped out, decommissioned); 409 when the \
         device has too many open challenges (use them or let them expire). 503 when the \
         event store is unavailable."
    ),
    tag: "Devices",
    request: None,
    response: Some("mpos.attestation.v1.ChallengeResponse"),
    success_status: 200,
    auth: Auth::None,
    query: &[],
    errors: &[400, 403, 404, 409, 503],
};

/// `POST .../attestations`.
const ATTEST: Route = Route {
    method: Method::Post,
    path: "/v1/tenants/{tenant_id}/devices/{device_id}/attestations",
    operation_id: "attest",
    summary: "Send the evidence for a challenge: the verdict",
    description: concat!(
        device_note!(),
        "Verifies the evidence for one of the device's open challenges (the key attestation \
         chain, the Play Integrity verdict when it was asked for, the app signals), judges it \
         by the tenant's policy and records the verdict on the device. Answers the verdict \
         with its findings, how long it is valid and when to attest again; with the \
         attestation token (ES256 JWS) the app presents with every payment when payments are \
         allowed. Evidence that fails verification is not an error: it answers 200 with a \
         `BLOCK` verdict and the findings saying why, and no token.\n\nErrors: 400 for an \
         unknown challenge, a malformed body or id, or too long a chain; 404 and 403 as for \
         the challenge; 409 when the challenge was used already or has expired (ask for a new \
         one). 503 when the event store is unavailable."
    ),
    tag: "Devices",
    request: Some("mpos.attestation.v1.AttestRequest"),
    response: Some("mpos.attestation.v1.AttestResponse"),
    success_status: 200,
    auth: Auth::None,
    query: &[],
    errors: &[403, 404, 409, 503],
};

/// The token keys' description, on both listeners.
const TOKEN_KEYS_DESCRIPTION: &str = "Public, no credentials: the keys (ES256, P-256) that verify the attestation tokens, one \
     per `kid` (two during a rotation). The authorization service verifies tokens offline \
     with them. The JSON is that of `attestation_token::PublishedKeys`, described by \
     `mpos.attestation.v1.TokenKeys`.";

/// The device API's routes (TLS listener, no client certificate).
pub const DEVICE_ROUTES: &[Route] = &[
    CHALLENGE,
    ATTEST,
    Route {
        method: Method::Get,
        path: "/v1/attestation/token-keys",
        operation_id: "getDeviceTokenKeys",
        summary: "Get the token verification keys (device listener)",
        description: TOKEN_KEYS_DESCRIPTION,
        tag: "Devices",
        request: None,
        response: Some("mpos.attestation.v1.TokenKeys"),
        success_status: 200,
        auth: Auth::None,
        query: &[],
        errors: &[],
    },
];

/// The device routes the admin listener also serves when the device API has no listener of
/// its own: all of [`DEVICE_ROUTES`] but the token keys, which the admin API has already.
pub const EVIDENCE_ROUTES: &[Route] = &[CHALLENGE, ATTEST];

/// The trust routes' note.
macro_rules! operator_note {
    () => {
        "Platform operator only: a tenant API key gets 403. "
    };
}

/// The trust status' note.
macro_rules! trust_status_note {
    () => {
        "Answers the trust status: the anchors (count, SHA-256 of each, where they came \
         from), the status list (source, entries, when loaded, whether from the cache or \
         stale) and the last refresh error. Its JSON (snake_case keys, numbers as JSON \
         numbers, `null` for unset values) is that of `attestation_trust::TrustStatus`, \
         described by `mpos.attestation.v1.TrustStatus`."
    };
}

/// The admin API's routes (operator token or tenant API keys), and the public token keys.
pub const ADMIN_ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/devices/{device_id}",
        operation_id: "getDeviceHistory",
        summary: "Get a device and its attestation history",
        description: "The device's current state (verdict, findings, token validity, \
             re-attestation deadline) and every attestation, verdict and monitoring event in \
             order.\n\nErrors: 400 for a malformed tenant or device id; 404 when the device has \
             never asked for a challenge, or for a tenant key of another tenant (exactly like \
             a missing device). 503 when the event store is unavailable.",
        tag: "History",
        request: None,
        response: Some("mpos.attestation.v1.DeviceHistory"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[400, 404, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/attestation-policy",
        operation_id: "getAttestationPolicy",
        summary: "Get the tenant's attestation policy",
        description: "The policy in force and its version; version 0 with the default policy \
             when none was published.\n\nErrors: 400 for a malformed tenant id; 404 for a \
             tenant key of another tenant. 503 when the event store is unavailable.",
        tag: "Policy",
        request: None,
        response: Some("mpos.attestation.v1.PolicyResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[400, 404, 503],
    },
    Route {
        method: Method::Put,
        path: "/v1/tenants/{tenant_id}/attestation-policy",
        operation_id: "putAttestationPolicy",
        summary: "Publish a new version of the tenant's attestation policy",
        description: "Publishes the policy as a new version and re-judges every device of the \
             tenant with it; answers the new version and how many devices were re-judged and \
             changed verdict. `expectedVersion` guards against lost updates (0: whatever is \
             current).\n\nErrors: 400 for an invalid policy or body; 403 for a read-only key; \
             404 for a tenant key of another tenant; 409 when `expectedVersion` is not the \
             current version (read it again). 503 when the event store is unavailable; 409 \
             when another request changed the policy concurrently (retry).",
        tag: "Policy",
        request: Some("mpos.attestation.v1.PutPolicyRequest"),
        response: Some("mpos.attestation.v1.PolicyResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[404, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/attestation/dashboard",
        operation_id: "getAttestationDashboard",
        summary: "Get the tenant's attestation dashboard",
        description: "The tenant's devices by verdict, OS patch level and security level, the \
             most frequent findings, devices overdue for re-attestation, and adoption by day.\
             \n\nErrors: 400 for a malformed tenant id; 404 for a tenant key of another tenant. \
             503 when the event store is unavailable.",
        tag: "Dashboard",
        request: None,
        response: Some("mpos.attestation.v1.Dashboard"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[400, 404, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/attestation/trust",
        operation_id: "getTrustStatus",
        summary: "Get the trust anchors and status list in use",
        description: concat!(operator_note!(), trust_status_note!()),
        tag: "Trust",
        request: None,
        response: Some("mpos.attestation.v1.TrustStatus"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[403],
    },
    Route {
        method: Method::Post,
        path: "/v1/attestation/trust/refresh",
        operation_id: "refreshTrust",
        summary: "Reload the trust anchors and the status list now",
        description: concat!(
            operator_note!(),
            "Reloads the anchors and the status list from their configured sources now, \
             instead of at the next periodic refresh. No body. ",
            trust_status_note!(),
            "\n\nErrors: 403 for a tenant key; 503 when a source cannot be read or is invalid \
             (the trust in use is kept)."
        ),
        tag: "Trust",
        request: None,
        response: Some("mpos.attestation.v1.TrustStatus"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[403, 503],
    },
    Route {
        method: Method::Put,
        path: "/v1/attestation/trust/anchors",
        operation_id: "replaceTrustAnchors",
        summary: "Replace the trust anchors at run time",
        description: concat!(
            operator_note!(),
            "Replaces the trust anchors (the attestation root certificates) with the PEM \
             body, without a restart; the status list is kept. The body's content type is not \
             checked. ",
            trust_status_note!(),
            "\n\nErrors: 400 when the body holds no certificate or an invalid one; 403 for a \
             tenant key."
        ),
        tag: "Trust",
        request: None,
        response: Some("mpos.attestation.v1.TrustStatus"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[400, 403],
    },
    Route {
        method: Method::Get,
        path: "/v1/attestation/token-keys",
        operation_id: "getTokenKeys",
        summary: "Get the token verification keys",
        description: TOKEN_KEYS_DESCRIPTION,
        tag: "Tokens",
        request: None,
        response: Some("mpos.attestation.v1.TokenKeys"),
        success_status: 200,
        auth: Auth::None,
        query: &[],
        errors: &[],
    },
];

/// The bodies that are not protobuf JSON.
pub const MEDIA: &[RouteMedia] = &[RouteMedia {
    operation_id: "replaceTrustAnchors",
    raw_request: &[RawBody {
        content_type: "application/x-pem-file",
        description: "The new trust anchors: one or more PEM `CERTIFICATE` blocks, \
                      concatenated.",
    }],
    response_alternatives: &[],
}];

/// The routes of the published document: the admin routes, then the device routes that the
/// admin API does not also serve (the token keys are on both listeners and documented once,
/// on the admin API).
pub fn documented_routes() -> Vec<Route> {
    let mut routes = ADMIN_ROUTES.to_vec();
    routes.extend(DEVICE_ROUTES.iter().copied().filter(|device| {
        !ADMIN_ROUTES
            .iter()
            .any(|admin| admin.method == device.method && admin.path == device.path)
    }));
    routes
}

/// The OpenAPI document of both APIs (served at `GET /openapi.json` on the admin API and
/// published as `docs/openapi/attestation.json`).
pub fn openapi() -> Result<Value, mpos_openapi::OpenApiError> {
    mpos_openapi::openapi_with_media(
        INFO,
        &documented_routes(),
        MEDIA,
        mpos_proto::FILE_DESCRIPTOR_SET,
    )
}

/// The OpenAPI document of the device API alone (served at `GET /openapi.json` on the device
/// listener).
pub fn device_openapi() -> Result<Value, mpos_openapi::OpenApiError> {
    mpos_openapi::openapi_with_media(INFO, DEVICE_ROUTES, &[], mpos_proto::FILE_DESCRIPTOR_SET)
}
