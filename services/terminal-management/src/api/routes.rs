//! The route tables of the admin and device APIs: each router is built from its table
//! (so that no route exists undocumented), and the OpenAPI document is generated from both.

use mpos_openapi::{ApiInfo, Auth, Method, QueryParam, RawBody, Route, RouteMedia};
use serde_json::Value;

/// The document-level facts of the terminal-management API.
pub const INFO: ApiInfo = ApiInfo {
    title: "mPOS terminal management API",
    version: env!("CARGO_PKG_VERSION"),
    description: "Tenants (payment service providers), their API keys, estates (merchants, \
                  stores, terminal groups), terminals and risk parameters, and the \
                  manufacturer CAs that PED certificates chain to.\n\n\
                  Two listeners: the **admin API** (bearer token: the platform operator's token, \
                  or a tenant API key `mpk_...` whose role — `admin`, `operator` or `read_only` — \
                  limits what it may do; a tenant's key sees only its own tenant, and another \
                  tenant's data answers exactly like missing data), and the **device API** (tag \
                  `Devices`), served only over mutual TLS with the PED's manufacturer device \
                  certificate.\n\n\
                  Bodies are the proto3 JSON mapping of the `mpos.terminal_management.v1` \
                  messages. Every change is recorded as an event whose actor is the caller.",
};

const NODE_QUERY: &[QueryParam] = &[
    QueryParam {
        name: "kind",
        description: "Only nodes of this kind: `merchant`, `store` or `terminal_group`.",
        required: false,
    },
    QueryParam {
        name: "parent",
        description: "Only the direct children of this node id.",
        required: false,
    },
];

const TERMINAL_QUERY: &[QueryParam] = &[QueryParam {
    name: "parent",
    description: "Only the terminals directly under this store or terminal group.",
    required: false,
}];

const IMPORT_QUERY: &[QueryParam] = &[QueryParam {
    name: "parent",
    description: "The store or terminal group to bind every terminal of the file into.",
    required: true,
}];

