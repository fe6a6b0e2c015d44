//! Constraint checks of generated `validate()` methods, and the checks of a
//! call's parameters against where its endpoint sends them.

use std::fmt::Display;
use std::ops::{Bound, RangeBounds};

use serde_json::Value;

use crate::descriptor::RequestFields;
use crate::error::ValidationError;

/// Collects every violated constraint of a request entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Violations(Vec<(String, String)>);

/// "at least 1", "at most 5", "between 1 and 5" (inclusive bounds, as the
/// spec writes them; an excluded bound reads "more than" / "less than").
fn range_text<T: Display>(bounds: &impl RangeBounds<T>) -> String {
    let (min, max) = (bounds.start_bound(), bounds.end_bound());
    match (min, max) {
        (Bound::Included(min), Bound::Included(max)) => format!("between {min} and {max}"),
        (Bound::Unbounded, Bound::Unbounded) => "anything".to_owned(),
        _ => {
            let low = match min {
                Bound::Included(min) => Some(format!("at least {min}")),
                Bound::Excluded(min) => Some(format!("more than {min}")),
                Bound::Unbounded => None,
            };
            let high = match max {
                Bound::Included(max) => Some(format!("at most {max}")),
                Bound::Excluded(max) => Some(format!("less than {max}")),
                Bound::Unbounded => None,
            };
            low.into_iter().chain(high).collect::<Vec<_>>().join(" and ")
        }
    }
}

impl Violations {
    /// No violation yet.
    pub fn new() -> Self {
        Violations(Vec::new())
    }

    /// Records a violation of `field` (a path such as `owner.name`).
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((field.into(), message.into()));
    }

    /// Checks a length (characters of a string, items of a list):
    /// `violations.len_in("text", text.chars().count(), 1..=5000)`.
    pub fn len_in(&mut self, field: &'static str, actual: usize, bounds: impl RangeBounds<u64>) {
        if !bounds.contains(&u64::try_from(actual).unwrap_or(u64::MAX)) {
            self.push(field, format!("length must be {} (got {actual})", range_text(&bounds)));
        }
    }

    /// Checks an integer: `violations.int_in("count", count, 0..=10)`.
    pub fn int_in(&mut self, field: &'static str, actual: i64, bounds: impl RangeBounds<i64>) {
        if !bounds.contains(&actual) {
            self.push(field, format!("must be {} (got {actual})", range_text(&bounds)));
        }
    }

    /// Checks a float: `violations.float_in("speed", speed, 0.5..=2.0)`; NaN
    /// violates any bound.
    pub fn float_in(&mut self, field: &'static str, actual: f64, bounds: impl RangeBounds<f64>) {
        if !bounds.contains(&actual) {
            self.push(field, format!("must be {} (got {actual})", range_text(&bounds)));
        }
    }

    /// Records the violations of a nested entity under `field` (`owner.name`).
    pub fn nested(&mut self, field: &'static str, result: Result<(), ValidationError>) {
        if let Err(error) = result {
            for (path, message) in error.violations() {
                self.push(format!("{field}.{path}"), message.clone());
            }
        }
    }

    /// Records the violations of one entity in a list under `field[index]` (`items[2].name`).
    pub fn nested_item(&mut self, field: &'static str, index: usize, result: Result<(), ValidationError>) {
        if let Err(error) = result {
            for (path, message) in error.violations() {
                self.push(format!("{field}[{index}].{path}"), message.clone());
            }
        }
    }

    /// `Ok` when nothing was violated; otherwise an error listing every violation.
    pub fn finish(self) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError::from_violations(self.0))
        }
    }
}

