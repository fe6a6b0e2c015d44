//! Lazy pagination of list endpoints: [`Paginator`].
//!
//! A list endpoint's client method returns a `Paginator<Item>` without
//! sending anything. Pages are fetched one at a time, when the items of the
//! previous one have been consumed, each through [`HttpClient`]'s `send`, so
//! every page goes through the integration's auth, rate limit, circuit
//! breaker and concurrency limit. A failed page is retried under the
//! endpoint's retry policy; once that is exhausted the error is yielded and
//! the paginator ends.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::engine::retry::is_retryable_class;
use crate::error::{decode_error, ClientError};
use crate::http::{HttpClient, HttpRequest, HttpResponse};
use crate::json_path::{lookup, path_text, Seg};
use crate::policy::backoff::{retry_delay, unit_random};
use crate::request::{Input, RequestSpec};

/// How a list endpoint asks for its next page (the spec's `paginate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pagination {
    /// The body holds the next cursor at `cursor` (a string or a number); it
    /// is sent as query parameter `param`. Ends when the cursor is absent,
    /// `null`, empty or the one just sent.
    Cursor {
        /// Where the next cursor is in the body.
        cursor: &'static [Seg],
        /// The query parameter that carries it.
        param: &'static str,
    },
    /// Response header `header` holds the next cursor; it is sent as query
    /// parameter `param`. Ends when the header is absent, empty or the
    /// cursor just sent.
    CursorHeader {
        /// The response header.
        header: &'static str,
        /// The query parameter that carries it.
        param: &'static str,
    },
    /// `param` is the number of items already read (from 0), `limit_param = limit`
    /// the page size. Ends after an empty page or one with fewer than `limit` items.
    Offset {
        /// The offset query parameter.
        param: &'static str,
        /// The page-size query parameter.
        limit_param: &'static str,
        /// Items per page.
        limit: u64,
    },
    /// `param` is the page number (from `start`), `size_param = size` the page
    /// size. Ends after an empty page or one with fewer than `size` items.
    Page {
        /// The page-number query parameter.
        param: &'static str,
        /// The number of the first page.
        start: u64,
        /// The page-size query parameter.
        size_param: &'static str,
        /// Items per page.
        size: u64,
    },
    /// RFC 8288 `Link: <url>; rel="next"` headers; the next URL must have the
    /// base URL's origin. Ends when no link has `rel="next"` or it points to
    /// the page just read.
    Link,
}

/// One list endpoint: how its first page is asked for, how the next ones
/// are, and where the items are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListSpec {
    /// The first page's request.
    pub request: RequestSpec,
    /// How the next page is asked for.
    pub pagination: Pagination,
    /// Where the array of items is on each page (an absent or `null` value
    /// is an empty page).
    pub items: &'static [Seg],
}

/// The items of the list endpoint `list` for `input`, fetched lazily.
pub fn list<T>(http: &HttpClient, list: &'static ListSpec, input: Input<'_>) -> Paginator<T> {
    Paginator::new(http.clone(), list.request.build(&input), list.pagination, list.items)
}

/// A paginator over the pages of `request` (sent through `http`); the
/// pagination parameters are added per page.
pub fn paginator<T>(
    http: HttpClient,
    request: HttpRequest,
    pagination: Pagination,
    items: &'static [Seg],
) -> Paginator<T> {
    Paginator::new(http, request, pagination, items)
}

/// What the next request asks for.
#[derive(Debug, Clone)]
enum Position {
    /// The first page.
    First,
    /// After a cursor.
    Cursor(String),
    /// From this offset.
    Offset(u64),
    /// This page number.
    Page(u64),
    /// This URL (a `rel="next"` link).
    Url(Url),
    /// No more pages.
    Done,
}

/// What the paginator needs to fetch pages.
#[derive(Debug, Clone)]
struct Source {
    http: HttpClient,
    request: HttpRequest,
    pagination: Pagination,
    items: &'static [Seg],
}

/// One fetched page: its items, and what to ask for next.
struct Page<T> {
    items: Vec<T>,
    next: Position,
}

type PageFuture<T> = Pin<Box<dyn Future<Output = Result<Page<T>, ClientError>> + Send>>;