/// The admin API's routes (operator token or tenant API keys).
pub const ADMIN_ROUTES: &[Route] = &[
    Route {
        method: Method::Post,
        path: "/v1/tenants",
        operation_id: "createTenant",
        summary: "Onboard a tenant",
        description: "Creates a tenant (a payment service provider) with its id and display name. The \
             id is lowercase letters, digits and `-` and cannot change.\n\nErrors: 400 for an \
             invalid id or name; 403 for a tenant key (only the platform operator onboards \
             tenants); 409 `ALREADY_EXISTS` when the id is taken. 503 when the event store is \
             unavailable; 409 when another request changed the same aggregate concurrently \
             (retry).",
        tag: "Tenants",
        request: Some("mpos.terminal_management.v1.CreateTenantRequest"),
        response: Some("mpos.terminal_management.v1.Tenant"),
        success_status: 201,
        auth: Auth::Operator,
        query: &[],
        errors: &[403, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants",
        operation_id: "listTenants",
        summary: "List tenants",
        description: "Every tenant for the platform operator; only its own tenant for a tenant's API \
             key.\n\nErrors: 503 when the event store is unavailable.",
        tag: "Tenants",
        request: None,
        response: Some("mpos.terminal_management.v1.ListTenantsResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}",
        operation_id: "getTenant",
        summary: "Get a tenant",
        description: "The tenant's current document.\n\nErrors: 400 for a malformed tenant id; 404 \
             when the tenant does not exist. A tenant key of another tenant gets 404 `tenant \
             not found`, exactly like a missing tenant.",
        tag: "Tenants",
        request: None,
        response: Some("mpos.terminal_management.v1.Tenant"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/rename",
        operation_id: "renameTenant",
        summary: "Rename a tenant",
        description: "Changes the tenant's display name.\n\nErrors: 400 for an invalid name; 403 for a \
             tenant key; 404 when the tenant does not exist. 503 when the event store is \
             unavailable; 409 when another request changed the same aggregate concurrently \
             (retry).",
        tag: "Tenants",
        request: Some("mpos.terminal_management.v1.RenameTenantRequest"),
        response: Some("mpos.terminal_management.v1.Tenant"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/suspend",
        operation_id: "suspendTenant",
        summary: "Suspend a tenant",
        description: "Suspends the tenant with a reason: its estate, terminals and parameters can \
             no longer change, no API key can be issued, and its devices are refused on the device API until \
             it is reactivated.\n\nErrors: 400 without a reason; 403 for a tenant key; 404 \
             when the tenant does not exist; 409 when it is suspended already. 503 when the \
             event store is unavailable; 409 when another request changed the same aggregate \
             concurrently (retry).",
        tag: "Tenants",
        request: Some("mpos.terminal_management.v1.SuspendTenantRequest"),
        response: Some("mpos.terminal_management.v1.Tenant"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/reactivate",
        operation_id: "reactivateTenant",
        summary: "Reactivate a suspended tenant",
        description: "Lifts a suspension. No body.\n\nErrors: 403 for a tenant key; 404 when the \
             tenant does not exist; 409 when it is not suspended. 503 when the event store is \
             unavailable; 409 when another request changed the same aggregate concurrently \
             (retry).",
        tag: "Tenants",
        request: None,
        response: Some("mpos.terminal_management.v1.Tenant"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/api-keys",
        operation_id: "issueApiKey",
        summary: "Issue a tenant API key",
        description: "Issues an API key with a role (`API_KEY_ROLE_ADMIN`, `_OPERATOR` or \
             `_READ_ONLY`) and a label. The response is the only place the key's secret token \
             (`mpk_...`) ever appears: store it then.\n\nErrors: 400 for an unspecified role \
             or an invalid label; 403 for a key without the admin role; 404 when the tenant \
             does not exist; 409 when the tenant is suspended or has the most live keys it may \
             have. A tenant key of another tenant gets 404 `tenant not found`, exactly like a \
             missing tenant. 503 when the event store is unavailable; 409 when another \
             request changed the same aggregate concurrently (retry).",
        tag: "API keys",
        request: Some("mpos.terminal_management.v1.IssueApiKeyRequest"),
        response: Some("mpos.terminal_management.v1.ApiKey"),
        success_status: 201,
        auth: Auth::OperatorOrTenantKey("admin"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/api-keys",
        operation_id: "listApiKeys",
        summary: "List a tenant's API keys",
        description: "Every key of the tenant, live and revoked, without secrets.\n\nErrors: 403 for a \
             key without the admin role; 404 when the tenant does not exist. A tenant key of \
             another tenant gets 404 `tenant not found`, exactly like a missing tenant.",
        tag: "API keys",
        request: None,
        response: Some("mpos.terminal_management.v1.ListApiKeysResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("admin"),
        query: &[],
        errors: &[403, 404],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/api-keys/{key_id}/revoke",
        operation_id: "revokeApiKey",
        summary: "Revoke an API key",
        description: "Revokes the key with a reason; it stops authenticating at once.\n\nErrors: 400 \
             without a reason; 403 for a key without the admin role; 404 when the tenant or \
             the key does not exist, or the key is revoked already. A tenant key of \
             another tenant gets 404 `tenant not found`, exactly like a missing tenant. 503 \
             when the event store is unavailable; 409 when another request changed the same \
             aggregate concurrently (retry).",
        tag: "API keys",
        request: Some("mpos.terminal_management.v1.RevokeApiKeyRequest"),
        response: Some("mpos.terminal_management.v1.ApiKey"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("admin"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/nodes",
        operation_id: "createEstateNode",
        summary: "Create a merchant, store or terminal group",
        description: "Creates an estate node. A merchant has no parent; a store needs a merchant and a \
             terminal group a store as parent, which must exist and be open.\n\nErrors: 400 \
             for an invalid id, kind or name, or a missing, unknown, wrong-kind or closed \
             parent; 403 for a read-only key; 404 when the tenant does not exist; 409 \
             `ALREADY_EXISTS` when the node id is taken, or when the tenant is suspended. A \
             tenant key of another tenant gets 404 `tenant not found`, exactly like a missing \
             tenant. 503 when the event store is unavailable; 409 when another request \
             changed the same aggregate concurrently (retry).",
        tag: "Estate",
        request: Some("mpos.terminal_management.v1.CreateEstateNodeRequest"),
        response: Some("mpos.terminal_management.v1.EstateNode"),
        success_status: 201,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/nodes",
        operation_id: "listEstateNodes",
        summary: "List estate nodes",
        description: "The tenant's merchants, stores and terminal groups, optionally filtered by kind \
             and parent.\n\nErrors: 400 for an unknown `kind`; 404 when the tenant does not \
             exist. A tenant key of another tenant gets 404 `tenant not found`, exactly like \
             a missing tenant.",
        tag: "Estate",
        request: None,
        response: Some("mpos.terminal_management.v1.ListEstateNodesResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: NODE_QUERY,
        errors: &[404],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/nodes/{node_id}",
        operation_id: "getEstateNode",
        summary: "Get an estate node",
        description: "Errors: 404 when the tenant or the node does not exist. A tenant key of another \
             tenant gets 404 `tenant not found`, exactly like a missing tenant.",
        tag: "Estate",
        request: None,
        response: Some("mpos.terminal_management.v1.EstateNode"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/nodes/{node_id}/rename",
        operation_id: "renameEstateNode",
        summary: "Rename an estate node",
        description: "Errors: 400 for an invalid node id or name; 403 for a read-only key; 404 when \
             the tenant or the node does not exist; 409 when the tenant is suspended or the \
             node closed. A tenant key of another tenant gets 404 `tenant not found`, exactly \
             like a missing tenant. 503 when the event store is unavailable; 409 when another \
             request changed the same aggregate concurrently (retry).",
        tag: "Estate",
        request: Some("mpos.terminal_management.v1.RenameEstateNodeRequest"),
        response: Some("mpos.terminal_management.v1.EstateNode"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/nodes/{node_id}/close",
        operation_id: "closeEstateNode",
        summary: "Close an estate node",
        description: "Closes a node for good, with a reason. Only an empty node closes: no open child \
             node and no live terminal under it.\n\nErrors: 400 without a reason; 403 for a \
             read-only key; 404 when the tenant or the node does not exist; 409 when the node \
             has open children or live terminals, is closed already, or the tenant is \
             suspended. A tenant key of another tenant gets 404 `tenant not found`, exactly \
             like a missing tenant. 503 when the event store is unavailable; 409 when another \
             request changed the same aggregate concurrently (retry).",
        tag: "Estate",
        request: Some("mpos.terminal_management.v1.ReasonRequest"),
        response: Some("mpos.terminal_management.v1.EstateNode"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/terminals",
        operation_id: "bindTerminal",
        summary: "Bind a terminal",
        description: "Binds a terminal (PED or SoftPOS) under a store or terminal group, in state \
             `BOUND`. A PED may name its manufacturer device certificate (`certificatePem`): \
             it must chain to a registered manufacturer CA, be valid now and not revoked, and \
             not identify another live terminal. The device then activates itself over mTLS \
             on the device API.\n\nErrors: 400 for an invalid id, kind or label, a missing or \
             unknown parent, or a refused certificate (the message names the field and why); \
             403 for a read-only key; 404 when the tenant does not exist; 409 \
             `ALREADY_EXISTS` when the terminal id is taken or the device is bound to another \
             live terminal, or when the tenant is suspended. A tenant key of another tenant \
             gets 404 `tenant not found`, exactly like a missing tenant. 503 when the event \
             store is unavailable; 409 when another request changed the same aggregate \
             concurrently (retry).",
        tag: "Terminals",
        request: Some("mpos.terminal_management.v1.BindTerminalRequest"),
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 201,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/terminals",
        operation_id: "listTerminals",
        summary: "List terminals",
        description: "The tenant's terminals in every state, optionally only those directly under one \
             parent.\n\nErrors: 404 when the tenant does not exist. A tenant key of another \
             tenant gets 404 `tenant not found`, exactly like a missing tenant.",
        tag: "Terminals",
        request: None,
        response: Some("mpos.terminal_management.v1.ListTerminalsResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: TERMINAL_QUERY,
        errors: &[404],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}",
        operation_id: "getTerminal",
        summary: "Get a terminal",
        description: "Errors: 404 when the tenant or the terminal does not exist. A tenant key of \
             another tenant gets 404 `tenant not found`, exactly like a missing tenant.",
        tag: "Terminals",
        request: None,
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/suspend",
        operation_id: "suspendTerminal",
        summary: "Suspend a terminal",
        description: "Suspends an active terminal with a reason: its device is refused on the device \
             API until the terminal is resumed. A reason starting with `attestation:` is the \
             attestation service's (a SoftPOS terminal it suspended on a blocking verdict, \
             resumed on its next passing one) and refused here.\n\nErrors: 400 for a \
             malformed terminal id or body, without a reason, or with one starting with \
             `attestation:`; 403 for a read-only key; 404 when the tenant or the \
             terminal does not exist; 409 when the terminal's state does not allow it (only \
             an active terminal can be suspended), or the tenant is suspended. A tenant key \
             of another tenant gets 404 `tenant not found`, exactly like a missing tenant. \
             The caller and the terminal are checked before the body is read. 503 when the \
             event store is unavailable; 409 when another request changed the same aggregate \
             concurrently (retry).",
        tag: "Terminals",
        request: Some("mpos.terminal_management.v1.ReasonRequest"),
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/resume",
        operation_id: "resumeTerminal",
        summary: "Resume a suspended terminal",
        description: "Returns a suspended terminal to active, also one the attestation service \
             suspended. No body.\n\nErrors: 400 for a malformed \
             terminal id; 403 for a read-only key; 404 when the tenant or the terminal does \
             not exist; 409 when the terminal's state does not allow it (only a suspended \
             terminal resumes), or the tenant is suspended. A tenant key of another tenant \
             gets 404 `tenant not found`, exactly like a missing tenant. 503 when the event \
             store is unavailable; 409 when another request changed the same aggregate \
             concurrently (retry).",
        tag: "Terminals",
        request: None,
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/blacklist",
        operation_id: "blacklistTerminal",
        summary: "Blacklist a terminal",
        description: "Blacklists a live (bound, active or suspended) terminal for good, e.g. stolen or \
             tampered, with a reason.\n\nErrors: 400 for a malformed terminal id or body, or \
             without a reason; 403 for a read-only key; 404 when the tenant or the terminal \
             does not exist; 409 when the terminal's state does not allow it (a terminal that \
             is no longer live), or the tenant is suspended. A tenant key of another tenant \
             gets 404 `tenant not found`, exactly like a missing tenant. The caller and the \
             terminal are checked before the body is read. 503 when the event store is \
             unavailable; 409 when another request changed the same aggregate concurrently \
             (retry).",
        tag: "Terminals",
        request: Some("mpos.terminal_management.v1.ReasonRequest"),
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/decommission",
        operation_id: "decommissionTerminal",
        summary: "Decommission a terminal",
        description: "Retires a terminal for good, with a reason.\n\nErrors: 400 for a malformed \
             terminal id or body, or without a reason; 403 for a read-only key; 404 when the \
             tenant or the terminal does not exist; 409 when the terminal's state does not \
             allow it (a terminal decommissioned already), or the tenant is suspended. A \
             tenant key of another tenant gets 404 `tenant not found`, exactly like a missing \
             tenant. The caller and the terminal are checked before the body is read. 503 \
             when the event store is unavailable; 409 when another request changed the same \
             aggregate concurrently (retry).",
        tag: "Terminals",
        request: Some("mpos.terminal_management.v1.ReasonRequest"),
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/move",
        operation_id: "moveTerminal",
        summary: "Move a terminal",
        description: "Moves a live terminal under another store or terminal group of the tenant; it \
             then inherits that parent's parameters.\n\nErrors: 400 for a malformed terminal \
             id or body, or a missing or unknown `parentId`; 403 for a read-only key; 404 \
             when the tenant or the terminal does not exist; 409 when the terminal's state \
             does not allow it (a terminal that is no longer live), or the tenant is \
             suspended. A tenant key of another tenant gets 404 `tenant not found`, exactly \
             like a missing tenant. The caller and the terminal are checked before the body \
             is read. 503 when the event store is unavailable; 409 when another request \
             changed the same aggregate concurrently (retry).",
        tag: "Terminals",
        request: Some("mpos.terminal_management.v1.MoveTerminalRequest"),
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/swap",
        operation_id: "swapTerminal",
        summary: "Swap a terminal for a replacement",
        description: "Replaces a live terminal: binds the replacement (a full bind request that names \
             the old terminal) and marks the old one swapped out, with a reason. Answers the \
             replacement. The old terminal must be live before anything is \
             written.\n\nErrors: 400 for a malformed terminal id or body, without a reason or \
             `replacement`, or an invalid replacement (as for binding); 403 for a read-only \
             key; 404 when the tenant or the terminal does not exist; 409 when the terminal's \
             state does not allow it (the old terminal is not live), the replacement's id or \
             device is taken, or the tenant is suspended. A tenant key of another tenant gets \
             404 `tenant not found`, exactly like a missing tenant. The caller and the \
             terminal are checked before the body is read. 503 when the event store is \
             unavailable; 409 when another request changed the same aggregate concurrently \
             (retry).",
        tag: "Terminals",
        request: Some("mpos.terminal_management.v1.SwapTerminalRequest"),
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/activate",
        operation_id: "activateTerminal",
        summary: "Activate a SoftPOS terminal on an attestation verdict",
        description: "For the platform's operator only: activates a bound terminal on the id of a \
             passed attestation verdict (`ACTIVATION_METHOD_ATTESTATION`). terminal-management \
             does so itself when it follows the attestation service's verdicts; a PED \
             activates itself on the device API.\n\nErrors: 400 for a malformed terminal id or \
             body, or any other activation method; 403 for a tenant key; 404 when the tenant \
             or the terminal does not exist; 409 when the terminal is not bound, or the \
             tenant is suspended. 503 when the event store is unavailable; 409 when another \
             request changed the same aggregate concurrently (retry).",
        tag: "Terminals",
        request: Some("mpos.terminal_management.v1.ActivateTerminalRequest"),
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/tenants/{tenant_id}/terminal-imports",
        operation_id: "importTerminals",
        summary: "Bind many PEDs from a file",
        description: "Binds one PED per row of a CSV or JSON file of serials and manufacturer device \
             certificates under the store or terminal group `parent`. Each terminal's id is \
             its certificate serial (hex). The file is accepted whole or refused whole: every \
             row is checked (its certificate against the registered CAs and their CRLs, its \
             serial against the certificate's, its terminal id and device not yet bound) \
             before anything is written. The body may be larger than other requests' (up to \
             the bulk input limit).\n\nErrors: 400 for another content type, a malformed \
             file, a refused row (every invalid row is named with its field, up to a limit), \
             or a missing or unknown `parent`; 403 for a read-only key; 404 when the tenant \
             does not exist; 409 `ALREADY_EXISTS` when a row's terminal id or device is bound \
             already (the row is named), or when the tenant is suspended. A tenant key of \
             another tenant gets 404 `tenant not found`, exactly like a missing tenant. 503 \
             when the event store is unavailable; 409 when another request changed the same \
             aggregate concurrently (retry).",
        tag: "Terminals",
        request: None,
        response: Some("mpos.terminal_management.v1.ListTerminalsResponse"),
        success_status: 201,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: IMPORT_QUERY,
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Put,
        path: "/v1/tenants/{tenant_id}/parameters",
        operation_id: "putTenantParameters",
        summary: "Set the tenant's risk parameters",
        description: "Replaces the risk parameters stored at the tenant level (the defaults of its \
             whole estate). The set is validated on its own, then in combination with every \
             level above and below (each terminal's effective set must stay consistent); the \
             tenant's signed parameter sets are then re-issued in the background. Answers the \
             stored set.\n\nErrors: 400 for an invalid parameter (the message names it); 403 \
             for a read-only key; 404 when the tenant does not exist; 409 when the change \
             would make a terminal's effective set inconsistent, or the tenant is suspended. \
             A tenant key of another tenant gets 404 `tenant not found`, exactly like a \
             missing tenant. 503 when the event store is unavailable; 409 when another \
             request changed the same aggregate concurrently (retry).",
        tag: "Parameters",
        request: Some("mpos.terminal_management.v1.RiskParameters"),
        response: Some("mpos.terminal_management.v1.RiskParameters"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/parameters",
        operation_id: "getTenantParameters",
        summary: "Get the tenant's risk parameters",
        description: "The risk parameters stored at the tenant level itself (not inherited ones); \
             empty when none are set.\n\nErrors: 404 when the tenant does not exist. A tenant \
             key of another tenant gets 404 `tenant not found`, exactly like a missing \
             tenant.",
        tag: "Parameters",
        request: None,
        response: Some("mpos.terminal_management.v1.RiskParameters"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404],
    },
    Route {
        method: Method::Put,
        path: "/v1/tenants/{tenant_id}/nodes/{node_id}/parameters",
        operation_id: "putNodeParameters",
        summary: "Set the estate node's risk parameters",
        description: "Replaces the risk parameters stored at an estate node (for everything under it). \
             The set is validated on its own, then in combination with every level above and \
             below (each terminal's effective set must stay consistent); the tenant's signed \
             parameter sets are then re-issued in the background. Answers the stored \
             set.\n\nErrors: 400 for an invalid parameter (the message names it); 403 for a \
             read-only key; 404 when the tenant or the node does not exist; 409 when the \
             change would make a terminal's effective set inconsistent, or the tenant is \
             suspended. A tenant key of another tenant gets 404 `tenant not found`, exactly \
             like a missing tenant. 503 when the event store is unavailable; 409 when another \
             request changed the same aggregate concurrently (retry).",
        tag: "Parameters",
        request: Some("mpos.terminal_management.v1.RiskParameters"),
        response: Some("mpos.terminal_management.v1.RiskParameters"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/nodes/{node_id}/parameters",
        operation_id: "getNodeParameters",
        summary: "Get the estate node's risk parameters",
        description: "The risk parameters stored at an estate node itself (not inherited ones); empty \
             when none are set.\n\nErrors: 404 when the tenant or the node does not exist. A \
             tenant key of another tenant gets 404 `tenant not found`, exactly like a missing \
             tenant.",
        tag: "Parameters",
        request: None,
        response: Some("mpos.terminal_management.v1.RiskParameters"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404],
    },
    Route {
        method: Method::Put,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/parameters",
        operation_id: "putTerminalParameters",
        summary: "Set the terminal's risk parameters",
        description: "Replaces the risk parameters stored at one terminal (overriding every level \
             above). The set is validated on its own, then in combination with every level \
             above and below (each terminal's effective set must stay consistent); the \
             tenant's signed parameter sets are then re-issued in the background. Answers the \
             stored set.\n\nErrors: 400 for an invalid parameter (the message names it); 403 \
             for a read-only key; 404 when the tenant or the terminal does not exist; 409 \
             when the change would make a terminal's effective set inconsistent, or the \
             tenant is suspended. A tenant key of another tenant gets 404 `tenant not found`, \
             exactly like a missing tenant. 503 when the event store is unavailable; 409 when \
             another request changed the same aggregate concurrently (retry).",
        tag: "Parameters",
        request: Some("mpos.terminal_management.v1.RiskParameters"),
        response: Some("mpos.terminal_management.v1.RiskParameters"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("operator"),
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/parameters",
        operation_id: "getTerminalParameters",
        summary: "Get the terminal's risk parameters",
        description: "The risk parameters stored at one terminal itself (not inherited ones); empty \
             when none are set.\n\nErrors: 404 when the tenant or the terminal does not \
             exist. A tenant key of another tenant gets 404 `tenant not found`, exactly like \
             a missing tenant.",
        tag: "Parameters",
        request: None,
        response: Some("mpos.terminal_management.v1.RiskParameters"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/terminals/{terminal_id}/effective-parameters",
        operation_id: "getEffectiveParameters",
        summary: "Get a terminal's effective parameters",
        description: "The parameters the terminal runs with, resolved level by level (tenant, nodes, \
             terminal), each value with the level it came from; `missing` lists the required \
             parameters no level sets. `version` is the version a device will \
             download.\n\nErrors: 404 when the tenant or the terminal does not exist; 409 \
             when the levels are inconsistent. A tenant key of another tenant gets 404 \
             `tenant not found`, exactly like a missing tenant.",
        tag: "Parameters",
        request: None,
        response: Some("mpos.terminal_management.v1.EffectiveParametersResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404, 409],
    },
    Route {
        method: Method::Get,
        path: "/v1/tenants/{tenant_id}/parameter-status",
        operation_id: "getParameterStatus",
        summary: "Which terminals run which parameter version",
        description: "For every live terminal: the version in force, the version its device reported \
             installed, and whether it is behind; with totals.\n\nErrors: 404 when the tenant \
             does not exist. A tenant key of another tenant gets 404 `tenant not found`, \
             exactly like a missing tenant.",
        tag: "Parameters",
        request: None,
        response: Some("mpos.terminal_management.v1.ParameterStatusResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404],
    },
    Route {
        method: Method::Get,
        path: "/v1/parameter-signing-key",
        operation_id: "getParameterSigningKey",
        summary: "Get the parameter-signing public key",
        description: "The platform's public key (Ed25519) that signs every parameter set, to verify \
             downloads with. Devices get the same key on the device API.",
        tag: "Parameters",
        request: None,
        response: Some("mpos.terminal_management.v1.ParameterSigningKey"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[],
    },
    Route {
        method: Method::Post,
        path: "/v1/manufacturer-cas",
        operation_id: "registerManufacturerCa",
        summary: "Register a manufacturer CA",
        description: "Registers a PED vendor's CA certificate (PEM): device certificates that chain to \
             it can be bound and then authenticate on the device API. Its id is derived from \
             the certificate.\n\nErrors: 400 for a certificate that is not a valid, current \
             CA certificate, or an invalid name; 403 for a tenant key; 409 `ALREADY_EXISTS` \
             when it is registered already. 503 when the event store is unavailable; 409 when \
             another request changed the same aggregate concurrently (retry).",
        tag: "Manufacturer CAs",
        request: Some("mpos.terminal_management.v1.RegisterManufacturerCaRequest"),
        response: Some("mpos.terminal_management.v1.ManufacturerCa"),
        success_status: 201,
        auth: Auth::Operator,
        query: &[],
        errors: &[403, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/manufacturer-cas",
        operation_id: "listManufacturerCas",
        summary: "List manufacturer CAs",
        description: "Every registered CA, removed ones included, so that a tenant knows which \
             vendors' devices it can bind.",
        tag: "Manufacturer CAs",
        request: None,
        response: Some("mpos.terminal_management.v1.ListManufacturerCasResponse"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[],
    },
    Route {
        method: Method::Get,
        path: "/v1/manufacturer-cas/{ca_id}",
        operation_id: "getManufacturerCa",
        summary: "Get a manufacturer CA",
        description: "Errors: 404 when no CA has this id.",
        tag: "Manufacturer CAs",
        request: None,
        response: Some("mpos.terminal_management.v1.ManufacturerCa"),
        success_status: 200,
        auth: Auth::OperatorOrTenantKey("read_only"),
        query: &[],
        errors: &[404],
    },
    Route {
        method: Method::Post,
        path: "/v1/manufacturer-cas/{ca_id}/crl",
        operation_id: "updateManufacturerCaCrl",
        summary: "Update a manufacturer CA's CRL",
        description: "Installs the CA's certificate revocation list (PEM). It must be signed by the CA \
             and newer than the installed one; device certificates it revokes are refused \
             from then on, at binding and at the mTLS handshake.\n\nErrors: 400 for a CRL \
             that does not parse or is not signed by this CA; 403 for a tenant key; 404 when \
             the CA does not exist or was removed; 409 when the CRL is not newer than the \
             installed one. 503 when the event store is unavailable; 409 when another request \
             changed the same aggregate concurrently (retry).",
        tag: "Manufacturer CAs",
        request: Some("mpos.terminal_management.v1.UpdateCrlRequest"),
        response: Some("mpos.terminal_management.v1.ManufacturerCa"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[403, 404, 409, 503],
    },
    Route {
        method: Method::Post,
        path: "/v1/manufacturer-cas/{ca_id}/remove",
        operation_id: "removeManufacturerCa",
        summary: "Remove a manufacturer CA",
        description: "Removes the CA with a reason: its devices can no longer be bound or \
             authenticate.\n\nErrors: 400 without a reason; 403 for a tenant key; 404 when \
             the CA does not exist or was removed already. 503 when the event store \
             is unavailable; 409 when another request changed the same aggregate concurrently \
             (retry).",
        tag: "Manufacturer CAs",
        request: Some("mpos.terminal_management.v1.ReasonRequest"),
        response: Some("mpos.terminal_management.v1.ManufacturerCa"),
        success_status: 200,
        auth: Auth::Operator,
        query: &[],
        errors: &[403, 404, 409, 503],
    },
];

/// The device API's routes (mutual TLS with the device certificate).
pub const DEVICE_ROUTES: &[Route] = &[
    Route {
        method: Method::Post,
        path: "/v1/devices/activate",
        operation_id: "activateDevice",
        summary: "First boot: activate this device's terminal",
        description: "Served on the device listener only, over mutual TLS: the client certificate is \
             the PED's manufacturer device certificate, verified at the handshake against the \
             registered CAs and their CRLs; the terminal is the one that certificate is bound \
             to. Activates the bound terminal on its device certificate and answers it; \
             calling again once active answers the terminal unchanged. No body.\n\nErrors: \
             403 when the device is not bound to a terminal, the terminal's tenant is \
             suspended, or the terminal is neither bound nor active. 503 when the event store \
             is unavailable; 409 when another request changed the same aggregate concurrently \
             (retry).",
        tag: "Devices",
        request: None,
        response: Some("mpos.terminal_management.v1.Terminal"),
        success_status: 200,
        auth: Auth::DeviceMtls,
        query: &[],
        errors: &[403, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/devices/{terminal_id}/parameters",
        operation_id: "getDeviceParameters",
        summary: "Download the signed parameter set",
        description: "Served on the device listener only, over mutual TLS: the client certificate is \
             the PED's manufacturer device certificate, verified at the handshake against the \
             registered CAs and their CRLs; the terminal is the one that certificate is bound \
             to. Answers the terminal's signed parameter set in force: JSON by default, or \
             its binary protobuf encoding with `Accept: application/x-protobuf`. Verify the \
             signature with the parameter-signing key.\n\nErrors: 403 when the device is not \
             bound, is bound to another terminal than `terminal_id`, the terminal is not \
             active, or its tenant is suspended; 404 when the terminal does not exist; 409 \
             when its effective parameters are incomplete or inconsistent (nothing is signed \
             then).",
        tag: "Devices",
        request: None,
        response: Some("mpos.terminal_management.v1.SignedParameterSet"),
        success_status: 200,
        auth: Auth::DeviceMtls,
        query: &[],
        errors: &[403, 404, 409],
    },
    Route {
        method: Method::Post,
        path: "/v1/devices/{terminal_id}/parameters/ack",
        operation_id: "acknowledgeParameters",
        summary: "Report the installed parameter version",
        description: "Served on the device listener only, over mutual TLS: the client certificate is \
             the PED's manufacturer device certificate, verified at the handshake against the \
             registered CAs and their CRLs; the terminal is the one that certificate is bound \
             to. The device reports the version (and SHA-256 of the payload) it installed; \
             answers the terminal's version status. Reporting the installed version again \
             changes nothing.\n\nErrors: 400 when `payloadSha256` is not 32 bytes, the \
             version was never issued to this terminal, the hash is not the one issued for \
             the version in force, or the version is older than the installed one; 403 as for \
             the download; 409 when the terminal cannot install parameters now. 503 when the \
             event store is unavailable; 409 when another request changed the same aggregate \
             concurrently (retry).",
        tag: "Devices",
        request: Some("mpos.terminal_management.v1.ParameterSetAcknowledgement"),
        response: Some("mpos.terminal_management.v1.ParameterVersionStatus"),
        success_status: 200,
        auth: Auth::DeviceMtls,
        query: &[],
        errors: &[403, 409, 503],
    },
    Route {
        method: Method::Get,
        path: "/v1/parameter-signing-key",
        operation_id: "getDeviceParameterSigningKey",
        summary: "Get the parameter-signing public key (device listener)",
        description: "Served on the device listener only, over mutual TLS: the client certificate is \
             the PED's manufacturer device certificate, verified at the handshake against the \
             registered CAs and their CRLs; the terminal is the one that certificate is bound \
             to. The same key as on the admin API.",
        tag: "Devices",
        request: None,
        response: Some("mpos.terminal_management.v1.ParameterSigningKey"),
        success_status: 200,
        auth: Auth::DeviceMtls,
        query: &[],
        errors: &[],
    },
];

/// The bodies of both APIs that are not protobuf JSON.
pub const MEDIA: &[RouteMedia] = &[
    RouteMedia {
        operation_id: "importTerminals",
        raw_request: &[
            RawBody {
                content_type: "text/csv",
                description: "RFC 4180 CSV: a header row `serial,certificate` (either case), \
                              then one row per device. `serial` is the certificate's serial \
                              number in hex; `certificate` is the DER certificate in standard \
                              base64 on one line, or a PEM certificate (real line breaks inside \
                              a quoted field, or `\\n` escapes on one line).",
            },
            RawBody {
                content_type: "application/json",
                description: "An array of objects `{\"serial\": \"...\", \"certificate\": \
                              \"...\"}` with no other fields; the values as in the CSV form.",
            },
        ],
        response_alternatives: &[],
    },
    RouteMedia {
        operation_id: "getDeviceParameters",
        raw_request: &[],
        response_alternatives: &[RawBody {
            content_type: super::PROTOBUF,
            description: "the binary protobuf encoding of \
                          `mpos.terminal_management.v1.SignedParameterSet`.",
        }],
    },
];

/// The routes of the published document: the admin routes, then the device routes that the
/// admin API does not also serve (the parameter-signing key is on both listeners and
/// documented once, on the admin API).
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
/// published as `docs/openapi/terminal-management.json`).
pub fn openapi() -> Result<Value, mpos_openapi::OpenApiError> {
    mpos_openapi::openapi_with_media(
        INFO,
        &documented_routes(),
        MEDIA,
        mpos_proto::FILE_DESCRIPTOR_SET,
    )
}
