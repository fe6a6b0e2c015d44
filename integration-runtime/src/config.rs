//! Reading an integration's configuration from the environment.

use std::env::VarError;

use crate::error::ConfigError;
use crate::secret::Secret;

type Source = Box<dyn Fn(&str) -> Result<String, VarError> + Send + Sync>;

/// Reads environment variables for one integration and collects every problem,
/// so that [`finish`](EnvReader::finish) reports all of them at once.
///
/// A variable that is set but empty counts as missing.
pub struct EnvReader {
    integration: &'static str,
    source: Source,
    missing: Vec<(String, String)>,
    invalid: Vec<(String, String)>,
}

impl std::fmt::Debug for EnvReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvReader")
            .field("integration", &self.integration)
            .field("missing", &self.missing)
            .field("invalid", &self.invalid)
            .finish_non_exhaustive()
    }
}

impl EnvReader {
    /// A reader of the process environment for `integration` (its name, for messages).
    pub fn new(integration: &'static str) -> Self {
        EnvReader::with_source(integration, |var| std::env::var(var))
    }

    /// A reader of another source of variables (tests, a config file loaded by the caller).
    pub fn with_source(
        integration: &'static str,
        source: impl Fn(&str) -> Result<String, VarError> + Send + Sync + 'static,
    ) -> Self {
        EnvReader {
            integration,
            source: Box::new(source),
            missing: Vec::new(),
            invalid: Vec::new(),
        }
    }

    /// The non-empty value of `var`; records a problem and returns `None` when there is none.
    fn read(&mut self, var: &'static str) -> Option<String> {
        match (self.source)(var) {
            Ok(value) if !value.is_empty() => Some(value),
            Ok(_) | Err(VarError::NotPresent) => None,
            Err(VarError::NotUnicode(_)) => {
                self.invalid.push((var.to_owned(), "is not valid UTF-8".to_owned()));
                None
            }
        }
    }

    fn require(&mut self, var: &'static str, purpose: &'static str) -> String {
        let invalid_before = self.invalid.len();
        match self.read(var) {
            Some(value) => value,
            None => {
                if self.invalid.len() == invalid_before {
                    self.missing.push((var.to_owned(), purpose.to_owned()));
                }
                String::new()
            }
        }
    }

    /// A required secret. Missing: recorded, and an empty secret returned.
    pub fn secret(&mut self, var: &'static str, purpose: &'static str) -> Secret {
        Secret::new(self.require(var, purpose))
    }

    /// An optional secret: `None` when the variable is unset or empty.
    pub fn optional_secret(&mut self, var: &'static str) -> Option<Secret> {
        self.read(var).map(Secret::new)
    }

    /// The variable's value, or `default` when it is unset or empty.
    pub fn value_or(&mut self, var: &'static str, default: &'static str) -> String {
        self.read(var).unwrap_or_else(|| default.to_owned())
    }

    /// A required value. Missing: recorded, and an empty string returned.
    pub fn value(&mut self, var: &'static str, purpose: &'static str) -> String {
        self.require(var, purpose)
    }

    /// Records that a value read is wrong (`name` is the variable or setting).
    pub fn invalid(&mut self, name: &str, problem: impl Into<String>) {
        self.invalid.push((name.to_owned(), problem.into()));
    }

    /// `Ok` when every required variable was there; otherwise one error listing all problems.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.missing.is_empty() && self.invalid.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::new(self.integration, self.missing, self.invalid))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn reader(vars: &[(&str, &str)]) -> EnvReader {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        EnvReader::with_source("VolcTts", move |var| vars.get(var).cloned().ok_or(VarError::NotPresent))
    }

    #[test]
    fn present_values_are_read() {
        let mut env = reader(&[("TOKEN", "t0k"), ("APP", "app-1"), ("URL", "https://x")]);
        assert_eq!(env.secret("TOKEN", "API token").expose(), "t0k");
        assert_eq!(env.value("APP", "app id"), "app-1");
        assert_eq!(env.value_or("URL", "https://default"), "https://x");
        assert_eq!(env.value_or("OTHER_URL", "https://default"), "https://default");
        assert_eq!(
            env.optional_secret("TOKEN").map(|s| s.expose().to_owned()).as_deref(),
            Some("t0k")
        );
        assert!(env.optional_secret("NOPE").is_none());
        assert_eq!(env.finish(), Ok(()));
    }

    #[test]
    fn every_missing_variable_is_reported_once() {
        let mut env = reader(&[("EMPTY", "")]);
        assert_eq!(
            env.secret("VOLC_TTS_TOKEN", "API token from the provider console")
                .expose(),
            ""
        );
        assert_eq!(
            env.value("VOLC_TTS_APP_ID", "application id from the provider console"),
            ""
        );
        assert_eq!(env.secret("EMPTY", "set but empty").expose(), "");
        assert_eq!(env.value_or("BASE", "https://d"), "https://d");
        let error = env.finish().unwrap_err();
        assert_eq!(
            error.to_string(),
            "VolcTts is missing 3 environment variables:\n  \
             VOLC_TTS_TOKEN: API token from the provider console\n  \
             VOLC_TTS_APP_ID: application id from the provider console\n  \
             EMPTY: set but empty"
        );
    }

    #[test]
    fn non_unicode_values_are_invalid_not_missing() {
        let mut env = EnvReader::with_source("X", |_| Err(VarError::NotUnicode("\u{fffd}".into())));
        let _ = env.secret("TOKEN", "token");
        env.invalid("X_URL", "`ftp://a` is not an http(s) URL");
        let error = env.finish().unwrap_err();
        assert!(error.missing().is_empty());
        assert_eq!(
            error.to_string(),
            "X has 2 invalid settings:\n  TOKEN: is not valid UTF-8\n  X_URL: `ftp://a` is not an http(s) URL"
        );
    }

    #[test]
    fn reads_the_process_environment() {
        std::env::set_var("INTEGRATION_RUNTIME_TEST_CONFIG_VAR", "v");
        let mut env = EnvReader::new("X");
        assert_eq!(env.value("INTEGRATION_RUNTIME_TEST_CONFIG_VAR", "p"), "v");
        assert_eq!(env.finish(), Ok(()));
    }
}
