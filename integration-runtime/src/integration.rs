//! The trait the engine drives, implemented by generated code.

use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::call::{CallOptions, Reply};
use crate::descriptor::IntegrationDescriptor;
use crate::error::{decode_error, invalid_params, invalid_request, ClientError, ValidationError};
use crate::http::HttpClient;
use crate::reply::{exchange, read_reply, Exchange, ReplySpec};
use crate::request::Input;

/// A boxed, sendable future, as returned by [`Integration`]'s methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The glue the engine drives. Dyn-compatible: one runtime holds many.
///
/// `integration!` implements it for the generated integration value; parameters
/// and results cross it as JSON so that the engine need not know their types.
pub trait Integration: Send + Sync + 'static {
    /// The static description of the integration (endpoints, policies, polling, webhook).
    fn descriptor(&self) -> &'static IntegrationDescriptor;

    /// Deserializes `params` into the endpoint's request entity and checks its constraints.
    fn validate(&self, endpoint: &str, params: &serde_json::Value) -> Result<(), ClientError>;

    /// Sends the starting request of `endpoint` (an endpoint with `request`).
    ///
    /// The runtime calls [`validate`](Integration::validate) when it creates a
    /// call, and `start` for each attempt after that; generated impls do not
    /// check the constraints a second time.
    fn start<'a>(
        &'a self,
        endpoint: &'a str,
        params: &'a serde_json::Value,
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<Reply<serde_json::Value>, ClientError>>;

    /// Asks the polling endpoint about `external_id`; `None` when the spec has no polling.
    fn poll<'a>(&'a self, external_id: &'a str)
        -> Option<BoxFuture<'a, Result<Reply<serde_json::Value>, ClientError>>>;

    /// Asks the provider to stop the call of `endpoint` it knows as
    /// `external_id`, through the cancel endpoint the spec ties to
    /// `endpoint` (its `cancel` key); `None` when it has none. The default
    /// has none.
    fn cancel<'a>(
        &'a self,
        endpoint: &'a str,
        external_id: &'a str,
    ) -> Option<BoxFuture<'a, Result<Reply<serde_json::Value>, ClientError>>> {
        let _ = (endpoint, external_id);
        None
    }

    /// Reads a verified webhook payload; `None` when the spec has no webhook.
    fn read_webhook(&self, payload: &serde_json::Value) -> Option<Result<Reply<serde_json::Value>, ClientError>>;

    /// The state of each circuit breaker of the integration's HTTP client,
    /// by name (`Integration` or `Integration.endpoint`), for health checks
    /// and metrics. Generated integrations report their client's breakers.
    fn circuit_states(&self) -> Vec<(String, crate::CircuitState)> {
        Vec::new()
    }

    /// Shares the rate limits and circuit breakers of the integration's HTTP
    /// client with every process using `store` (see
    /// [`RuntimeBuilder::shared_protection`](crate::engine::RuntimeBuilder::shared_protection)).
    /// Returns whether they are shared now: generated integrations share
    /// their client's; an integration without such a client cannot, and the
    /// default says so (`false`), so the runtime refuses to build rather than
    /// limit per process when sharing was asked for.
    fn share_protection(&self, store: &std::sync::Arc<dyn crate::Store>) -> bool {
        let _ = store;
        false
    }

    /// This integration sending for one connection: its credentials, base
    /// URL and rate budget in place of the integration's, its own limits
    /// where the spec scopes them per connection, its tokens in the store.
    /// `None` when the integration cannot (the default: an integration
    /// without the runtime's HTTP client); generated integrations can.
    ///
    /// # Errors
    ///
    /// The connection's settings do not fit the integration (a credential
    /// its auth kind needs is missing, a bad base URL).
    fn connect(
        &self,
        context: crate::connection::ConnectionContext,
    ) -> Option<Result<std::sync::Arc<dyn Integration>, crate::ConfigError>> {
        let _ = context;
        None
    }

    /// Keeps the OAuth2 tokens of the integration's default connection in
    /// the store from now on, so every process shares them and a rotated
    /// refresh token survives a restart. Returns whether it does: generated
    /// integrations with OAuth2 auth do; the default does not.
    fn keep_tokens(&self, tokens: crate::connection::SharedTokens) -> bool {
        let _ = tokens;
        false
    }

    /// The runtime's HTTP client the integration sends with, if it has one
    /// (generated integrations do): the connect flow asks its OAuth2
    /// endpoints through it.
    #[doc(hidden)]
    fn http_client(&self) -> Option<&HttpClient> {
        None
    }

    /// The webhook signing secret(s) the integration was configured with
    /// (several comma-separated ones during a rotation); `None` when it has
    /// no webhook, or leaves the secret to the environment.
    fn webhook_secret(&self) -> Option<crate::Secret> {
        None
    }
}

