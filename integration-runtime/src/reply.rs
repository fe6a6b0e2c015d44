//! Reading provider answers into [`Reply`]s, from static descriptions.
//!
//! Generated code describes where each endpoint's (and the webhook's)
//! answer keeps its status, external id, result and message as a
//! [`ReplySpec`]; [`read_reply`] is the one reader of all of them, so client
//! methods, polling and webhooks read answers alike.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::call::{RemoteStatus, Reply};
use crate::error::ClientError;
use crate::http::HttpClient;
use crate::json_path::{extract, extract_id, extract_message, map_status, require_id, FieldPath, Seg};
use crate::request::{Input, RequestSpec};

/// Where an answer keeps what the runtime reads from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplySpec {
    /// The endpoint's name (`webhook` for webhook payloads), for errors.
    pub endpoint: &'static str,
    /// The provider's status and what its values mean, when the spec maps one.
    pub status: Option<StatusSpec>,
    /// Where the provider's id of the call is.
    pub external_id: ExternalIdSpec,
    /// Where each field of the result entity is, when the spec extracts one.
    pub result: Option<&'static [FieldPath]>,
    /// Where the provider's message is, when the spec says.
    pub error: Option<&'static [Seg]>,
}

/// The provider's status: where it is and what its values mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusSpec {
    /// The pre-parsed path.
    pub path: &'static [Seg],
    /// The spec's status map: the provider's values (as text) and their meaning.
    pub map: &'static [(&'static str, RemoteStatus)],
}

/// Where the provider's id of a call is, and whether an answer must carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalIdSpec {
    /// At this path in every answer, except one whose status says the call
    /// failed (its message is what the call must end with); missing, a
    /// decode error.
    Required(&'static [Seg]),
    /// At this path, when the answer carries it.
    Optional(&'static [Seg]),
    /// The provider has none: the runtime's call id stands for it.
    Generated,
}

/// One endpoint that answers with a [`Reply`]: how to ask, and how to read the answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exchange {
    /// How the request is built.
    pub request: RequestSpec,
    /// How its (2xx) answer is read.
    pub reply: ReplySpec,
}

/// Reads `body` as `spec` describes; `http_status` is passed through.
///
/// The status is read first: a result is only read once the status says the
/// call completed (always, for an endpoint without status map), and a
/// required id may be missing when it says the call failed.
///
/// # Errors
///
/// A decode error ([`ClientError::is_decode`]) naming the JSON path as the
/// spec writes it when the status is missing or unmapped, a required id is
/// missing, or the result does not fit its entity.
pub fn read_reply<T: DeserializeOwned>(
    spec: &ReplySpec,
    http_status: u16,
    body: &Value,
) -> Result<Reply<T>, ClientError> {
    let endpoint = spec.endpoint;
    let status = match &spec.status {
        Some(status) => Some(map_status(endpoint, body, status.path, status.map)?),
        None => None,
    };
    let external_id = match spec.external_id {
        ExternalIdSpec::Required(path) if status == Some(RemoteStatus::Failed) => extract_id(body, path),
        ExternalIdSpec::Required(path) => Some(require_id(endpoint, body, path)?),
        ExternalIdSpec::Optional(path) => extract_id(body, path),
        ExternalIdSpec::Generated => None,
    };
    let result = match spec.result {
        Some(fields) if matches!(status, None | Some(RemoteStatus::Completed)) => {
            Some(extract(endpoint, body, fields)?)
        }
        _ => None,
    };
    Ok(Reply {
        http_status,
        external_id,
        status,
        result,
        error: spec.error.and_then(|path| extract_message(body, path)),
    })
}

