//! `check --db`: which stored calls a spec change would strand, told
//! before the deploy, by the runtime's own decision
//! ([`integration_runtime::stranded_reason`]) over the parsed spec.

use integration_runtime::{Mode, SpecView};
use integration_spec::ir::{Entity, Spec, Type};
use serde_json::Value;

/// A parsed spec, seen as the runtime sees a generated integration.
///
/// Parameters are checked by the entity's shape (required fields present,
/// scalar types, enum values, nested entities and lists); a running
/// runtime also checks the spec's length and range bounds.
pub(crate) struct ParsedSpec<'a>(pub(crate) &'a Spec);

impl SpecView for ParsedSpec<'_> {
    fn integration(&self) -> &str {
        &self.0.integration.name
    }

    fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }

    fn start_mode(&self, endpoint: &str) -> Option<Mode> {
        let endpoint = self.0.endpoint(endpoint).filter(|e| e.starts_calls())?;
        Some(match endpoint.mode {
            integration_spec::ir::Mode::Sync => Mode::Sync,
            integration_spec::ir::Mode::Async => Mode::Async,
        })
    }

    fn can_follow(&self) -> bool {
        self.0.polling.is_some() || self.0.webhook.is_some()
    }

    fn check_params(&self, endpoint: &str, params: &Value) -> Result<(), String> {
        let entity = self
            .0
            .endpoint(endpoint)
            .and_then(|e| e.request.as_deref())
            .and_then(|name| self.entity(name))
            .ok_or_else(|| format!("endpoint `{endpoint}` has no request entity"))?;
        self.fits(entity, params, "")
    }
}

impl ParsedSpec<'_> {
    fn entity(&self, name: &str) -> Option<&Entity> {
        self.0.entities.iter().find(|entity| entity.name == name)
    }

    /// Whether `value` has the shape of `entity`; `at` names where it is.
    fn fits(&self, entity: &Entity, value: &Value, at: &str) -> Result<(), String> {
        let Value::Object(fields) = value else {
            return Err(format!("{} is not an object", place(at)));
        };
        for field in &entity.fields {
            let path = if at.is_empty() {
                field.name.clone()
            } else {
                format!("{at}.{}", field.name)
            };
            match fields.get(&field.name) {
                None | Some(Value::Null) if field.optional || field.default.is_some() => {}
                None | Some(Value::Null) => return Err(format!("field `{path}` is required and missing")),
                Some(value) => self.has_type(&field.ty, value, &path)?,
            }
        }
        Ok(())
    }

    fn has_type(&self, ty: &Type, value: &Value, at: &str) -> Result<(), String> {
        let fits = match ty {
            Type::String | Type::Timestamp | Type::Uuid => value.is_string(),
            Type::Int => value.is_i64() || value.is_u64(),
            Type::Float => value.is_number(),
            Type::Bool => value.is_boolean(),
            Type::Json => true,
            Type::Enum(values) => value
                .as_str()
                .is_some_and(|v| values.iter().any(|allowed| allowed == v)),
            Type::List(item) => match value {
                Value::Array(items) => {
                    for (i, item_value) in items.iter().enumerate() {
                        self.has_type(item, item_value, &format!("{at}[{i}]"))?;
                    }
                    true
                }
                _ => false,
            },
            Type::Entity(name) => match self.entity(name) {
                Some(entity) => return self.fits(entity, value, at),
                None => false,
            },
        };
        match fits {
            true => Ok(()),
            false => Err(format!("{} is not of type `{}`: {value}", place(at), ty.spec_name())),
        }
    }
}

fn place(at: &str) -> String {
    if at.is_empty() {
        "the request".to_owned()
    } else {
        format!("field `{at}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC: &str = r#"
[integration]
name = "Shop"
base_url = "https://shop.example.com"

[entities.Line]
sku = "string"
qty = "int"

[entities.Order]
note = { type = "string", optional = true }
currency = { type = "enum", values = ["usd", "eur"], default = "usd" }
lines = { type = "list", items = "Line" }

[endpoints.place]
method = "POST"
path = "/orders"
request = "Order"
body = { note = "{note}" }
"#;

    #[test]
    fn parameters_are_checked_by_the_entitys_shape() {
        let spec = integration_spec::parse(SPEC, "shop.toml").unwrap();
        let view = ParsedSpec(&spec);
        let check = |params: Value| view.check_params("place", &params);
        assert_eq!(check(json!({"lines": [{"sku": "a", "qty": 2}]})), Ok(()));
        assert_eq!(check(json!({})), Err("field `lines` is required and missing".into()));
        assert_eq!(
            check(json!({"lines": [{"sku": "a", "qty": "two"}]})),
            Err("field `lines[0].qty` is not of type `int`: \"two\"".into())
        );
        assert_eq!(
            check(json!({"lines": [], "currency": "gbp"})),
            Err("field `currency` is not of type `enum`: \"gbp\"".into())
        );
        assert_eq!(check(json!([1])), Err("the request is not an object".into()));
        assert_eq!(view.start_mode("place"), Some(Mode::Sync));
        assert_eq!(view.start_mode("gone"), None);
    }
}
