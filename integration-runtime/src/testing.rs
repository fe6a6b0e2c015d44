//! Testing code built on this crate (feature `testing`): the store
//! conformance suite.
//!
//! A [`Store`] written outside this crate proves that it keeps the
//! contract the engine relies on (idempotent appends, leases, terminal
//! exactly once, notifications counted and dead-lettered, atomic turns, ...)
//! by running the same checks as [`MemoryStore`](crate::MemoryStore),
//! `SqliteStore` and `PostgresStore`: one invocation of
//! [`store_conformance_tests!`](crate::store_conformance_tests) in a test
//! target generates one `#[tokio::test]` per check, each on a fresh, empty
//! store.
//!
//! ```toml
//! [dev-dependencies]
//! integration-runtime = { version = "0.1", features = ["testing"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! ```ignore
//! // tests/store_conformance.rs
//! integration_runtime::store_conformance_tests!(|| async { my_store::MyStore::connect_fresh().await });
//! ```

use std::any::Any;
use std::sync::Arc;

use crate::store::Store;

/// A store under test, and what to clean up after it.
///
/// The factory given to [`store_conformance_tests!`](crate::store_conformance_tests)
/// returns a store (any [`Store`] converts into a fixture) or, when the
/// store leaves something behind (a file, a database schema), a fixture
/// that also holds a *guard*: a value whose `Drop` removes it, run after
/// the store is dropped, even when the check failed.
pub struct Fixture {
    // Declared first: dropped before the guard.
    store: Arc<dyn Store>,
    #[allow(dead_code)] // Held for its `Drop` only.
    guard: Option<Box<dyn Any + Send>>,
}

impl Fixture {
    /// A fixture of `store`, with nothing to clean up.
    pub fn new(store: impl Store + 'static) -> Self {
        Fixture {
            store: Arc::new(store),
            guard: None,
        }
    }

    /// Keeps `guard` until the fixture is dropped, and drops it after the
    /// store.
    #[must_use]
    pub fn with_guard(mut self, guard: impl Any + Send) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// The store under test.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

impl<S: Store + 'static> From<S> for Fixture {
    fn from(store: S) -> Self {
        Fixture::new(store)
    }
}

/// Generates the store conformance suite: one `#[tokio::test]` per check,
/// in a module `conformance`, each on a fresh store from the factory
/// (feature `testing`; see the [`testing`](crate::testing) module).
///
/// - `store_conformance_tests!(make)`: `make()` returns a future of a
///   store, or of a [`Fixture`](crate::testing::Fixture).
/// - `store_conformance_tests!(optional: make)`: `make()` returns a future
///   of an `Option` of either; with `None` (a database server that is not
///   configured here) the test passes without running, and `make` should
///   print why.
///
/// The factory is an expression evaluated inside the generated module,
/// which imports everything of the invoking module (`use super::*`).
/// The invoking crate needs `tokio` with the `macros` and
/// `rt-multi-thread` features.
///
/// ```ignore
/// integration_runtime::store_conformance_tests!(|| async { integration_runtime::MemoryStore::new() });
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    (optional: $make:expr) => {
        $crate::store_conformance_tests!(@tests $make;
            create_makes_a_pending_due_call,
            create_with_idempotency_key_returns_the_existing_call,
            create_with_a_future_run_at_is_not_due_yet,
            claim_respects_the_limit_and_due_order,
            concurrent_claimers_never_share_a_call,
            an_expired_lease_is_claimable_again,
            a_call_created_under_a_lease_is_its_owners_until_the_lease_ends,
            extending_a_lease_keeps_the_call,
            release_and_lease_checks,
            reschedule_sets_the_next_run_and_counts_attempts,
            same_event_key_twice_is_a_duplicate,
            out_of_order_events_never_move_backwards,
            terminal_state_is_reached_exactly_once,
            terminal_calls_are_never_claimed,
            find_and_append_by_external_id,
            external_ids_are_unique_per_integration,
            pagination_has_no_duplicates_or_gaps,
            listing_filters_by_status_and_orders_newest_first,
            count_by_status_counts_every_call,
            wait_for_work_wakes_on_create,
            postpone_does_not_count_an_attempt,
            terminal_calls_are_notified_until_finished,
            failed_notifications_are_counted_until_dead_lettered,
            finish_turn_appends_and_reschedules_in_one_step,
            finish_turn_that_does_not_end_the_call_schedules_the_next_run,
            finish_turn_replays_and_ignores_events_like_append,
            finish_turn_with_a_conflict_writes_nothing,
            finish_turn_without_the_lease_writes_nothing,
            a_healthy_store_passes_the_write_probe_and_keeps_its_calls,
            rate_leases_are_spaced_by_their_cells,
            a_rate_lease_beyond_its_wait_leases_nothing,
            concurrent_rate_leases_never_overlap,
            an_open_circuit_is_shared_until_it_expires,
            a_call_keeps_its_deadline_and_spec_fingerprint,
            a_failure_keeps_the_kind_its_terminal_event_says,
            prune_takes_old_terminal_calls_of_the_statuses_asked,
            a_pruned_call_is_gone_with_its_events_and_keys,
            prune_keeps_calls_whose_notification_is_pending,
            prune_takes_the_oldest_first_up_to_the_limit,
            next_due_is_the_earliest_call_no_lease_holds,
            claim_never_returns_a_call_before_its_run_at,
            wait_for_work_wakes_when_a_call_is_scheduled_later,
            connections_are_stored_listed_and_replaced,
            new_credentials_delete_the_connections_tokens,
            revoking_keeps_the_first_time_and_deletes_the_tokens,
            one_process_at_a_time_leases_a_connections_tokens,
            only_the_lease_holder_saves_tokens_and_saving_ends_the_lease,
            releasing_a_token_lease_frees_it_for_another_process,
            an_authorization_is_taken_once,
            storing_an_authorization_purges_the_expired_ones,
            sealed_values_lists_every_kind,
            replace_sealed_compares_and_sets,
            calls_carry_their_connection,
            an_idempotency_key_is_one_connections_request,
        );
    };
    ($make:expr) => {
        $crate::store_conformance_tests!(optional: || async { ::core::option::Option::Some(($make)().await) });
    };
    (@tests $make:expr; $($name:ident,)*) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let ::core::option::Option::Some(fixture) = ($make)().await else { return };
                    let fixture: $crate::testing::Fixture = ::core::convert::Into::into(fixture);
                    $crate::__private::conformance::$name(fixture.store()).await;
                }
            )*
        }
    };
}
