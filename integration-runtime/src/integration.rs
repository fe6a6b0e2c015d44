//! The trait the engine drives, implemented by generated code.

use std::future::Future;
use std::pin::Pin;

use crate::call::{CallOptions, Reply};
use crate::descriptor::IntegrationDescriptor;
use crate::error::ClientError;

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
