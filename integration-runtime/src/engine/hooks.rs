//! Completion hooks and their durable, at-least-once dispatch.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::Instrument;

use super::runtime::{typed, Inner};
use crate::call::TypedCall;
use crate::integration::BoxFuture;
use crate::lifecycle::CallStatus;
use crate::store::{CallRecord, NotificationOutcome};

/// How many deliveries of a call whose record does not decode for one of
/// its hooks are tried before its notification is dead-lettered (given up,
/// with the error kept on the call as `notification_error`). A few, not one:
/// a deployment rolling out fixed types meanwhile still delivers it; not
/// unbounded: a record that no version decodes must not be retried forever.
pub(crate) const MAX_UNDECODABLE_DELIVERIES: u32 = 5;

/// What a hook returns: `()` (it cannot fail) or `Result<(), E>` where an
/// `Err` asks for the hook to be run again later.
pub trait HookResult: Send + 'static {
    /// `Err(message)` when the hook failed and should run again.
    fn into_hook_result(self) -> Result<(), String>;
}

impl HookResult for () {
    fn into_hook_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display + Send + 'static> HookResult for Result<(), E> {
    fn into_hook_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookOn {
    Completed,
    Failed,
}

/// Why a hook did not succeed.
enum HookFailure {
    /// The hook ran and failed or panicked: run it again later.
    Failed(String),
    /// The stored call does not decode into the hook's type: the hook never
    /// ran, and only a deployment with other types can run it.
    Undecodable(String),
}

type RunHook = dyn Fn(&CallRecord) -> BoxFuture<'static, Result<(), HookFailure>> + Send + Sync;

/// A registered hook: which calls it is for, and how to run it.
pub(crate) struct Hook {
    integration: &'static str,
    on: HookOn,
    run: Arc<RunHook>,
}

impl Hook {
    pub(crate) fn new<T, F, Fut>(on: HookOn, hook: F) -> Self
    where
        T: TypedCall,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookResult,
    {
        let run = move |record: &CallRecord| -> BoxFuture<'static, Result<(), HookFailure>> {
            match typed::<T>(record) {
                Ok(call) => {
                    let future = hook(call);
                    Box::pin(async move { future.await.into_hook_result().map_err(HookFailure::Failed) })
                }
                Err(error) => {
                    let message = error.to_string();
                    Box::pin(async move { Err(HookFailure::Undecodable(message)) })
                }
            }
        };
        Hook {
            integration: T::INTEGRATION,
            on,
            run: Arc::new(run),
        }
    }

    fn applies_to(&self, call: &CallRecord) -> bool {
        self.integration == call.integration
            && match self.on {
                HookOn::Completed => call.status == CallStatus::Completed,
                HookOn::Failed => call.status == CallStatus::Failed,
            }
    }
}

/// Runs every hook in `runs` on `call`: `None` when all succeeded, else
/// the failure that decides what happens next (an undecodable record over
/// a failed hook, as only the former is given up).
async fn deliver(call: &CallRecord, runs: Vec<Arc<RunHook>>) -> Option<HookFailure> {
    let mut failure = None;
    for run in runs {
        // Its own task: a panicking hook is a failed hook.
        let record = call.clone();
        // In the delivery's span: what the hook logs is traced with its call.
        let failed = match tokio::spawn(async move { run(&record).await }.in_current_span()).await {
            Ok(Ok(())) => continue,
            Ok(Err(failed)) => failed,
            Err(panicked) => HookFailure::Failed(format!("the hook panicked: {panicked}")),
        };
        match &failed {
            HookFailure::Failed(error) => tracing::warn!(call = %call.id, %error, "hook failed; it will run again"),
            HookFailure::Undecodable(error) => tracing::warn!(
                call = %call.id,
                %error,
                "the call does not decode for its hook; it will be tried again"
            ),
        }
        if !matches!(failure, Some(HookFailure::Undecodable(_))) {
            failure = Some(failed);
        }
    }
    failure
}

/// What to record for a delivery of `call` that ended in `failure`.
fn outcome(inner: &Inner, call: &CallRecord, failure: Option<HookFailure>) -> NotificationOutcome {
    match failure {
        None => NotificationOutcome::Delivered,
        Some(HookFailure::Undecodable(error))
            if call.notification_attempts.saturating_add(1) >= MAX_UNDECODABLE_DELIVERIES =>
        {
            tracing::error!(
                call = %call.id,
                integration = %call.integration,
                %error,
                "hooks given up: the call does not decode for its hook after {MAX_UNDECODABLE_DELIVERIES} deliveries"
            );
            inner.metrics.hook_dead_lettered(&call.integration);
            NotificationOutcome::DeadLetter(error)
        }
        Some(_) => NotificationOutcome::Retry(inner.settings.clock.after(inner.settings.hook_retry)),
    }
}

/// Delivers terminal calls to hooks until shutdown; see the module docs.
pub(crate) async fn dispatch(inner: Arc<Inner>) {
    let settings = inner.settings.clone();
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        if shutdown.borrow().is_some() {
            return;
        }
        let batch = match inner
            .store
            .claim_notifications(settings.claim_batch, settings.lease)
            .await
        {
            Ok(batch) => batch,
            Err(error) => {
                // Waits below as if idle, then tries again.
                tracing::warn!(%error, "claiming terminal notifications failed");
                Vec::new()
            }
        };
        let full = batch.len() as u32 >= settings.claim_batch;
        let mut deliveries = JoinSet::new();
        for call in batch {
            let runs: Vec<_> = inner
                .hooks
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .filter(|hook| hook.applies_to(&call))
                .map(|hook| hook.run.clone())
                .collect();
            let inner = inner.clone();
            let span = tracing::info_span!(
                "hook",
                call_id = %call.id,
                integration = %call.integration,
                on = %call.status,
            );
            deliveries.spawn(
                async move {
                    let outcome = outcome(&inner, &call, deliver(&call, runs).await);
                    if let Err(error) = inner.store.finish_notification(call.id, outcome).await {
                        tracing::warn!(
                            call = %call.id,
                            %error,
                            "recording a hook delivery failed; the call is delivered again once its lease runs out"
                        );
                    }
                }
                .instrument(span),
            );
        }
        // Deliveries finish during shutdown too, until its deadline; one cut
        // off there is delivered again once its notification lease runs out.
        loop {
            let deadline = *shutdown.borrow();
            let more = match deadline {
                None => tokio::select! {
                    next = deliveries.join_next() => next.is_some(),
                    _ = shutdown.changed() => true,
                },
                Some(at) => match tokio::time::timeout_at(at, deliveries.join_next()).await {
                    Ok(next) => next.is_some(),
                    Err(_) => {
                        deliveries.abort_all();
                        false
                    }
                },
            };
            if !more {
                break;
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            () = inner.events.terminal() => {}
            () = tokio::time::sleep(settings.poll_idle.min(Duration::from_secs(5))) => {}
            _ = shutdown.changed() => {}
        }
    }
}
