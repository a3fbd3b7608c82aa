//! `/console/api/svc/{service}/{path}`: a call of the page forwarded to a service's own API,
//! which authenticates it. Only API paths (`/v1/...`, `/openapi.json`) are forwarded, with
//! the method, query, body and the `authorization`, `content-type`, `accept` and
//! `traceparent` headers; the answer comes back with its status, content type and body.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use mpos_errors::ServiceError;

use crate::{BODY_LIMIT, Console};

const PREFIX: &str = "/console/api/svc/";

/// The request headers a service sees.
const FORWARDED: [&str; 4] = ["authorization", "content-type", "accept", "traceparent"];

/// The path and query of the service's API a console path names, or why it is refused.
pub(crate) fn target(path_and_query: &str) -> Result<(&str, &str), ServiceError> {
    let rest = path_and_query
        .strip_prefix(PREFIX)
        .ok_or_else(|| ServiceError::not_found("no such page"))?;
    let (service, path) = rest
        .find('/')
        .map(|slash| rest.split_at(slash))
        .ok_or_else(|| ServiceError::not_found("no such page"))?;
    let bare = path.split('?').next().unwrap_or_default();
    if !(bare.starts_with("/v1/") || bare == "/openapi.json") {
        return Err(ServiceError::not_found(
            "only a service's api (/v1/..., /openapi.json) is reachable",
        ));
    }
    // No way out of the API: no dot segment, no empty segment, and no escaped dot, slash or
    // backslash that the service would decode into one.
    let lowered = bare.to_ascii_lowercase();
    if bare
        .split('/')
        .skip(2)
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        || ["%2e", "%2f", "%5c", "\\"]
            .iter()
            .any(|escaped| lowered.contains(escaped))
    {
        return Err(ServiceError::bad_request(
            "the path may not hold empty, dot or escaped segments",
        ));
    }
    Ok((service, path))
}

/// Forwards one call.
pub(crate) async fn forward(State(console): State<Console>, request: Request) -> Response {
    match forwarded(&console, request).await {
        Ok(response) => response,
        Err(error) => {
            let mut response = error.into_response();
            crate::assets::no_store(&mut response);
            response
        }
    }
}

async fn forwarded(console: &Console, request: Request) -> Result<Response, ServiceError> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |value| value.as_str());
    let (service, path) = target(path_and_query)?;
    let Some(base) = console.upstreams.get(service) else {
        return Err(ServiceError::not_found(format!(
            "the console does not reach a service named {service:?}"
        )));
    };
    if ![Method::GET, Method::POST, Method::PUT, Method::DELETE].contains(&parts.method) {
        return Err(ServiceError::bad_request(
            "only GET, POST, PUT and DELETE are forwarded",
        ));
    }
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ServiceError::bad_request("the body is larger than 1 MiB"))?;
    let url = format!("{}{}", base.as_str().trim_end_matches('/'), path);
    let mut outgoing = console.client.request(parts.method.clone(), url).body(body);
    for name in FORWARDED {
        for value in parts.headers.get_all(name) {
            outgoing = outgoing.header(name, value.clone());
        }
    }
    let answer = outgoing.send().await.map_err(|error| {
        tracing::warn!(
            service,
            timeout = error.is_timeout(),
            "service not reachable"
        );
        if error.is_timeout() {
            ServiceError::timeout(format!("{service} did not answer in time"))
        } else {
            ServiceError::unavailable(format!("{service} is not reachable"))
        }
    })?;
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = answer.bytes().await.map_err(|_| {
        tracing::warn!(service, "service answer cut off");
        ServiceError::unavailable(format!("{service}'s answer was cut off"))
    })?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    crate::assets::no_store(&mut response);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_api_paths_are_targets() {
        fn ok(path: &str) -> Result<(&str, &str), String> {
            target(path).map_err(|error| error.to_string())
        }
        assert_eq!(
            ok("/console/api/svc/routing/v1/tenants/acme/acquirers?x=1"),
            Ok(("routing", "/v1/tenants/acme/acquirers?x=1"))
        );
        assert_eq!(
            ok("/console/api/svc/authorization/openapi.json"),
            Ok(("authorization", "/openapi.json"))
        );
        for refused in [
            "/console/api/svc/routing",
            "/console/api/svc/routing/",
            "/console/api/svc/routing/metrics",
            "/console/api/svc/routing/v2/x",
            "/console/api/svc/routing/v1/../metrics",
            "/console/api/svc/routing/v1/./x",
            "/console/api/svc/routing/v1//x",
            "/console/api/svc/routing/v1/%2e%2e/metrics",
            "/console/api/svc/routing/v1/%2E%2E/metrics",
            "/console/api/svc/routing/v1/a%2fb",
            "/console/api/svc/routing/v1/a%5Cb",
            "/console/api/other",
        ] {
            assert!(target(refused).is_err(), "{refused}");
        }
    }
}
