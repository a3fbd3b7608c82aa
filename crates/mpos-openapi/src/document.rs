//! The OpenAPI 3.0.3 document of a route table.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mpos_errors::ErrorCode;
use prost_reflect::DescriptorPool;
use serde_json::{Map, Value, json};

use crate::route::{ApiInfo, Auth, Method, RawBody, Route, RouteMedia};
use crate::schema::{SchemaSet, reference};

/// The OpenAPI version of the documents.
pub const OPENAPI_VERSION: &str = "3.0.3";

/// The component schema name of the shared error body (`{"code": ..., "message": ...}`).
pub const ERROR_SCHEMA: &str = "ServiceError";

/// The security scheme name of the platform operator's bearer token.
pub const OPERATOR_SCHEME: &str = "operatorToken";

/// The security scheme name of a tenant API key (a bearer token).
pub const TENANT_KEY_SCHEME: &str = "tenantApiKey";

/// The operation extension that states the authentication in machine-readable form,
/// including what OpenAPI 3.0 cannot express (mutual TLS, the minimum tenant-key role).
pub const AUTH_EXTENSION: &str = "x-mpos-auth";

/// Why no document could be generated.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// The descriptor bytes are not a valid encoded `FileDescriptorSet`.
    #[error("the protobuf descriptors do not decode: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// A route names a body message that the descriptors do not hold.
    #[error("route {operation_id}: {body} message {name:?} is not in the protobuf descriptors")]
    UnknownMessage {
        /// The route's operation id.
        operation_id: &'static str,
        /// `request` or `response`.
        body: &'static str,
        /// The name as written in the route.
        name: &'static str,
    },
    /// A route is inconsistent in itself.
    #[error("route {operation_id} ({method} {path}): {reason}")]
    InvalidRoute {
        /// The route's operation id.
        operation_id: &'static str,
        /// The route's method.
        method: &'static str,
        /// The route's path.
        path: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two routes share an operation id.
    #[error("operation id {operation_id:?} is used by two routes")]
    DuplicateOperationId {
        /// The shared operation id.
        operation_id: &'static str,
    },
    /// Two routes match the same method and path (parameter names aside).
    #[error("routes {first} and {second} both answer {method} {path}")]
    DuplicateRoute {
        /// The first route's operation id.
        first: &'static str,
        /// The second route's operation id.
        second: &'static str,
        /// The method.
        method: &'static str,
        /// The second route's path.
        path: &'static str,
    },
    /// A [`RouteMedia`] names an operation the route table does not have.
    #[error("media of operation id {operation_id:?}: no route has it")]
    UnknownMediaOperation {
        /// The operation id given.
        operation_id: &'static str,
    },
}

/// Checks a route table on its own: each route valid, operation ids unique, no two routes
/// for one method and path. [`openapi`] does this too; routers built from a table call it.
pub fn validate_routes(routes: &[Route]) -> Result<(), OpenApiError> {
    let mut operation_ids = BTreeSet::new();
    let mut endpoints: HashMap<(Method, String), &'static str> = HashMap::new();
    let mut spellings: HashMap<String, &Route> = HashMap::new();
    for route in routes {
        validate_route(route)?;
        if !operation_ids.insert(route.operation_id) {
            return Err(OpenApiError::DuplicateOperationId {
                operation_id: route.operation_id,
            });
        }
        let shape = path_shape(route.path);
        let first_spelling = *spellings.entry(shape.clone()).or_insert(route);
        if first_spelling.path != route.path {
            // Routers and OpenAPI both take `/a/{x}` and `/a/{y}` for the same path.
            return Err(OpenApiError::InvalidRoute {
                operation_id: route.operation_id,
                method: route.method.as_str(),
                path: route.path,
                reason: format!(
                    "path: same as {} of {} but for parameter names",
                    first_spelling.path, first_spelling.operation_id
                ),
            });
        }
        if let Some(first) = endpoints.insert((route.method, shape), route.operation_id) {
            return Err(OpenApiError::DuplicateRoute {
                first,
                second: route.operation_id,
                method: route.method.as_str(),
                path: route.path,
            });
        }
    }
    Ok(())
}

