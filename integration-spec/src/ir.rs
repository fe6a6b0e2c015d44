//! The validated model of a spec, which code generation reads.
//!
//! Every name here has been checked: references resolve, paths parse, and the
//! cross-cutting rules of the `check` module hold. Spans point back into the
//! spec source so later stages (the derives) can still report precisely.

use std::ops::Range;

pub use crate::jsonpath::{JsonPath, Segment};

/// A byte range in the spec source.
pub type Span = Range<usize>;

/// A whole spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `[integration]`.
    pub integration: Integration,
    /// `[auth]`.
    pub auth: Auth,
    /// `[entities.*]`, in source order.
    pub entities: Vec<Entity>,
    /// `[endpoints.*]`, in source order.
    pub endpoints: Vec<Endpoint>,
    /// `[polling]`.
    pub polling: Option<Polling>,
    /// `[webhook]`.
    pub webhook: Option<Webhook>,
    /// `[policy]`, with defaults filled in.
    pub policy: Policy,
    /// The fingerprint of the spec's text ([`fingerprint`](crate::fingerprint)),
    /// recorded with every call created under it.
    pub fingerprint: String,
}

/// `[integration]`.
#[derive(Debug, Clone)]
pub struct Integration {
    /// PascalCase name.
    pub name: String,
    /// Where the name is written (empty when it is missing).
    pub name_span: Span,
    /// Free text for rustdoc.
    pub description: Option<String>,
    /// Where requests go.
    pub base_url: BaseUrl,
}

/// A URL (the base URL, an OAuth2 token URL), literal or from the environment.
#[derive(Debug, Clone)]
pub enum BaseUrl {
    /// A fixed URL.
    Literal(String),
    /// Read from `var`, falling back to `default`.
    Env {
        /// Variable name.
        var: String,
        /// Used when the variable is unset; without it the variable is required.
        default: Option<String>,
        /// Shown when the variable is missing.
        purpose: Option<String>,
    },
}

/// A secret read from the environment.
#[derive(Debug, Clone)]
pub struct SecretRef {
    /// Variable name.
    pub env: String,
    /// Shown when the variable is missing.
    pub purpose: String,
}

/// `[auth]`.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: SecretRef,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: SecretRef,
        /// Password.
        password: SecretRef,
    },
    /// A key in a header or query parameter.
    ApiKey {
        /// Where the key goes.
        location: ApiKeyLocation,
        /// Header or parameter name.
        name: String,
        /// The key.
        key: SecretRef,
    },
    /// OAuth2 client credentials grant.
    OAuth2ClientCredentials {
        /// Token endpoint URL, literal or from the environment.
        token_url: BaseUrl,
        /// Client id.
        client_id: SecretRef,
        /// Client secret.
        client_secret: SecretRef,
        /// Requested scopes.
        scopes: Vec<String>,
    },
    /// OAuth2 authorization code grant: each connection's user authorizes
    /// the integration through the runtime's connect flow; the integration
    /// has no token of its own.
    OAuth2AuthorizationCode {
        /// Where users are sent to authorize, literal or from the environment.
        authorization_url: BaseUrl,
        /// Token endpoint URL, literal or from the environment.
        token_url: BaseUrl,
        /// Client id.
        client_id: SecretRef,
        /// Client secret.
        client_secret: SecretRef,
        /// Requested scopes.
        scopes: Vec<String>,
    },
    /// OAuth2 refresh token grant.
    OAuth2RefreshToken {
        /// Token endpoint URL, literal or from the environment.
        token_url: BaseUrl,
        /// Client id.
        client_id: SecretRef,
        /// Client secret, for confidential clients.
        client_secret: Option<SecretRef>,
        /// The refresh token.
        refresh_token: SecretRef,
    },
}

/// Where an API key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyLocation {
    /// As a request header.
    Header,
    /// As a query parameter.
    Query,
}

