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

    /// Reads a verified webhook payload; `None` when the spec has no webhook.
    fn read_webhook(&self, payload: &serde_json::Value) -> Option<Result<Reply<serde_json::Value>, ClientError>>;

    /// The state of each circuit breaker of the integration's HTTP client,
    /// by name (`Integration` or `Integration.endpoint`), for health checks
    /// and metrics. Generated integrations report their client's breakers.
    fn circuit_states(&self) -> Vec<(String, crate::CircuitState)> {
        Vec::new()
    }

    /// The webhook signing secret(s) the integration was configured with
    /// (several comma-separated ones during a rotation); `None` when it has
    /// no webhook, or leaves the secret to the environment.
    fn webhook_secret(&self) -> Option<crate::Secret> {
        None
    }
}

// What generated `Integration` impls do per endpoint, written once.

/// [`CallGlue::validate`] for one endpoint: reads `params` as its request
/// entity `R` and checks the entity's constraints with `check` (its `validate`).
///
/// # Errors
///
/// An invalid request: field `params` when they do not deserialize, else
/// every violated constraint.
pub fn validate_params<R: DeserializeOwned>(
    endpoint: &str,
    params: &serde_json::Value,
    check: fn(&R) -> Result<(), ValidationError>,
) -> Result<(), ClientError> {
    let request: R = serde_json::from_value(params.clone()).map_err(|e| invalid_params(endpoint, &e))?;
    check(&request).map_err(|e| invalid_request(endpoint, e))
}

/// [`CallGlue::start`] for one endpoint: reads `params` as its request
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
pub fn start<'a, R: DeserializeOwned + Serialize + Send + Sync, T: DeserializeOwned + Serialize + Send>(
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
}

/// The static table behind a generated [`Integration`].
#[derive(Debug)]
pub struct Glue {
    /// See [`Integration::descriptor`].
    pub descriptor: &'static IntegrationDescriptor,
    /// The endpoints that start calls.
    pub calls: &'static [CallGlue],
    /// Asks the polling endpoint about an external id.
    pub poll: Option<for<'a> fn(&'a HttpClient, &'a str) -> BoxFuture<'a, JsonReply>>,
    /// Reads a verified webhook payload.
    pub webhook: Option<fn(&serde_json::Value) -> JsonReply>,
}

/// One endpoint that starts calls, in a [`Glue`] table.
#[derive(Debug)]
pub struct CallGlue {
    /// The endpoint's name in the spec.
    pub name: &'static str,
    /// See [`Integration::validate`]; typically [`validate_params`].
    pub validate: fn(&serde_json::Value) -> Result<(), ClientError>,
    /// See [`Integration::start`]; typically [`start`].
    pub start: for<'a> fn(&'a HttpClient, &'a serde_json::Value, &'a CallOptions) -> BoxFuture<'a, JsonReply>,
}

impl Glue {
    fn call(&self, endpoint: &str) -> Result<&CallGlue, ClientError> {
        self.calls
            .iter()
            .find(|call| call.name == endpoint)
            .ok_or_else(|| crate::error::unknown_endpoint(self.descriptor.name, endpoint))
    }
}

impl<G: Generated> Integration for G {
    fn descriptor(&self) -> &'static IntegrationDescriptor {
        G::GLUE.descriptor
    }

    fn validate(&self, endpoint: &str, params: &serde_json::Value) -> Result<(), ClientError> {
        (G::GLUE.call(endpoint)?.validate)(params)
    }

    fn start<'a>(
        &'a self,
        endpoint: &'a str,
        params: &'a serde_json::Value,
        options: &'a CallOptions,
    ) -> BoxFuture<'a, JsonReply> {
        match G::GLUE.call(endpoint) {
            Ok(call) => (call.start)(self.http(), params, options),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn poll<'a>(&'a self, external_id: &'a str) -> Option<BoxFuture<'a, JsonReply>> {
        G::GLUE.poll.map(|poll| poll(self.http(), external_id))
    }

    fn read_webhook(&self, payload: &serde_json::Value) -> Option<JsonReply> {
        G::GLUE.webhook.map(|read| read(payload))
    }

    fn circuit_states(&self) -> Vec<(String, crate::CircuitState)> {
        self.http().circuit_states()
    }

    fn webhook_secret(&self) -> Option<crate::Secret> {
        Generated::webhook_secret(self)
    }
}

/// [`Glue::poll`] for the polling endpoint, whose result is a `T`.
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

/// [`Glue::webhook`] for the webhook reply `spec`, whose result is a `T`.
///
/// # Errors
///
/// Whatever [`read_reply`] fails with.
pub fn read_webhook<T: DeserializeOwned + Serialize>(spec: &ReplySpec, payload: &serde_json::Value) -> JsonReply {
    read_reply::<T>(spec, 200, payload).map(Reply::into_json)
}
