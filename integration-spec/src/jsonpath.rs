//! RFC 9535 JSON paths, restricted to singular queries.
//!
//! Extraction fills one typed field from one value, so a path must select at
//! most one node: the RFC calls these *singular queries* (section 2.3.5.1):
//! `$` followed by name segments (`.name`, `['name']`, `["name"]`) and index
//! segments (`[0]`, `[-1]`). Everything else the RFC allows (wildcards,
//! slices, filters, descendant segments, unions) selects many nodes and is
//! refused with a reason.

use std::fmt;

/// One step of a singular query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A member name of an object.
    Name(String),
    /// An array index; negative counts from the end.
    Index(i64),
}

/// A parsed singular JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// The path as written in the spec.
    pub text: String,
    /// Its segments, outermost first.
    pub segments: Vec<Segment>,
}

/// Why a path was refused; `offset` is a byte offset into the path text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    /// Byte offset of the problem in the path text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: &'static str,
}

const SINGULAR_HELP: &str = "write a singular query such as `$.data.task_id`, `$['content-type']` or `$.items[0].id`";

impl JsonPath {
    /// Parses `text` as an RFC 9535 singular query.
    pub fn parse(text: &str) -> Result<JsonPath, PathError> {
        let mut p = Parser { text, pos: 0 };
        let segments = p.query()?;
        Ok(JsonPath {
            text: text.to_owned(),
            segments,
        })
    }

    /// A path that reads `name` below this one (used for `root` + field name).
    pub fn child(&self, name: &str) -> JsonPath {
        let mut segments = self.segments.clone();
        segments.push(Segment::Name(name.to_owned()));
        let is_plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let text = if is_plain {
            format!("{}.{name}", self.text)
        } else {
            format!("{}['{}']", self.text, name.replace('\\', "\\\\").replace('\'', "\\'"))
        };
        JsonPath { text, segments }
    }

