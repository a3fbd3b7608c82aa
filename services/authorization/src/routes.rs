//! The route tables of the payment API (device routes) and the admin API: each router is
//! built from its table, and the OpenAPI document (`docs/openapi/authorization.json`) is
//! generated from them.

use mpos_openapi::{ApiInfo, Auth, Method, QueryParam, Route};
use serde_json::Value;

/// The document-level facts of the authorization API.
pub const INFO: ApiInfo = ApiInfo {
    title: "mPOS payment API",
    version: env!("CARGO_PKG_VERSION"),
    description: "Card-present payments from a terminal to the acquirer of the provider's \
                  choice. A terminal submits a payment with its P2PE-encrypted card data \
                  (track 2 equivalent under the transaction's DUKPT data key) and, when a PIN \
                  was entered, its DUKPT-encrypted PIN block; the platform checks the terminal \
                  (state, parameters, key, and for SoftPOS its attestation token), deciphers \
                  the card data and translates the PIN block inside the HSM, routes the \
                  payment to the tenant's acquirer over ISO 8583 and answers with the \
                  acquirer's answer (the issuer's EMV data for the card in \
                  `issuerEmvData`). Declines are answers (200, `approved: false`, a \
                  `declineReason`), not errors.\n\n\
                  **Device API** (tag `Payments`): a PED over mutual TLS with its device \
                  certificate; a SoftPOS phone over TLS with its attestation token (in the body, \
                  or as the bearer token of a status read) and its tenant id. \
                  **Admin API** (tag `Admin`): the platform operator's bearer token or a tenant \
                  API key (`mpk_...`, issued by terminal-management); another tenant's payment \
                  answers exactly like a missing one.\n\n\
                  Bodies are the proto3 JSON mapping of the `mpos.authorization.v1` messages.",
};

macro_rules! device_note {
    () => {
        "Device API: a PED over mutual TLS with the device certificate bound to the terminal \
         in terminal-management; a SoftPOS phone over TLS with its attestation token and \
         tenant id. "
    };
}

const TERMINAL_QUERY: &[QueryParam] = &[
    QueryParam {
        name: "terminal_id",
        description: "The terminal that made the payment.",
        required: true,
    },
    QueryParam {
        name: "tenant_id",
        description: "SoftPOS: the phone's tenant (a PED's comes from its certificate).",
        required: false,
    },
];

/// The device routes.
pub const DEVICE_ROUTES: &[Route] = &[
    Route {
        method: Method::Post,
        path: "/v1/payments",
        operation_id: "submitPayment",
        summary: "Submit a payment",
        description: concat!(
            device_note!(),
            "Authorizes a purchase, refund, pre-authorization or completion. The \
             `idempotencyKey` makes a retry safe: the same key with the same body answers the \
             first answer without a second authorization at the acquirer; the same key with \
             another body is a 409; a retry while the first is still being authorized is a \
             409 (ask again). Declines answer 200 with `approved: false` and a \
             `declineReason`.\n\nErrors: 400 for a malformed body (nothing is recorded); 403 \
             when the device certificate is not the terminal's; 409 as above; 503 when the \
             event store is unavailable."
        ),
        tag: "Payments",
        request: Some("mpos.authorization.v1.PaymentRequest"),
        response: Some("mpos.authorization.v1.PaymentResponse"),
        success_status: 200,
        auth: Auth::DeviceMtls,
        query: &[],
        errors: &[403, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/payments/{payment_id}",
        operation_id: "getPaymentStatus",
        summary: "Get a payment's answer",
        description: concat!(
            device_note!(),
            "The payment's status and answer, for the terminal that made it (e.g. after a \
             lost connection).\n\nErrors: 400 for malformed ids; 401 for a refused token; 403 \
             for a certificate of another terminal; 404 when the payment is unknown or \
             another terminal's."
        ),
        tag: "Payments",
        request: None,
        response: Some("mpos.authorization.v1.PaymentResponse"),
        success_status: 200,
        auth: Auth::DeviceMtls,
        query: TERMINAL_QUERY,
        errors: &[403, 404, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/payments/{payment_id}/reversal",
        operation_id: "reversePayment",
        summary: "Reverse a payment",
        description: concat!(
            device_note!(),
            "Reverses a payment the terminal could not complete (it timed out waiting, or the \
             card refused the issuer's answer): the reversal is kept by the routing service \
             until the acquirer acknowledges it. Idempotent; a declined payment needs no \
             reversal and answers as it is.\n\nErrors: 400 for malformed ids or body; 401 \
             for a refused token; 403 for a certificate of another terminal; 404 when the \
             payment is unknown or another terminal's; 409 while the payment is still being \
             authorized."
        ),
        tag: "Payments",
        request: Some("mpos.authorization.v1.ReversalRequestBody"),
        response: Some("mpos.authorization.v1.PaymentResponse"),
        success_status: 200,
        auth: Auth::DeviceMtls,
        query: &[],
        errors: &[403, 404, 409, 503],
    },
];

const LIST_QUERY: &[QueryParam] = &[QueryParam {
    name: "limit",
    description: "How many payments at most, 1 to 500 (default 50).",
    required: false,
}];

/// The admin routes.
pub const ADMIN_ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/payments",
        operation_id: "listPayments",
        summary: "List a tenant's payments",
        description: "The tenant's payments, the most recently changed first, as their \
             answers (no card data beyond BIN and last four): the operator console's live list. \
             A tenant key sees only its own tenant's.\n\nErrors: 400 for a malformed id or \
             limit; 404 for a tenant key of another tenant; 503 when the event store is \
             unavailable.",
        tag: "Admin",
        request: None,
        response: Some("mpos.authorization.v1.PaymentList"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: LIST_QUERY,
        errors: &[404, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/payments/{payment_id}/history",
        operation_id: "getPaymentHistory",
        summary: "Get a payment's history",
        description: "`{\"events\": [{\"sequence\", \"occurredAt\", \"event\"}]}`: every event of \
             the payment in order, each as recorded (`event` is the proto3 JSON of \
             `PaymentReceived`, `PaymentChecked`, `CardDataDecrypted`, `PaymentRouted`, \
             `PaymentApproved`, `PaymentDeclined`, `PaymentTimedOut`, `ReversalRequested` or \
             `PaymentReversed`, named by its `@type`): the checks passed, the HSM's work, the \
             outcome and any reversal. No card data beyond BIN and last four.\n\nErrors: 400 \
             for malformed ids; 404 when the payment is unknown or a tenant key of another \
             tenant asks. 503 when the event store is unavailable.",
        tag: "Admin",
        request: None,
        response: None,
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/payments/{payment_id}",
        operation_id: "getPayment",
        summary: "Get a payment",
        description: "A payment's status and answer as recorded (no card data beyond BIN and last \
         four).\n\nErrors: 400 for malformed ids; 404 when the payment is unknown or a tenant \
         key of another tenant asks. 503 when the event store is unavailable.",
        tag: "Admin",
        request: None,
        response: Some("mpos.authorization.v1.PaymentResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404, 503],
    },
];

/// Every route, for the published document.
pub fn documented_routes() -> Vec<Route> {
    let mut routes = DEVICE_ROUTES.to_vec();
    routes.extend_from_slice(ADMIN_ROUTES);
    routes
}

/// The OpenAPI document of both APIs (served at `GET /openapi.json`, published as
/// `docs/openapi/authorization.json`).
pub fn openapi() -> Result<Value, mpos_openapi::OpenApiError> {
    mpos_openapi::openapi(INFO, &documented_routes(), mpos_proto::FILE_DESCRIPTOR_SET)
}