/// `[entities.Name]`.
#[derive(Debug, Clone)]
pub struct Entity {
    /// PascalCase name.
    pub name: String,
    /// Where the entity's table starts.
    pub span: Span,
    /// Fields in source order.
    pub fields: Vec<Field>,
}

/// One field of an entity.
#[derive(Debug, Clone)]
pub struct Field {
    /// snake_case name (may be a Rust keyword; generated code uses a raw identifier).
    pub name: String,
    /// Where the field is declared.
    pub span: Span,
    /// Its type.
    pub ty: Type,
    /// Whether it may be absent (`Option<T>`).
    pub optional: bool,
    /// Value used when absent.
    pub default: Option<Constant>,
    /// Rustdoc.
    pub doc: Option<String>,
    /// Length limits (strings: characters; lists: items).
    pub len: Bounds<u64>,
    /// Numeric range for ints.
    pub int_range: Bounds<i64>,
    /// Numeric range for floats.
    pub float_range: Bounds<f64>,
    /// Kept after an error in its declaration (already reported), so that
    /// references to it do not cascade into more errors.
    pub(crate) recovered: bool,
}

/// Inclusive bounds; either side optional.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bounds<T> {
    /// Smallest allowed value.
    pub min: Option<T>,
    /// Largest allowed value.
    pub max: Option<T>,
}

impl<T> Bounds<T> {
    /// Whether any bound is set.
    pub fn is_set(&self) -> bool {
        self.min.is_some() || self.max.is_some()
    }
}

/// A field type.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// Boolean.
    Bool,
    /// RFC 3339 timestamp.
    Timestamp,
    /// UUID.
    Uuid,
    /// Any JSON value.
    Json,
    /// One of the listed strings.
    Enum(Vec<String>),
    /// A list of items.
    List(Box<Type>),
    /// Another entity, by name.
    Entity(String),
}

impl Type {
    /// The spec's name for the type, as written by users.
    pub fn spec_name(&self) -> String {
        match self {
            Type::String => "string".into(),
            Type::Int => "int".into(),
            Type::Float => "float".into(),
            Type::Bool => "bool".into(),
            Type::Timestamp => "timestamp".into(),
            Type::Uuid => "uuid".into(),
            Type::Json => "json".into(),
            Type::Enum(_) => "enum".into(),
            Type::List(item) => format!("list of {}", item.spec_name()),
            Type::Entity(name) => name.clone(),
        }
    }
}

/// A scalar constant from the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    /// A string.
    String(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Whether a call finishes with its first response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The response finishes the call.
    Sync,
    /// The call finishes later, by polling or webhook.
    Async,
}

/// Body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded`, nested as `a[b]=c`.
    Form,
}

/// `[endpoints.name]`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// snake_case name.
    pub name: String,
    /// Where the endpoint's table starts.
    pub span: Span,
    /// HTTP method.
    pub method: Method,
    /// The path template, split into parts.
    pub path: Vec<PathPart>,
    /// The path as written.
    pub path_text: String,
    /// Request entity; endpoints with one start calls.
    pub request: Option<String>,
    /// Sync or async.
    pub mode: Mode,
    /// Body encoding.
    pub encoding: Encoding,
    /// Query parameters.
    pub query: Vec<Mapping>,
    /// Request headers.
    pub headers: Vec<Mapping>,
    /// Body fields.
    pub body: Vec<Mapping>,
    /// How the external id is found.
    pub external_id: ExternalId,
    /// The provider's state.
    pub status: Option<StatusMap>,
    /// The typed result.
    pub result: Option<ResultSpec>,
    /// The provider's error message.
    pub error: Option<JsonPath>,
    /// Whether repeating the request is safe.
    pub idempotent: bool,
    /// Where the idempotency key goes.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Effective policy (integration policy with this endpoint's overrides).
    pub policy: Policy,
    /// Set for list endpoints (those with `paginate`): the items of each page
    /// and how the next page is asked for. List endpoints start no calls.
    pub list: Option<List>,
    /// `give_up_after_s`: the deadline of the calls this endpoint starts, in
    /// seconds from when they are due; overrides `[polling]` and `[webhook]`.
    pub give_up_after_s: Option<u64>,
    /// `cancel`: the endpoint that asks the provider to stop a call this
    /// endpoint started, and where the name is written.
    pub cancel: Option<(String, Span)>,
}