/// Sends the request `exchange` describes for `input` and reads its answer.
///
/// # Errors
///
/// What [`HttpClient::send`] refuses or the provider answers with a non-2xx
/// status, and what [`read_reply`] cannot read.
pub async fn exchange<T: DeserializeOwned>(
    http: &HttpClient,
    exchange: &'static Exchange,
    input: Input<'_>,
) -> Result<Reply<T>, ClientError> {
    let response = http.send(exchange.request.build(&input)).await?;
    read_reply(&exchange.reply, response.status, &response.body)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Audio {
        url: String,
        seconds: Option<f64>,
    }

    const FIELDS: &[FieldPath] = &[
        ("url", &[Seg::Key("output"), Seg::Key("url")]),
        ("seconds", &[Seg::Key("output"), Seg::Key("seconds")]),
    ];

    const STATUS: StatusSpec = StatusSpec {
        path: &[Seg::Key("state")],
        map: &[
            ("running", RemoteStatus::Processing),
            ("done", RemoteStatus::Completed),
            ("failed", RemoteStatus::Failed),
        ],
    };

    const REQUIRED_ID: ExternalIdSpec = ExternalIdSpec::Required(&[Seg::Key("id")]);

    /// An async endpoint: status map, required id, result, message.
    const TASK: ReplySpec = ReplySpec {
        endpoint: "submit",
        status: Some(STATUS),
        external_id: REQUIRED_ID,
        result: Some(FIELDS),
        error: Some(&[Seg::Key("message")]),
    };

    #[test]
    fn status_values_map_to_remote_statuses() {
        let running: Reply<Audio> = read_reply(&TASK, 202, &json!({"id": "t-1", "state": "running"})).unwrap();
        assert_eq!(
            running,
            Reply {
                http_status: 202,
                external_id: Some("t-1".into()),
                status: Some(RemoteStatus::Processing),
                result: None,
                error: None,
            }
        );
        let done: Reply<Audio> = read_reply(
            &TASK,
            200,
            &json!({"id": "t-1", "state": "done", "output": {"url": "https://a/x.mp3", "seconds": 1.5}}),
        )
        .unwrap();
        assert_eq!(done.status, Some(RemoteStatus::Completed));
        assert_eq!(
            done.result,
            Some(Audio {
                url: "https://a/x.mp3".into(),
                seconds: Some(1.5)
            })
        );
    }

    #[test]
    fn an_unmapped_or_missing_status_is_a_decode_error() {
        let unmapped = read_reply::<Audio>(&TASK, 200, &json!({"id": "t-1", "state": "lost"})).unwrap_err();
        assert!(unmapped.is_decode());
        assert_eq!(
            unmapped.to_string(),
            "endpoint `submit`: could not read the provider's answer: the status `lost` at `$.state` is not in the spec's status map (known: `running`, `done`, `failed`)"
        );
        let missing = read_reply::<Audio>(&TASK, 200, &json!({"id": "t-1"})).unwrap_err();
        assert!(missing
            .to_string()
            .ends_with("the status at `$.state` is missing from the response"));
    }

    #[test]
    fn a_required_id_may_only_be_missing_from_a_failure() {
        let missing = read_reply::<Audio>(&TASK, 200, &json!({"state": "running"})).unwrap_err();
        assert!(missing.is_decode());
        assert_eq!(
            missing.to_string(),
            "endpoint `submit`: could not read the provider's answer: the answer carries no external id at `$.id` (a string or number)"
        );
        let failed: Reply<Audio> =
            read_reply(&TASK, 200, &json!({"state": "failed", "message": "quota exceeded"})).unwrap();
        assert_eq!(failed.external_id, None);
        assert_eq!(failed.status, Some(RemoteStatus::Failed));
        assert_eq!(failed.error.as_deref(), Some("quota exceeded"));
        let sync = ReplySpec { status: None, ..TASK };
        let error = read_reply::<Audio>(&sync, 200, &json!({"output": {"url": "u"}})).unwrap_err();
        assert!(error
            .to_string()
            .ends_with("no external id at `$.id` (a string or number)"));
    }

    #[test]
    fn an_optional_id_may_be_missing_and_a_number_is_read_as_text() {
        let spec = ReplySpec {
            external_id: ExternalIdSpec::Optional(&[Seg::Key("id")]),
            ..TASK
        };
        let without: Reply<Audio> = read_reply(&spec, 200, &json!({"state": "running"})).unwrap();
        assert_eq!(without.external_id, None);
        let numbered: Reply<Audio> = read_reply(&spec, 200, &json!({"id": 42, "state": "running"})).unwrap();
        assert_eq!(numbered.external_id.as_deref(), Some("42"));
    }

    #[test]
    fn a_generated_id_is_never_read() {
        let spec = ReplySpec {
            external_id: ExternalIdSpec::Generated,
            ..TASK
        };
        let reply: Reply<Audio> = read_reply(&spec, 200, &json!({"id": "ignored", "state": "running"})).unwrap();
        assert_eq!(reply.external_id, None);
    }

    #[test]
    fn the_message_is_read_when_the_spec_has_a_path() {
        let reply: Reply<Audio> = read_reply(
            &TASK,
            200,
            &json!({"id": "t", "state": "running", "message": {"code": 7}}),
        )
        .unwrap();
        assert_eq!(reply.error.as_deref(), Some("{\"code\":7}"));
        let blank: Reply<Audio> =
            read_reply(&TASK, 200, &json!({"id": "t", "state": "running", "message": " "})).unwrap();
        assert_eq!(blank.error, None);
        let without = ReplySpec { error: None, ..TASK };
        let reply: Reply<Audio> =
            read_reply(&without, 200, &json!({"id": "t", "state": "running", "message": "m"})).unwrap();
        assert_eq!(reply.error, None);
    }

    #[test]
    fn a_result_that_does_not_fit_is_a_decode_error_naming_its_path() {
        let sync = ReplySpec {
            status: None,
            external_id: ExternalIdSpec::Generated,
            ..TASK
        };
        let missing = read_reply::<Audio>(&sync, 200, &json!({"output": {"seconds": 2}})).unwrap_err();
        assert!(missing.is_decode());
        assert_eq!(
            missing.to_string(),
            "endpoint `submit`: could not read the provider's answer: `$.output.url` is missing from the response (needed for field `url`)"
        );
        let mistyped = read_reply::<Audio>(&sync, 200, &json!({"output": {"url": 5}})).unwrap_err();
        assert!(
            mistyped.to_string().contains("the result does not match the spec"),
            "{mistyped}"
        );
        // A result is only read once the call completed.
        let running: Reply<Audio> =
            read_reply(&TASK, 200, &json!({"id": "t", "state": "running", "output": 1})).unwrap();
        assert_eq!(running.result, None);
    }

    #[test]
    fn an_endpoint_without_result_reads_none() {
        let spec = ReplySpec { result: None, ..TASK };
        let reply: Reply<()> = read_reply(&spec, 200, &json!({"id": "t", "state": "done"})).unwrap();
        assert_eq!(reply.result, None);
        assert_eq!(reply.status, Some(RemoteStatus::Completed));
    }
}
