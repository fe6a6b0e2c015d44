//! Calls and what the provider answered about them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::lifecycle::EventKind;

/// The runtime's id of a call (a UUID v4), stable across restarts.
///
/// It is printed and serialized as the hyphenated UUID text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(uuid::Uuid);

impl CallId {
    /// A fresh random id.
    pub fn new() -> Self {
        CallId(uuid::Uuid::new_v4())
    }

    /// The id of an existing UUID.
    pub fn from_uuid(uuid: uuid::Uuid) -> Self {
        CallId(uuid)
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl Default for CallId {
    /// A fresh random id, as [`CallId::new`].
    fn default() -> Self {
        CallId::new()
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for CallId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(CallId)
    }
}

impl From<uuid::Uuid> for CallId {
    fn from(uuid: uuid::Uuid) -> Self {
        CallId(uuid)
    }
}

/// What a provider's status value means, as the spec's status maps say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteStatus {
    /// The provider still works on the call.
    Processing,
    /// The provider finished the call successfully.
    Completed,
    /// The provider gave up on the call.
    Failed,
    /// The provider cancelled the call (a state the spec maps to
    /// `"cancelled"`): the call fails with kind
    /// [`FailureKind::Cancelled`](crate::FailureKind::Cancelled).
    Cancelled,
}

impl RemoteStatus {
    /// The lifecycle event this status reports.
    pub fn event_kind(self) -> EventKind {
        match self {
            RemoteStatus::Processing => EventKind::Processing,
            RemoteStatus::Completed => EventKind::Completed,
            RemoteStatus::Failed | RemoteStatus::Cancelled => EventKind::Failed,
        }
    }

    /// The status as written in specs: `processing`, `completed`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteStatus::Processing => "processing",
            RemoteStatus::Completed => "completed",
            RemoteStatus::Failed => "failed",
            RemoteStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RemoteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one call is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// The key sent where the endpoint's `idempotency_key` says, if any.
    pub idempotency_key: Option<String>,
}

/// A decoded provider answer. `T` is the typed result (`serde_json::Value` for the engine).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    /// The HTTP status of the response (0 for a webhook payload).
    pub http_status: u16,
    /// The provider's id of the call, when the answer carries one.
    pub external_id: Option<String>,
    /// The provider's state of the call, when the endpoint has a status map.
    pub status: Option<RemoteStatus>,
    /// The typed result, when the answer carries one.
    pub result: Option<T>,
    /// The provider's error message, when the answer carries one.
    pub error: Option<String>,
}

impl<T: Serialize> Reply<T> {
    /// The same reply with its result as JSON.
    ///
    /// A result that cannot be represented as JSON (a map with non-string
    /// keys, say) is dropped and described in `error` instead.
    pub fn into_json(self) -> Reply<serde_json::Value> {
        let mut error = self.error;
        let result = match self.result.map(|result| serde_json::to_value(&result)) {
            None => None,
            Some(Ok(value)) => Some(value),
            Some(Err(e)) => {
                error.get_or_insert_with(|| format!("the result could not be represented as JSON: {e}"));
                None
            }
        };
        Reply {
            http_status: self.http_status,
            external_id: self.external_id,
            status: self.status,
            result,
            error,
        }
    }
}

/// A typed request a call can be created from (generated request enums, and
/// `#[derive(IntegrationRequest)]`).
pub trait IntoCall {
    /// The name of the integration the request belongs to.
    const INTEGRATION: &'static str;
    /// The endpoint the call starts with.
    fn endpoint(&self) -> &'static str;
    /// The request as the JSON parameters stored with the call.
    fn into_params(self) -> serde_json::Value;

    /// The connection the call is sent with; `None` (the default): the
    /// integration's default connection.
    fn connection(&self) -> Option<&str> {
        None
    }

    /// This request, sent with the connection `id` of its integration:
    /// `runtime.create(request.on_connection("acme"))`.
    fn on_connection(self, id: impl Into<String>) -> OnConnection<Self>
    where
        Self: Sized,
    {
        OnConnection {
            request: self,
            connection: id.into(),
        }
    }
}

/// A request sent with one connection ([`IntoCall::on_connection`]).
#[derive(Debug, Clone)]
pub struct OnConnection<R> {
    request: R,
    connection: String,
}

impl<R: IntoCall> IntoCall for OnConnection<R> {
    const INTEGRATION: &'static str = R::INTEGRATION;

    fn endpoint(&self) -> &'static str {
        self.request.endpoint()
    }

    fn into_params(self) -> serde_json::Value {
        self.request.into_params()
    }

    fn connection(&self) -> Option<&str> {
        Some(&self.connection)
    }
}

