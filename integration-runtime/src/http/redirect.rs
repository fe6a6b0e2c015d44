//! Which redirects are followed, and with what.
//!
//! The client follows redirects itself (reqwest's own following would keep
//! an API-key header, mapped headers and the body on a cross-origin hop).
//! Within the request's origin (scheme, host and port) a hop carries the
//! credentials and the request's headers. Off the origin, under
//! [`RedirectPolicy::SameOrigin`] (the default) the target is not
//! requested at all; under [`RedirectPolicy::AnyOrigin`] it gets a bare
//! request: no credential, none of the request's headers, no body, and it
//! stays bare for the rest of the chain. An https -> http hop changes the
//! scheme, so it is off the origin.

use reqwest::{Method, Url};

use crate::descriptor::RedirectPolicy;

/// Most redirects followed for one attempt.
pub(super) const MAX_REDIRECTS: usize = 10;

/// Whether `status` is a redirect the client may follow.
pub(super) fn is_followed_status(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// One request of a redirect chain.
#[derive(Debug)]
pub(super) struct Hop {
    /// Where it goes.
    pub(super) url: Url,
    /// Its method.
    pub(super) method: Method,
    /// Its body.
    pub(super) body: Option<Vec<u8>>,
    /// Whether it carries the credentials and the request's headers: only
    /// while the chain has stayed on the request's origin.
    pub(super) credentialed: bool,
}

/// The hop after `hop` was answered `status` with `location`, or why it is
/// not made (a text naming at most the target's origin, never its path or
/// query, which may carry anything). `first` is the chain's first URL,
/// whose origin is the request's.
pub(super) fn next_hop(
    policy: RedirectPolicy,
    first: &Url,
    hop: &Hop,
    status: u16,
    location: &str,
) -> Result<Hop, String> {
    let mut url = hop
        .url
        .join(location)
        .map_err(|_| "the `Location` header is not a valid URL".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the `Location` header is not an http or https URL".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the target carries a user name or password".to_owned());
    }
    url.set_fragment(None);
    let target = url.origin().ascii_serialization();
    let credentialed = hop.credentialed && url.origin() == first.origin();
    if !credentialed && policy != RedirectPolicy::AnyOrigin {
        return Err(format!(
            "HTTP {status} to another origin, {target}: it is not requested, so no credential or body leaves the \
             provider's origin (the policy's `redirects` is `same_origin`)"
        ));
    }
    // As browsers do: 303 always, and 301/302 after a POST, become a GET
    // without a body; otherwise the method and body are kept.
    let (method, body) = match status {
        303 if hop.method != Method::HEAD => (Method::GET, None),
        301 | 302 if hop.method == Method::POST => (Method::GET, None),
        _ => (hop.method.clone(), hop.body.clone()),
    };
    if !credentialed && body.is_some() {
        return Err(format!(
            "HTTP {status} to another origin, {target}, would re-send the request's body there; it is not requested"
        ));
    }
    Ok(Hop {
        url,
        method,
        body,
        credentialed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(url: &str, method: Method, body: bool) -> Hop {
        Hop {
            url: Url::parse(url).unwrap(),
            method,
            body: body.then(|| b"{}".to_vec()),
            credentialed: true,
        }
    }

    fn origin(url: &str) -> Url {
        Url::parse(url).unwrap()
    }

    #[test]
    fn a_downgrade_to_http_is_another_origin() {
        let from = hop("https://api.example/v1/x", Method::GET, false);
        let error = next_hop(
            RedirectPolicy::SameOrigin,
            &origin("https://api.example"),
            &from,
            302,
            "http://api.example/v1/y?key=k",
        )
        .unwrap_err();
        assert!(error.contains("another origin, http://api.example:"), "{error}");
        assert!(!error.contains("key=k") && !error.contains("/v1/y"), "{error}");
        let next = next_hop(
            RedirectPolicy::AnyOrigin,
            &origin("https://api.example"),
            &from,
            302,
            "http://api.example/v1/y",
        )
        .unwrap();
        assert!(!next.credentialed);
    }

    #[test]
    fn relative_locations_stay_on_the_origin_and_methods_change_as_in_browsers() {
        let at = origin("https://api.example");
        for (status, method, kept) in [
            (301, Method::POST, false),
            (302, Method::POST, false),
            (303, Method::POST, false),
            (303, Method::PUT, false),
            (301, Method::PUT, true),
            (307, Method::POST, true),
            (308, Method::POST, true),
        ] {
            let from = hop("https://api.example/v1/x", method.clone(), true);
            let next = next_hop(RedirectPolicy::SameOrigin, &at, &from, status, "../y#frag").unwrap();
            assert_eq!(next.url.as_str(), "https://api.example/y", "{status}");
            assert!(next.credentialed);
            assert_eq!(next.body.is_some(), kept, "{status} {method}");
            assert_eq!(next.method, if kept { method } else { Method::GET }, "{status}");
        }
    }

    #[test]
    fn once_off_the_origin_the_chain_stays_bare() {
        let at = origin("https://api.example");
        let mut away = hop("https://cdn.example/a", Method::GET, false);
        away.credentialed = false;
        let back = next_hop(RedirectPolicy::AnyOrigin, &at, &away, 302, "https://api.example/b").unwrap();
        assert!(!back.credentialed);
        let refused = next_hop(RedirectPolicy::SameOrigin, &at, &away, 302, "https://api.example/b");
        assert!(refused.is_err());
    }

    #[test]
    fn odd_targets_are_refused() {
        let at = origin("https://api.example");
        let from = hop("https://api.example/a", Method::GET, false);
        for location in ["ftp://api.example/x", "https://u:p@api.example/x", "http://[::1"] {
            let error = next_hop(RedirectPolicy::AnyOrigin, &at, &from, 302, location).unwrap_err();
            assert!(!error.contains("u:p"), "{error}");
        }
    }
}