/// The items of a list endpoint, fetched page by page as they are consumed.
///
/// Use it as a [`Stream`] of `Result<T, ClientError>`, or without any extra
/// crate through [`next_item`](Paginator::next_item) and
/// [`collect_all`](Paginator::collect_all):
///
/// ```ignore
/// let mut voices = client.list_voices(&filter);
/// while let Some(voice) = voices.next_item().await {
///     let voice = voice?;
///     // ...
/// }
/// ```
///
/// Nothing is sent until the first item is asked for. A failed page is retried
/// under the endpoint's retry policy (its attempts, backoff with jitter and
/// failure classes, never sooner than the provider's `Retry-After` or the
/// local limits' [`admit_after`](ClientError::admit_after)); a local refusal
/// (open circuit breaker, rate limit) is waited out the same way whatever
/// the classes, and counts as an attempt. When the policy is exhausted, or
/// the failure is not retried, the error is the last item. A page that does
/// not decode (items not an array, an item that does not fit) is such an
/// error too: none of that page's items are yielded.
pub struct Paginator<T> {
    source: Option<Source>,
    next: Position,
    /// The URL of the last page, against which relative links resolve.
    current: Option<Url>,
    buffer: VecDeque<T>,
    fetching: Option<PageFuture<T>>,
    /// An error to yield before ending (an invalid request).
    error: Option<ClientError>,
    pages: u64,
}

// No field is structurally pinned: the page future is boxed.
impl<T> Unpin for Paginator<T> {}

impl<T> fmt::Debug for Paginator<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paginator")
            .field("endpoint", &self.source.as_ref().map(|s| s.request.endpoint))
            .field("pagination", &self.source.as_ref().map(|s| s.pagination))
            .field("pages_fetched", &self.pages)
            .field("buffered", &self.buffer.len())
            .field("done", &matches!(self.next, Position::Done))
            .finish()
    }
}

impl<T> Paginator<T> {
    /// A paginator over the pages of `request` (the first page's request: path,
    /// filters, headers; the pagination parameters are added per page).
    /// Generated code reaches it through [`list`] and [`paginator`].
    pub(crate) fn new(http: HttpClient, request: HttpRequest, pagination: Pagination, items: &'static [Seg]) -> Self {
        Paginator {
            source: Some(Source {
                http,
                request,
                pagination,
                items,
            }),
            next: Position::First,
            current: None,
            buffer: VecDeque::new(),
            fetching: None,
            error: None,
            pages: 0,
        }
    }

    /// A paginator that yields `error` and ends (a request refused before sending).
    pub fn failed(error: ClientError) -> Self {
        Paginator {
            source: None,
            next: Position::Done,
            current: None,
            buffer: VecDeque::new(),
            fetching: None,
            error: Some(error),
            pages: 0,
        }
    }

    /// How many page fetches have ended so far: a page retried counts once,
    /// and a page that failed counts too.
    pub fn pages_fetched(&self) -> u64 {
        self.pages
    }
}

impl<T: DeserializeOwned + Send + 'static> Paginator<T> {
    /// The next item, fetching the next page when needed; `None` at the end.
    /// After an error, the next call returns `None`.
    pub async fn next_item(&mut self) -> Option<Result<T, ClientError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Every remaining item, fetching every remaining page; the first error instead.
    pub async fn collect_all(mut self) -> Result<Vec<T>, ClientError> {
        let mut all = Vec::new();
        while let Some(item) = self.next_item().await {
            all.push(item?);
        }
        Ok(all)
    }

    /// The fetch of the next page, or `None` at the end.
    fn start_fetch(&mut self) -> Option<PageFuture<T>> {
        let source = self.source.clone()?;
        let position = std::mem::replace(&mut self.next, Position::Done);
        let (request, url) = page_request(&source, &position)?;
        let current = match &url {
            Some(url) => Some(url.clone()),
            None => first_url(&source.http, &source.request),
        };
        self.current.clone_from(&current);
        Some(Box::pin(async move {
            let response = send_with_retries(&source.http, request, url).await?;
            let items = decode_items(&source, &response.body)?;
            let next = next_position(&source.pagination, &position, &response, items.len(), current.as_ref());
            Ok(Page { items, next })
        }))
    }
}

impl<T: DeserializeOwned + Send + 'static> Stream for Paginator<T> {
    type Item = Result<T, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.buffer.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            if let Some(error) = this.error.take() {
                this.end();
                return Poll::Ready(Some(Err(error)));
            }
            let fetching = match &mut this.fetching {
                Some(fetching) => fetching,
                None => match this.start_fetch() {
                    Some(fetch) => this.fetching.insert(fetch),
                    None => {
                        this.end();
                        return Poll::Ready(None);
                    }
                },
            };
            match fetching.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    this.fetching = None;
                    this.pages += 1;
                    match result {
                        Ok(page) => {
                            this.buffer.extend(page.items);
                            this.next = page.next;
                        }
                        Err(error) => {
                            this.end();
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let done = matches!(self.next, Position::Done) && self.fetching.is_none();
        let extra = usize::from(self.error.is_some());
        let len = self.buffer.len() + extra;
        (len, done.then_some(len))
    }
}

