//! Injection: field values full of URL, query and header syntax (`/`, `?`,
//! `#`, `%`, `..`, CR/LF, `&`, `=`, unicode) go through a generated client to
//! a loopback server that records each raw request. They must stay data: the
//! host, the path segments, the query pairs and the header set are exactly
//! the spec's, and a value that cannot be a header value is refused before
//! anything is sent.

use std::sync::{Arc, Mutex};

use integration_runtime::{CallOptions, Secret};
use percent_encoding::percent_decode_str;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

integration_runtime::integration!("tests/specs/inject.toml");

use inject::{Doc, InjectClient, InjectConfig};

/// A request as it came over the wire.
#[derive(Debug, Clone)]
struct Raw {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A loopback HTTP/1.1 server answering `{}` to everything and keeping every raw request.
struct Recorder {
    base_url: String,
    host: String,
    requests: Arc<Mutex<Vec<Raw>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    let head_end = loop {
                        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at;
                        }
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8(data[..head_end].to_vec()).expect("an ASCII request head");
                    let mut lines = head.split("\r\n");
                    let mut request_line = lines.next().unwrap().split(' ');
                    let method = request_line.next().unwrap().to_owned();
                    let target = request_line.next().unwrap().to_owned();
                    let headers: Vec<(String, String)> = lines
                        .map(|line| {
                            let (name, value) = line.split_once(':').expect("name: value");
                            (name.to_ascii_lowercase(), value.trim().to_owned())
                        })
                        .collect();
                    let length = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
                    let mut body = data[head_end + 4..].to_vec();
                    while body.len() < length {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => body.extend_from_slice(&buf[..n]),
                        }
                    }
                    recorded.lock().unwrap().push(Raw {
                        method,
                        target,
                        headers,
                        body,
                    });
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Recorder {
            base_url: format!("http://{addr}"),
            host: addr.to_string(),
            requests,
        }
    }

    fn take(&self) -> Vec<Raw> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }

    fn client(&self) -> InjectClient {
        InjectClient::new(&InjectConfig {
            base_url: self.base_url.clone(),
            api_key: Secret::new("key-1"),
        })
        .unwrap()
    }
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8().expect("UTF-8").into_owned()
}

/// `application/x-www-form-urlencoded` pairs, decoded, in order.
fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(&name.replace('+', " ")), decode(&value.replace('+', " ")))
        })
        .collect()
}

/// The decoded path segments and query pairs of a raw request target.
fn split_target(target: &str) -> (Vec<String>, Vec<(String, String)>) {
    assert!(!target.contains('#'), "a fragment is never sent: {target}");
    assert!(target.starts_with('/'), "origin-form target: {target}");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (path.split('/').skip(1).map(decode).collect(), form_pairs(query))
}

fn header_names(raw: &Raw) -> Vec<&str> {
    let mut names: Vec<&str> = raw.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names
}

fn header<'r>(raw: &'r Raw, name: &str) -> Vec<&'r str> {
    raw.headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn hostile_docs() -> Vec<Doc> {
    let doc = |folder: &str, name: &str, tag: &str, note: &str, trace: &str| Doc {
        folder: folder.into(),
        name: name.into(),
        tag: tag.into(),
        note: note.into(),
        trace: trace.into(),
    };
    vec![
        doc("a/b", "../../admin", "x&admin=true", "1=2&3", "t-1"),
        doc("?q=1", "#frag", "a#b?c", "#top?x=y", "t-2; x=1, y=\"z\""),
        doc("%2e%2e", "%2F..%2F", "%00%zz%", "100% sure", "t-3 %0d%0a"),
        doc(
            "@evil.example",
            "//evil.example:80/x",
            "http://evil.example/",
            "\\\\evil.example\\x",
            "user@evil.example",
        ),
        doc(
            "..\\..",
            "a..b",
            "+plus +",
            "line1\r\nX-Injected: 1\r\n\r\nGET / HTTP/1.1",
            "t-5",
        ),
        // Non-ASCII header text goes as its UTF-8 bytes (RFC 9110 obs-text): no line break, no new header.
        doc("ünïcødé", "名前 😀", "ß=ẞ&∞", "\u{202e}rtl \u{0}nul", "ünï 😀"),
        doc(" spaced ", "tab\there", "a b", "   ", "t-7"),
    ]
}

const PUT_HEADERS: &[&str] = &[
    "accept",
    "content-length",
    "content-type",
    "host",
    "user-agent",
    "x-api-key",
    "x-span",
    "x-trace",
];
const FORM_HEADERS: &[&str] = &[
    "accept",
    "content-length",
    "content-type",
    "host",
    "user-agent",
    "x-api-key",
    "x-trace",
];

