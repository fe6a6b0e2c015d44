//! Completion hooks and their durable, at-least-once dispatch.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;

use super::runtime::{typed, Inner};
use crate::call::TypedCall;
use crate::integration::BoxFuture;
use crate::lifecycle::CallStatus;
use crate::store::CallRecord;

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

type RunHook = dyn Fn(&CallRecord) -> BoxFuture<'static, Result<(), String>> + Send + Sync;

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
        let run = move |record: &CallRecord| -> BoxFuture<'static, Result<(), String>> {
            match typed::<T>(record) {
                Ok(call) => {
                    let future = hook(call);
                    Box::pin(async move { future.await.into_hook_result() })
                }
                // The stored call does not fit the types (yet): a deployment
                // with fixed types will deliver it.
                Err(error) => {
                    let message = error.to_string();
                    Box::pin(async move { Err(message) })
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

/// Delivers terminal calls to hooks until shutdown; see the module docs.
pub(crate) async fn dispatch(inner: Arc<Inner>) {
    let settings = inner.settings.clone();
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        if shutdown.borrow().is_some() {
            return;
        }
        let batch = inner
            .store
            .claim_notifications(settings.claim_batch, settings.lease)
            .await
            .unwrap_or_default();
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
            deliveries.spawn(async move {
                let mut ok = true;
                for run in runs {
                    // Its own task: a panicking hook is a failed hook.
                    let record = call.clone();
                    match tokio::spawn(async move { run(&record).await }).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            tracing::warn!(call = %call.id, %error, "hook failed; it will run again");
                            ok = false;
                        }
                        Err(error) => {
                            tracing::warn!(call = %call.id, %error, "hook panicked; it will run again");
                            ok = false;
                        }
                    }
                }
                let retry_at = if ok {
                    None
                } else {
                    let delay = chrono::Duration::from_std(inner.settings.hook_retry).unwrap_or(chrono::Duration::MAX);
                    Some(
                        Utc::now()
                            .checked_add_signed(delay)
                            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC),
                    )
                };
                // If this fails the lease runs out and the call is delivered again.
                let _ = inner.store.finish_notification(call.id, retry_at).await;
            });
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
