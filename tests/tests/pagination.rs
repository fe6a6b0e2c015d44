//! List endpoints over loopback (wiremock), one per pagination style: pages
//! are fetched lazily, items are typed, each page sends exactly the expected
//! query, an empty last page ends the listing, a failed page is retried under
//! the endpoint's policy, and exhausted retries end the stream with the error.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_core::Stream;
use integration_runtime::{ClientError, Paginator, Secret};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

integration_runtime::integration!("tests/specs/voices.toml");

use voices::{Voice, VoiceFilter, VoiceGender, VoicesClient, VoicesConfig};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Cursor,
    CursorHeader,
    Offset,
    Page,
    Link,
}

const STYLES: [Style; 5] = [
    Style::Cursor,
    Style::CursorHeader,
    Style::Offset,
    Style::Page,
    Style::Link,
];

/// Two full pages of two voices, then an empty page.
const PAGES: usize = 3;

fn voice_json(page: usize, i: usize) -> serde_json::Value {
    let gender = if i == 0 { "female" } else { "male" };
    json!({ "id": format!("v{page}{i}"), "name": format!("Voice {page}.{i}"), "gender": gender, "extra": true })
}

fn voice(page: usize, i: usize) -> Voice {
    Voice {
        id: format!("v{page}{i}"),
        name: format!("Voice {page}.{i}"),
        gender: Some(if i == 0 { VoiceGender::Female } else { VoiceGender::Male }),
    }
}

fn all_voices() -> Vec<Voice> {
    (0..PAGES - 1).flat_map(|p| (0..2).map(move |i| voice(p, i))).collect()
}

fn query_value(request: &Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// Which page (0-based) a request asks for, in `style`.
fn page_of(style: Style, request: &Request) -> usize {
    let number =
        |name: &str| query_value(request, name).map(|v| v.trim_start_matches('c').parse::<usize>().expect("a number"));
    match style {
        Style::Cursor | Style::CursorHeader => number("cursor").unwrap_or(0),
        Style::Offset => number("offset").expect("offset sent") / 2,
        Style::Page => number("page").expect("page sent") - 1,
        Style::Link => number("page_token").unwrap_or(0),
    }
}

/// The provider: serves the pages of `style`; the first `fail_page_2` requests
/// for the second page get a 503.
async fn provider(style: Style, fail_page_2: usize, next_link_base: Option<String>) -> MockServer {
    let server = MockServer::start().await;
    let failures = Arc::new(AtomicUsize::new(fail_page_2));
    let base = next_link_base.unwrap_or_else(|| server.uri());
    Mock::given(method("GET"))
        .and(path("/v1/voices"))
        .respond_with(move |request: &Request| {
            let page = page_of(style, request);
            if page == 1
                && failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return ResponseTemplate::new(503).set_body_json(json!({ "error": "overloaded" }));
            }
            let items: Vec<_> = if page < PAGES - 1 {
                (0..2).map(|i| voice_json(page, i)).collect()
            } else {
                vec![]
            };
            let has_next = page < PAGES - 1;
            let next_cursor = has_next.then(|| format!("c{}", page + 1));
            let mut response = ResponseTemplate::new(200);
            match style {
                Style::Cursor => {
                    return response.set_body_json(json!({ "data": items, "meta": { "next_cursor": next_cursor } }));
                }
                Style::CursorHeader => {
                    if let Some(cursor) = next_cursor {
                        response = response.insert_header("X-Next-Cursor", cursor.as_str());
                    }
                }
                Style::Offset | Style::Page => {}
                Style::Link => {
                    if has_next {
                        // The first link is absolute, the second relative to the page's URL.
                        let next = if page == 0 {
                            format!("{base}/v1/voices?page_token=1")
                        } else {
                            format!("voices?page_token={}", page + 1)
                        };
                        let link = format!("<{base}/v1/voices>; rel=\"first\", <{next}>; rel=\"next\"");
                        response = response.insert_header("Link", link.as_str());
                    }
                    return response.set_body_json(json!(items));
                }
            }
            response.set_body_json(json!({ "data": items }))
        })
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer) -> VoicesClient {
    VoicesClient::new(&VoicesConfig {
        base_url: server.uri(),
        token: Secret::new("tok-1"),
    })
    .unwrap()
}

fn filter() -> VoiceFilter {
    VoiceFilter { language: "en".into() }
}

