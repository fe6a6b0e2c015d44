//! Entity structs, their enums, defaults and constraint checks.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::{enum_type_name, ident, rust_type, variant, Names};
use crate::ir::{Constant, Entity, Field, Spec, Type};

pub(super) fn generate(spec: &Spec, _names: &Names) -> TokenStream {
    let items = spec.entities.iter().map(entity);
    quote!(#(#items)*)
}

fn entity(entity: &Entity) -> TokenStream {
    let name = format_ident!("{}", entity.name);
    let doc = format!(" The `{}` entity of the spec.", entity.name);
    let fields = entity.fields.iter().map(|f| field(entity, f));
    let enums = entity.fields.iter().filter_map(|f| enum_type(entity, f));
    let defaults = entity.fields.iter().filter_map(|f| default_fn(entity, f));
    let checks: Vec<TokenStream> = entity.fields.iter().filter_map(constraint_check).collect();
    // Without constraints, the runtime's `impl_entity!` writes `validate`.
    let checked = if checks.is_empty() {
        quote!(__rt::impl_entity!(#name, unconstrained);)
    } else {
        quote! {
            impl #name {
                /// Checks every constraint the spec declares (lengths, ranges),
                /// including those of nested entities, and reports all violations.
                pub fn validate(&self) -> __rt::Result<(), __rt::ValidationError> {
                    let mut violations = __rt::Violations::new();
                    #(#checks)*
                    violations.finish()
                }
            }

            __rt::impl_entity!(#name);
        }
    };
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
        #[serde(crate = "::integration_runtime::__private::serde")]
        pub struct #name {
            #(#fields)*
        }

        #checked

        #(#enums)*
        #(#defaults)*
    }
}

fn field(entity: &Entity, field: &Field) -> TokenStream {
    let name = ident(&field.name);
    let ty = rust_type(&field.ty, &entity.name, &field.name);
    let doc = field.doc.as_ref().map_or_else(
        || format!(" `{}` ({}).", field.name, field.ty.spec_name()),
        |d| format!(" {d}"),
    );
    if field.optional {
        quote! {
            #[doc = #doc]
            #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
            pub #name: __rt::Option<#ty>,
        }
    } else if field.default.is_some() {
        let default_fn = default_fn_name(entity, field).to_string();
        quote! {
            #[doc = #doc]
            #[serde(default = #default_fn)]
            pub #name: #ty,
        }
    } else {
        quote! {
            #[doc = #doc]
            pub #name: #ty,
        }
    }
}

fn default_fn_name(entity: &Entity, field: &Field) -> proc_macro2::Ident {
    format_ident!("__default_{}_{}", crate::case::to_snake(&entity.name), field.name)
}

fn default_fn(entity: &Entity, field: &Field) -> Option<TokenStream> {
    let default = field.default.as_ref()?;
    let name = default_fn_name(entity, field);
    let ty = rust_type(&field.ty, &entity.name, &field.name);
    let value = match (&field.ty, default) {
        (Type::Enum(_), Constant::String(s)) => {
            let variant = variant(s);
            quote!(#ty::#variant)
        }
        (_, Constant::String(s)) => quote!(__rt::String::from(#s)),
        (_, Constant::Int(i)) => quote!(#i),
        (_, Constant::Float(f)) => quote!(#f),
        (_, Constant::Bool(b)) => quote!(#b),
    };
    Some(quote! {
        fn #name() -> #ty {
            #value
        }
    })
}

fn enum_type(entity: &Entity, field: &Field) -> Option<TokenStream> {
    let values = match &field.ty {
        Type::Enum(values) => values,
        Type::List(item) => match item.as_ref() {
            Type::Enum(values) => values,
            _ => return None,
        },
        _ => return None,
    };
    let name = enum_type_name(&entity.name, &field.name);
    let doc = format!(" Allowed values of `{}.{}`.", entity.name, field.name);
    let variants = values.iter().map(|v| {
        let variant = variant(v);
        let doc = format!(" `{v}`");
        quote! {
            #[doc = #doc]
            #[serde(rename = #v)]
            #variant,
        }
    });
    let arms = values.iter().map(|v| {
        let variant = variant(v);
        quote!(#name::#variant => #v,)
    });
    Some(quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[derive(__rt::Serialize, __rt::Deserialize)]
        #[serde(crate = "::integration_runtime::__private::serde")]
        pub enum #name {
            #(#variants)*
        }

        impl #name {
            /// The value as the spec spells it.
            pub fn as_str(&self) -> &'static str {
                match self {
                    #(#arms)*
                }
            }
        }
    })
}

/// The `validate()` lines for one field; `None` when it has no constraint.
fn constraint_check(field: &Field) -> Option<TokenStream> {
    let name = ident(&field.name);
    let label = field.name.as_str();
    // An optional field is checked through `if let Some(value)`; a required
    // one in place.
    let (value, copied) = if field.optional {
        (quote!(value), quote!(*value))
    } else {
        (quote!(self.#name), quote!(self.#name))
    };
    let check = match &field.ty {
        Type::String | Type::List(_) if field.len.is_set() => {
            let bounds = range(
                field.len.min.map(Literal::u64_unsuffixed),
                field.len.max.map(Literal::u64_unsuffixed),
            );
            let len = if matches!(field.ty, Type::String) {
                quote!(#value.chars().count())
            } else {
                quote!(#value.len())
            };
            quote!(violations.len_in(#label, #len, #bounds);)
        }
        Type::Int if field.int_range.is_set() => {
            let bounds = range(
                field.int_range.min.map(Literal::i64_unsuffixed),
                field.int_range.max.map(Literal::i64_unsuffixed),
            );
            quote!(violations.int_in(#label, #copied, #bounds);)
        }
        Type::Float if field.float_range.is_set() => {
            let bounds = range(
                field.float_range.min.map(Literal::f64_unsuffixed),
                field.float_range.max.map(Literal::f64_unsuffixed),
            );
            quote!(violations.float_in(#label, #copied, #bounds);)
        }
        Type::Entity(_) => quote!(violations.nested(#label, #value.validate());),
        Type::List(item) if matches!(item.as_ref(), Type::Entity(_)) => quote! {
            for item in #value.iter() {
                violations.nested(#label, item.validate());
            }
        },
        _ => return None,
    };
    Some(if field.optional {
        quote! {
            if let __rt::Some(value) = &self.#name {
                #check
            }
        }
    } else {
        check
    })
}

/// The inclusive range `min..=max`, `min..` or `..=max`.
fn range(min: Option<Literal>, max: Option<Literal>) -> TokenStream {
    match (min, max) {
        (Some(min), Some(max)) => quote!(#min..=#max),
        (Some(min), None) => quote!(#min..),
        (None, Some(max)) => quote!(..=#max),
        (None, None) => quote!(..),
    }
}