/// The OpenAPI 3.0.3 document of `routes`, with the component schema of every protobuf
/// message they reach, taken from `descriptors` (an encoded `FileDescriptorSet`, e.g.
/// `mpos_proto::FILE_DESCRIPTOR_SET`).
///
/// Objects have sorted keys, so the serialised document is stable and can be committed.
pub fn openapi(info: ApiInfo, routes: &[Route], descriptors: &[u8]) -> Result<Value, OpenApiError> {
    openapi_with_media(info, routes, &[], descriptors)
}

/// [`openapi`] with the bodies that are not protobuf JSON: `media` completes routes of the
/// table (by operation id) with raw request bodies (e.g. a `text/csv` upload) and further
/// media types of the success response (e.g. `application/x-protobuf` by `Accept`).
pub fn openapi_with_media(
    info: ApiInfo,
    routes: &[Route],
    media: &[RouteMedia],
    descriptors: &[u8],
) -> Result<Value, OpenApiError> {
    validate_routes(routes)?;
    let media_of = validate_media(routes, media)?;
    let pool = DescriptorPool::decode(descriptors)?;
    let mut schemas = SchemaSet::new(&pool);
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut error_statuses = BTreeSet::new();
    let mut schemes_used = BTreeSet::new();
    let mut tags = BTreeSet::new();

    for route in routes {
        let media = media_of.get(route.operation_id).copied();
        let statuses = error_statuses_of(route, media);
        error_statuses.extend(statuses.iter().copied());
        schemes_used.extend(security_schemes(route.auth));
        tags.insert(route.tag);
        let operation = operation(route, media, &mut schemas, &statuses)?;
        paths
            .entry(route.openapi_path())
            .or_default()
            .insert(route.method.openapi_key().to_owned(), operation);
    }

    let mut components_schemas: Map<String, Value> = schemas.into_schemas().into_iter().collect();
    components_schemas.insert(ERROR_SCHEMA.to_owned(), error_schema());

    let responses: Map<String, Value> = error_statuses
        .iter()
        .map(|status| (error_response_name(*status), error_response(*status)))
        .collect();

    let security_schemes: Map<String, Value> = schemes_used
        .into_iter()
        .map(|name| (name.to_owned(), security_scheme(name)))
        .collect();

    let mut components = Map::new();
    components.insert("schemas".into(), Value::Object(components_schemas));
    components.insert("responses".into(), Value::Object(responses));
    if !security_schemes.is_empty() {
        components.insert("securitySchemes".into(), Value::Object(security_schemes));
    }

    let mut info_object = Map::new();
    info_object.insert("title".into(), json!(info.title));
    info_object.insert("version".into(), json!(info.version));
    if !info.description.is_empty() {
        info_object.insert("description".into(), json!(info.description));
    }

    let document = json!({
        "openapi": OPENAPI_VERSION,
        "info": info_object,
        "tags": tags.into_iter().map(|name| json!({ "name": name })).collect::<Vec<_>>(),
        "paths": paths.into_iter().map(|(path, item)| (path, Value::Object(item))).collect::<Map<_, _>>(),
        "components": components,
    });
    Ok(sort_keys(document))
}

