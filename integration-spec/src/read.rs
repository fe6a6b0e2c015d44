//! Typed, span-keeping access to the parsed TOML tree.
//!
//! Every accessor reports a precise diagnostic on a mismatch and returns
//! `None`, so lowering can go on and find the next mistake too.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostic::Collector;
use crate::ir::{Constant, Span};

/// A TOML value with its span.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// A table, its key path, and where to point when a key is missing.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a, 'i> {
    pub(crate) path: &'a str,
    pub(crate) span: Span2,
    pub(crate) entries: &'a DeTable<'i>,
}

/// A copyable span (Range is not Copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span2 {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl From<Span> for Span2 {
    fn from(span: Span) -> Self {
        Span2 {
            start: span.start,
            end: span.end,
        }
    }
}

impl From<Span2> for Span {
    fn from(span: Span2) -> Self {
        span.start..span.end
    }
}

/// A looked-up entry: its key path, key span and value.
#[derive(Clone, Copy)]
pub(crate) struct Entry<'a, 'i> {
    pub(crate) path: &'a str,
    pub(crate) key: &'a str,
    pub(crate) key_span: Span2,
    pub(crate) value: &'a Value<'i>,
}

impl<'a, 'i> Entry<'a, 'i> {
    pub(crate) fn span(&self) -> Span {
        self.value.span()
    }

    /// The value's full key path.
    pub(crate) fn key_path(&self) -> String {
        join(self.path, self.key)
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    let key = if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') && !key.is_empty() {
        key.to_owned()
    } else {
        format!("\"{key}\"")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// How a TOML value's type is named in messages.
pub(crate) fn kind_of(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'a, 'i> Table<'a, 'i> {
    /// Reads `value` as a table whose keys must be among `known`.
    pub(crate) fn new(
        cx: &mut Collector,
        path: &'a str,
        key_span: Span,
        value: &'a Value<'i>,
        known: &[&str],
    ) -> Option<Self> {
        let DeValue::Table(entries) = value.get_ref() else {
            cx.error(
                value.span(),
                path,
                format!("`{path}` must be a table, found {}", kind_of(value.get_ref())),
            );
            return None;
        };
        let table = Table {
            path,
            span: key_span.into(),
            entries,
        };
        table.reject_unknown(cx, known);
        Some(table)
    }

    /// Reads `value` as a table whose keys are names chosen by the user
    /// (entity fields, mappings), so any key is allowed.
    pub(crate) fn open(cx: &mut Collector, path: &'a str, key_span: Span, value: &'a Value<'i>) -> Option<Self> {
        let DeValue::Table(entries) = value.get_ref() else {
            cx.error(
                value.span(),
                path,
                format!("`{path}` must be a table, found {}", kind_of(value.get_ref())),
            );
            return None;
        };
        Some(Table {
            path,
            span: key_span.into(),
            entries,
        })
    }

    /// Reports every key not in `known`, with a did-you-mean.
    pub(crate) fn reject_unknown(&self, cx: &mut Collector, known: &[&str]) {
        for (key, _) in self.entries.iter() {
            if !known.contains(&key.get_ref().as_ref()) {
                let where_ = if self.path.is_empty() {
                    "the spec".to_owned()
                } else {
                    format!("`{}`", self.path)
                };
                cx.error(
                    key.span(),
                    join(self.path, key.get_ref()),
                    format!("unknown key `{}` in {where_}", key.get_ref()),
                )
                .expected_one_of(key.get_ref(), known.iter().copied());
            }
        }
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = Entry<'a, 'i>> + 'a {
        let path = self.path;
        self.entries.iter().map(move |(k, v)| Entry {
            path,
            key: k.get_ref().as_ref(),
            key_span: k.span().into(),
            value: v,
        })
    }

    pub(crate) fn get(&self, key: &str) -> Option<Entry<'a, 'i>> {
        self.entries().find(|e| e.key == key)
    }

    /// Like [`Table::get`], reporting a missing key with `help`.
    pub(crate) fn require(&self, cx: &mut Collector, key: &str, help: &str) -> Option<Entry<'a, 'i>> {
        let found = self.get(key);
        if found.is_none() {
            let where_ = if self.path.is_empty() {
                "the spec".to_owned()
            } else {
                format!("`{}`", self.path)
            };
            cx.error(self.span.into(), self.path, format!("missing key `{key}` in {where_}"))
                .help(help);
        }
        found
    }

    pub(crate) fn str(&self, cx: &mut Collector, key: &str) -> Option<(&'a str, Span)> {
        self.get(key).and_then(|e| string(cx, e))
    }

    pub(crate) fn require_str(&self, cx: &mut Collector, key: &str, help: &str) -> Option<(&'a str, Span)> {
        self.require(cx, key, help).and_then(|e| string(cx, e))
    }

    pub(crate) fn bool(&self, cx: &mut Collector, key: &str) -> Option<bool> {
        let e = self.get(key)?;
        match e.value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                cx.error(
                    e.span(),
                    e.key_path(),
                    format!("`{}` must be `true` or `false`, found {}", e.key, kind_of(other)),
                );
                None
            }
        }
    }

    /// A non-negative integer (milliseconds, counts, limits).
    pub(crate) fn u64(&self, cx: &mut Collector, key: &str) -> Option<u64> {
        self.get(key).and_then(|e| unsigned(cx, e))
    }

    /// A positive integer.
    pub(crate) fn positive(&self, cx: &mut Collector, key: &str) -> Option<u64> {
        let e = self.get(key)?;
        let n = unsigned(cx, e)?;
        if n == 0 {
            cx.error(e.span(), e.key_path(), format!("`{}` must be at least 1", e.key));
            return None;
        }
        Some(n)
    }

    /// A number, integer or float.
    pub(crate) fn number(&self, cx: &mut Collector, key: &str) -> Option<f64> {
        let e = self.get(key)?;
        match constant(e.value.get_ref()) {
            Some(Constant::Int(i)) => Some(i as f64),
            Some(Constant::Float(f)) => Some(f),
            _ => {
                cx.error(
                    e.span(),
                    e.key_path(),
                    format!("`{}` must be a number, found {}", e.key, kind_of(e.value.get_ref())),
                );
                None
            }
        }
    }

    pub(crate) fn table(&self, cx: &mut Collector, key: &str, path: &'a str, known: &[&str]) -> Option<Table<'a, 'i>> {
        let e = self.get(key)?;
        Table::new(cx, path, e.key_span.into(), e.value, known)
    }

    /// A nested table of user-chosen keys; see [`Table::open`].
    pub(crate) fn open_table(&self, cx: &mut Collector, key: &str, path: &'a str) -> Option<Table<'a, 'i>> {
        let e = self.get(key)?;
        Table::open(cx, path, e.key_span.into(), e.value)
    }
}

pub(crate) fn string<'a>(cx: &mut Collector, e: Entry<'a, '_>) -> Option<(&'a str, Span)> {
    match e.value.get_ref() {
        DeValue::String(s) => Some((s.as_ref(), e.span())),
        other => {
            cx.error(
                e.span(),
                e.key_path(),
                format!("`{}` must be a string, found {}", e.key, kind_of(other)),
            );
            None
        }
    }
}

