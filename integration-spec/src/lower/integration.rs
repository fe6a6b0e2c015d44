//! The `[integration]` section: the client's name, description and base URL,
//! and the URL settings (a literal or an environment variable with a default)
//! that `base_url` and OAuth2's `token_url` share.

use toml::de::DeValue;

use super::Lower;
use crate::check;
use crate::ir::*;
use crate::read::{join, Entry, Table};

pub(super) const INTEGRATION_KEYS: &[&str] = &["name", "description", "base_url"];

impl Lower<'_> {
    pub(super) fn integration(&mut self, root: Table<'_, '_>) -> Integration {
        let placeholder = Integration {
            name: "Integration".into(),
            name_span: 0..0,
            description: None,
            base_url: BaseUrl::Literal(String::new()),
        };
        let Some(entry) = root.require(self.cx, "integration", "add `[integration]` with `name` and `base_url`") else {
            return placeholder;
        };
        let Some(t) = Table::new(
            self.cx,
            "integration",
            entry.key_span.into(),
            entry.value,
            INTEGRATION_KEYS,
        ) else {
            return placeholder;
        };
        let (name, name_span) = match t.require_str(
            self.cx,
            "name",
            "add `name = \"MyApi\"`; generated types are named after it",
        ) {
            Some((name, span)) => {
                check::pascal_case(self.cx, name, span.clone(), "integration.name", "integration name");
                (name.to_owned(), span)
            }
            None => (placeholder.name, placeholder.name_span),
        };
        let description = t.str(self.cx, "description").map(|(d, _)| d.to_owned());
        let base_url = t
            .require(self.cx, "base_url", "add `base_url = \"https://api.example.com\"` or `base_url = { env = \"API_BASE_URL\", default = \"https://...\" }`")
            .and_then(|e| self.url_setting(e, "integration.base_url", "API_BASE_URL"))
            .unwrap_or(placeholder.base_url);
        Integration {
            name,
            name_span,
            description,
            base_url,
        }
    }

    /// A URL setting: a literal, or `{ env, default, purpose }`.
    pub(super) fn url_setting(&mut self, e: Entry<'_, '_>, key_path: &str, example_var: &str) -> Option<BaseUrl> {
        if let DeValue::String(url) = e.value.get_ref() {
            self.url(url, e.span(), key_path);
            return Some(BaseUrl::Literal(url.to_string()));
        }
        let t = Table::new(
            self.cx,
            key_path,
            e.key_span.into(),
            e.value,
            &["env", "default", "purpose"],
        )?;
        let (var, span) = t.require_str(self.cx, "env", &format!("add `env = \"{example_var}\"`"))?;
        check::env_var_name(self.cx, var, span, &join(key_path, "env"));
        let default = t.str(self.cx, "default").map(|(url, span)| {
            self.url(url, span, &join(key_path, "default"));
            url.to_owned()
        });
        let purpose = t.str(self.cx, "purpose").map(|(p, _)| p.to_owned());
        Some(BaseUrl::Env {
            var: var.to_owned(),
            default,
            purpose,
        })
    }

    fn url(&mut self, url: &str, span: Span, key_path: &str) {
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        if !rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)) {
            self.cx
                .error(span, key_path, format!("`{url}` is not an http(s) URL"))
                .help("write the full URL, e.g. `https://api.example.com`");
        }
    }
}
