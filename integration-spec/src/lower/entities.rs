//! The `[entities]` section: each entity's fields, their types (built-in,
//! `enum`, `list` or another entity), constraints (`min_len`, `max`, ...) and
//! defaults.

use toml::de::DeValue;

use super::Lower;
use crate::ir::*;
use crate::read::{constant, join, kind_of, Entry, Table};
use crate::{case, check};

pub(super) const FIELD_KEYS: &[&str] = &[
    "type", "optional", "default", "values", "items", "min_len", "max_len", "min", "max", "doc",
];
pub(super) const BUILTIN_TYPES: &[&str] = &[
    "string",
    "int",
    "float",
    "bool",
    "timestamp",
    "uuid",
    "json",
    "enum",
    "list",
];

impl Lower<'_> {
    pub(super) fn entities(&mut self, root: Table<'_, '_>) -> Vec<Entity> {
        let Some(e) = root.get("entities") else {
            return Vec::new();
        };
        let DeValue::Table(all) = e.value.get_ref() else {
            self.cx.error(
                e.span(),
                "entities",
                "`entities` must be a table of entities, e.g. `[entities.Order]`",
            );
            return Vec::new();
        };
        let names: Vec<String> = all.iter().map(|(k, _)| k.get_ref().to_string()).collect();
        let mut entities = Vec::new();
        for (key, value) in all.iter() {
            let name = key.get_ref().as_ref();
            let path = join("entities", name);
            check::pascal_case(self.cx, name, key.span(), &path, "entity name");
            let Some(t) = Table::open(self.cx, &path, key.span(), value) else {
                continue;
            };
            let fields = t.entries().filter_map(|f| self.field(f, &names)).collect();
            entities.push(Entity {
                name: name.to_owned(),
                span: key.span(),
                fields,
            });
        }
        entities
    }

    fn field(&mut self, e: Entry<'_, '_>, entity_names: &[String]) -> Option<Field> {
        let key_path = e.key_path();
        let errors_before = self.cx.len();
        check::snake_case(self.cx, e.key, e.key_span.into(), &key_path, "field name");
        // A badly named field is kept under the name the error suggests, so
        // mappings written with that name do not report it again.
        let name = if self.cx.len() > errors_before {
            case::to_snake(e.key)
        } else {
            e.key.to_owned()
        };
        let mut field = Field {
            name,
            span: e.key_span.into(),
            ty: Type::Json,
            optional: false,
            default: None,
            doc: None,
            len: Bounds::default(),
            int_range: Bounds::default(),
            float_range: Bounds::default(),
            recovered: self.cx.len() > errors_before,
        };
        // From here on, a declaration error keeps the field as `json` and
        // marks it recovered: its other uses are then not reported again.
        let recover = |mut field: Field| {
            field.ty = Type::Json;
            field.recovered = true;
            Some(field)
        };
        if let DeValue::String(shorthand) = e.value.get_ref() {
            if matches!(shorthand.as_ref(), "enum" | "list") {
                let needs = if shorthand == "enum" {
                    "values = [\"a\", \"b\"]"
                } else {
                    "items = \"string\""
                };
                self.cx
                    .error(e.span(), key_path, format!("`{shorthand}` needs more than a type name"))
                    .help(format!("write `{} = {{ type = \"{shorthand}\", {needs} }}`", e.key));
                return recover(field);
            }
            return match self.type_name(shorthand, e.span(), &key_path, entity_names) {
                Some(ty) => {
                    field.ty = ty;
                    Some(field)
                }
                None => recover(field),
            };
        }
        let Some(t) = Table::new(self.cx, &key_path, e.key_span.into(), e.value, FIELD_KEYS) else {
            return recover(field);
        };
        let Some(ty) = self.field_type(t, &key_path, entity_names) else {
            return recover(field);
        };
        field.ty = ty;
        for (key, applies) in [
            ("values", matches!(field.ty, Type::Enum(_))),
            ("items", matches!(field.ty, Type::List(_))),
        ] {
            if let Some(extra) = t.get(key).filter(|_| !applies) {
                self.cx
                    .error(
                        extra.key_span.into(),
                        extra.key_path(),
                        format!("`{key}` does not apply to type {}", field.ty.spec_name()),
                    )
                    .help(format!("remove `{key}`"));
            }
        }
        field.optional = t.bool(self.cx, "optional").unwrap_or(false);
        field.doc = t.str(self.cx, "doc").map(|(d, _)| d.to_owned());
        self.constraints(t, &mut field, &key_path);
        if let Some(d) = t.get("default") {
            field.default = self.default_value(d, &field);
            if field.optional {
                self.cx
                    .error(
                        d.key_span.into(),
                        d.key_path(),
                        format!("field `{}` has a default and is optional", field.name),
                    )
                    .help("a field with a default is never absent; remove `optional = true`");
            }
        }
        Some(field)
    }

    fn field_type(&mut self, t: Table<'_, '_>, key_path: &str, entity_names: &[String]) -> Option<Type> {
        let (ty_name, ty_span) = t.require_str(
            self.cx,
            "type",
            "add `type = \"string\"` (or int, float, bool, timestamp, uuid, json, enum, list, or an entity name)",
        )?;
        Some(match ty_name {
            "enum" => Type::Enum(self.enum_values(t)?),
            "list" => {
                let (item, item_span) =
                    t.require_str(self.cx, "items", "add `items = \"string\"` (the type of each item)")?;
                if matches!(item, "list" | "enum") {
                    self.cx
                        .error(
                            item_span,
                            join(key_path, "items"),
                            format!("list items cannot be `{item}` directly"),
                        )
                        .help("declare an entity for the item and use its name");
                    return None;
                }
                Type::List(Box::new(self.type_name(
                    item,
                    item_span,
                    &join(key_path, "items"),
                    entity_names,
                )?))
            }
            other => self.type_name(other, ty_span, &join(key_path, "type"), entity_names)?,
        })
    }

    fn type_name(&mut self, name: &str, span: Span, key_path: &str, entity_names: &[String]) -> Option<Type> {
        Some(match name {
            "string" => Type::String,
            "int" => Type::Int,
            "float" => Type::Float,
            "bool" => Type::Bool,
            "timestamp" => Type::Timestamp,
            "uuid" => Type::Uuid,
            "json" => Type::Json,
            entity if entity_names.iter().any(|n| n == entity) => Type::Entity(entity.to_owned()),
            unknown => {
                self.cx
                    .error(span, key_path, format!("unknown type `{unknown}`"))
                    .expected_one_of(
                        unknown,
                        BUILTIN_TYPES
                            .iter()
                            .copied()
                            .chain(entity_names.iter().map(String::as_str)),
                    );
                return None;
            }
        })
    }

    fn enum_values(&mut self, t: Table<'_, '_>) -> Option<Vec<String>> {
        let e = t.require(self.cx, "values", "add `values = [\"first\", \"second\"]`")?;
        let values = self.string_list(t, "values");
        if values.is_empty() {
            self.cx
                .error(e.span(), e.key_path(), "an enum needs at least one value")
                .help("list the allowed values");
            return None;
        }
        for (i, v) in values.iter().enumerate() {
            if values[..i].contains(v) {
                self.cx
                    .error(e.span(), e.key_path(), format!("enum value `{v}` is listed twice"))
                    .help("remove the duplicate");
            }
            if let Some(other) = values[..i]
                .iter()
                .find(|o| *o != v && case::to_pascal(o) == case::to_pascal(v))
            {
                self.cx
                    .error(
                        e.span(),
                        e.key_path(),
                        format!(
                            "enum values `{other}` and `{v}` both become the Rust variant `{}`",
                            case::to_pascal(v)
                        ),
                    )
                    .help("enum values must differ in more than punctuation and case");
            }
            if case::to_pascal(v) == "Self" {
                self.cx
                    .error(
                        e.span(),
                        e.key_path(),
                        format!("enum value `{v}` would name the variant `Self`, which Rust reserves"),
                    )
                    .help("enum values must not spell `self` in any case");
            }
            if case::to_pascal(v).is_empty() || case::to_pascal(v).starts_with(|c: char| c.is_ascii_digit()) {
                self.cx
                    .error(
                        e.span(),
                        e.key_path(),
                        format!("enum value `{v}` cannot name a Rust variant"),
                    )
                    .help("enum values must contain a letter before any digit");
            }
        }
        Some(values)
    }

    fn constraints(&mut self, t: Table<'_, '_>, field: &mut Field, key_path: &str) {
        let is_len = matches!(field.ty, Type::String | Type::List(_));
        for key in ["min_len", "max_len"] {
            if let Some(e) = t.get(key) {
                if !is_len {
                    self.cx
                        .error(
                            e.key_span.into(),
                            e.key_path(),
                            format!(
                                "`{key}` applies to string and list fields, not {}",
                                field.ty.spec_name()
                            ),
                        )
                        .help(if matches!(field.ty, Type::Int | Type::Float) {
                            "use `min` / `max` for numbers"
                        } else {
                            "remove it"
                        });
                }
            }
        }
        field.len = Bounds {
            min: t.u64(self.cx, "min_len"),
            max: t.u64(self.cx, "max_len"),
        };
        check::bounds_ordered(
            self.cx,
            field.len.min,
            field.len.max,
            field.span.clone(),
            key_path,
            "length",
        );
        match field.ty {
            Type::Int => {
                let read = |this: &mut Self, key| {
                    let e = t.get(key)?;
                    match constant(e.value.get_ref()) {
                        Some(Constant::Int(i)) => Some(i),
                        _ => {
                            this.cx.error(
                                e.span(),
                                e.key_path(),
                                format!("`{key}` of an int field must be an integer"),
                            );
                            None
                        }
                    }
                };
                field.int_range = Bounds {
                    min: read(self, "min"),
                    max: read(self, "max"),
                };
                check::bounds_ordered(
                    self.cx,
                    field.int_range.min,
                    field.int_range.max,
                    field.span.clone(),
                    key_path,
                    "range",
                );
            }
            Type::Float => {
                field.float_range = Bounds {
                    min: t.number(self.cx, "min"),
                    max: t.number(self.cx, "max"),
                };
                check::bounds_ordered(
                    self.cx,
                    field.float_range.min,
                    field.float_range.max,
                    field.span.clone(),
                    key_path,
                    "range",
                );
            }
            _ => {
                for key in ["min", "max"] {
                    if let Some(e) = t.get(key) {
                        self.cx
                            .error(
                                e.key_span.into(),
                                e.key_path(),
                                format!("`{key}` applies to int and float fields, not {}", field.ty.spec_name()),
                            )
                            .help(if is_len {
                                "use `min_len` / `max_len` for lengths"
                            } else {
                                "remove it"
                            });
                    }
                }
            }
        }
    }

    fn default_value(&mut self, e: Entry<'_, '_>, field: &Field) -> Option<Constant> {
        let value = constant(e.value.get_ref());
        let fits = match (&field.ty, &value) {
            (Type::String, Some(Constant::String(_)))
            | (Type::Int, Some(Constant::Int(_)))
            | (Type::Bool, Some(Constant::Bool(_))) => true,
            (Type::Float, Some(Constant::Float(_))) => true,
            (Type::Float, Some(Constant::Int(i))) => return Some(Constant::Float(*i as f64)),
            (Type::Enum(values), Some(Constant::String(s))) => {
                if !values.contains(s) {
                    self.cx
                        .error(
                            e.span(),
                            e.key_path(),
                            format!("default `{s}` is not one of the enum's values"),
                        )
                        .expected_one_of(s, values.iter().map(String::as_str));
                    return None;
                }
                true
            }
            (Type::String | Type::Int | Type::Float | Type::Bool | Type::Enum(_), _) => false,
            (other, _) => {
                self.cx
                    .error(
                        e.span(),
                        e.key_path(),
                        format!("fields of type {} cannot have a default", other.spec_name()),
                    )
                    .help("defaults are supported for string, int, float, bool and enum fields; use `optional = true`");
                return None;
            }
        };
        if !fits {
            self.cx
                .error(
                    e.span(),
                    e.key_path(),
                    format!(
                        "default of `{}` must be {}, found {}",
                        field.name,
                        field.ty.spec_name(),
                        kind_of(e.value.get_ref())
                    ),
                )
                .help("write a value of the field's type");
            return None;
        }
        value
    }
}