#[tokio::test]
async fn json_requests_keep_host_segments_query_and_headers() {
    let server = Recorder::start().await;
    let client = server.client();
    for doc in hostile_docs() {
        client
            .put_json(&doc, &CallOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{doc:?}: {e}"));
        let mut raws = server.take();
        assert_eq!(raws.len(), 1, "{doc:?}");
        let raw = raws.remove(0);
        assert_eq!(raw.method, "PUT");
        let (segments, query) = split_target(&raw.target);
        assert_eq!(
            segments,
            ["v1", "folders", doc.folder.as_str(), "docs", doc.name.as_str()],
            "{}",
            raw.target
        );
        let expected_query = [
            ("tag", doc.tag.clone()),
            ("q", format!("note:{}", doc.note)),
            ("fixed", "1".into()),
        ];
        assert_eq!(query, expected_query.map(|(n, v)| (n.to_owned(), v)), "{}", raw.target);
        assert_eq!(header_names(&raw), PUT_HEADERS, "{doc:?}");
        assert_eq!(header(&raw, "host"), [server.host.as_str()]);
        assert_eq!(header(&raw, "x-trace"), [doc.trace.as_str()]);
        assert_eq!(header(&raw, "x-span"), [format!("span-{}", doc.trace).as_str()]);
        assert_eq!(header(&raw, "x-api-key"), ["key-1"]);
        assert_eq!(header(&raw, "content-type"), ["application/json"]);
        let body: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
        assert_eq!(
            body,
            json!({ "note": doc.note, "meta": { "tag": doc.tag, "name": doc.name } })
        );
    }
}

#[tokio::test]
async fn form_requests_keep_host_segments_query_headers_and_fields() {
    let server = Recorder::start().await;
    let client = server.client();
    for doc in hostile_docs() {
        client
            .post_form(&doc, &CallOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{doc:?}: {e}"));
        let raw = server.take().remove(0);
        assert_eq!(raw.method, "POST");
        let (segments, query) = split_target(&raw.target);
        assert_eq!(
            segments,
            ["v1", "folders", doc.folder.as_str(), "forms", doc.name.as_str()],
            "{}",
            raw.target
        );
        assert_eq!(query, [("tag".to_owned(), doc.tag.clone())], "{}", raw.target);
        assert_eq!(header_names(&raw), FORM_HEADERS, "{doc:?}");
        assert_eq!(header(&raw, "host"), [server.host.as_str()]);
        assert_eq!(header(&raw, "x-trace"), [doc.trace.as_str()]);
        assert_eq!(header(&raw, "content-type"), ["application/x-www-form-urlencoded"]);
        let mut fields = form_pairs(std::str::from_utf8(&raw.body).unwrap());
        fields.sort();
        assert_eq!(
            fields,
            [
                ("meta[tag]".to_owned(), doc.tag.clone()),
                ("note".to_owned(), doc.note.clone())
            ]
        );
    }
}

#[tokio::test]
async fn values_that_cannot_be_header_values_are_refused_before_sending() {
    let server = Recorder::start().await;
    let client = server.client();
    for trace in [
        "a\r\nX-Injected: 1",
        "a\nX-Injected: 1",
        "a\rb",
        "nul\0",
        "\r\n\r\nGET /admin HTTP/1.1",
        "del\u{7f}",
    ] {
        let doc = Doc {
            folder: "f".into(),
            name: "n".into(),
            tag: "t".into(),
            note: "n".into(),
            trace: trace.into(),
        };
        for result in [
            client.put_json(&doc, &CallOptions::default()).await,
            client.post_form(&doc, &CallOptions::default()).await,
        ] {
            let error = result.expect_err(trace);
            assert!(error.is_invalid_request(), "{trace:?}: {error}");
            assert!(error.to_string().contains("header `X-"), "{error}");
        }
    }
    assert!(server.take().is_empty(), "nothing was sent, so nothing was smuggled");
}

#[tokio::test]
async fn dot_segments_are_refused_before_sending() {
    let server = Recorder::start().await;
    let client = server.client();
    for name in ["..", "."] {
        let doc = Doc {
            folder: "f".into(),
            name: name.into(),
            tag: "t".into(),
            note: "n".into(),
            trace: "t".into(),
        };
        let error = client.put_json(&doc, &CallOptions::default()).await.unwrap_err();
        assert!(error.is_invalid_request(), "{name}: {error}");
    }
    assert!(server.take().is_empty());
}