    /// The root path `$`.
    pub fn root() -> JsonPath {
        JsonPath {
            text: "$".to_owned(),
            segments: Vec::new(),
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, PathError> {
        Err(PathError {
            offset: self.pos,
            message: message.into(),
            help: SINGULAR_HELP,
        })
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn query(&mut self) -> Result<Vec<Segment>, PathError> {
        if self.bump() != Some('$') {
            self.pos = 0;
            return self.err("a JSON path must start with `$`");
        }
        let mut segments = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '.' => {
                    self.bump();
                    match self.peek() {
                        Some('.') => return self.err("descendant segments (`..`) select many values"),
                        Some('*') => return self.err("wildcards (`*`) select many values"),
                        _ => segments.push(Segment::Name(self.member_name()?)),
                    }
                }
                '[' => {
                    self.bump();
                    segments.push(self.bracketed()?);
                }
                _ => return self.err(format!("unexpected `{c}`; expected `.name` or `[...]`")),
            }
        }
        Ok(segments)
    }

    /// RFC 9535 member-name-shorthand: name-first *name-char.
    fn member_name(&mut self) -> Result<String, PathError> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_alphabetic() || c == '_' || !c.is_ascii() => {}
            Some(c) => return self.err(format!("`{c}` cannot start a member name; quote it: `['...']`")),
            None => return self.err("a member name is missing after `.`"),
        }
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || !c.is_ascii() {
                self.bump();
            } else {
                break;
            }
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn bracketed(&mut self) -> Result<Segment, PathError> {
        self.skip_blank();
        let segment = match self.peek() {
            Some(q @ ('\'' | '"')) => {
                self.bump();
                Segment::Name(self.string(q)?)
            }
            Some(c) if c == '-' || c.is_ascii_digit() => Segment::Index(self.index()?),
            Some('*') => return self.err("wildcards (`[*]`) select many values"),
            Some('?') => return self.err("filters (`[?...]`) select many values"),
            Some(':') => return self.err("slices (`[a:b]`) select many values"),
            Some(c) => return self.err(format!("unexpected `{c}` in brackets")),
            None => return self.err("unclosed `[`"),
        };
        self.skip_blank();
        match self.bump() {
            Some(']') => Ok(segment),
            Some(',') => {
                self.pos -= 1;
                self.err("unions (`[a,b]`) select many values")
            }
            Some(':') => {
                self.pos -= 1;
                self.err("slices (`[a:b]`) select many values")
            }
            _ => self.err("expected `]`"),
        }
    }

    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.bump();
        }
    }

    fn index(&mut self) -> Result<i64, PathError> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.bump();
        }
        while matches!(self.peek(), Some('0'..='9')) {
            self.bump();
        }
        let digits = &self.text[start..self.pos];
        let unsigned = digits.trim_start_matches('-');
        if unsigned.is_empty() || (unsigned.len() > 1 && unsigned.starts_with('0')) || digits == "-0" {
            self.pos = start;
            return self.err(format!("`{digits}` is not a valid index (no leading zeros, no `-0`)"));
        }
        match digits.parse::<i64>() {
            // RFC 9535 limits indices to the I-JSON exact integer range.
            Ok(i) if i.unsigned_abs() < (1 << 53) => Ok(i),
            _ => {
                self.pos = start;
                self.err(format!("index `{digits}` is out of range"))
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<String, PathError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return self.err("unterminated string"),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => {
                    let escaped = match self.bump() {
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('/') => '/',
                        Some('\\') => '\\',
                        Some(c) if c == quote => c,
                        Some('u') => self.unicode_escape()?,
                        _ => return self.err("invalid escape in string"),
                    };
                    out.push(escaped);
                }
                Some(c) if (c as u32) < 0x20 => return self.err("control characters must be escaped"),
                Some(c) => out.push(c),
            }
        }
    }

    fn unicode_escape(&mut self) -> Result<char, PathError> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if self.bump() != Some('\\') || self.bump() != Some('u') {
                return self.err("a high surrogate must be followed by `\\u` and a low surrogate");
            }
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return self.err("invalid low surrogate");
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).map_or_else(|| self.err("invalid unicode escape"), Ok)
    }

    fn hex4(&mut self) -> Result<u32, PathError> {
        let start = self.pos;
        for _ in 0..4 {
            if !self.bump().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.pos = start;
                return self.err("`\\u` needs four hex digits");
            }
        }
        Ok(u32::from_str_radix(&self.text[start..self.pos], 16).expect("four hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::Segment::{Index, Name};
    use super::*;

    fn segs(text: &str) -> Vec<Segment> {
        JsonPath::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
            .segments
    }

    #[test]
    fn singular_queries_parse() {
        assert_eq!(segs("$"), vec![]);
        assert_eq!(
            segs("$.data.task_id"),
            vec![Name("data".into()), Name("task_id".into())]
        );
        assert_eq!(segs("$['content-type']"), vec![Name("content-type".into())]);
        assert_eq!(segs(r#"$["a\"b"]"#), vec![Name("a\"b".into())]);
        assert_eq!(
            segs("$.items[0].id"),
            vec![Name("items".into()), Index(0), Name("id".into())]
        );
        assert_eq!(segs("$.items[-1]"), vec![Name("items".into()), Index(-1)]);
        assert_eq!(segs("$[ 'x' ]"), vec![Name("x".into())]);
        assert_eq!(segs(r"$['\u00e9\ud83d\ude00']"), vec![Name("é😀".into())]);
        assert_eq!(segs("$.héllo"), vec![Name("héllo".into())]);
    }

    #[test]
    fn non_singular_and_malformed_paths_are_refused_with_reasons() {
        let cases = [
            ("data.id", 0, "must start with `$`"),
            ("$..id", 2, "descendant"),
            ("$.*", 2, "wildcards"),
            ("$[*]", 2, "wildcards"),
            ("$[?@.a]", 2, "filters"),
            ("$[0:2]", 3, "slices"),
            ("$['a','b']", 5, "unions"),
            ("$[01]", 2, "not a valid index"),
            ("$[-0]", 2, "not a valid index"),
            ("$.1abc", 2, "cannot start a member name"),
            ("$['abc", 6, "unterminated"),
            ("$[0", 3, "expected `]`"),
            ("$.", 2, "missing"),
            ("$x", 1, "unexpected `x`"),
            ("$[9007199254740993]", 2, "out of range"),
        ];
        for (text, offset, needle) in cases {
            let err = JsonPath::parse(text).expect_err(text);
            assert!(err.message.contains(needle), "{text}: {}", err.message);
            assert_eq!(err.offset, offset, "{text}: {}", err.message);
        }
    }

    #[test]
    fn child_paths_quote_when_needed() {
        let root = JsonPath::parse("$.data").unwrap();
        assert_eq!(root.child("url").text, "$.data.url");
        assert_eq!(root.child("content-type").text, "$.data['content-type']");
        assert_eq!(JsonPath::parse(&root.child("it's").text).unwrap(), root.child("it's"));
    }
}
