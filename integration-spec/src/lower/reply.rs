//! How a reply is read: JSON paths, the `status` map from the provider's
//! states to the call's, and the `result` entity.

use super::Lower;
use crate::check;
use crate::ir::*;
use crate::jsonpath::JsonPath;
use crate::read::{join, string, Entry, Table};

impl Lower<'_> {
    pub(super) fn json_path(&mut self, text: &str, span: Span, key_path: &str) -> Option<JsonPath> {
        match JsonPath::parse(text) {
            Ok(path) => Some(path),
            Err(err) => {
                // Point inside the string: skip the opening quote.
                let at = (span.start + 1 + err.offset)
                    .min(span.end.saturating_sub(1))
                    .max(span.start);
                self.cx
                    .error(
                        at..at + 1,
                        key_path,
                        format!("invalid JSON path `{text}`: {}", err.message),
                    )
                    .help(err.help);
                None
            }
        }
    }

    pub(super) fn status_map(&mut self, e: Entry<'_, '_>) -> Option<StatusMap> {
        let key_path = e.key_path();
        let t = Table::new(self.cx, &key_path, e.key_span.into(), e.value, &["path", "map"])?;
        let path = t
            .require_str(
                self.cx,
                "path",
                "add `path = \"$.state\"` (where the provider's state is)",
            )
            .and_then(|(text, span)| self.json_path(text, span, &join(&key_path, "path")));
        let m = t.require(
            self.cx,
            "map",
            "add `map = { running = \"processing\", done = \"completed\", error = \"failed\" }`",
        )?;
        let map_path = m.key_path();
        let mt = Table::open(self.cx, &map_path, m.key_span.into(), m.value)?;
        let mut map = Vec::new();
        let mut invalid = false;
        for item in mt.entries() {
            let status = match string(self.cx, item) {
                Some(("processing", _)) => RemoteStatus::Processing,
                Some(("completed", _)) => RemoteStatus::Completed,
                Some(("failed", _)) => RemoteStatus::Failed,
                Some(("cancelled", _)) => RemoteStatus::Cancelled,
                Some((other, span)) => {
                    self.cx
                        .error(span, item.key_path(), format!("`{other}` is not a lifecycle state"))
                        .expected_one_of(other, ["processing", "completed", "failed", "cancelled"]);
                    invalid = true;
                    continue;
                }
                None => {
                    invalid = true;
                    continue;
                }
            };
            map.push((item.key.to_owned(), status));
        }
        // A broken path was reported already; keep the map so rules that
        // need one (polling) do not report it missing.
        let status = StatusMap {
            path: path.unwrap_or_else(JsonPath::root),
            map,
        };
        if !invalid {
            check::status_map_is_complete(self.cx, &status, m.key_span.into(), &map_path);
        }
        Some(status)
    }

    pub(super) fn result(&mut self, e: Entry<'_, '_>, entities: &[Entity]) -> Option<ResultSpec> {
        let key_path = e.key_path();
        let t = Table::new(
            self.cx,
            &key_path,
            e.key_span.into(),
            e.value,
            &["entity", "root", "fields"],
        )?;
        let (name, span) = t.require_str(self.cx, "entity", "add `entity = \"EntityName\"` (the result's type)")?;
        let Some(entity) = entities.iter().find(|e| e.name == name) else {
            self.cx
                .error(span, join(&key_path, "entity"), format!("unknown entity `{name}`"))
                .expected_one_of(name, entities.iter().map(|e| e.name.as_str()));
            return None;
        };
        let root = match t.str(self.cx, "root") {
            Some((text, span)) => self.json_path(text, span, &join(&key_path, "root"))?,
            None => JsonPath::root(),
        };
        let mut explicit = Vec::new();
        if let Some(fields) = t.open_table(self.cx, "fields", &join(&key_path, "fields")) {
            for f in fields.entries() {
                if entity.field(f.key).is_none() {
                    self.cx
                        .error(
                            f.key_span.into(),
                            f.key_path(),
                            format!("entity `{name}` has no field `{}`", f.key),
                        )
                        .expected_one_of(f.key, entity.fields.iter().map(|x| x.name.as_str()));
                    continue;
                }
                if let Some((text, span)) = string(self.cx, f) {
                    if let Some(path) = self.json_path(text, span, &f.key_path()) {
                        explicit.push((f.key.to_owned(), path));
                    }
                }
            }
        }
        let fields = entity
            .fields
            .iter()
            .map(|field| {
                let path = explicit
                    .iter()
                    .find(|(n, _)| *n == field.name)
                    .map_or_else(|| root.child(&field.name), |(_, p)| p.clone());
                (field.name.clone(), path)
            })
            .collect();
        Some(ResultSpec {
            entity: name.to_owned(),
            fields,
        })
    }
}
