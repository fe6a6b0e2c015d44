//! The policies of one connection's client: one integration, many
//! customers, each with credentials (and maybe a rate budget) of its own.
//!
//! Whose instance an attempt of a connection uses follows the spec's
//! `scope` of each setting:
//!
//! - **`Integration`** (the default): the integration's instance, the very
//!   one its own client and every other connection use. The provider's
//!   capacity and its outages are everyone's.
//! - **`Connection`**: an instance of the connection's own, so that one
//!   customer's exhausted quota or failing credentials hold back no other.
//! - **Concurrency limits** are always the integration's.
//!
//! A connection's **rate budget** (given when the connection was stored)
//! is one limiter for all of the connection's requests, whatever their
//! endpoint. It replaces every rate limit the spec scopes per connection,
//! and applies as well to endpoints whose rate limit the spec scopes per
//! integration (or that have none): those also wait for the integration's
//! limit, on top. A budget whose rate is not a positive number limits
//! nothing (as such a rate in the spec).
//!
//! Shared through a store (when the integration's policies are, see
//! [`shared`](super::shared)), a connection's own instances are named
//! `Integration@connection` and `Integration.endpoint@connection`, so every
//! process agrees on each connection's; the integration's keep their names.

use std::sync::{Arc, OnceLock};

use super::{Key, Policies, Registry};
use crate::descriptor::{PolicyDescriptor, PolicyScope, RateLimitPolicy};

/// What a connection's policies derive from.
#[derive(Debug)]
pub(super) struct ConnectionScope {
    /// The integration's policies.
    pub(super) parent: Arc<Policies>,
    /// The connection, as named in the shared instances' names.
    pub(super) name: String,
    /// The connection's own rate budget.
    pub(super) budget: Option<RateLimitPolicy>,
}

/// An integration's rate limit of an attempt: the policies that own it, and its key there.
type IntegrationLimit<'a> = (&'a Policies, Key<RateLimitPolicy>);

impl Policies {
    /// The policies of the client of `connection` of the integration whose
    /// policies are `integration`, with the connection's rate `budget`
    /// (see the [module](self) for the rule). Given a connection's
    /// policies, the result is `connection`'s of the same integration.
    pub(crate) fn for_connection(
        integration: &Arc<Policies>,
        connection: &str,
        budget: Option<RateLimitPolicy>,
    ) -> Policies {
        let parent = match &integration.connection {
            Some(scope) => Arc::clone(&scope.parent),
            None => Arc::clone(integration),
        };
        let policies = Policies {
            integration: parent.integration,
            connection: Some(ConnectionScope {
                parent,
                name: connection.to_owned(),
                budget,
            }),
            breakers: Registry::new(),
            limiters: Registry::new(),
            // Unused: concurrency limits are the parent's.
            bulkheads: Registry::new(),
            shared: OnceLock::new(),
        };
        // As the integration's: the connection's own breaker exists from
        // the start, for health checks.
        let own_breaker = policies.integration.and_then(|p| p.circuit_breaker);
        if let Some(setting) = own_breaker.filter(|setting| setting.scope == PolicyScope::Connection) {
            policies.breakers.get(Key::Shared(setting), super::CircuitBreaker::new);
        }
        policies
    }

    /// The integration's policies when a setting of `scope` is theirs
    /// rather than this client's own: a connection's integration-scoped ones.
    pub(super) fn integration_owned(&self, scope: PolicyScope) -> Option<&Policies> {
        let parent = &self.connection.as_ref()?.parent;
        (scope == PolicyScope::Integration).then_some(&**parent)
    }

    /// The rate limits an attempt at `endpoint` waits for: the key of this
    /// client's own limiter, and the integration's limiter (a connection's
    /// client only).
    pub(super) fn rate_limits(
        &self,
        endpoint: &'static str,
        policy: &PolicyDescriptor,
    ) -> (Option<Key<RateLimitPolicy>>, Option<IntegrationLimit<'_>>) {
        let spec = policy.rate_limit;
        let Some(scope) = &self.connection else {
            return (spec.map(|setting| self.rate_key(endpoint, setting)), None);
        };
        let own = match scope.budget {
            // One limiter for every endpoint of the connection.
            Some(budget) => Some(Key::Shared(budget)),
            None => spec
                .filter(|setting| setting.scope == PolicyScope::Connection)
                .map(|setting| self.rate_key(endpoint, setting)),
        };
        let integration = spec.and_then(|setting| {
            let parent = self.integration_owned(setting.scope)?;
            Some((parent, parent.rate_key(endpoint, setting)))
        });
        (own, integration)
    }
}