/// What a list endpoint returns and how it pages.
#[derive(Debug, Clone, PartialEq)]
pub struct List {
    /// Where the array of items is in each page, and their type.
    pub items: Items,
    /// How the next page is asked for.
    pub paginate: Pagination,
}

/// `items = { path, entity }`: the array of items on each page.
#[derive(Debug, Clone, PartialEq)]
pub struct Items {
    /// Where the array is in the response body (`$`: the body is the array).
    pub path: JsonPath,
    /// The entity each item is read as.
    pub entity: String,
}

/// `paginate = { style = ..., ... }`: how a list endpoint asks for the next page.
#[derive(Debug, Clone, PartialEq)]
pub enum Pagination {
    /// The response body holds the next page's cursor; it is sent as query parameter `param`.
    Cursor {
        /// Where the next cursor is in the body.
        cursor: JsonPath,
        /// The query parameter that carries it.
        param: String,
    },
    /// A response header holds the next page's cursor; it is sent as query parameter `param`.
    CursorHeader {
        /// The response header.
        header: String,
        /// The query parameter that carries it.
        param: String,
    },
    /// `param` counts the items skipped so far; `limit_param = limit` asks for page sizes.
    Offset {
        /// The offset query parameter.
        param: String,
        /// The page-size query parameter.
        limit_param: String,
        /// Items per page.
        limit: u64,
    },
    /// `param` numbers the pages from `start`; `size_param = size` asks for page sizes.
    Page {
        /// The page-number query parameter.
        param: String,
        /// The number of the first page.
        start: u64,
        /// The page-size query parameter.
        size_param: String,
        /// Items per page.
        size: u64,
    },
    /// RFC 8288 `Link: <url>; rel="next"` response headers.
    Link,
}

impl Pagination {
    /// The style's name as written in specs.
    pub fn style(&self) -> &'static str {
        match self {
            Pagination::Cursor { .. } => "cursor",
            Pagination::CursorHeader { .. } => "cursor_header",
            Pagination::Offset { .. } => "offset",
            Pagination::Page { .. } => "page",
            Pagination::Link => "link",
        }
    }

    /// The query parameters the paginator sets on each page request.
    pub fn query_params(&self) -> Vec<&str> {
        match self {
            Pagination::Cursor { param, .. } | Pagination::CursorHeader { param, .. } => vec![param],
            Pagination::Offset { param, limit_param, .. } => vec![param, limit_param],
            Pagination::Page { param, size_param, .. } => vec![param, size_param],
            Pagination::Link => vec![],
        }
    }
}

/// One part of a path template.
#[derive(Debug, Clone, PartialEq)]
pub enum PathPart {
    /// Literal text.
    Literal(String),
    /// A request field.
    Field(String),
    /// The call's external id.
    ExternalId,
}

/// One mapping entry: an external name and where its value comes from.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// External name; for bodies, the dotted path split at dots.
    pub target: Vec<String>,
    /// The value.
    pub value: MappingValue,
}

/// Where a mapped value comes from.
#[derive(Debug, Clone)]
pub enum MappingValue {
    /// A request field, with its type.
    Field(String),
    /// Text with fields interpolated.
    Template(Vec<TemplatePart>),
    /// A constant.
    Constant(Constant),
    /// An enum or bool field translated through a table.
    ValueMap {
        /// The field.
        field: String,
        /// Field value (as text) to constant.
        map: Vec<(String, Constant)>,
    },
    /// A field, or a constant when it is absent.
    WithDefault {
        /// The field.
        field: String,
        /// Used when absent.
        default: Constant,
    },
}