impl<T> Paginator<T> {
    fn end(&mut self) {
        self.next = Position::Done;
        self.source = None;
        self.fetching = None;
    }
}

/// The request of the page at `position` and, for a link, its URL; `None` at the end.
fn page_request(source: &Source, position: &Position) -> Option<(HttpRequest, Option<Url>)> {
    let mut request = source.request.clone();
    let query = &mut request.query;
    match (source.pagination, position) {
        (_, Position::Done) => return None,
        (_, Position::Url(url)) => return Some((request, Some(url.clone()))),
        (Pagination::Cursor { param, .. } | Pagination::CursorHeader { param, .. }, Position::Cursor(cursor)) => {
            query.push((param, Value::from(cursor.as_str())));
        }
        (
            Pagination::Offset {
                param,
                limit_param,
                limit,
            },
            position,
        ) => {
            let offset = match position {
                Position::Offset(offset) => *offset,
                _ => 0,
            };
            query.push((param, Value::from(offset)));
            query.push((limit_param, Value::from(limit)));
        }
        (
            Pagination::Page {
                param,
                start,
                size_param,
                size,
            },
            position,
        ) => {
            let page = match position {
                Position::Page(page) => *page,
                _ => start,
            };
            query.push((param, Value::from(page)));
            query.push((size_param, Value::from(size)));
        }
        _ => {}
    }
    Some((request, None))
}

/// The URL of the first page (base URL + path), against which a relative
/// `Link` of its response resolves.
fn first_url(http: &HttpClient, request: &HttpRequest) -> Option<Url> {
    let separator = if request.path.is_empty() || request.path.starts_with('/') {
        ""
    } else {
        "/"
    };
    Url::parse(&format!("{}{separator}{}", http.base_url(), request.path)).ok()
}

/// Sends one page's request, retrying it under the endpoint's retry policy.
async fn send_with_retries(
    http: &HttpClient,
    request: HttpRequest,
    url: Option<Url>,
) -> Result<HttpResponse, ClientError> {
    let retry = &request.policy.retry;
    let mut attempt: u32 = 1;
    loop {
        let error = match http.send_to(request.clone(), url.clone()).await {
            Ok(response) => return Ok(response),
            Err(error) => error,
        };
        // A local refusal (open breaker, rate limit) sent nothing; it waits
        // like a retry and counts as an attempt, so the page gives up too.
        let refused_locally = error.is_circuit_open() || error.is_rate_limited();
        let retried = refused_locally || is_retryable_class(&error, &retry.on);
        if !retried || attempt >= retry.max_attempts {
            return Err(error);
        }
        let floor = match (error.retry_after(), error.admit_after()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let delay = retry_delay(retry, attempt, floor, unit_random());
        tracing::debug!(endpoint = request.endpoint, attempt, delay_ms = delay.as_millis() as u64, error = %error, "page request failed; retrying");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// The page's items, each read as `T`.
fn decode_items<T: DeserializeOwned>(source: &Source, body: &Value) -> Result<Vec<T>, ClientError> {
    let endpoint = source.request.endpoint;
    let text = path_text(source.items);
    let array = match lookup(body, source.items) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(array)) => array,
        Some(other) => {
            let kind = match other {
                Value::Object(_) => "an object",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                _ => "a boolean",
            };
            return Err(decode_error(
                endpoint,
                format!("the page's items at `{text}` are {kind}, not an array"),
            ));
        }
    };
    array
        .iter()
        .enumerate()
        .map(|(i, item)| {
            T::deserialize(item).map_err(|e| {
                decode_error(
                    endpoint,
                    format!("item {i} of the page at `{text}` does not fit the spec: {e}"),
                )
            })
        })
        .collect()
}

/// What to ask for after a page that answered `response` with `count` items.
fn next_position(
    pagination: &Pagination,
    position: &Position,
    response: &HttpResponse,
    count: usize,
    current: Option<&Url>,
) -> Position {
    let count = count as u64;
    let cursor = |value: Option<String>| match value.filter(|c| !c.is_empty()) {
        // A provider that hands back the cursor it was given would loop forever.
        Some(next) if !matches!(position, Position::Cursor(sent) if *sent == next) => Position::Cursor(next),
        _ => Position::Done,
    };
    match *pagination {
        Pagination::Cursor { cursor: path, .. } => cursor(match lookup(&response.body, path) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }),
        Pagination::CursorHeader { header, .. } => cursor(response.header(header).map(|v| v.trim().to_owned())),
        Pagination::Offset { limit, .. } => {
            let offset = match position {
                Position::Offset(offset) => *offset,
                _ => 0,
            };
            if count == 0 || count < limit {
                Position::Done
            } else {
                Position::Offset(offset + count)
            }
        }
        Pagination::Page { start, size, .. } => {
            let page = match position {
                Position::Page(page) => *page,
                _ => start,
            };
            if count == 0 || count < size {
                Position::Done
            } else {
                Position::Page(page + 1)
            }
        }
        Pagination::Link => {
            let next = next_link(response.header_values("link"));
            match (next, current) {
                (Some(target), Some(base)) => match base.join(&target) {
                    // A link back to the same page would loop forever.
                    Ok(url) if Some(&url) != current => Position::Url(url),
                    _ => Position::Done,
                },
                (Some(target), None) => Url::parse(&target).map_or(Position::Done, Position::Url),
                (None, _) => Position::Done,
            }
        }
    }
}

