//! Connections' policies: what is each connection's own, what is the
//! integration's, the rate budget, and the shared names.

use std::sync::Arc;
use std::time::Duration;

use super::{CircuitState, Outcome, Policies, Refusal};
use crate::descriptor::{CircuitBreakerPolicy, PolicyDescriptor, PolicyScope, RateLimitPolicy};
use crate::store::Store;

const fn rate(per_second: f64, burst: u32, scope: PolicyScope) -> RateLimitPolicy {
    RateLimitPolicy {
        per_second,
        burst,
        scope,
    }
}

const fn breaker(failure_threshold: u32, scope: PolicyScope) -> CircuitBreakerPolicy {
    CircuitBreakerPolicy {
        failure_threshold,
        open_for_ms: 60_000,
        half_open_probes: 1,
        scope,
    }
}

/// 1/s burst 1 and a breaker opening at the first failure, for each connection.
static PER_CONNECTION: PolicyDescriptor = PolicyDescriptor {
    timeout_ms: 100,
    rate_limit: Some(rate(1.0, 1, PolicyScope::Connection)),
    circuit_breaker: Some(breaker(1, PolicyScope::Connection)),
    ..PolicyDescriptor::DEFAULT
};

/// The same, for the integration.
static PER_INTEGRATION: PolicyDescriptor = PolicyDescriptor {
    timeout_ms: 100,
    rate_limit: Some(rate(1.0, 1, PolicyScope::Integration)),
    circuit_breaker: Some(breaker(1, PolicyScope::Integration)),
    ..PolicyDescriptor::DEFAULT
};

fn integration(policy: &'static PolicyDescriptor) -> Arc<Policies> {
    Arc::new(Policies::new(Some(policy)))
}

fn connection(parent: &Arc<Policies>, name: &str) -> Policies {
    Policies::for_connection(parent, name, None)
}

/// Admits an attempt and reports `outcome`; how long admission waited.
async fn send(policies: &Policies, endpoint: &'static str, policy: &PolicyDescriptor, outcome: Outcome) -> Duration {
    let admission = policies.admit(endpoint, policy).await.unwrap();
    let waited = admission.waited;
    admission.finish(outcome).await;
    waited
}

