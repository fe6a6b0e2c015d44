//! Specs that change under stored calls: which calls the current spec can
//! no longer finish, and what becomes of them.
//!
//! Every call records the fingerprint of the spec it was created under
//! ([`CallRecord::spec_fingerprint`]). A call created under another
//! fingerprint (or before fingerprints were kept) is checked against the
//! current spec: its endpoint must still start calls, a call the provider
//! works on must still be followable (by `[polling]` or `[webhook]`), and
//! its parameters must still decode. One decision ([`stranded_reason`])
//! serves the runtime at startup and `integration check --db` before a
//! deploy, each through its own view of the spec ([`SpecView`]).

use serde::Serialize;
use serde_json::Value;

use super::events::news::{failed, generated_external_id};
use super::events::Subject;
use super::runtime::Inner;
use crate::failure::FailureKind;
use crate::store::EventSource;

use crate::call::CallId;
use crate::descriptor::Mode;
use crate::integration::Integration;
use crate::lifecycle::CallStatus;
use crate::store::{CallRecord, ListQuery, Store, StoreError};

/// What a spec offers, as far as finishing a stored call needs.
pub trait SpecView {
    /// The integration's name.
    fn integration(&self) -> &str;
    /// The fingerprint of the spec's text (`integration_spec::fingerprint`).
    fn fingerprint(&self) -> &str;
    /// The mode of `endpoint` when it exists and starts calls.
    fn start_mode(&self, endpoint: &str) -> Option<Mode>;
    /// Whether the provider's news can reach an async call (`[polling]` or `[webhook]`).
    fn can_follow(&self) -> bool;
    /// Whether `params` still decode as `endpoint`'s request; the error says why not.
    fn check_params(&self, endpoint: &str, params: &Value) -> Result<(), String>;
}

/// The view of a registered integration: the generated code of the spec it
/// was built from.
impl SpecView for dyn Integration {
    fn integration(&self) -> &str {
        self.descriptor().name
    }

    fn fingerprint(&self) -> &str {
        self.descriptor().fingerprint
    }

    fn start_mode(&self, endpoint: &str) -> Option<Mode> {
        let endpoint = self.descriptor().endpoint(endpoint)?;
        endpoint.starts_calls.then_some(endpoint.mode)
    }

    fn can_follow(&self) -> bool {
        let descriptor = self.descriptor();
        descriptor.polling.is_some() || descriptor.webhook.is_some()
    }

    fn check_params(&self, endpoint: &str, params: &Value) -> Result<(), String> {
        self.validate(endpoint, params).map_err(|error| error.to_string())
    }
}

/// A stored call the current spec can no longer finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrandedCall {
    /// The call.
    pub call_id: CallId,
    /// Its integration.
    pub integration: String,
    /// Its endpoint.
    pub endpoint: String,
    /// Its status (`pending` or `processing`).
    pub status: CallStatus,
    /// The fingerprint of the spec it was created under, if recorded.
    pub created_under: Option<String>,
    /// What changed, in words.
    pub reason: String,
}

/// Why `spec` can no longer finish `call`; `None` when it can (or the call
/// has ended).
pub fn stranded_reason(call: &CallRecord, spec: &(impl SpecView + ?Sized)) -> Option<String> {
    if call.is_terminal() {
        return None;
    }
    let Some(mode) = spec.start_mode(&call.endpoint) else {
        return Some(format!(
            "endpoint `{}` is no longer in the spec, or no longer starts calls",
            call.endpoint
        ));
    };
    if call.status == CallStatus::Processing && mode == Mode::Async && !spec.can_follow() {
        return Some("the spec no longer has `[polling]` or `[webhook]`: nothing can report the call's end".to_owned());
    }
    spec.check_params(&call.endpoint, &call.params)
        .err()
        .map(|error| format!("its parameters no longer fit endpoint `{}`: {error}", call.endpoint))
}

