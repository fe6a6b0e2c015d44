//! A real OAuth2 authorization server for tests: `oauth_server/server.mjs`
//! (panva's oidc-provider) run by Node on loopback, and a browser played with
//! plain HTTP that approves or denies its consent pages.
//!
//! The server needs its npm packages; tests read where they are from
//! `INTEGRATION_TEST_OAUTH_SERVER` and skip with a printed reason without it.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, Url};

/// The one client `server.mjs` registers (`client_secret_basic`).
pub const CLIENT_ID: &str = "integration-test-client";
pub const CLIENT_SECRET: &str = "integration-test-secret";

/// Node's start and oidc-provider's key generation take about a second; a
/// slow CI machine gets ample room before the test gives up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Authorize, login, consent and back: more hops than this is a loop.
const MAX_HOPS: usize = 12;

/// A running `server.mjs`, killed when dropped.
pub struct OAuthServer {
    child: Child,
    issuer: Url,
    http: reqwest::Client,
    /// What the server wrote to stderr, for the message when it misbehaves.
    stderr: Arc<Mutex<String>>,
}

/// What the user answers on the consent page.
#[derive(Clone, Copy)]
enum Answer {
    Approve,
    Deny,
}

impl OAuthServer {
    /// Starts the server with one client allowed to redirect to
    /// `redirect_uris` and access tokens living `access_token_ttl_s`
    /// seconds; `None` (the reason printed) when
    /// `INTEGRATION_TEST_OAUTH_SERVER` is unset.
    pub fn start(redirect_uris: &[&str], access_token_ttl_s: u64) -> Option<OAuthServer> {
        OAuthServer::start_slow(redirect_uris, access_token_ttl_s, 0)
    }

    /// As [`start`](Self::start), the token endpoint answering
    /// `token_delay_ms` late: long enough for concurrent renewals (two
    /// processes') to overlap, if the client let them.
    pub fn start_slow(redirect_uris: &[&str], access_token_ttl_s: u64, token_delay_ms: u64) -> Option<OAuthServer> {
        let Some(dir) = std::env::var_os("INTEGRATION_TEST_OAUTH_SERVER") else {
            println!(
                "skipping: INTEGRATION_TEST_OAUTH_SERVER is not set (run `npm ci --prefix \
                 integration-runtime/tests/oauth_server` and set it to that directory's \
                 absolute path)"
            );
            return None;
        };
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("REDIRECT_URIS", redirect_uris.join(","))
            .env("ACCESS_TOKEN_TTL", access_token_ttl_s.to_string())
            .env("TOKEN_DELAY_MS", token_delay_ms.to_string())
            // The server exits when its stdin closes: held here, closed when
            // this process ends however it ends.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("could not run `node server.mjs` in {dir:?}: {error}"));

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(read @ 1..) = stderr_pipe.read(&mut buffer) {
                collected
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });

        // The first stdout line names the issuer; read on a thread so the
        // wait is bounded even if the server hangs before printing it.
        let stdout = child.stdout.take().expect("piped stdout");
        let (first_line, received) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line.send(lines.next());
            // Keep draining: a full pipe would block the server.
            lines.for_each(drop);
        });
        let line = received.recv_timeout(STARTUP_TIMEOUT);
        let issuer = match line {
            Ok(Some(Ok(line))) => line.strip_prefix("listening ").and_then(|url| url.parse().ok()),
            _ => None,
        };
        let Some(issuer) = issuer else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "server.mjs did not print `listening <url>` within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                stderr.lock().unwrap()
            );
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        Some(OAuthServer {
            child,
            issuer,
            http,
            stderr,
        })
    }

    /// The issuer, `http://127.0.0.1:PORT` (no trailing slash), which the
    /// server also sends back as `iss` on every redirect.
    pub fn issuer(&self) -> String {
        self.issuer.as_str().trim_end_matches('/').to_owned()
    }

    pub fn authorization_url(&self) -> String {
        format!("{}/auth", self.issuer())
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer())
    }

    /// RFC 7662 introspection, with the client's basic credentials: what a
    /// test's resource API can ask whether an access token is active.
    pub fn introspection_url(&self) -> String {
        format!("{}/token/introspection", self.issuer())
    }

    pub fn client_id(&self) -> &'static str {
        CLIENT_ID
    }

    pub fn client_secret(&self) -> &'static str {
        CLIENT_SECRET
    }

    /// Follows `authorize_url` as a browser would, signs in and grants
    /// consent, and returns the redirect to the client's `redirect_uri`
    /// (carrying `code`, `state` and `iss`), without fetching it.
    pub async fn approve(&self, authorize_url: &str) -> String {
        self.browse(authorize_url, Answer::Approve).await
    }

    /// Like [`approve`](Self::approve), but cancels at the first page: the
    /// redirect carries `error=access_denied` and the request's `state`.
    pub async fn deny(&self, authorize_url: &str) -> String {
        self.browse(authorize_url, Answer::Deny).await
    }

    /// POSTs the token endpoint received so far by `grant_type`, failed ones
    /// included: `{"authorization_code": 1, "refresh_token": 3}`.
    pub async fn token_requests(&self) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}/__test/token-requests", self.issuer()))
            .send()
            .await
            .expect("token request counts");
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON counts")
    }

    /// Walks the redirects from `authorize_url`, answering each interaction
    /// page oidc-provider shows (login, then consent), until one leaves the
    /// server: that Location is the answer to the client.
    async fn browse(&self, authorize_url: &str, answer: Answer) -> String {
        let mut cookies = CookieJar::default();
        let mut request = (Method::GET, authorize_url.parse::<Url>().expect("URL"), None);
        for _ in 0..MAX_HOPS {
            let (method, url, form) = request;
            let location = self.fetch(&mut cookies, method, &url, form).await;
            if location.origin() != self.issuer.origin() {
                return location.into();
            }
            request = if location.path().starts_with("/interaction/") {
                self.answer(&mut cookies, location, answer).await
            } else {
                (Method::GET, location, None)
            };
        }
        panic!("more than {MAX_HOPS} redirects from {authorize_url}");
    }

    /// The request that answers the interaction page at `page`: the form its
    /// prompt asks for when approving, its abort link when denying.
    async fn answer(&self, cookies: &mut CookieJar, page: Url, answer: Answer) -> (Method, Url, Option<&'static str>) {
        if let Answer::Deny = answer {
            let abort = format!("{}/abort", page.path());
            return (Method::GET, page.join(&abort).expect("abort URL"), None);
        }
        let html = self.page(cookies, &page).await;
        // The dev pages post back to themselves with a hidden `prompt` field.
        let form = match prompt_of(&html) {
            // oidc-provider's dev login accepts any account and password.
            Some("login") => "prompt=login&login=test-user&password=test-password",
            Some("consent") => "prompt=consent",
            _ => panic!("unexpected interaction page at {page}:\n{html}"),
        };
        (Method::POST, page, Some(form))
    }

    /// Sends one request with the jar's cookies, keeps the ones it sets, and
    /// returns where it redirects.
    async fn fetch(&self, cookies: &mut CookieJar, method: Method, url: &Url, form: Option<&'static str>) -> Url {
        let mut request = self.http.request(method, url.clone()).header(COOKIE, cookies.header());
        if let Some(form) = form {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form);
        }
        let response = request.send().await.expect("request to the OAuth server");
        cookies.keep(&response);
        let status = response.status();
        let Some(location) = response.headers().get(LOCATION).cloned() else {
            let body = response.text().await.unwrap_or_default();
            panic!(
                "{url} answered {status} without a redirect:\n{body}\nserver stderr:\n{}",
                self.stderr.lock().unwrap()
            );
        };
        let location = location.to_str().expect("ASCII Location");
        url.join(location).expect("Location is a URL")
    }

    async fn page(&self, cookies: &mut CookieJar, url: &Url) -> String {
        let response = self
            .http
            .get(url.clone())
            .header(COOKIE, cookies.header())
            .send()
            .await
            .expect("interaction page");
        cookies.keep(&response);
        response.text().await.expect("interaction page body")
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the page's hidden `prompt` input (`login` or `consent`).
fn prompt_of(html: &str) -> Option<&str> {
    let marker = r#"name="prompt" value=""#;
    let start = html.find(marker)? + marker.len();
    let length = html[start..].find('"')?;
    Some(&html[start..start + length])
}

/// Cookies by name, sent on every request. oidc-provider scopes its
/// interaction cookies to `/interaction/<uid>` and `/auth/<uid>`, but each
/// flow replaces them by name as it moves on, so ignoring paths sends what a
/// browser would where it matters. A cookie the server clears comes back
/// with an empty value, which the server reads as absent.
#[derive(Default)]
struct CookieJar(Vec<(String, String)>);

impl CookieJar {
    fn keep(&mut self, response: &reqwest::Response) {
        for header in response.headers().get_all(SET_COOKIE) {
            let header = header.to_str().expect("ASCII Set-Cookie");
            let pair = header.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            self.0.retain(|(kept, _)| kept != name);
            self.0.push((name.to_owned(), value.to_owned()));
        }
    }

    fn header(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
        pairs.join("; ")
    }
}