fn rate_limited(result: Result<super::Admission, Refusal>) -> bool {
    matches!(result, Err(Refusal::RateLimited(_)))
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_scoped_per_connection_is_each_connections_own() {
    let parent = integration(&PER_CONNECTION);
    let (a, b) = (connection(&parent, "a"), connection(&parent, "b"));
    assert_eq!(
        send(&a, "send", &PER_CONNECTION, Outcome::Success).await,
        Duration::ZERO
    );
    assert_eq!(
        send(&b, "send", &PER_CONNECTION, Outcome::Success).await,
        Duration::ZERO
    );
    // The default client's is its own too.
    assert_eq!(
        send(&parent, "send", &PER_CONNECTION, Outcome::Success).await,
        Duration::ZERO
    );
    // Each did limit: `a`'s next request would wait a second.
    assert_eq!(
        a.admit("send", &PER_CONNECTION).await.unwrap_err(),
        Refusal::RateLimited(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_scoped_per_integration_is_shared_by_every_connection() {
    let parent = integration(&PER_INTEGRATION);
    let (a, b) = (connection(&parent, "a"), connection(&parent, "b"));
    assert_eq!(
        send(&a, "send", &PER_INTEGRATION, Outcome::Success).await,
        Duration::ZERO
    );
    assert!(rate_limited(b.admit("send", &PER_INTEGRATION).await));
    assert!(rate_limited(parent.admit("send", &PER_INTEGRATION).await));
}

#[tokio::test(start_paused = true)]
async fn a_breaker_scoped_per_connection_opens_for_that_connection_only() {
    let parent = integration(&PER_CONNECTION);
    let (a, b) = (connection(&parent, "a"), connection(&parent, "b"));
    send(&a, "send", &PER_CONNECTION, Outcome::Failure).await;
    assert!(matches!(
        a.admit("send", &PER_CONNECTION).await.unwrap_err(),
        Refusal::CircuitOpen(_)
    ));
    send(&b, "send", &PER_CONNECTION, Outcome::Success).await;
    send(&parent, "send", &PER_CONNECTION, Outcome::Success).await;
    assert!(matches!(a.circuit_state(), CircuitState::Open { .. }));
    assert_eq!(b.circuit_state(), CircuitState::Closed);
    assert!(matches!(a.circuit_states("Tts")[..], [(ref name, CircuitState::Open { .. })] if name == "Tts@a"));
    // A connection's breaker exists from the start, as the integration's.
    let c = connection(&parent, "c");
    assert_eq!(c.circuit_states("Tts"), [("Tts@c".to_owned(), CircuitState::Closed)]);
    assert_eq!(parent.circuit_states("Tts"), [("Tts".to_owned(), CircuitState::Closed)]);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_scoped_per_integration_opened_through_one_connection_refuses_all() {
    static UNLIMITED: PolicyDescriptor = PolicyDescriptor {
        rate_limit: None,
        ..PER_INTEGRATION
    };
    let parent = integration(&UNLIMITED);
    let (a, b) = (connection(&parent, "a"), connection(&parent, "b"));
    send(&a, "send", &UNLIMITED, Outcome::Failure).await;
    for policies in [&b, &*parent] {
        assert!(matches!(
            policies.admit("send", &UNLIMITED).await.unwrap_err(),
            Refusal::CircuitOpen(_)
        ));
    }
    // The breaker is the integration's: reported by it, and in the
    // connections' state, not among their own.
    assert!(matches!(parent.circuit_states("Tts")[..], [(ref name, CircuitState::Open { .. })] if name == "Tts"));
    assert!(matches!(b.circuit_state(), CircuitState::Open { .. }));
    assert!(b.circuit_states("Tts").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_budget_replaces_the_rate_limit_scoped_per_connection_on_every_endpoint() {
    let parent = integration(&PER_CONNECTION);
    let generous = Policies::for_connection(&parent, "a", Some(rate(100.0, 5, PolicyScope::Connection)));
    for _ in 0..5 {
        assert_eq!(
            send(&generous, "send", &PER_CONNECTION, Outcome::Success).await,
            Duration::ZERO
        );
    }
    // One budget for all the connection's endpoints.
    let strict = Policies::for_connection(&parent, "b", Some(rate(1.0, 1, PolicyScope::Connection)));
    send(&strict, "send", &PER_CONNECTION, Outcome::Success).await;
    assert!(rate_limited(strict.admit("other", &PER_CONNECTION).await));
}

#[tokio::test(start_paused = true)]
async fn a_budget_limits_a_connection_the_spec_does_not_limit_per_connection() {
    static WIDE: PolicyDescriptor = PolicyDescriptor {
        rate_limit: Some(rate(1_000.0, 10, PolicyScope::Integration)),
        ..PER_INTEGRATION
    };
    static NONE: PolicyDescriptor = PolicyDescriptor {
        rate_limit: None,
        ..PER_INTEGRATION
    };
    let parent = integration(&WIDE);
    let budgeted = Policies::for_connection(&parent, "a", Some(rate(1.0, 1, PolicyScope::Connection)));
    send(&budgeted, "send", &WIDE, Outcome::Success).await;
    assert!(rate_limited(budgeted.admit("send", &WIDE).await));
    assert!(rate_limited(budgeted.admit("other", &NONE).await));
    // The integration's limit was not what refused.
    assert_eq!(
        send(&connection(&parent, "b"), "send", &WIDE, Outcome::Success).await,
        Duration::ZERO
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_and_the_integration_limit_share_the_timeout() {
    static TENTHS: PolicyDescriptor = PolicyDescriptor {
        timeout_ms: 150,
        rate_limit: Some(rate(10.0, 1, PolicyScope::Integration)),
        circuit_breaker: None,
        ..PolicyDescriptor::DEFAULT
    };
    let parent = integration(&TENTHS);
    let budgeted = Policies::for_connection(&parent, "a", Some(rate(10.0, 1, PolicyScope::Connection)));
    send(&budgeted, "send", &TENTHS, Outcome::Success).await;
    // While `a` waits 100 ms for its budget, `b` takes the integration's
    // next slot: `a` would then wait another 100 ms, past its 150 ms.
    let b = connection(&parent, "b");
    let (a_paced, b_paced) = tokio::join!(budgeted.pace("send", &TENTHS), b.pace("send", &TENTHS));
    assert_eq!(b_paced, Ok(Duration::from_millis(100)));
    assert_eq!(a_paced, Err(Refusal::RateLimited(Duration::from_millis(100))));
}

#[tokio::test]
async fn shared_instances_of_a_connection_are_named_with_it() {
    static OWN_ENDPOINT: PolicyDescriptor = PolicyDescriptor {
        circuit_breaker: Some(CircuitBreakerPolicy {
            half_open_probes: 2,
            ..breaker(1, PolicyScope::Connection)
        }),
        rate_limit: Some(rate(1.0, 1, PolicyScope::Integration)),
        ..PER_CONNECTION
    };
    let store: Arc<dyn Store> = Arc::new(crate::MemoryStore::new());
    let (first, second) = (integration(&PER_CONNECTION), integration(&PER_CONNECTION));
    // A connection made before its integration is shared follows it.
    let a_first = connection(&first, "a");
    assert!(first.share_through("Tts", Arc::clone(&store)));
    assert!(second.share_through("Tts", Arc::clone(&store)));
    assert!(
        !a_first.share_through("Tts", Arc::clone(&store)),
        "follows its integration"
    );
    let (a_second, b_second) = (connection(&second, "a"), connection(&second, "b"));

    // One limiter for `a` in both processes, another for `b`.
    send(&a_first, "send", &PER_CONNECTION, Outcome::Success).await;
    assert!(rate_limited(a_second.admit("send", &PER_CONNECTION).await));
    send(&b_second, "send", &PER_CONNECTION, Outcome::Success).await;

    // `a` fails at an endpoint with a breaker of its own: the other process
    // sees it open for `a` only, under the connection's name.
    send(&a_first, "upload", &OWN_ENDPOINT, Outcome::Failure).await;
    assert!(store.circuit_open_for("Tts.upload@a").await.unwrap().is_some());
    assert_eq!(store.circuit_open_for("Tts.upload").await.unwrap(), None);
    assert!(matches!(
        a_second.admit("upload", &OWN_ENDPOINT).await.unwrap_err(),
        Refusal::CircuitOpen(_)
    ));
    assert!(
        rate_limited(b_second.admit("upload", &OWN_ENDPOINT).await),
        "the integration's limit, not the breaker"
    );
    // Integration-scoped instances keep the integration's names: `a`'s
    // request in the first process took the second's default client's slot.
    assert!(rate_limited(second.admit("upload", &OWN_ENDPOINT).await));
}