/// A piece of an interpolated string.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Literal text.
    Literal(String),
    /// A field's value as text.
    Field(String),
}

/// How the external id is found.
#[derive(Debug, Clone)]
pub enum ExternalId {
    /// Read from the response; a reply without it fails the call (unless it
    /// says the call failed).
    Path(JsonPath),
    /// Read from the response when there (`optional = true`, sync endpoints
    /// only); a UUID generated by the runtime when not.
    OptionalPath(JsonPath),
    /// A UUID generated by the runtime.
    Generated,
}

impl ExternalId {
    /// Where the id is read from, if it is read from the response.
    pub fn path(&self) -> Option<&JsonPath> {
        match self {
            ExternalId::Path(path) | ExternalId::OptionalPath(path) => Some(path),
            ExternalId::Generated => None,
        }
    }
}

/// Provider states and what they mean.
#[derive(Debug, Clone)]
pub struct StatusMap {
    /// Where the state is.
    pub path: JsonPath,
    /// External state to lifecycle state, in source order.
    pub map: Vec<(String, RemoteStatus)>,
}

/// A lifecycle state a provider state maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteStatus {
    /// Still working.
    Processing,
    /// Done.
    Completed,
    /// Failed.
    Failed,
    /// Cancelled: the call failed, and its failure kind is `cancelled`.
    Cancelled,
}

/// How a typed result is extracted.
#[derive(Debug, Clone)]
pub struct ResultSpec {
    /// Result entity.
    pub entity: String,
    /// Every field of the entity with its path (explicit, or root + name).
    pub fields: Vec<(String, JsonPath)>,
}

/// Where the idempotency key goes.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyKey {
    /// A header.
    Header(String),
    /// A body field (dotted path split at dots).
    Body(Vec<String>),
}

/// `[polling]`.
#[derive(Debug, Clone)]
pub struct Polling {
    /// Status-query endpoint.
    pub endpoint: String,
    /// First delay.
    pub interval_ms: u64,
    /// Growth factor.
    pub backoff: f64,
    /// Cap of the delay.
    pub max_interval_ms: u64,
    /// The deadline of polled calls, in seconds from when they are due.
    pub give_up_after_s: u64,
}

/// `[webhook]`.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Route path.
    pub path: String,
    /// Signature verification.
    pub verify: Verify,
    /// External id in the payload.
    pub external_id: JsonPath,
    /// Status in the payload.
    pub status: StatusMap,
    /// Result in the payload.
    pub result: Option<ResultSpec>,
    /// Error message in the payload.
    pub error: Option<JsonPath>,
    /// Largest accepted body.
    pub max_body_bytes: u64,
    /// The deadline of calls finished only by webhook, in seconds from when
    /// they are due; `None`: not written (the default applies).
    pub give_up_after_s: Option<u64>,
}

/// Webhook signature verification.
#[derive(Debug, Clone)]
pub struct Verify {
    /// The scheme.
    pub scheme: SignatureScheme,
    /// Signing secret(s).
    pub secret: SecretRef,
    /// Accepted clock difference for timestamps.
    pub tolerance_s: u64,
}

/// Webhook signature schemes.
#[derive(Debug, Clone, PartialEq)]
pub enum SignatureScheme {
    /// standardwebhooks.com.
    StandardWebhooks,
    /// `Stripe-Signature: t=...,v1=...`.
    Stripe,
    /// HMAC-SHA256 of the body in a header.
    HmacSha256 {
        /// Header name.
        header: String,
        /// Hex or base64.
        encoding: SignatureEncoding,
        /// Prefix before the digest, e.g. `sha256=`.
        prefix: String,
    },
}

