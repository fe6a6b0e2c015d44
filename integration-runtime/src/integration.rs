//! The trait the engine drives, implemented by generated code.

use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::call::{CallOptions, Reply};
use crate::descriptor::IntegrationDescriptor;
use crate::error::{decode_error, invalid_params, invalid_request, ClientError, ValidationError};
use crate::http::HttpClient;
use crate::reply::{exchange, Exchange};
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

/// [`Integration::validate`] for one endpoint: reads `params` as its request
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
pub async fn start<R: DeserializeOwned + Serialize, T: DeserializeOwned + Serialize>(
    http: &HttpClient,
    endpoint: &'static Exchange,
    params: &serde_json::Value,
    options: &CallOptions,
) -> Result<Reply<serde_json::Value>, ClientError> {
    let name = endpoint.request.endpoint.name;
    let request: R = serde_json::from_value(params.clone()).map_err(|e| invalid_params(name, &e))?;
    let reply: Reply<T> = exchange(http, endpoint, Input::request(&request).with_options(options)).await?;
    Ok(reply.into_json())
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
