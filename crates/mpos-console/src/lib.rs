//! The operator console: a browser app the platform serves for the provider's staff —
//! the estate (terminals, their parameters and acknowledgements), the SoftPOS attestation
//! dashboard and policy, payments with their routing story and acquirer health, and the
//! audit trail's verification.
//!
//! The console holds no data and makes no decision of its own. Its page calls the services'
//! own admin APIs through one origin: `/console/api/svc/{service}/v1/...` is forwarded to that
//! service's API with the caller's bearer token, so every call is authenticated and scoped to
//! its tenant by the service that answers it, exactly as a direct API call would be. The
//! one thing the console does itself — verifying every service's audit trail
//! (`/console/api/audit/verify`, [`AuditLogs`]) — is for the platform operator's token only.
//!
//! The page keeps the token in the browser's session storage (never a cookie, so no request
//! can be forged from another site) and is served under a content security policy that
//! allows nothing but this origin's own script and style.

mod assets;
mod audit;
mod proxy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use mpos_http::OperatorAuth;
use serde_json::json;

pub use audit::{AuditLogs, ReadModels};

/// The services whose APIs the console can call, by the names its page uses.
pub const SERVICES: [&str; 6] = [
    "terminal-management",
    "attestation",
    "routing",
    "authorization",
    "key-injection",
    "hsm-proxy",
];

/// The largest request body forwarded to a service.
const BODY_LIMIT: usize = 1024 * 1024;

/// How long a service may take to answer a forwarded call.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// A console setting that cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct ConsoleError(pub String);

impl std::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConsoleError {}

/// The console: where each service's API is, and what audit verification reads.
#[derive(Clone)]
pub struct Console {
    upstreams: Arc<BTreeMap<&'static str, url::Url>>,
    audit: Option<Arc<AuditLogs>>,
    operator: OperatorAuth,
    client: reqwest::Client,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("upstreams", &self.upstreams.keys().collect::<Vec<_>>())
            .field("audit", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console with no service yet; `operator` is the platform operator's token, the one
    /// allowed to run audit verification.
    pub fn new(operator: OperatorAuth) -> Result<Self, ConsoleError> {
        let client = reqwest::Client::builder()
            .timeout(UPSTREAM_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| ConsoleError(format!("http client: {error}")))?;
        Ok(Self {
            upstreams: Arc::new(BTreeMap::new()),
            audit: None,
            operator,
            client,
        })
    }

    /// Forwards `/console/api/svc/{service}/...` to the API at `base` (`http://host:port` or
    /// `https://...`, no path).
    pub fn upstream(mut self, service: &str, base: &str) -> Result<Self, ConsoleError> {
        let Some(name) = SERVICES.iter().find(|name| **name == service) else {
            return Err(ConsoleError(format!(
                "{service:?} is not a service of the platform (one of {})",
                SERVICES.join(", ")
            )));
        };
        let url = url::Url::parse(base)
            .map_err(|error| ConsoleError(format!("{service}: {base:?} is not a url: {error}")))?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host().is_none()
            || url.path() != "/"
            || url.query().is_some()
            || !url.username().is_empty()
        {
            return Err(ConsoleError(format!(
                "{service}: {base:?} must be http(s)://host[:port] without path, query or user"
            )));
        }
        Arc::make_mut(&mut self.upstreams).insert(name, url);
        Ok(self)
    }

    /// Offers audit verification over `logs`.
    pub fn audit(mut self, logs: AuditLogs) -> Self {
        self.audit = Some(Arc::new(logs));
        self
    }

    /// The routes: the page under `/console/`, its API under `/console/api/`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::permanent("/console/") }))
            .route(
                "/console",
                get(|| async { Redirect::permanent("/console/") }),
            )
            .route("/console/", get(assets::index))
            .route("/console/{asset}", get(assets::asset))
            .route("/console/api/config", get(config))
            .route("/console/api/audit/verify", post(audit::verify))
            .route("/console/api/audit/replay", post(audit::replay))
            .route("/console/api/svc/{service}/{*rest}", any(proxy::forward))
            .fallback(|| async {
                mpos_errors::ServiceError::not_found("no such page").into_response()
            })
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(axum::middleware::from_fn_with_state(
                "console",
                mpos_http::observe,
            ))
            .with_state(self)
    }
}

/// `GET /console/api/config`: which services the page can call, and whether audit
/// verification and the read models' replay are offered.
async fn config(State(console): State<Console>) -> Response {
    let mut response = axum::Json(json!({
        "services": console.upstreams.keys().collect::<Vec<_>>(),
        "audit": console.audit.is_some(),
        "replay": console.audit.as_ref().is_some_and(|audit| audit.offers_replay()),
    }))
    .into_response();
    assets::no_store(&mut response);
    response
}