fn operation(
    route: &Route,
    media: Option<&RouteMedia>,
    schemas: &mut SchemaSet<'_>,
    error_statuses: &BTreeSet<u16>,
) -> Result<Value, OpenApiError> {
    let mut operation = Map::new();
    operation.insert("operationId".into(), json!(route.operation_id));
    operation.insert("summary".into(), json!(route.summary));
    let auth_line = auth_description(route.auth);
    let description = if route.description.is_empty() {
        auth_line
    } else {
        format!("{}\n\n{auth_line}", route.description)
    };
    operation.insert("description".into(), json!(description));
    operation.insert("tags".into(), json!([route.tag]));

    let mut parameters: Vec<Value> = route
        .path_params()
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": { "type": "string" },
            })
        })
        .collect();
    parameters.extend(route.query.iter().map(|param| {
        let mut object = Map::new();
        object.insert("name".into(), json!(param.name));
        object.insert("in".into(), json!("query"));
        object.insert("required".into(), json!(param.required));
        if !param.description.is_empty() {
            object.insert("description".into(), json!(param.description));
        }
        object.insert("schema".into(), json!({ "type": "string" }));
        Value::Object(object)
    }));
    if !parameters.is_empty() {
        operation.insert("parameters".into(), Value::Array(parameters));
    }

    if let Some(name) = route.request {
        let schema = body_schema(route, "request", name, schemas)?;
        operation.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": { "application/json": { "schema": schema } },
            }),
        );
    }
    let raw_request = media.map_or(&[][..], |media| media.raw_request);
    if !raw_request.is_empty() {
        let content: Map<String, Value> = raw_request
            .iter()
            .map(|body| {
                (
                    body.content_type.to_owned(),
                    json!({ "schema": raw_schema(body.content_type) }),
                )
            })
            .collect();
        operation.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "description": media_description(raw_request),
                "content": content,
            }),
        );
    }

    let mut responses = Map::new();
    let mut success = Map::new();
    success.insert(
        "description".into(),
        json!(success_description(route.success_status)),
    );
    if let Some(name) = route.response {
        let schema = body_schema(route, "response", name, schemas)?;
        let mut content = Map::new();
        content.insert("application/json".into(), json!({ "schema": schema }));
        let alternatives = media.map_or(&[][..], |media| media.response_alternatives);
        for body in alternatives {
            content.insert(
                body.content_type.to_owned(),
                json!({ "schema": raw_schema(body.content_type) }),
            );
        }
        if !alternatives.is_empty() {
            success.insert(
                "description".into(),
                json!(format!(
                    "{} By `Accept`: `application/json` (the default), or\n\n{}",
                    success_description(route.success_status),
                    media_description(alternatives)
                )),
            );
        }
        success.insert("content".into(), Value::Object(content));
    }
    responses.insert(route.success_status.to_string(), Value::Object(success));
    for status in error_statuses {
        responses.insert(
            status.to_string(),
            json!({ "$ref": format!("#/components/responses/{}", error_response_name(*status)) }),
        );
    }
    operation.insert("responses".into(), Value::Object(responses));

    let security: Vec<Value> = security_schemes(route.auth)
        .into_iter()
        .map(|scheme| json!({ scheme: [] }))
        .collect();
    operation.insert("security".into(), Value::Array(security));
    operation.insert(AUTH_EXTENSION.into(), auth_extension(route.auth));
    Ok(Value::Object(operation))
}

fn body_schema(
    route: &Route,
    body: &'static str,
    name: &'static str,
    schemas: &mut SchemaSet<'_>,
) -> Result<Value, OpenApiError> {
    let message = schemas
        .pool()
        .get_message_by_name(name)
        .ok_or(OpenApiError::UnknownMessage {
            operation_id: route.operation_id,
            body,
            name,
        })?;
    Ok(schemas.message_body(&message))
}

/// The error statuses of a route: the declared ones and the implied ones.
fn error_statuses_of(route: &Route, media: Option<&RouteMedia>) -> BTreeSet<u16> {
    let mut statuses: BTreeSet<u16> = route.errors.iter().copied().collect();
    let raw_request = media.is_some_and(|media| !media.raw_request.is_empty());
    if route.request.is_some() || raw_request || !route.query.is_empty() {
        statuses.insert(ErrorCode::BadRequest.http_status());
    }
    if route.auth.is_authenticated() {
        statuses.insert(ErrorCode::Unauthenticated.http_status());
    }
    if matches!(
        route.auth,
        Auth::TenantKey(_) | Auth::OperatorOrTenantKey(_)
    ) {
        statuses.insert(ErrorCode::Forbidden.http_status());
    }
    statuses.insert(ErrorCode::Internal.http_status());
    statuses
}

fn codes_of_status(status: u16) -> Vec<ErrorCode> {
    ErrorCode::ALL
        .into_iter()
        .filter(|code| code.http_status() == status)
        .collect()
}

fn error_response_name(status: u16) -> String {
    format!("Error{status}")
}

fn error_response(status: u16) -> Value {
    let codes: Vec<String> = codes_of_status(status)
        .into_iter()
        .map(|code| format!("`{code}`"))
        .collect();
    json!({
        "description": format!("A shared error with code {}.", codes.join(" or ")),
        "content": { "application/json": { "schema": reference(ERROR_SCHEMA) } },
    })
}

fn error_schema() -> Value {
    let names: Vec<&str> = ErrorCode::ALL.into_iter().map(ErrorCode::as_str).collect();
    let table: Vec<String> = ErrorCode::ALL
        .into_iter()
        .map(|code| format!("- `{code}`: HTTP {}", code.http_status()))
        .collect();
    json!({
        "type": "object",
        "description": "The error body every service answers with.",
        "required": ["code", "message"],
        "properties": {
            "code": {
                "type": "string",
                "enum": names,
                "description": format!("What kind of failure:\n\n{}", table.join("\n")),
            },
            "message": {
                "type": "string",
                "description": "Safe to show: never secrets or cardholder data.",
            },
        },
    })
}

