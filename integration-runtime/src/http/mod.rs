//! The HTTP client generated code sends requests with.
//!
//! - `request`: what generated code hands the client ([`HttpRequest`]) and
//!   gets back ([`HttpResponse`]).
//! - `client`: [`HttpClient`], its construction and one attempt: the
//!   policy's limits, the timeout, the redirect loop, the 401 retry with a
//!   new OAuth2 token, and the errors it reports.
//! - `prepare`: a request checked and encoded before anything is sent.
//! - `redirect`: which redirects are followed, and with what.
//! - `answer`: reading an answer within the policy's size bounds.
//! - `auth`: the schemes ([`Auth`], [`OAuth2Config`]), the headers they add,
//!   OAuth2 tokens and the redaction of credentials.

mod answer;
mod auth;
mod client;
mod connected;
mod prepare;
mod redirect;
mod request;

pub use self::auth::{Auth, OAuth2Config};
pub use self::client::HttpClient;
pub use self::connected::{ConnectionContext, SharedTokens};
pub use self::request::{BodyEncoding, HttpRequest, HttpResponse};
