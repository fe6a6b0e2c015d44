//! A redacting wrapper for credentials.

use std::fmt;
use std::sync::Arc;

/// A credential read from the environment (a token, a password, an API key).
///
/// It never shows its value by accident: `Debug` prints `Secret(***)` and
/// `Display` prints `***`. Read the value with [`Secret::expose`], only where
/// it is sent.
///
/// ```
/// use integration_runtime::Secret;
///
/// let token = Secret::new("s3cr3t");
/// assert_eq!(format!("{token:?} {token}"), "Secret(***) ***");
/// assert_eq!(token.expose(), "s3cr3t");
/// ```
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::from(value.into()))
    }

    /// The credential itself. Use it only to send it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the credential is empty (a missing variable reads as empty).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("hunter2-token");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{secret:#?}"), "Secret(***)");
        assert_eq!(secret.to_string(), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(Secret(***))");
    }

    #[test]
    fn expose_returns_the_value() {
        let secret = Secret::from("abc".to_owned());
        assert_eq!(secret.expose(), "abc");
        assert!(!secret.is_empty());
        assert!(Secret::new("").is_empty());
    }
}