// What generated `Integration` impls do per endpoint, written once.

/// A generated request entity: `__private::impl_entity!` implements it by
/// the entity's own `validate`.
pub trait Entity: DeserializeOwned + Serialize + Send + Sync + 'static {
    /// Checks every constraint the spec declares.
    ///
    /// # Errors
    ///
    /// Every violated constraint.
    fn check(&self) -> Result<(), ValidationError>;
}

/// [`Integration::validate`] for one endpoint: reads `params` as its request
/// entity `R` and checks the entity's constraints.
///
/// # Errors
///
/// An invalid request: field `params` when they do not deserialize, else
/// every violated constraint.
pub fn validate_params<R: Entity>(endpoint: &str, params: &serde_json::Value) -> Result<(), ClientError> {
    let request: R = serde_json::from_value(params.clone()).map_err(|e| invalid_params(endpoint, &e))?;
    request.check().map_err(|e| invalid_request(endpoint, e))
}

/// A client method of an endpoint with a request entity: checks the
/// entity's constraints, then sends it with [`exchange`].
///
/// # Errors
///
/// An invalid request (every violated constraint, nothing sent), and
/// whatever [`exchange`] fails with.
pub async fn send<R: Entity, T: DeserializeOwned>(
    http: &HttpClient,
    endpoint: &'static Exchange,
    request: &R,
    options: &CallOptions,
) -> Result<Reply<T>, ClientError> {
    request
        .check()
        .map_err(|e| invalid_request(endpoint.request.endpoint.name, e))?;
    exchange(http, endpoint, Input::request(request).with_options(options)).await
}

/// [`Integration::start`] for one endpoint: reads `params` as its request
/// entity `R`, sends it and reads the answer's result as `T`.
///
/// The constraints are not checked again: the runtime checked them with
/// [`Integration::validate`] when the call was created, and a call that was
/// valid then is sent as it was stored.
///
/// # Errors
///
/// An invalid request (field `params`) when they do not deserialize, and
/// whatever [`exchange`] fails with.
pub fn start<'a, R: Entity, T: DeserializeOwned + Serialize + Send>(
    http: &'a HttpClient,
    endpoint: &'static Exchange,
    params: &'a serde_json::Value,
    options: &'a CallOptions,
) -> BoxFuture<'a, JsonReply> {
    Box::pin(async move {
        let name = endpoint.request.endpoint.name;
        let request: R = serde_json::from_value(params.clone()).map_err(|e| invalid_params(name, &e))?;
        let reply: Reply<T> = exchange(http, endpoint, Input::request(&request).with_options(options)).await?;
        Ok(reply.into_json())
    })
}

/// Reads stored JSON (`what`: request parameters or response data) of a call
/// of `endpoint` as `T`, for generated `CallRequest` and `CallResponse` impls.
///
/// # Errors
///
/// A decode error saying that the stored data do not fit the spec.
pub fn read_stored<T: DeserializeOwned>(
    endpoint: &str,
    value: &serde_json::Value,
    what: &str,
) -> Result<T, ClientError> {
    serde_json::from_value(value.clone())
        .map_err(|e| decode_error(endpoint, format!("{what} do not fit the spec: {e}")))
}