/// The security schemes of which any one admits a caller.
fn security_schemes(auth: Auth) -> Vec<&'static str> {
    match auth {
        Auth::None | Auth::DeviceMtls => Vec::new(),
        Auth::Operator => vec![OPERATOR_SCHEME],
        Auth::TenantKey(_) => vec![TENANT_KEY_SCHEME],
        Auth::OperatorOrTenantKey(_) => vec![OPERATOR_SCHEME, TENANT_KEY_SCHEME],
    }
}

fn security_scheme(name: &str) -> Value {
    let description = if name == OPERATOR_SCHEME {
        "The platform operator's token: `Authorization: Bearer <token>`."
    } else {
        "A tenant API key: `Authorization: Bearer <key>`. Its role limits what it may do."
    };
    json!({ "type": "http", "scheme": "bearer", "description": description })
}

fn auth_description(auth: Auth) -> String {
    let text = match auth {
        Auth::None => "none".to_owned(),
        Auth::Operator => "the platform operator's bearer token".to_owned(),
        Auth::TenantKey(role) => format!("a tenant API key with role `{role}` or above"),
        Auth::OperatorOrTenantKey(role) => format!(
            "the platform operator's bearer token, or a tenant API key with role `{role}` or above"
        ),
        Auth::DeviceMtls => {
            "a device's mutual-TLS client certificate (OpenAPI 3.0 has no scheme for it)".to_owned()
        }
    };
    format!("**Authentication:** {text}.")
}

fn auth_extension(auth: Auth) -> Value {
    match auth {
        Auth::None => json!({ "kind": "none" }),
        Auth::Operator => json!({ "kind": "operator" }),
        Auth::TenantKey(role) => json!({ "kind": "tenant_key", "role": role }),
        Auth::OperatorOrTenantKey(role) => {
            json!({ "kind": "operator_or_tenant_key", "role": role })
        }
        Auth::DeviceMtls => json!({ "kind": "device_mtls" }),
    }
}

fn success_description(status: u16) -> &'static str {
    match status {
        201 => "Created.",
        202 => "Accepted.",
        204 => "Done; no body.",
        _ => "Success.",
    }
}

/// The schema of a raw body by its media type: text, any JSON, or bytes.
fn raw_schema(content_type: &str) -> Value {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.starts_with("text/") {
        json!({ "type": "string" })
    } else if essence.ends_with("/json") || essence.ends_with("+json") {
        json!({})
    } else {
        json!({ "type": "string", "format": "binary" })
    }
}

