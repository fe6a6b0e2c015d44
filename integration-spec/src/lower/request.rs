//! What an endpoint sends: the path template, `query`, `headers` and `body`
//! mappings from the request entity's fields, string templates, and the
//! `idempotency_key`.

use toml::de::DeValue;

use super::Lower;
use crate::check;
use crate::ir::*;
use crate::read::{constant, join, kind_of, Entry, Table};

impl Lower<'_> {
    pub(super) fn path_template(
        &mut self,
        text: &str,
        span: Span,
        key_path: &str,
        request: check::Request<'_>,
    ) -> Vec<PathPart> {
        if !text.starts_with('/') {
            self.cx
                .error(span.clone(), key_path, format!("path `{text}` must start with `/`"))
                .help(format!("write `/{text}`"));
        }
        if let Some(bad) = text.find(['?', '#']) {
            self.cx
                .error(span.clone(), key_path, format!("path contains `{}`", &text[bad..=bad]))
                .help("put query parameters in `query = { name = \"{field}\" }`");
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(PathPart::Literal(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                self.cx
                    .error(span.clone(), key_path, "unclosed `{` in path")
                    .help("path parameters look like `{name}`");
                return parts;
            };
            let param = &rest[open + 1..open + close];
            // Point at `{param}` itself: the string's span starts at its opening quote.
            let at = span.start + 1 + (text.len() - rest.len()) + open;
            let param_span = if at + close < span.end {
                at..at + close + 1
            } else {
                span.clone()
            };
            if let Some(part) = check::path_param_source(self.cx, param, request, param_span, key_path) {
                if part == PathPart::ExternalId && !matches!(request, check::Request::Absent) {
                    self.cx.error(span.clone(), key_path, "`{external_id}` is not known yet when a call starts")
                        .help("use `{external_id}` in status-query endpoints (without `request`); starting endpoints fill their path from request fields");
                }
                parts.push(part);
            }
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(PathPart::Literal(rest.to_owned()));
        }
        parts
    }

    pub(super) fn mappings(
        &mut self,
        t: Table<'_, '_>,
        key: &str,
        request: check::Request<'_>,
        is_headers: bool,
    ) -> Vec<Mapping> {
        let Some(e) = t.get(key) else { return Vec::new() };
        let key_path = e.key_path();
        let Some(table) = Table::open(self.cx, &key_path, e.key_span.into(), e.value) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in table.entries() {
            let entry_path = entry.key_path();
            if is_headers {
                check::header_name(self.cx, entry.key, entry.key_span.into(), &entry_path);
            }
            let target: Vec<String> = if key == "body" {
                entry.key.split('.').map(str::to_owned).collect()
            } else {
                vec![entry.key.to_owned()]
            };
            if target.iter().any(String::is_empty) {
                self.cx
                    .error(
                        entry.key_span.into(),
                        entry_path.clone(),
                        format!("`{}` has an empty segment", entry.key),
                    )
                    .help("body keys are dotted paths like `input.text`");
                continue;
            }
            if let Some(value) = self.mapping_value(entry, request) {
                out.push(Mapping { target, value });
            }
        }
        out
    }

    fn mapping_value(&mut self, e: Entry<'_, '_>, request: check::Request<'_>) -> Option<MappingValue> {
        let key_path = e.key_path();
        match e.value.get_ref() {
            DeValue::String(text) => self.template(text, e.span(), &key_path, request),
            DeValue::Table(_) => {
                let t = Table::new(
                    self.cx,
                    &key_path,
                    e.key_span.into(),
                    e.value,
                    &["from", "map", "default"],
                )?;
                let (from, from_span) = t.require_str(
                    self.cx,
                    "from",
                    "add `from = \"field_name\"` (the request field to read)",
                )?;
                let field = check::request_field(self.cx, from, request, from_span, &join(&key_path, "from"))?;
                match (t.get("map"), t.get("default")) {
                    (Some(m), None) => {
                        let map_path = m.key_path();
                        let mt = Table::open(self.cx, &map_path, m.key_span.into(), m.value)?;
                        let mut keys = Vec::new();
                        let mut map = Vec::new();
                        for item in mt.entries() {
                            keys.push((item.key.to_owned(), Span::from(item.key_span)));
                            match constant(item.value.get_ref()) {
                                Some(c) => map.push((item.key.to_owned(), c)),
                                None => {
                                    self.cx.error(
                                        item.span(),
                                        item.key_path(),
                                        "value map targets must be strings, numbers or booleans",
                                    );
                                }
                            }
                        }
                        check::value_map_covers_field(self.cx, field, &keys, m.key_span.into(), &map_path);
                        Some(MappingValue::ValueMap {
                            field: from.to_owned(),
                            map,
                        })
                    }
                    (None, Some(d)) => {
                        let Some(default) = constant(d.value.get_ref()) else {
                            self.cx.error(
                                d.span(),
                                d.key_path(),
                                "a mapping default must be a string, number or boolean",
                            );
                            return None;
                        };
                        check::constant_fits_field(self.cx, &default, field, d.span(), &d.key_path());
                        Some(MappingValue::WithDefault {
                            field: from.to_owned(),
                            default,
                        })
                    }
                    _ => {
                        self.cx
                            .error(
                                e.span(),
                                key_path,
                                "a mapping table needs exactly one of `map` or `default`",
                            )
                            .help(
                                "`{ from = \"kind\", map = { a = \"A\" } }` or `{ from = \"speed\", default = 1.0 }`",
                            );
                        None
                    }
                }
            }
            other => match constant(other) {
                Some(c) => Some(MappingValue::Constant(c)),
                None => {
                    self.cx
                        .error(
                            e.span(),
                            key_path,
                            format!(
                                "a mapping value must be a string, number, boolean or table, found {}",
                                kind_of(other)
                            ),
                        )
                        .help("write `\"{field}\"`, a constant, or `{ from = \"field\", map = { ... } }`");
                    None
                }
            },
        }
    }

    fn template(
        &mut self,
        text: &str,
        span: Span,
        key_path: &str,
        request: check::Request<'_>,
    ) -> Option<MappingValue> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        let mut ok = true;
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let Some(close) = text[i..].find('}') else {
                        self.cx
                            .error(span.clone(), key_path, "unclosed `{` in mapping")
                            .help("write `{field}`, or `{{` for a literal brace");
                        return None;
                    };
                    let name = &text[i + 1..i + close];
                    while chars.peek().is_some_and(|(j, _)| *j <= i + close) {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                    }
                    match check::request_field(self.cx, name, request, span.clone(), key_path) {
                        Some(field) => parts.push(TemplatePart::Field(field.name.clone())),
                        None => ok = false,
                    }
                }
                '}' => {
                    self.cx
                        .error(span.clone(), key_path, "unmatched `}` in mapping")
                        .help("write `}}` for a literal brace");
                    return None;
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        if !ok {
            return None;
        }
        match parts.as_slice() {
            [TemplatePart::Field(name)] => Some(MappingValue::Field(name.clone())),
            [] => Some(MappingValue::Constant(Constant::String(String::new()))),
            [TemplatePart::Literal(text)] => Some(MappingValue::Constant(Constant::String(text.clone()))),
            _ => {
                let check::Request::Entity(entity) = request else {
                    return Some(MappingValue::Template(parts));
                };
                for part in &parts {
                    if let TemplatePart::Field(name) = part {
                        if let Some(field) = entity.field(name).filter(|f| !f.recovered && !check::is_scalar(&f.ty)) {
                            self.cx
                                .error(
                                    span.clone(),
                                    key_path,
                                    format!(
                                        "`{{{name}}}` is {} and cannot be interpolated into text",
                                        field.ty.spec_name()
                                    ),
                                )
                                .help(format!("map it on its own: `\"{{{name}}}\"`"));
                        }
                    }
                }
                Some(MappingValue::Template(parts))
            }
        }
    }

    pub(super) fn idempotency_key(&mut self, e: Entry<'_, '_>) -> Option<IdempotencyKey> {
        let key_path = e.key_path();
        let t = Table::new(self.cx, &key_path, e.key_span.into(), e.value, &["header", "body"])?;
        match (t.str(self.cx, "header"), t.str(self.cx, "body")) {
            (Some((header, span)), None) => {
                check::header_name(self.cx, header, span, &join(&key_path, "header"));
                Some(IdempotencyKey::Header(header.to_owned()))
            }
            (None, Some((body, span))) => {
                let segments: Vec<String> = body.split('.').map(str::to_owned).collect();
                if segments.iter().any(String::is_empty) {
                    self.cx
                        .error(span, join(&key_path, "body"), format!("`{body}` has an empty segment"))
                        .help("body paths are dotted, like `meta.idempotency_key`");
                    return None;
                }
                Some(IdempotencyKey::Body(segments))
            }
            _ => {
                self.cx
                    .error(
                        e.span(),
                        key_path,
                        "`idempotency_key` needs exactly one of `header` or `body`",
                    )
                    .help("e.g. `idempotency_key = { header = \"Idempotency-Key\" }`");
                None
            }
        }
    }
}
