//! The admin API's route table: the router is built from it (so that no route exists
//! undocumented), and the OpenAPI document (`docs/openapi/routing.json`) is generated from
//! it.

use mpos_openapi::{ApiInfo, Auth, Method, QueryParam, Route};
use serde_json::Value;

/// The document-level facts of the routing admin API.
pub const INFO: ApiInfo = ApiInfo {
    title: "mPOS routing admin API",
    version: env!("CARGO_PKG_VERSION"),
    description: "Routing: per-tenant routing rules (every edit a new version), the tenant's \
                  acquirer links and their health (a circuit breaker per acquirer, which an \
                  operator can take out of service and put back), a dry run that explains \
                  where a payment would go, and each payment's exchange with its acquirers \
                  (the decision and its explanation, every message sent and its answer, the \
                  reversal). Payments themselves are routed over NATS request-reply \
                  (`mpos.routing.v1.Decide`, `Authorize`, `Reverse`), not over HTTP.\n\n\
                  Bearer token: the platform operator's token, or a tenant API key `mpk_...` \
                  issued by terminal-management, whose `read_only` role may only read; a \
                  tenant's key sees only its own tenant, and another tenant's data answers \
                  exactly like missing data (404).\n\n\
                  Bodies are the proto3 JSON mapping of the `mpos.routing.v1` messages; the \
                  two JSON bodies that are not a message (the acquirer list, a payment's \
                  exchange) are described by their operation.",
};

const EXPECTED_VERSION: QueryParam = QueryParam {
    name: "expected_version",
    description: "The version the edit was made from; another current version answers 409. \
                  Absent: whatever is current.",
    required: false,
};

const NOTE: QueryParam = QueryParam {
    name: "note",
    description: "Why, for the record (at most 500 characters).",
    required: false,
};