/// The target of the first `rel="next"` link in RFC 8288 `Link` header values.
fn next_link<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    for value in values {
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else { break };
            let target = &rest[open + 1..open + close];
            rest = &rest[open + close + 1..];
            // The link's parameters run to the next comma outside quotes.
            let mut end = rest.len();
            let mut quoted = false;
            for (i, c) in rest.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let params = &rest[..end];
            rest = &rest[end..];
            if params.split(';').any(is_rel_next) {
                return Some(target.trim().to_owned());
            }
        }
    }
    None
}

/// Whether a link parameter is `rel` with `next` among its relation types.
fn is_rel_next(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_matches('"')
            .split_ascii_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found_among_others() {
        let found = |v: &str| next_link(std::iter::once(v));
        assert_eq!(
            found(r#"<https://h/x?page=2>; rel="next""#).as_deref(),
            Some("https://h/x?page=2")
        );
        assert_eq!(
            found(r#"<https://h/x?page=1>; rel="prev", <https://h/x?page=3>; rel="next", <https://h/x?page=9>; rel="last""#).as_deref(),
            Some("https://h/x?page=3")
        );
        assert_eq!(
            found(r#"</items?after=a,b>; title="a, b"; REL="first NEXT""#).as_deref(),
            Some("/items?after=a,b")
        );
        assert_eq!(found("<https://h/x>; rel=next").as_deref(), Some("https://h/x"));
        assert_eq!(found(r#"<https://h/x>; rel="nextish""#), None);
        assert_eq!(found(r#"<https://h/x>; rel="prev""#), None);
        assert_eq!(found(""), None);
        assert_eq!(
            next_link(["<a>; rel=prev", "<b>; rel=next"].into_iter()).as_deref(),
            Some("b")
        );
    }

    fn response(body: Value, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status: 200,
            body,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn cursors_end_when_absent_null_empty_or_repeated() {
        static NEXT: [Seg; 1] = [Seg::Key("next")];
        let p = Pagination::Cursor {
            cursor: &NEXT,
            param: "c",
        };
        let next = |body: Value, position: &Position| next_position(&p, position, &response(body, &[]), 1, None);
        assert!(matches!(next(serde_json::json!({"next": "b"}), &Position::First), Position::Cursor(c) if c == "b"));
        assert!(matches!(next(serde_json::json!({"next": 7}), &Position::First), Position::Cursor(c) if c == "7"));
        for end in [
            serde_json::json!({}),
            serde_json::json!({"next": null}),
            serde_json::json!({"next": ""}),
        ] {
            assert!(matches!(next(end, &Position::First), Position::Done));
        }
        assert!(matches!(
            next(serde_json::json!({"next": "b"}), &Position::Cursor("b".into())),
            Position::Done
        ));
    }

    #[test]
    fn offsets_and_pages_end_on_a_short_page() {
        let offset = Pagination::Offset {
            param: "o",
            limit_param: "l",
            limit: 2,
        };
        let r = response(Value::Null, &[]);
        assert!(matches!(
            next_position(&offset, &Position::First, &r, 2, None),
            Position::Offset(2)
        ));
        assert!(matches!(
            next_position(&offset, &Position::Offset(2), &r, 2, None),
            Position::Offset(4)
        ));
        assert!(matches!(
            next_position(&offset, &Position::Offset(4), &r, 1, None),
            Position::Done
        ));
        assert!(matches!(
            next_position(&offset, &Position::Offset(4), &r, 0, None),
            Position::Done
        ));
        let page = Pagination::Page {
            param: "p",
            start: 1,
            size_param: "s",
            size: 2,
        };
        assert!(matches!(
            next_position(&page, &Position::First, &r, 2, None),
            Position::Page(2)
        ));
        assert!(matches!(
            next_position(&page, &Position::Page(2), &r, 0, None),
            Position::Done
        ));
    }
}