/// The answer of a sent request or a read webhook, with its result as JSON.
type JsonReply = Result<Reply<serde_json::Value>, ClientError>;

/// An integration described by a static [`Glue`] table: `integration!`
/// implements this small trait instead of [`Integration`], whose methods the
/// blanket impl below answers from the table, so the generated code is data.
pub trait Generated: Send + Sync + 'static {
    /// What the engine needs to know about the integration's endpoints.
    const GLUE: &'static Glue;

    /// The client every request is sent with.
    fn http(&self) -> &HttpClient;

    /// See [`Integration::webhook_secret`].
    fn webhook_secret(&self) -> Option<crate::Secret> {
        None
    }

    /// The integration sending with `http` (a connection's client): see
    /// [`Integration::connect`]. Not for generated code to override.
    fn with_client(http: HttpClient) -> std::sync::Arc<dyn Integration>
    where
        Self: Sized,
    {
        std::sync::Arc::new(Connected::<Self> {
            http,
            generated: std::marker::PhantomData,
        })
    }
}

/// The static table behind a generated [`Integration`].
#[derive(Debug)]
pub struct Glue {
    /// See [`Integration::descriptor`].
    pub descriptor: &'static IntegrationDescriptor,
    /// The endpoints that start calls.
    pub calls: &'static [CallGlue],
    /// The polling endpoint.
    pub poll: Option<PollGlue>,
    /// How a verified webhook payload is read.
    pub webhook: Option<WebhookGlue>,
}

/// One endpoint that starts calls, in a [`Glue`] table.
#[derive(Debug)]
pub struct CallGlue {
    exchange: &'static Exchange,
    validate: fn(&str, &serde_json::Value) -> Result<(), ClientError>,
    start: for<'a> fn(
        &'a HttpClient,
        &'static Exchange,
        &'a serde_json::Value,
        &'a CallOptions,
    ) -> BoxFuture<'a, JsonReply>,
    /// The endpoint that cancels the calls this one starts (spec: `cancel`).
    cancel: Option<PollGlue>,
}

impl CallGlue {
    /// The endpoint `exchange`, whose request entity is `R` and result `T`.
    pub const fn new<R: Entity, T: DeserializeOwned + Serialize + Send>(exchange: &'static Exchange) -> Self {
        CallGlue {
            exchange,
            validate: validate_params::<R>,
            start: start::<R, T>,
            cancel: None,
        }
    }

    /// The same endpoint, whose calls `cancel` asks the provider to stop.
    #[must_use]
    pub const fn cancelled_by(mut self, cancel: PollGlue) -> Self {
        self.cancel = Some(cancel);
        self
    }

    fn name(&self) -> &'static str {
        self.exchange.request.endpoint.name
    }
}

/// An endpoint addressed by a call's external id, in a [`Glue`] table: the
/// polling endpoint, or a cancel endpoint.
#[derive(Debug)]
pub struct PollGlue {
    exchange: &'static Exchange,
    poll: for<'a> fn(&'a HttpClient, &'static Exchange, &'a str) -> BoxFuture<'a, JsonReply>,
}

impl PollGlue {
    /// The endpoint `exchange`, whose result is a `T`.
    pub const fn new<T: DeserializeOwned + Serialize + Send>(exchange: &'static Exchange) -> Self {
        PollGlue {
            exchange,
            poll: poll::<T>,
        }
    }
}

/// How a webhook payload is read, in a [`Glue`] table.
#[derive(Debug)]
pub struct WebhookGlue {
    reply: &'static ReplySpec,
    read: fn(&ReplySpec, &serde_json::Value) -> JsonReply,
}

impl WebhookGlue {
    /// Payloads read by `reply`, whose result is a `T`.
    pub const fn new<T: DeserializeOwned + Serialize>(reply: &'static ReplySpec) -> Self {
        WebhookGlue {
            reply,
            read: read_webhook::<T>,
        }
    }
}

