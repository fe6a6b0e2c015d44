//! What generated code uses; not a stable API.
//!
//! The contract between the code generator and this crate is
//! `docs/design/generated-code.md`.

pub use ::chrono;
pub use ::reqwest;
pub use ::serde;
pub use ::serde::{Deserialize, Serialize};
pub use ::serde_json;
pub use ::uuid;

pub use crate::__impl_entity as impl_entity;
pub use crate::config::EnvReader;
pub use crate::conforms::{assert_conforms, kinds, Conforms};
pub use crate::error::{decode_error, invalid_params, invalid_request, unknown_endpoint};
pub use crate::form::encode_form;
pub use crate::http::{Auth, BodyEncoding, HttpClient, HttpRequest, HttpResponse, OAuth2Config};
pub use crate::integration::{
    poll, read_stored, read_webhook, send, start, validate_params, CallGlue, Entity, Generated, Glue, PollGlue,
    WebhookGlue,
};
pub use crate::json_path::Seg::{Index, Key};
pub use crate::json_path::{extract, extract_id, extract_message, lookup, map_status, require_id, FieldPath, Seg};
pub use crate::paginate::{list, paginator, ListSpec, Pagination};
pub use crate::reply::{exchange, read_reply, Exchange, ExternalIdSpec, ReplySpec, StatusSpec};
pub use crate::request::{
    display_value, to_value, Constant, Input, JsonBody, PathBuilder, PathPart, Piece, RequestSpec, Source,
};
#[cfg(any(test, feature = "testing"))]
pub use crate::store::conformance;
pub use crate::validate::Violations;

// Short paths for generated code. Names the prelude gives are re-exported too:
// a spec may name an entity `Result` or `Option`, which would shadow them in
// the generated module, where `__rt::` paths stay unambiguous.
pub use ::std::convert::From;
pub use ::std::option::Option::{self, None, Some};
pub use ::std::result::Result::{self, Err, Ok};
pub use ::std::string::String;
pub use ::std::vec::Vec;

pub use crate::{
    Call, CallOptions, CallRequest, CallResponse, CallStatus, CircuitBreakerPolicy, ClientError, ConfigError,
    EndpointDescriptor, Event, FromResult, IdempotencyKeyPlacement, IntegrationDescriptor, IntoCall, Mode, Paginator,
    PolicyDescriptor, PolicyScope, PollingDescriptor, RateLimitPolicy, RedirectPolicy, RemoteStatus, Reply,
    RequestFields, RetryOn, RetryPolicy, Secret, SignatureEncoding, SignatureScheme, ValidationError,
    WebhookDescriptor,
};
