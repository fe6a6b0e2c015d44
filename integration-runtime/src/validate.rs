//! Constraint checks of generated `validate()` methods, and the checks of a
//! call's parameters against where its endpoint sends them.

use std::fmt::Display;

use serde_json::Value;

use crate::descriptor::RequestFields;
use crate::error::ValidationError;

/// Collects every violated constraint of a request entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Violations(Vec<(String, String)>);

/// "must be at least 1", "must be at most 5", "must be between 1 and 5".
fn range_text<T: Display>(min: Option<T>, max: Option<T>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("between {min} and {max}"),
        (Some(min), None) => format!("at least {min}"),
        (None, Some(max)) => format!("at most {max}"),
        (None, None) => "anything".to_owned(),
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

    /// Checks a length (characters of a string, items of a list).
    pub fn len_between(&mut self, field: &'static str, actual: usize, min: Option<u64>, max: Option<u64>) {
        let actual_u64 = u64::try_from(actual).unwrap_or(u64::MAX);
        if min.is_some_and(|min| actual_u64 < min) || max.is_some_and(|max| actual_u64 > max) {
            self.push(field, format!("length must be {} (got {actual})", range_text(min, max)));
        }
    }

    /// Checks an integer against inclusive bounds.
    pub fn int_between(&mut self, field: &'static str, actual: i64, min: Option<i64>, max: Option<i64>) {
        if min.is_some_and(|min| actual < min) || max.is_some_and(|max| actual > max) {
            self.push(field, format!("must be {} (got {actual})", range_text(min, max)));
        }
    }

    /// Checks a float against inclusive bounds; NaN violates any bound.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn float_between(&mut self, field: &'static str, actual: f64, min: Option<f64>, max: Option<f64>) {
        let below = min.is_some_and(|min| !(actual >= min));
        let above = max.is_some_and(|max| !(actual <= max));
        if below || above {
            self.push(field, format!("must be {} (got {actual})", range_text(min, max)));
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
        v.len_between("text", 1, Some(1), Some(5000));
        v.len_between("text", 5000, Some(1), Some(5000));
        v.int_between("n", -3, Some(-3), None);
        v.float_between("speed", 2.0, Some(0.5), Some(2.0));
        v.float_between("any", f64::NAN, None, None);
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn every_violation_is_collected() {
        let mut v = Violations::new();
        v.len_between("text", 0, Some(1), Some(5000));
        v.len_between("tags", 4, None, Some(3));
        v.int_between("count", 11, Some(0), Some(10));
        v.int_between("age", -1, Some(0), None);
        v.float_between("speed", 0.25, Some(0.5), Some(2.0));
        v.float_between("ratio", f64::NAN, None, Some(1.0));
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
    fn nested_violations_get_prefixed() {
        let mut inner = Violations::new();
        inner.len_between("name", 0, Some(1), None);
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