impl Glue {
    fn call(&self, endpoint: &str) -> Result<&CallGlue, ClientError> {
        self.calls
            .iter()
            .find(|call| call.name() == endpoint)
            .ok_or_else(|| crate::error::unknown_endpoint(self.descriptor.name, endpoint))
    }
}

impl<G: Generated> Integration for G {
    fn descriptor(&self) -> &'static IntegrationDescriptor {
        G::GLUE.descriptor
    }

    fn validate(&self, endpoint: &str, params: &serde_json::Value) -> Result<(), ClientError> {
        let call = G::GLUE.call(endpoint)?;
        (call.validate)(call.name(), params)
    }

    fn start<'a>(
        &'a self,
        endpoint: &'a str,
        params: &'a serde_json::Value,
        options: &'a CallOptions,
    ) -> BoxFuture<'a, JsonReply> {
        match G::GLUE.call(endpoint) {
            Ok(call) => (call.start)(self.http(), call.exchange, params, options),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn poll<'a>(&'a self, external_id: &'a str) -> Option<BoxFuture<'a, JsonReply>> {
        G::GLUE
            .poll
            .as_ref()
            .map(|glue| (glue.poll)(self.http(), glue.exchange, external_id))
    }

    fn cancel<'a>(&'a self, endpoint: &'a str, external_id: &'a str) -> Option<BoxFuture<'a, JsonReply>> {
        let glue = G::GLUE.call(endpoint).ok()?.cancel.as_ref()?;
        Some((glue.poll)(self.http(), glue.exchange, external_id))
    }

    fn read_webhook(&self, payload: &serde_json::Value) -> Option<JsonReply> {
        G::GLUE.webhook.as_ref().map(|glue| (glue.read)(glue.reply, payload))
    }

    fn circuit_states(&self) -> Vec<(String, crate::CircuitState)> {
        self.http().circuit_states()
    }

    fn share_protection(&self, store: &std::sync::Arc<dyn crate::Store>) -> bool {
        self.http().share_protection(std::sync::Arc::clone(store))
    }

    fn webhook_secret(&self) -> Option<crate::Secret> {
        Generated::webhook_secret(self)
    }

    fn connect(
        &self,
        context: crate::connection::ConnectionContext,
    ) -> Option<Result<std::sync::Arc<dyn Integration>, crate::ConfigError>> {
        Some(self.http().for_connection(context).map(G::with_client))
    }

    fn keep_tokens(&self, tokens: crate::connection::SharedTokens) -> bool {
        self.http().is_oauth2() && self.http().keep_tokens(tokens)
    }

    fn http_client(&self) -> Option<&HttpClient> {
        Some(self.http())
    }
}

/// A generated integration sending for one connection: the same glue,
/// the connection's client.
struct Connected<G> {
    http: HttpClient,
    generated: std::marker::PhantomData<fn() -> G>,
}

impl<G: Generated> Generated for Connected<G> {
    const GLUE: &'static Glue = G::GLUE;

    fn http(&self) -> &HttpClient {
        &self.http
    }

    // A connection of a connection is one of the integration: the type
    // stays `Connected<G>` (and does not nest without end).
    fn with_client(http: HttpClient) -> std::sync::Arc<dyn Integration> {
        G::with_client(http)
    }
}

/// [`Integration::poll`] for the polling endpoint, whose result is a `T`.
pub fn poll<'a, T: DeserializeOwned + Serialize + Send>(
    http: &'a HttpClient,
    endpoint: &'static Exchange,
    external_id: &'a str,
) -> BoxFuture<'a, JsonReply> {
    Box::pin(async move {
        let reply: Reply<T> = exchange(http, endpoint, Input::external_id(external_id)).await?;
        Ok(reply.into_json())
    })
}

/// [`Integration::read_webhook`] for the webhook reply `spec`, whose result is a `T`.
///
/// # Errors
///
/// Whatever [`read_reply`] fails with.
pub fn read_webhook<T: DeserializeOwned + Serialize>(spec: &ReplySpec, payload: &serde_json::Value) -> JsonReply {
    read_reply::<T>(spec, 200, payload).map(Reply::into_json)
}