fn list(client: &VoicesClient, style: Style) -> Paginator<Voice> {
    match style {
        Style::Cursor => client.by_cursor(&filter()),
        Style::CursorHeader => client.by_cursor_header(&filter()),
        Style::Offset => client.by_offset(&filter()),
        Style::Page => client.by_page(&filter()),
        Style::Link => client.by_link(),
    }
}

/// The decoded query of the request for page `page` (0-based) in `style`.
fn expected_query(style: Style, page: usize) -> Vec<(String, String)> {
    let pairs: Vec<(&str, String)> = match style {
        Style::Cursor | Style::CursorHeader if page == 0 => vec![("lang", "en".into())],
        Style::Cursor | Style::CursorHeader => vec![("lang", "en".into()), ("cursor", format!("c{page}"))],
        Style::Offset => vec![
            ("lang", "en".into()),
            ("offset", (page * 2).to_string()),
            ("limit", "2".into()),
        ],
        Style::Page => vec![
            ("lang", "en".into()),
            ("page", (page + 1).to_string()),
            ("per_page", "2".into()),
        ],
        Style::Link if page == 0 => vec![],
        Style::Link => vec![("page_token", page.to_string())],
    };
    pairs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("recording is on")
}

fn query_of(request: &Request) -> Vec<(String, String)> {
    request
        .url
        .query_pairs()
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn every_style_reads_every_page_lazily_with_the_exact_query() {
    for style in STYLES {
        let server = provider(style, 0, None).await;
        let client = client(&server);
        let mut voices = list(&client, style);
        assert!(
            received(&server).await.is_empty(),
            "{style:?}: nothing is sent before the first item is asked for"
        );

        let first = voices.next_item().await.expect("an item").expect("no error");
        assert_eq!(first, voice(0, 0), "{style:?}");
        assert_eq!(
            received(&server).await.len(),
            1,
            "{style:?}: one page fetched for the first item"
        );

        let mut all = vec![first];
        while let Some(item) = voices.next_item().await {
            all.push(item.unwrap_or_else(|e| panic!("{style:?}: {e}")));
        }
        assert_eq!(all, all_voices(), "{style:?}");
        assert!(voices.next_item().await.is_none(), "{style:?}: stays ended");
        assert_eq!(voices.pages_fetched(), PAGES as u64, "{style:?}");

        let requests = received(&server).await;
        assert_eq!(requests.len(), PAGES, "{style:?}: the empty page ends the listing");
        for (page, request) in requests.iter().enumerate() {
            assert_eq!(request.url.path(), "/v1/voices", "{style:?}");
            assert_eq!(query_of(request), expected_query(style, page), "{style:?} page {page}");
            let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok());
            assert_eq!(
                auth,
                Some("Bearer tok-1"),
                "{style:?} page {page}: every page is authenticated"
            );
        }
    }
}

#[tokio::test]
async fn collect_all_and_the_stream_give_the_same_items() {
    for style in STYLES {
        let server = provider(style, 0, None).await;
        let client = client(&server);
        assert_eq!(
            list(&client, style).collect_all().await.unwrap(),
            all_voices(),
            "{style:?}"
        );

        let mut stream = list(&client, style);
        assert_eq!(stream.size_hint(), (0, None));
        let mut streamed = Vec::new();
        while let Some(item) = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
            streamed.push(item.unwrap());
        }
        assert_eq!(streamed, all_voices(), "{style:?}");
        assert_eq!(stream.size_hint(), (0, Some(0)), "{style:?}");
    }
}

#[tokio::test]
async fn a_503_on_page_two_is_retried_under_the_policy() {
    for style in STYLES {
        // max_attempts = 3: two failures, then the page is answered.
        let server = provider(style, 2, None).await;
        let client = client(&server);
        let all = list(&client, style)
            .collect_all()
            .await
            .unwrap_or_else(|e| panic!("{style:?}: {e}"));
        assert_eq!(all, all_voices(), "{style:?}");
        let requests = received(&server).await;
        assert_eq!(requests.len(), PAGES + 2, "{style:?}: page 2 was sent three times");
        for request in &requests[1..4] {
            assert_eq!(
                query_of(request),
                expected_query(style, 1),
                "{style:?}: the same page is asked for again"
            );
        }
    }
}

