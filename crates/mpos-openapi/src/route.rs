//! The route table: `const` data a service declares once, builds its router from and
//! documents.

/// An HTTP method a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`: reads; never has a request body.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`: never has a request body.
    Delete,
    /// `PATCH`.
    Patch,
}

impl Method {
    /// The upper-case method name, as on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
        }
    }

    /// The lower-case name OpenAPI uses as the operation key of a path item.
    pub const fn openapi_key(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::Patch => "patch",
        }
    }

    /// Whether a request of this method may carry a body.
    pub const fn allows_body(self) -> bool {
        !matches!(self, Self::Get | Self::Delete)
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Anyone: no credentials.
    None,
    /// The platform operator's bearer token.
    Operator,
    /// A tenant API key (bearer token) with at least the named role, e.g. `"operator"`.
    TenantKey(&'static str),
    /// The platform operator's bearer token, or a tenant API key with at least the named
    /// role.
    OperatorOrTenantKey(&'static str),
    /// A device authenticated by its mutual-TLS client certificate.
    DeviceMtls,
}

impl Auth {
    /// Whether the route needs any credentials.
    pub const fn is_authenticated(self) -> bool {
        !matches!(self, Self::None)
    }
}

/// A query-string parameter of a route (a string value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueryParam {
    /// The parameter name as in the query string.
    pub name: &'static str,
    /// What it does, in Markdown.
    pub description: &'static str,
    /// Whether the request is rejected without it.
    pub required: bool,
}

/// One HTTP route of a service: what the router binds a handler to and what the OpenAPI
/// document describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path in axum 0.8 syntax, parameters in braces: `/v1/tenants/{tenant_id}`.
    pub path: &'static str,
    /// The unique, stable operation name, e.g. `createTenant`.
    pub operation_id: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Longer explanation in Markdown; may be empty.
    pub description: &'static str,
    /// The group the operation is listed under, e.g. `tenants`.
    pub tag: &'static str,
    /// The full protobuf name of the JSON request body, e.g.
    /// `mpos.terminal_management.v1.CreateTenantRequest`; `None` without a body.
    pub request: Option<&'static str>,
    /// The full protobuf name of the JSON body of the success response; `None` without one.
    pub response: Option<&'static str>,
    /// The status of a success, e.g. 200, 201 or 204.
    pub success_status: u16,
    /// Who may call it.
    pub auth: Auth,
    /// The query-string parameters.
    pub query: &'static [QueryParam],
    /// The error statuses the operation answers with besides the implied ones (400 with a
    /// body or query parameters, 401 with authentication, 500 always). Each must be the
    /// status of an [`mpos_errors::ErrorCode`].
    pub errors: &'static [u16],
}

impl Route {
    /// The path parameter names in order of appearance (`{*rest}` gives `rest`).
    pub fn path_params(&self) -> impl Iterator<Item = &'static str> {
        let path: &'static str = self.path;
        path.split('/').filter_map(|segment| {
            segment
                .strip_prefix('{')
                .and_then(|inner| inner.strip_suffix('}'))
                .map(|name| name.strip_prefix('*').unwrap_or(name))
        })
    }

    /// The path as an OpenAPI path template (`{*rest}` becomes `{rest}`).
    pub fn openapi_path(&self) -> String {
        self.path.replace("{*", "{")
    }

    /// A concrete path of the route, every parameter replaced by `example` (for tests that
    /// call each documented route).
    pub fn example_path(&self, example: &str) -> String {
        self.path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    example
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The document-level facts of an API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ApiInfo {
    /// The API title, e.g. `mPOS terminal management admin API`.
    pub title: &'static str,
    /// The API version, usually the service's `CARGO_PKG_VERSION`.
    pub version: &'static str,
    /// What the API is for, in Markdown; may be empty.
    pub description: &'static str,
}

/// A body that is not the protobuf JSON of a message: raw text, a file, or a message's
/// binary encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawBody {
    /// Its media type, e.g. `text/csv` or `application/x-protobuf`.
    pub content_type: &'static str,
    /// What it holds, in Markdown; may be empty.
    pub description: &'static str,
}

/// The media types of a route beyond the protobuf JSON bodies its [`Route`] names, kept in a
/// table beside the route table (so that `Route` literals stay as they are) and given to
/// [`openapi_with_media`](crate::openapi_with_media).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteMedia {
    /// The operation id of the route this completes.
    pub operation_id: &'static str,
    /// The request bodies the route takes instead of a protobuf JSON message (its
    /// `request` must be `None`), e.g. a `text/csv` file. Their schema is a string for
    /// `text/*`, any JSON for `*json`, and binary otherwise.
    pub raw_request: &'static [RawBody],
    /// Media types the success response may also have, besides the JSON of the route's
    /// `response` message, chosen by the `Accept` header. `application/x-protobuf` is the
    /// message's binary protobuf encoding.
    pub response_alternatives: &'static [RawBody],
}
