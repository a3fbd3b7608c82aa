//! OpenAPI 3.0.3 documents generated from the code: a service's route table plus the
//! protobuf descriptors of its JSON bodies.
//!
//! Every HTTP body of the platform is a protobuf message whose JSON is the proto3 JSON
//! mapping (pbjson), so schema derives on Rust types would describe the wrong JSON. Instead
//! a service declares its routes once as `const` data,
//!
//! ```
//! use mpos_openapi::{Auth, Method, Route};
//!
//! pub const ROUTES: &[Route] = &[Route {
//!     method: Method::Post,
//!     path: "/v1/tenants",
//!     operation_id: "createTenant",
//!     summary: "Onboard a tenant",
//!     description: "",
//!     tag: "tenants",
//!     request: Some("mpos.terminal_management.v1.CreateTenantRequest"),
//!     response: Some("mpos.terminal_management.v1.Tenant"),
//!     success_status: 201,
//!     auth: Auth::Operator,
//!     query: &[],
//!     errors: &[409],
//! }];
//! ```
//!
//! builds its axum router from that table (`ApiRouter`, default feature `axum`: a route without a
//! handler or a handler without a route fails the build), and [`openapi`] turns the same
//! table and `mpos_proto::FILE_DESCRIPTOR_SET` into the document. A service test keeps the
//! committed `docs/openapi/<service>.json` true with [`check_published`].
//!
//! # The document
//!
//! * Component schemas are keyed by full protobuf name (`mpos.terminal_management.v1.Tenant`)
//!   and hold every message and enum reachable from the routes. Fields follow the proto3
//!   JSON mapping: lowerCamelCase names; 64-bit integers as strings; enums as strings of
//!   their value names; bytes as base64 strings (`format: byte`); `Timestamp` as RFC 3339
//!   (`format: date-time`); `Duration` as `"1.5s"`; `Struct`, `Value`, `ListValue`, `Empty`,
//!   `Any`, `FieldMask` and the wrappers in their JSON forms, inline; repeated fields as
//!   arrays; maps as objects with `additionalProperties`. No property is `required`: proto3
//!   JSON omits default values. Oneof members are optional properties noting their oneof.
//!   Comments of the proto source become descriptions.
//! * Error statuses reference shared responses (`#/components/responses/Error409`) whose
//!   body is the shared `ServiceError` schema `{"code", "message"}`. Besides the declared
//!   ones, every operation lists 500; 400 with a body or query parameters; 401 when
//!   authenticated; 403 with a tenant key.
//! * Bearer tokens are the `operatorToken` and `tenantApiKey` schemes. OpenAPI 3.0 cannot
//!   express mutual TLS or the minimum role of a key: the operation's description says it,
//!   and the `x-mpos-auth` extension states it for tools.
//! * Objects have sorted keys, so the rendered document diffs well.
//! * Bodies that are not protobuf JSON (a `text/csv` upload, a binary protobuf answer chosen
//!   by `Accept`) are declared in a [`RouteMedia`] table beside the routes and documented by
//!   [`openapi_with_media`].

#![deny(missing_docs)]

mod document;
mod publish;
mod route;
mod schema;
#[cfg(feature = "axum")]
mod serve;

pub use document::{
    AUTH_EXTENSION, ERROR_SCHEMA, OPENAPI_VERSION, OPERATOR_SCHEME, OpenApiError,
    TENANT_KEY_SCHEME, openapi, openapi_with_media, validate_routes,
};
pub use publish::{UPDATE_ENV, check_or_update, check_published, render};
pub use route::{ApiInfo, Auth, Method, QueryParam, RawBody, Route, RouteMedia};
#[cfg(feature = "axum")]
pub use serve::{ApiRouter, OPENAPI_PATH, RouterError, serve_document};