/// What the request entity's own checks cannot see, because it depends on
/// where values are sent: `params` must be a JSON object (serde would also
/// take a list for an entity) with no field the entity lacks; a path field
/// must make one real segment (not empty, `.` or `..`, which would address
/// another resource); a header field must hold no control character (CR
/// and LF would end the header, and no HTTP client sends NUL).
pub(crate) fn placement(fields: &RequestFields, params: &Value, violations: &mut Violations) {
    let Value::Object(params) = params else {
        let found = match params {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => unreachable!("matched above"),
        };
        violations.push(
            "params",
            format!("must be a JSON object of the request's fields, not {found}"),
        );
        return;
    };
    for name in params.keys().filter(|name| !fields.all.contains(&name.as_str())) {
        violations.push(name.as_str(), "is not a field of the request");
    }
    for &name in fields.path {
        let problem = match params.get(name) {
            Some(Value::Null) => Some("must be set: it is a path segment"),
            Some(Value::String(text)) if text.is_empty() => Some("must not be empty: it is a path segment"),
            Some(Value::String(text)) if text == "." || text == ".." => {
                Some("must not be `.` or `..`: as a path segment it would address another resource")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            violations.push(name, problem);
        }
    }
    for &name in fields.headers {
        if let Some(Value::String(text)) = params.get(name) {
            if let Some(control) = text.chars().find(|&c| is_header_control(c)) {
                violations.push(
                    name,
                    format!(
                        "must not contain control characters (found U+{:04X}): it is sent in a header",
                        u32::from(control)
                    ),
                );
            }
        }
    }
}

/// The characters RFC 9110 forbids in a header value: controls but tab, and DEL.
fn is_header_control(c: char) -> bool {
    (c.is_ascii_control() && c != '\t') || c == '\u{7f}'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(v: Violations) -> Vec<(String, String)> {
        v.finish()
            .map(|()| Vec::new())
            .unwrap_or_else(|e| e.violations().to_vec())
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_owned(), b.to_owned())
    }

    #[test]
    fn values_within_bounds_pass() {
        let mut v = Violations::new();
        v.len_in("text", 1, 1..=5000);
        v.len_in("text", 5000, 1..=5000);
        v.int_in("n", -3, -3..);
        v.float_in("speed", 2.0, 0.5..=2.0);
        v.float_in("any", f64::NAN, ..);
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn every_violation_is_collected() {
        let mut v = Violations::new();
        v.len_in("text", 0, 1..=5000);
        v.len_in("tags", 4, ..=3);
        v.int_in("count", 11, 0..=10);
        v.int_in("age", -1, 0..);
        v.float_in("speed", 0.25, 0.5..=2.0);
        v.float_in("ratio", f64::NAN, ..=1.0);
        assert_eq!(
            messages(v),
            vec![
                pair("text", "length must be between 1 and 5000 (got 0)"),
                pair("tags", "length must be at most 3 (got 4)"),
                pair("count", "must be between 0 and 10 (got 11)"),
                pair("age", "must be at least 0 (got -1)"),
                pair("speed", "must be between 0.5 and 2 (got 0.25)"),
                pair("ratio", "must be at most 1 (got NaN)"),
            ]
        );
    }

    #[test]
    fn excluded_bounds_are_named_as_such() {
        let mut v = Violations::new();
        v.int_in("n", 10, 0..10);
        v.float_in("f", 0.0, (Bound::Excluded(0.0), Bound::Unbounded));
        assert_eq!(
            messages(v),
            vec![
                pair("n", "must be at least 0 and less than 10 (got 10)"),
                pair("f", "must be more than 0 (got 0)"),
            ]
        );
    }

    #[test]
    fn nested_violations_get_prefixed() {
        let mut inner = Violations::new();
        inner.len_in("name", 0, 1..);
        let inner = inner.finish();
        let mut v = Violations::new();
        v.nested("owner", inner.clone());
        v.nested_item("people", 2, inner);
        v.nested("fine", Ok(()));
        assert_eq!(
            messages(v),
            vec![
                pair("owner.name", "length must be at least 1 (got 0)"),
                pair("people[2].name", "length must be at least 1 (got 0)")
            ]
        );
    }
}