/// Why the registered `integration` cannot finish `call`, when the call was
/// created under another version of its spec; `None` otherwise. What a
/// worker asks before each turn, so a call a changed spec strands fails
/// the same way whether the startup check or a worker gets to it first.
pub(crate) fn stranded_under(call: &CallRecord, integration: &dyn Integration) -> Option<String> {
    let current = integration.fingerprint();
    if current.is_empty() || call.spec_fingerprint.as_deref() == Some(current) {
        return None;
    }
    stranded_reason(call, integration)
}

/// The error text of a call failed because the spec changed.
pub(crate) fn failure_message(reason: &str) -> String {
    format!("the spec changed since the call was created: {reason}")
}

/// The unfinished calls of `spec`'s integration, created under another
/// spec, that `spec` can no longer finish. Reads them a page at a time.
pub async fn stranded_calls(
    store: &dyn Store,
    spec: &(impl SpecView + ?Sized),
) -> Result<Vec<StrandedCall>, StoreError> {
    let mut stranded = Vec::new();
    for status in [CallStatus::Pending, CallStatus::Processing] {
        let mut query = ListQuery::new(spec.integration()).status(status).limit(500);
        loop {
            let page = store.list(&query).await?;
            for call in &page.calls {
                if call.spec_fingerprint.as_deref() == Some(spec.fingerprint()) {
                    continue;
                }
                if let Some(reason) = stranded_reason(call, spec) {
                    stranded.push(StrandedCall {
                        call_id: call.id,
                        integration: call.integration.clone(),
                        endpoint: call.endpoint.clone(),
                        status: call.status,
                        created_under: call.spec_fingerprint.clone(),
                        reason,
                    });
                }
            }
            match page.next {
                Some(next) => query = query.after(next),
                None => break,
            }
        }
    }
    Ok(stranded)
}

/// What the runtime does at startup with the stored calls its specs can
/// no longer finish ([`RuntimeBuilder::on_spec_change`](crate::RuntimeBuilder::on_spec_change)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecChangePolicy {
    /// Fail them with the kind [`FailureKind::SpecChanged`](crate::FailureKind::SpecChanged)
    /// and a message naming what changed, and log each at warn level. The
    /// default: a call nothing can finish must not wait forever.
    #[default]
    Fail,
    /// Only log them at warn level (and let
    /// [`Runtime::stranded_calls`](crate::Runtime::stranded_calls) list them): for
    /// a deploy that will be rolled back, or a spec fixed in the next one.
    /// They still end, at their deadlines.
    Report,
}

/// At startup: finds the stored calls the registered specs can no longer
/// finish, logs each, and under [`SpecChangePolicy::Fail`] fails them with
/// the kind `spec_changed` through the event sink (a worker finishing one
/// at the same time wins or loses by the one terminal key, as always).
pub(crate) async fn settle(inner: &Inner) {
    for integration in inner.integrations.values() {
        let spec: &dyn Integration = integration.as_ref();
        if spec.fingerprint().is_empty() {
            // A hand-written integration: no spec to compare with.
            continue;
        }
        let stranded = match stranded_calls(&*inner.store, spec).await {
            Ok(stranded) => stranded,
            Err(error) => {
                tracing::warn!(integration = spec.integration(), %error, "could not check stored calls against the spec");
                continue;
            }
        };
        for call in stranded {
            tracing::warn!(
                call_id = %call.call_id,
                integration = %call.integration,
                endpoint = %call.endpoint,
                reason = %call.reason,
                "a stored call cannot be finished under the current spec"
            );
            if inner.settings.spec_change == SpecChangePolicy::Fail {
                if let Err(error) = fail(inner, &call).await {
                    tracing::warn!(call_id = %call.call_id, %error, "could not fail a call stranded by a spec change");
                }
            }
        }
    }
}

async fn fail(inner: &Inner, call: &StrandedCall) -> Result<(), StoreError> {
    let mut event = failed(FailureKind::SpecChanged, failure_message(&call.reason));
    if call.status == CallStatus::Pending {
        // Never sent: one event, with the generated id every call gets (see
        // `cancel` for why not two).
        event = event.external_id(generated_external_id(call.call_id));
    }
    let events = vec![event];
    inner
        .events
        .record(
            &call.integration,
            Subject::Call(call.call_id),
            EventSource::SpecCheck,
            events,
            None,
        )
        .await
        .map(drop)
}