/// A Markdown list of raw bodies: `- \`type\`: description`.
fn media_description(bodies: &[RawBody]) -> String {
    bodies
        .iter()
        .map(|body| {
            if body.description.is_empty() {
                format!("- `{}`", body.content_type)
            } else {
                format!("- `{}`: {}", body.content_type, body.description)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks the media table against the routes; answers it by operation id.
fn validate_media<'a>(
    routes: &[Route],
    media: &'a [RouteMedia],
) -> Result<HashMap<&'static str, &'a RouteMedia>, OpenApiError> {
    let mut by_operation = HashMap::new();
    for entry in media {
        let route = routes
            .iter()
            .find(|route| route.operation_id == entry.operation_id)
            .ok_or(OpenApiError::UnknownMediaOperation {
                operation_id: entry.operation_id,
            })?;
        let invalid = |reason: String| OpenApiError::InvalidRoute {
            operation_id: route.operation_id,
            method: route.method.as_str(),
            path: route.path,
            reason,
        };
        if by_operation.insert(route.operation_id, entry).is_some() {
            return Err(invalid("media: declared twice".into()));
        }
        if !entry.raw_request.is_empty() {
            if route.request.is_some() {
                return Err(invalid(
                    "media: a raw request body and a protobuf request body".into(),
                ));
            }
            if !route.method.allows_body() {
                return Err(invalid(format!(
                    "media: a {} request has no body",
                    route.method.as_str()
                )));
            }
        }
        if !entry.response_alternatives.is_empty() && route.response.is_none() {
            return Err(invalid(
                "media: response alternatives without a response message".into(),
            ));
        }
        for (list, bodies) in [
            ("raw_request", entry.raw_request),
            ("response_alternatives", entry.response_alternatives),
        ] {
            let mut seen = BTreeSet::new();
            for body in bodies {
                let content_type = body.content_type;
                let valid = content_type.contains('/')
                    && !content_type.contains(char::is_whitespace)
                    && !content_type.contains(';');
                if !valid {
                    return Err(invalid(format!(
                        "media: {list}: {content_type:?} is not a media type"
                    )));
                }
                let lowered = content_type.to_ascii_lowercase();
                if list == "response_alternatives" && lowered == "application/json" {
                    return Err(invalid(
                        "media: response_alternatives: application/json is the message's".into(),
                    ));
                }
                if !seen.insert(lowered) {
                    return Err(invalid(format!(
                        "media: {list}: {content_type} is listed twice"
                    )));
                }
            }
        }
    }
    Ok(by_operation)
}

/// The path with parameter names dropped: two routes of one shape match the same requests.
fn path_shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with("{*") {
                "{*}"
            } else if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn validate_route(route: &Route) -> Result<(), OpenApiError> {
    let invalid = |reason: String| OpenApiError::InvalidRoute {
        operation_id: route.operation_id,
        method: route.method.as_str(),
        path: route.path,
        reason,
    };
    if route.operation_id.is_empty()
        || !route
            .operation_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid(
            "operation_id must be non-empty ASCII letters, digits, '_', '-' or '.'".into(),
        ));
    }
    if route.summary.is_empty() {
        return Err(invalid("summary must not be empty".into()));
    }
    if route.tag.is_empty() {
        return Err(invalid("tag must not be empty".into()));
    }
    validate_path(route.path).map_err(|reason| invalid(format!("path: {reason}")))?;
    if !(200..300).contains(&route.success_status) {
        return Err(invalid(format!(
            "success_status {} is not a 2xx status",
            route.success_status
        )));
    }
    if route.success_status == 204 && route.response.is_some() {
        return Err(invalid(
            "success_status 204 (no content) with a response body".into(),
        ));
    }
    for (body, name) in [("request", route.request), ("response", route.response)] {
        if name.is_some_and(|name| name.is_empty() || name.starts_with('.')) {
            return Err(invalid(format!(
                "{body}: write the full message name without a leading dot"
            )));
        }
    }
    if route.request.is_some() && !route.method.allows_body() {
        return Err(invalid(format!(
            "request: a {} request has no body",
            route.method.as_str()
        )));
    }
    if let Some(status) = route
        .errors
        .iter()
        .find(|status| codes_of_status(**status).is_empty())
    {
        return Err(invalid(format!(
            "errors: {status} is not the HTTP status of any shared error code"
        )));
    }
    let path_params: Vec<&str> = route.path_params().collect();
    let mut query_names = BTreeSet::new();
    for param in route.query {
        if param.name.is_empty() {
            return Err(invalid("query: a parameter has an empty name".into()));
        }
        if !query_names.insert(param.name) {
            return Err(invalid(format!(
                "query: parameter {:?} is declared twice",
                param.name
            )));
        }
        if path_params.contains(&param.name) {
            return Err(invalid(format!(
                "query: parameter {:?} is also a path parameter",
                param.name
            )));
        }
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must start with '/'".into());
    };
    if path.contains(['?', '#']) {
        return Err("must not hold a query or fragment".into());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let mut names = BTreeSet::new();
    for (index, segment) in segments.iter().enumerate() {
        if !segment.contains(['{', '}']) {
            continue;
        }
        let Some(inner) = segment
            .strip_prefix('{')
            .and_then(|inner| inner.strip_suffix('}'))
        else {
            return Err(format!(
                "segment {segment:?}: a parameter must be a whole segment"
            ));
        };
        let name = match inner.strip_prefix('*') {
            Some(name) if index + 1 == segments.len() => name,
            Some(_) => return Err(format!("segment {segment:?}: a wildcard must come last")),
            None => inner,
        };
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!("segment {segment:?}: invalid parameter name"));
        }
        if !names.insert(name) {
            return Err(format!("parameter {name:?} appears twice"));
        }
    }
    Ok(())
}

/// The value with every object's keys in sorted order, whatever `serde_json`'s map is.
fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let sorted: BTreeMap<String, Value> = object
                .into_iter()
                .map(|(key, inner)| (key, sort_keys(inner)))
                .collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}
