//! The page: three files compiled into the binary, each served with a content security
//! policy that allows only this origin's own script, style and API.

use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mpos_errors::ServiceError;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// No inline script or style, nothing from another origin, not framed.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// `GET /console/`.
pub(crate) async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

/// `GET /console/{asset}`.
pub(crate) async fn asset(Path(asset): Path<String>) -> Response {
    match asset.as_str() {
        "index.html" => page(INDEX, "text/html; charset=utf-8"),
        "app.js" => page(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => page(APP_CSS, "text/css; charset=utf-8"),
        _ => ServiceError::not_found("no such page").into_response(),
    }
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Marks an API answer as not to be stored by the browser or any cache.
pub(crate) fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
}