/// A generated call record type (`XCall`), readable from a stored call.
///
/// The engine stores calls as JSON; this is how hooks and queries hand
/// business code the typed record of its integration.
pub trait TypedCall: Sized + Send + 'static {
    /// The integration the record type belongs to.
    const INTEGRATION: &'static str;
    /// Reads the typed record from a stored call of this integration.
    fn from_record(record: &crate::CallRecord) -> Result<Self, crate::ClientError>;
}

/// A typed result read back from stored response data
/// (`#[derive(IntegrationResponse)]` and entities).
pub trait FromResult: Sized {
    /// Reads the result from its stored JSON.
    fn from_result(value: &serde_json::Value) -> Result<Self, serde_json::Error>;
}

/// Implements [`FromResult`] for a generated entity, which reads its stored
/// JSON as it deserializes, and `__private::Entity` by its `validate`
/// (`__private::impl_entity!(Entity)`); `impl_entity!(Entity, unconstrained)`
/// also writes the `validate` of an entity without constraints.
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_entity {
    // An entity whose spec declares no constraint: its `validate` is written
    // here once instead of in every generated module.
    ($entity:ident, unconstrained) => {
        impl $entity {
            /// Checks every constraint the spec declares: this entity declares
            /// none, so every value is valid.
            pub fn validate(&self) -> ::core::result::Result<(), $crate::ValidationError> {
                ::core::result::Result::Ok(())
            }
        }
        $crate::__impl_entity!($entity);
    };
    ($entity:ident) => {
        impl $crate::__private::Entity for $entity {
            fn check(&self) -> ::core::result::Result<(), $crate::ValidationError> {
                $entity::validate(self)
            }
        }
        impl $crate::FromResult for $entity {
            fn from_result(
                value: &$crate::__private::serde_json::Value,
            ) -> ::core::result::Result<Self, $crate::__private::serde_json::Error> {
                <Self as $crate::__private::serde::Deserialize>::deserialize(value)
            }
        }
    };
}

// No blanket impl for `DeserializeOwned`: it would conflict with
// `#[derive(IntegrationResponse)]` on a struct that also derives `Deserialize`.
// Generated entities implement it themselves.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn call_id_round_trips_as_text() {
        let id: CallId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
        assert_eq!(id.to_string(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            json!("67e55044-10b1-426f-9247-bb680e5fe0c8")
        );
        let back: CallId = serde_json::from_value(json!("67e55044-10b1-426f-9247-bb680e5fe0c8")).unwrap();
        assert_eq!(back, id);
        assert!("not-a-uuid".parse::<CallId>().is_err());
    }

    #[test]
    fn new_call_ids_are_random_v4() {
        let (a, b) = (CallId::new(), CallId::new());
        assert_ne!(a, b);
        assert_eq!(a.as_uuid().get_version_num(), 4);
    }

    #[test]
    fn remote_status_maps_to_events() {
        assert_eq!(RemoteStatus::Processing.event_kind(), EventKind::Processing);
        assert_eq!(RemoteStatus::Completed.event_kind(), EventKind::Completed);
        assert_eq!(RemoteStatus::Failed.event_kind(), EventKind::Failed);
        assert_eq!(
            serde_json::to_value(RemoteStatus::Completed).unwrap(),
            json!("completed")
        );
        assert_eq!(RemoteStatus::Failed.to_string(), "failed");
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Audio {
        url: String,
        seconds: f64,
    }

    #[test]
    fn reply_into_json_keeps_every_field() {
        let reply = Reply {
            http_status: 200,
            external_id: Some("t-1".into()),
            status: Some(RemoteStatus::Completed),
            result: Some(Audio {
                url: "https://a/x.mp3".into(),
                seconds: 1.5,
            }),
            error: None,
        };
        let json = reply.into_json();
        assert_eq!(
            json,
            Reply {
                http_status: 200,
                external_id: Some("t-1".into()),
                status: Some(RemoteStatus::Completed),
                result: Some(json!({"url": "https://a/x.mp3", "seconds": 1.5})),
                error: None,
            }
        );
    }

    #[test]
    fn reply_into_json_reports_unrepresentable_results() {
        let mut map = BTreeMap::new();
        map.insert((1, 2), "x");
        let reply = Reply {
            http_status: 200,
            external_id: None,
            status: None,
            result: Some(map),
            error: None,
        };
        let json = reply.into_json();
        assert_eq!(json.result, None);
        assert_eq!(
            json.error.as_deref(),
            Some("the result could not be represented as JSON: key must be a string")
        );
    }
}