fn unsigned(cx: &mut Collector, e: Entry<'_, '_>) -> Option<u64> {
    match constant(e.value.get_ref()) {
        Some(Constant::Int(i)) if i >= 0 => Some(i as u64),
        Some(Constant::Int(_)) => {
            cx.error(e.span(), e.key_path(), format!("`{}` must not be negative", e.key));
            None
        }
        None if matches!(e.value.get_ref(), DeValue::Integer(_)) => {
            cx.error(e.span(), e.key_path(), format!("`{}` is too large", e.key))
                .help("the largest accepted value is 9223372036854775807");
            None
        }
        _ => {
            cx.error(
                e.span(),
                e.key_path(),
                format!("`{}` must be an integer, found {}", e.key, kind_of(e.value.get_ref())),
            )
            .help(format!("write a whole number, e.g. `{} = 1000`", e.key));
            None
        }
    }
}

/// A scalar TOML value as a constant; `None` for datetimes, arrays, tables
/// and integers that do not fit in i64.
pub(crate) fn constant(value: &DeValue<'_>) -> Option<Constant> {
    match value {
        DeValue::String(s) => Some(Constant::String(s.to_string())),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(Constant::Int),
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Constant::Float),
        DeValue::Boolean(b) => Some(Constant::Bool(*b)),
        DeValue::Datetime(_) | DeValue::Array(_) | DeValue::Table(_) => None,
    }
}
