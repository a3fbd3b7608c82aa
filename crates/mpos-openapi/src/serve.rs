//! Routers built from the route table, and the handler that serves the document.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Bytes;
use axum::handler::Handler;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, get, on};
use serde_json::Value;

use crate::document::{OpenApiError, validate_routes};
use crate::publish::render;
use crate::route::{Method, Route};

/// Where services serve their document.
pub const OPENAPI_PATH: &str = "/openapi.json";

impl Method {
    /// The axum method filter of this method.
    pub const fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Delete => MethodFilter::DELETE,
            Self::Patch => MethodFilter::PATCH,
        }
    }

    /// The HTTP method (the `http` crate's, which axum and reqwest share).
    pub fn http(self) -> axum::http::Method {
        match self {
            Self::Get => axum::http::Method::GET,
            Self::Post => axum::http::Method::POST,
            Self::Put => axum::http::Method::PUT,
            Self::Delete => axum::http::Method::DELETE,
            Self::Patch => axum::http::Method::PATCH,
        }
    }
}

/// A `GET` handler answering the document as `application/json` (rendered once).
pub fn serve_document<S>(doc: &Value) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let body = Bytes::from(render(doc));
    get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
    })
}

/// Why a router cannot be built from a route table.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The table itself is invalid.
    #[error(transparent)]
    Routes(#[from] OpenApiError),
    /// A handler names an operation the table does not have.
    #[error("no route has operation id {operation_id:?}")]
    UnknownOperation {
        /// The operation id given.
        operation_id: String,
    },
    /// Two handlers for one operation.
    #[error("operation {operation_id:?} has a handler already")]
    AlreadyBound {
        /// The operation id.
        operation_id: &'static str,
    },
    /// Routes of the table without a handler.
    #[error("operations without a handler: {}", operation_ids.join(", "))]
    Unbound {
        /// Their operation ids, in table order.
        operation_ids: Vec<&'static str>,
    },
}

/// Builds an axum router from a route table, one handler per operation, so that the
/// router has exactly the documented routes: [`ApiRouter::finish`] fails while any route
/// lacks a handler, and a handler can only be bound to a route of the table.
#[derive(Debug)]
pub struct ApiRouter<S = ()> {
    routes: &'static [Route],
    bound: BTreeSet<&'static str>,
    router: Router<S>,
}

impl<S> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// A builder for `routes`, which are checked as [`validate_routes`] does.
    pub fn new(routes: &'static [Route]) -> Result<Self, RouterError> {
        validate_routes(routes)?;
        Ok(Self {
            routes,
            bound: BTreeSet::new(),
            router: Router::new(),
        })
    }

    /// Binds the handler of the route with `operation_id` (at its method and path).
    pub fn handle<H, T>(self, operation_id: &str, handler: H) -> Result<Self, RouterError>
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.handle_with(operation_id, |method| on(method.filter(), handler))
    }

    /// Binds the method router `make` builds from the route's method, for handlers that
    /// need a layer of their own (`on(method.filter(), handler).layer(...)`).
    pub fn handle_with(
        mut self,
        operation_id: &str,
        make: impl FnOnce(Method) -> MethodRouter<S>,
    ) -> Result<Self, RouterError> {
        let route = self
            .routes
            .iter()
            .find(|route| route.operation_id == operation_id)
            .ok_or_else(|| RouterError::UnknownOperation {
                operation_id: operation_id.to_owned(),
            })?;
        if !self.bound.insert(route.operation_id) {
            return Err(RouterError::AlreadyBound {
                operation_id: route.operation_id,
            });
        }
        // Routes of one path merge in axum; the table has no method twice for a path.
        self.router = self.router.route(route.path, make(route.method));
        Ok(self)
    }

    /// The router, once every route of the table has its handler.
    pub fn finish(self) -> Result<Router<S>, RouterError> {
        let unbound: Vec<&'static str> = self
            .routes
            .iter()
            .map(|route| route.operation_id)
            .filter(|operation_id| !self.bound.contains(operation_id))
            .collect();
        if unbound.is_empty() {
            Ok(self.router)
        } else {
            Err(RouterError::Unbound {
                operation_ids: unbound,
            })
        }
    }
}
