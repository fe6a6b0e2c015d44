//! Code generation: from the validated model to Rust tokens.
//!
//! Generated code reaches the runtime only through
//! `::integration_runtime::__private` (see `docs/design/generated-code.md`),
//! so the runtime's public API stays small.

mod call;
mod client;
mod descriptor;
mod endpoint;
mod entities;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

use crate::case::{to_pascal, to_snake};
use crate::ir::{Spec, Type};

/// How to generate.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Absolute path of the spec file; when set, the output `include_bytes!`
    /// it so that cargo rebuilds the user's crate when the spec changes.
    pub track_file: Option<String>,
}

/// The whole generated module of a spec.
pub fn generate(spec: &Spec, options: &Options) -> TokenStream {
    let names = Names::new(spec);
    let module = &names.module;
    let doc = module_doc(spec);
    let doc = doc.lines().map(|line| quote!(#[doc = #line]));
    let track = options.track_file.as_ref().map(|path| {
        quote! { const _: &[u8] = include_bytes!(#path); }
    });
    let entities = entities::generate(spec, &names);
    let call = call::generate(spec, &names);
    let client = client::generate(spec, &names);
    let descriptor = descriptor::generate(spec, &names);
    quote! {
        #(#doc)*
        pub mod #module {
            #[allow(unused_imports)]
            use ::integration_runtime::__private as __rt;
            #track
            #entities
            #call
            #client
            #descriptor
        }
    }
}

/// The generated module, pretty-printed (for snapshots, the CLI's `expand`).
pub fn generate_pretty(spec: &Spec, options: &Options) -> String {
    let tokens = generate(spec, options);
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        // Unreachable for valid specs; show the raw tokens rather than nothing.
        Err(_) => tokens.to_string(),
    }
}

fn module_doc(spec: &Spec) -> String {
    let name = &spec.integration.name;
    let mut doc = format!(" The `{name}` integration, generated from its spec.");
    if let Some(description) = &spec.integration.description {
        doc.push_str("\n\n ");
        doc.push_str(description);
    }
    doc
}

/// Names of the generated items.
pub(crate) struct Names {
    pub(crate) module: Ident,
    pub(crate) integration: Ident,
    pub(crate) call: Ident,
    pub(crate) event: Ident,
    pub(crate) status: Ident,
    pub(crate) client: Ident,
    pub(crate) config: Ident,
    pub(crate) request: Ident,
    pub(crate) response: Ident,
}

impl Names {
    fn new(spec: &Spec) -> Self {
        let name = &spec.integration.name;
        Names {
            module: format_ident!("{}", to_snake(name)),
            integration: format_ident!("{}", name),
            call: format_ident!("{}Call", name),
            event: format_ident!("{}Event", name),
            status: format_ident!("{}Status", name),
            client: format_ident!("{}Client", name),
            config: format_ident!("{}Config", name),
            request: format_ident!("{}Request", name),
            response: format_ident!("{}Response", name),
        }
    }
}

/// A field or function name, raw when it is a Rust keyword.
pub(crate) fn ident(name: &str) -> Ident {
    if syn::parse_str::<Ident>(name).is_ok() {
        Ident::new(name, Span::call_site())
    } else {
        Ident::new_raw(name, Span::call_site())
    }
}

/// `Entity` + `field` -> `EntityField`, the name of a generated enum type.
pub(crate) fn enum_type_name(entity: &str, field: &str) -> Ident {
    format_ident!("{}{}", entity, to_pascal(field))
}

/// A variant name for an enum value or an endpoint.
pub(crate) fn variant(name: &str) -> Ident {
    format_ident!("{}", to_pascal(name))
}

/// The Rust type of a spec type (without `Option`).
pub(crate) fn rust_type(ty: &Type, entity: &str, field: &str) -> TokenStream {
    match ty {
        Type::String => quote!(__rt::String),
        Type::Int => quote!(i64),
        Type::Float => quote!(f64),
        Type::Bool => quote!(bool),
        Type::Timestamp => {
            quote!(__rt::chrono::DateTime<__rt::chrono::Utc>)
        }
        Type::Uuid => quote!(__rt::uuid::Uuid),
        Type::Json => quote!(__rt::serde_json::Value),
        Type::Enum(_) => {
            let name = enum_type_name(entity, field);
            quote!(#name)
        }
        Type::List(item) => {
            let item = rust_type(item, entity, field);
            quote!(__rt::Vec<#item>)
        }
        Type::Entity(name) => {
            let name = format_ident!("{}", name);
            quote!(#name)
        }
    }
}

/// A pre-parsed JSON path as a `&'static [Seg]` expression.
pub(crate) fn json_path(path: &crate::ir::JsonPath) -> TokenStream {
    let segments = path.segments.iter().map(|s| match s {
        crate::ir::Segment::Name(name) => quote!(__rt::Key(#name)),
        crate::ir::Segment::Index(i) => quote!(__rt::Index(#i)),
    });
    quote!(&[#(#segments),*])
}