/// Digest encoding of a generic HMAC header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Lower-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// `[policy]` (or an endpoint's effective policy).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Whole-request timeout.
    pub timeout_ms: u64,
    /// Connect timeout.
    pub connect_timeout_ms: u64,
    /// Retry policy.
    pub retry: Retry,
    /// Circuit breaker.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Most calls in flight.
    pub concurrency: Option<u32>,
    /// Largest response body read, in bytes.
    pub max_response_bytes: u64,
    /// Which redirects are followed.
    pub redirects: Redirects,
}

/// Which HTTP redirects a request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// None: a 3xx answer is the answer.
    None,
    /// Within the request's origin only (the default).
    SameOrigin,
    /// To any origin; off the request's origin without credentials, headers or body.
    AnyOrigin,
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff_ms: u64,
    /// Cap of the backoff.
    pub max_backoff_ms: u64,
    /// Growth factor.
    pub multiplier: f64,
    /// Retry on 5xx.
    pub on_server_errors: bool,
    /// Retry on 429.
    pub on_too_many_requests: bool,
    /// Retry on timeouts.
    pub on_timeouts: bool,
    /// Retry on connection errors.
    pub on_connect_errors: bool,
    /// Retry on transport faults after connecting (reset, truncated body).
    pub on_transport_errors: bool,
    /// Retry on answers larger than `max_response_bytes`.
    pub on_too_large: bool,
}

/// Circuit breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    /// Consecutive failures that open it.
    pub failure_threshold: u32,
    /// How long it stays open.
    pub open_for_ms: u64,
    /// Probe calls allowed while half-open.
    pub half_open_probes: u32,
    /// Whose failures it counts.
    pub scope: Scope,
}

/// Rate limit (GCRA).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Sustained rate.
    pub per_second: f64,
    /// Burst size.
    pub burst: u32,
    /// Whose budget it is.
    pub scope: Scope,
}

/// `scope`: who a rate limit or circuit breaker is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// One for the integration, shared by all its connections (the default).
    #[default]
    Integration,
    /// One per connection.
    Connection,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            retry: Retry::default(),
            circuit_breaker: None,
            rate_limit: None,
            concurrency: None,
            max_response_bytes: 10 * 1024 * 1024,
            redirects: Redirects::SameOrigin,
        }
    }
}

impl Default for Retry {
    fn default() -> Self {
        // One attempt unless the spec asks for retries: retrying is a
        // decision about the provider's semantics, not a default.
        Retry {
            max_attempts: 1,
            initial_backoff_ms: 200,
            max_backoff_ms: 20_000,
            multiplier: 2.0,
            on_server_errors: true,
            on_too_many_requests: true,
            on_timeouts: true,
            on_connect_errors: true,
            on_transport_errors: true,
            on_too_large: false,
        }
    }
}

impl Spec {
    /// The entity called `name`.
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// The endpoint called `name`.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// Endpoints that start calls: those with a request entity that are not
    /// list endpoints.
    pub fn call_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(|e| e.starts_calls())
    }
}

impl Endpoint {
    /// Whether the endpoint starts calls: it has a request entity and is not
    /// a list endpoint.
    pub fn starts_calls(&self) -> bool {
        self.request.is_some() && self.list.is_none()
    }
}

impl Entity {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

impl Field {
    /// Whether a value must always be given (not optional, no default).
    pub fn is_required(&self) -> bool {
        !self.optional && self.default.is_none()
    }
}

impl Spec {
    /// The entity a call of `endpoint` ends with: the endpoint's own result
    /// for sync calls; for async calls, the polling endpoint's result or the
    /// webhook's.
    pub fn response_entity<'a>(&'a self, endpoint: &'a Endpoint) -> Option<&'a str> {
        match endpoint.mode {
            Mode::Sync => endpoint.result.as_ref().map(|r| r.entity.as_str()),
            Mode::Async => self
                .polling
                .as_ref()
                .and_then(|p| self.endpoint(&p.endpoint))
                .and_then(|e| e.result.as_ref())
                .or_else(|| self.webhook.as_ref().and_then(|w| w.result.as_ref()))
                .map(|r| r.entity.as_str()),
        }
    }
}