#[tokio::test]
async fn exhausted_retries_yield_the_error_and_end_the_stream() {
    for style in STYLES {
        let server = provider(style, usize::MAX, None).await;
        let client = client(&server);
        let mut voices = list(&client, style);
        assert_eq!(voices.next_item().await.unwrap().unwrap(), voice(0, 0));
        assert_eq!(voices.next_item().await.unwrap().unwrap(), voice(0, 1));
        let error: ClientError = voices.next_item().await.expect("the error").expect_err("page 2 fails");
        assert!(error.is_status(), "{style:?}: {error}");
        assert_eq!(error.status(), Some(503), "{style:?}");
        if style == Style::Cursor {
            assert_eq!(
                error.provider_message(),
                Some("overloaded"),
                "the endpoint's error path is read"
            );
        }
        assert!(
            voices.next_item().await.is_none(),
            "{style:?}: the stream ends after the error"
        );
        assert_eq!(
            received(&server).await.len(),
            1 + 3,
            "{style:?}: page 2 was tried max_attempts times"
        );
    }
}

#[tokio::test]
async fn a_failure_that_is_not_retried_ends_the_stream_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "error": "no such language" })))
        .mount(&server)
        .await;
    let client = client(&server);
    let error = client.by_cursor(&filter()).collect_all().await.unwrap_err();
    assert_eq!(error.status(), Some(404));
    assert_eq!(error.provider_message(), Some("no such language"));
    assert_eq!(received(&server).await.len(), 1, "4xx is not a retried class");
}

#[tokio::test]
async fn the_request_is_validated_before_the_first_page() {
    let server = provider(Style::Cursor, 0, None).await;
    let client = client(&server);
    let mut voices = client.by_cursor(&VoiceFilter { language: "e".into() });
    let error = voices.next_item().await.unwrap().unwrap_err();
    assert!(error.is_invalid_request(), "{error}");
    assert!(error.to_string().contains("language"), "{error}");
    assert!(voices.next_item().await.is_none());
    assert!(received(&server).await.is_empty(), "nothing is sent");
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused() {
    for other in ["https://evil.example", "http://localhost:1"] {
        let server = provider(Style::Link, 0, Some(other.to_owned())).await;
        let client = client(&server);
        let mut voices = client.by_link();
        assert_eq!(voices.next_item().await.unwrap().unwrap(), voice(0, 0));
        assert_eq!(voices.next_item().await.unwrap().unwrap(), voice(0, 1));
        let error = voices.next_item().await.unwrap().unwrap_err();
        assert!(error.is_invalid_request(), "{error}");
        let text = error.to_string();
        assert!(text.contains(other) && text.contains("not followed"), "{text}");
        assert!(!text.contains("tok-1"), "{text}");
        assert!(voices.next_item().await.is_none());
        assert_eq!(received(&server).await.len(), 1, "the credentials went nowhere else");
    }
}

#[tokio::test]
async fn a_cursor_full_of_url_syntax_is_sent_as_one_query_value() {
    let cursor = "x&admin=1#frag %2F/é?=";
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(move |request: &Request| {
            let next = if query_value(request, "cursor").is_none() {
                json!(cursor)
            } else {
                json!(null)
            };
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": [voice_json(0, 0)], "meta": { "next_cursor": next } }))
        })
        .mount(&server)
        .await;
    let all = client(&server).by_cursor(&filter()).collect_all().await.unwrap();
    assert_eq!(all.len(), 2);
    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].url.path(), "/v1/voices");
    assert_eq!(
        query_of(&requests[1]),
        [
            ("lang".to_owned(), "en".to_owned()),
            ("cursor".to_owned(), cursor.to_owned())
        ]
    );
}

#[tokio::test]
async fn a_next_link_with_credentials_is_refused() {
    let server = MockServer::start().await;
    let with_user = server.uri().replacen("http://", "http://user:pw@", 1);
    Mock::given(method("GET"))
        .respond_with(move |_: &Request| {
            ResponseTemplate::new(200)
                .insert_header(
                    "Link",
                    format!("<{with_user}/v1/voices?page_token=1>; rel=\"next\"").as_str(),
                )
                .set_body_json(json!([voice_json(0, 0)]))
        })
        .mount(&server)
        .await;
    let mut voices = client(&server).by_link();
    assert!(voices.next_item().await.unwrap().is_ok());
    let error = voices.next_item().await.unwrap().unwrap_err();
    assert!(
        error.is_invalid_request() && error.to_string().contains("user name or password"),
        "{error}"
    );
    assert_eq!(received(&server).await.len(), 1);
}