/// The admin API's routes.
pub const ADMIN_ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/routing-rules",
        operation_id: "getRoutingRules",
        summary: "Get the tenant's routing rules",
        description: "The rules in force and their version; version 0 and no rules before the \
             first version (nothing is routed).\n\nErrors: 400 for a malformed tenant id; 404 \
             for a tenant key of another tenant. 503 when the event store is unavailable.",
        tag: "Rules",
        request: None,
        response: Some("mpos.routing.v1.RulesPublished"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404, 503],
    },
    Route {
        method: Method::Put,
        path: "/v1/tenants/{tenant_id}/routing-rules",
        operation_id: "putRoutingRules",
        summary: "Publish a new version of the tenant's routing rules",
        description: "Validates the rule set as a whole (every problem at once) against the \
             tenant's configured acquirers and publishes it as the next version.\n\nErrors: \
             400 for an invalid rule set (the message lists every problem) or body; 403 for a \
             read-only key; 404 for a tenant key of another tenant; 409 when \
             `expected_version` is not the current version (read it again) or another request \
             changed the rules concurrently. 503 when the event store is unavailable.",
        tag: "Rules",
        request: Some("mpos.routing.v1.RuleSet"),
        response: Some("mpos.routing.v1.RulesPublished"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("admin"),
        query: &[EXPECTED_VERSION],
        errors: &[404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/routing-rules/dry-run",
        operation_id: "dryRunRouting",
        summary: "Explain where a payment would go now",
        description: "Decides for the payment described by the body (its `tenantId` is the \
             path's; `paymentId` only seeds the split's draw) with the current rules and \
             health, without recording anything or claiming a half-open acquirer's probe: \
             the candidates, the rule and version, and the explanation.\n\nErrors: 400 for a \
             malformed body (a BIN of 6 to 11 digits, a known currency...); 404 for a tenant \
             key of another tenant. 503 when the event store is unavailable.",
        tag: "Rules",
        request: Some("mpos.routing.v1.DecideRequest"),
        response: Some("mpos.routing.v1.DecideResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/acquirers",
        operation_id: "listAcquirers",
        summary: "List the tenant's acquirers",
        description: "`{\"acquirers\": [AcquirerConfigured...]}`: every configured acquirer \
             of the tenant with its settings (defaults filled in), by id.\n\nErrors: 400 for a \
             malformed tenant id; 404 for a tenant key of another tenant. 503 when the event \
             store is unavailable.",
        tag: "Acquirers",
        request: None,
        response: None,
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404, 503],
    },
    Route {
        method: Method::Put,
        path: "/v1/tenants/{tenant_id}/acquirers/{acquirer_id}",
        operation_id: "putAcquirer",
        summary: "Configure an acquirer",
        description: "Creates or changes an acquirer link's settings (validated field by \
             field; `spec` one of the builtin specs, `length_prefix` one of `binary2`, \
             `binary4`, `ascii4`, `bcd2`, `none`); the link is rebuilt with them when next \
             used. Answers the settings as stored, defaults filled in.\n\nErrors: 400 for an \
             invalid setting (the message names it); 403 for a read-only key; 404 for a \
             tenant key of another tenant. 503 when the event store is unavailable.",
        tag: "Acquirers",
        request: Some("mpos.routing.v1.AcquirerSettings"),
        response: Some("mpos.routing.v1.AcquirerConfigured"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("admin"),
        query: &[],
        errors: &[404, 409, 503],
    },
    Route {
        method: Method::Delete,
        path: "/v1/tenants/{tenant_id}/acquirers/{acquirer_id}",
        operation_id: "deleteAcquirer",
        summary: "Remove an acquirer",
        description: "Removes the acquirer and stops its link.\n\nErrors: 400 for a malformed \
             id; 403 for a read-only key; 404 when it is not configured or for a tenant key of \
             another tenant; 409 while the current routing rules name it (change them first). \
             503 when the event store is unavailable.",
        tag: "Acquirers",
        request: None,
        response: None,
        success_status: 204,
        auth: Auth::OperatorOrTenantKey("admin"),
        query: &[],
        errors: &[400, 404, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/acquirers/{acquirer_id}/health",
        operation_id: "getAcquirerHealth",
        summary: "Get an acquirer's health",
        description: "The acquirer's circuit breaker as this instance sees it, in the shape \
             of `AcquirerHealthChanged`: `to` the current state, `reason` the state with its \
             cause and the link's connection state, the error and timeout percentages and \
             requests in the window, `at` now (`from` unset).\n\nErrors: 400 for a malformed id; 404 when it is not configured or for a tenant \
             key of another tenant. 503 when the event store is unavailable.",
        tag: "Acquirers",
        request: None,
        response: Some("mpos.routing.v1.AcquirerHealthChanged"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[400, 404, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/acquirers/{acquirer_id}/take-out",
        operation_id: "takeOutAcquirer",
        summary: "Take an acquirer out of routing",
        description: "Opens the acquirer's breaker by hand (recorded as \
             `AcquirerHealthChanged` with who and why): payments go to the other candidates \
             until it is put back. No body. Answers the health as `getAcquirerHealth`.\
             \n\nErrors: 400 for a malformed id or too long a note; 403 for a read-only key; \
             404 when it is not configured or for a tenant key of another tenant.",
        tag: "Acquirers",
        request: None,
        response: Some("mpos.routing.v1.AcquirerHealthChanged"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("admin"),
        query: &[NOTE],
        errors: &[404, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/acquirers/{acquirer_id}/put-back",
        operation_id: "putBackAcquirer",
        summary: "Put an acquirer back into routing",
        description: "Closes the acquirer's breaker and clears its counts (recorded as \
             `AcquirerHealthChanged`). No body. Answers the health as `getAcquirerHealth`.\
             \n\nErrors: as `takeOutAcquirer`.",
        tag: "Acquirers",
        request: None,
        response: Some("mpos.routing.v1.AcquirerHealthChanged"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("admin"),
        query: &[NOTE],
        errors: &[404, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/payments/{payment_id}/routing",
        operation_id: "getPaymentRouting",
        summary: "Get a payment's routing and exchange",
        description: "`{\"decided\": RouteDecided, \"attempts\": [{\"sent\": \
             AcquirerRequestSent, \"answer\": AcquirerResponded}], \"reversal\": {\"queued\": \
             ReversalQueued, \"failures\", \"next_attempt_at_us\", \"acknowledged\": \
             ReversalAcknowledged}, \"advice\": {\"queued\": AdviceQueued, \"failures\", \
             \"next_attempt_at_us\", \"acknowledged\": AdviceAcknowledged}}`: the decision \
             with its explanation and rule version, every message sent and its answer, the \
             reversal, and the stored completion advice (repeated as 0221 until \
             acknowledged). No card data.\n\nErrors: \
             400 for a malformed id; 404 when the payment was never routed or for a tenant key \
             of another tenant. 503 when the event store is unavailable.",
        tag: "Payments",
        request: None,
        response: None,
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[400, 404, 503],
    },
];

/// The OpenAPI document (served at `GET /openapi.json` and published as
/// `docs/openapi/routing.json`).
pub fn openapi() -> Result<Value, mpos_openapi::OpenApiError> {
    mpos_openapi::openapi(INFO, ADMIN_ROUTES, mpos_proto::FILE_DESCRIPTOR_SET)
}
