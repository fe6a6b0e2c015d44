//! Serving the runtime over HTTP: webhooks, health, metrics and the
//! operations API on one router, next to the workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use super::connections::ServeOptions;
use super::error::EngineError;
use super::runtime::Runtime;
use crate::integration::Integration;
use crate::ops::{CircuitReport, CircuitSource, Health, OpsApi};
use crate::secret::Secret;
use crate::webhook::WebhookReceiver;

/// The environment variable holding the operations API's bearer token; the
/// API is not served unless it is set.
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub const OPS_TOKEN_ENV: &str = "INTEGRATION_OPS_TOKEN";

/// How long in-flight calls, then in-flight requests, may finish after
/// Ctrl-C in [`Runtime::serve`].
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Every circuit breaker of the runtime's integrations.
struct Circuits(Vec<Arc<dyn Integration>>);

impl CircuitSource for Circuits {
    fn circuits(&self) -> Vec<CircuitReport> {
        self.0
            .iter()
            .flat_map(|integration| integration.circuit_states())
            .map(|(name, state)| CircuitReport { name, state })
            .collect()
    }
}

impl Runtime {
    /// One router with everything the runtime answers over HTTP:
    ///
    /// - `POST <webhook path>` for every integration with a `[webhook]`
    ///   (secrets from the integration's configuration, else its environment
    ///   variable);
    /// - `GET /health` (store and circuit breakers) and `GET /metrics`
    ///   (Prometheus text);
    /// - the operations API under `/ops`, when `ops_token` is given (see
    ///   [`OpsApi`]); without a token it is not mounted.
    ///
    /// Mount it into your own axum application, or let [`Runtime::serve`]
    /// serve it. Your own server must then bound slow and idle clients
    /// itself, as [`ServeOptions`] does for `serve` (a header-read timeout,
    /// an idle timeout, a connection cap): `axum::serve` has none of them.
    /// Webhook bodies are bounded by the router (`max_body_bytes`).
    #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
    pub fn router(&self, ops_token: Option<Secret>) -> Result<Router, EngineError> {
        let store = Arc::clone(self.store());
        let integrations: Vec<Arc<dyn Integration>> = self.integrations().cloned().collect();
        let circuits: Arc<dyn CircuitSource> = Arc::new(Circuits(integrations.clone()));
        let webhooks = self
            .webhook_receiver()
            .integrations(integrations.iter().cloned())
            .map_err(|e| EngineError::config(e.to_string()))?
            .router();
        let health = Health::new(Arc::clone(&store)).circuits(Arc::clone(&circuits)).router();
        let mut exporter = self.metrics().exporter(Arc::clone(&store)).circuits(circuits);
        for integration in &integrations {
            exporter = exporter.integration(&**integration);
        }
        let mut router = webhooks
            .merge(health)
            .merge(exporter.router())
            .merge(self.connect_router());
        let mut ops = OpsApi::with_sink(self.inner.events.clone())
            .connections(
                Arc::clone(&self.inner.connections),
                self.inner.settings.worker_id.clone(),
            )
            .token(ops_token);
        if ops.is_enabled() {
            for integration in integrations {
                ops = ops.integration(integration);
            }
            router = router.nest("/ops", ops.router());
        }
        Ok(router)
    }

    /// A webhook receiver (no routes yet) that records through this
    /// runtime: deliveries reach [`Runtime::subscribe`], the finished
    /// counter of [`Runtime::metrics`] and the completion hooks exactly as a
    /// worker's news does. Mount its router in your own application, next
    /// to your routes; [`Runtime::router`] uses one with every integration.
    ///
    /// ```no_run
    /// # fn demo(rt: integration_runtime::Runtime, tts: std::sync::Arc<dyn integration_runtime::Integration>) -> Result<(), Box<dyn std::error::Error>> {
    /// let webhooks = rt.webhook_receiver().integration(tts)?.router();
    /// let app = axum::Router::new().merge(webhooks);
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
    pub fn webhook_receiver(&self) -> WebhookReceiver {
        WebhookReceiver::with_sink(self.inner.events.clone())
    }

    /// Runs the workers and serves [`Runtime::router`] on `address` until
    /// Ctrl-C (or [`Runtime::shutdown`]); then stops claiming calls and
    /// lets in-flight calls finish for a few seconds, then stops accepting
    /// connections and lets in-flight requests finish for a few seconds
    /// more, and returns. The operations API is served when
    /// `INTEGRATION_OPS_TOKEN` is set. Connections are limited by the
    /// [`ServeOptions`] defaults; see [`Runtime::serve_with`].
    ///
    /// ```no_run
    /// # async fn demo(rt: integration_runtime::Runtime) -> Result<(), integration_runtime::EngineError> {
    /// rt.serve("127.0.0.1:8080").await
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
    pub async fn serve(&self, address: &str) -> Result<(), EngineError> {
        let address: SocketAddr = address
            .parse()
            .map_err(|e| EngineError::config(format!("`{address}` is not a socket address: {e}")))?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| EngineError::config(format!("cannot listen on {address}: {e}")))?;
        self.serve_with(listener, ServeOptions::default()).await
    }

    /// [`Runtime::serve`] on a listener you bound (say to port 0), with
    /// your connection limits.
    ///
    /// ```no_run
    /// # async fn demo(rt: integration_runtime::Runtime) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use integration_runtime::ServeOptions;
    ///
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// println!("serving on {}", listener.local_addr()?);
    /// let options = ServeOptions::new().header_read_timeout(Duration::from_secs(5));
    /// rt.serve_with(listener, options).await?;
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
    pub async fn serve_with(&self, listener: TcpListener, options: ServeOptions) -> Result<(), EngineError> {
        let token = std::env::var(OPS_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        let router = self.router(token)?;
        let server_rt = self.clone();
        let stopped = async move {
            let mut stopped = server_rt.inner.stopped.subscribe();
            // `run` has started by now or starts at once; wait for its end.
            let _ = stopped.wait_for(|stopped| !*stopped).await;
            let _ = stopped.wait_for(|stopped| *stopped).await;
        };
        let server = tokio::spawn(super::connections::serve(
            listener,
            router,
            options,
            stopped,
            SHUTDOWN_GRACE,
        ));
        let ctrl_c = async {
            // Without a signal handler (rare), only `shutdown` stops the runtime.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let result = self.run_until(ctrl_c, SHUTDOWN_GRACE).await;
        let _ = server.await;
        result
    }
}
