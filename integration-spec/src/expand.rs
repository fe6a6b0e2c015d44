//! Macro expansion: load the spec a macro names, then generate code or errors.

use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr};

use crate::codegen::{self, Options};
use crate::diagnostic::closest;
use crate::ir::{Field, Spec, Type};
use crate::Diagnostics;

/// Where the macro was invoked, for resolving `./` spec paths.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The source file that invokes the macro, when the compiler knows it.
    pub file: Option<PathBuf>,
}

/// The directory of the invoking source file. The compiler may name it
/// relative to the workspace root while the macro runs in the crate's
/// directory, so a relative name is looked up from the crate root upwards.
fn invoking_dir(file: &Path) -> Option<PathBuf> {
    let found = if file.is_absolute() {
        file.to_path_buf()
    } else {
        let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
        manifest_dir
            .ancestors()
            .map(|dir| dir.join(file))
            .find(|candidate| candidate.is_file())?
    };
    found.parent().map(Path::to_path_buf)
}

/// A spec read from disk for a macro.
struct Loaded {
    /// The path as the user wrote it (used in messages).
    display: String,
    /// The resolved path (tracked with `include_bytes!`).
    absolute: String,
    source: String,
}

/// Resolves and reads the spec named by `lit`.
///
/// Paths are relative to the crate root (`CARGO_MANIFEST_DIR`), except those
/// starting with `./`, which are relative to the invoking file (like
/// `include_str!`; handy for tests compiled outside their crate).
/// Absolute paths are refused: they break builds on every other machine.
fn load(lit: &LitStr, caller: &Caller) -> Result<Loaded, TokenStream> {
    let written = lit.value();
    let fail = |message: String| Err(syn::Error::new(lit.span(), message).to_compile_error());
    if Path::new(&written).is_absolute() {
        return fail(format!(
            "spec path `{written}` is absolute; write it relative to the crate root (CARGO_MANIFEST_DIR), e.g. `specs/api.toml`"
        ));
    }
    let base = if written.starts_with("./") {
        match caller.file.as_deref().and_then(invoking_dir) {
            Some(dir) => dir,
            None => {
                return fail(format!(
                    "cannot resolve `{written}` relative to the invoking file; write it relative to the crate root"
                ))
            }
        }
    } else {
        match std::env::var_os("CARGO_MANIFEST_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                return fail(
                    "CARGO_MANIFEST_DIR is not set; spec paths are resolved against it (build with cargo)".into(),
                )
            }
        }
    };
    let path = base.join(&written);
    match std::fs::read_to_string(&path) {
        Ok(source) => Ok(Loaded { display: written, absolute: path.to_string_lossy().into_owned(), source }),
        Err(e) => fail(format!(
            "cannot read spec `{written}`: {e}\n  help: paths are relative to the crate root (the directory of its Cargo.toml), or to this file when they start with `./`"
        )),
    }
}

/// Reads and validates the spec; diagnostics become `compile_error!`s.
fn load_spec(lit: &LitStr, caller: &Caller) -> Result<(Spec, Loaded), TokenStream> {
    let loaded = load(lit, caller)?;
    match crate::parse(&loaded.source, &loaded.display) {
        Ok(spec) => Ok((spec, loaded)),
        Err(diagnostics) => Err(spec_errors(&diagnostics, lit.span(), &loaded.absolute)),
    }
}

/// One `compile_error!` per diagnostic, so rustc reports all of them, plus
/// the file tracking so that fixing the spec triggers a rebuild.
pub(crate) fn spec_errors(diagnostics: &Diagnostics, span: Span, absolute: &str) -> TokenStream {
    let errors = diagnostics.iter().map(|d| {
        let message = diagnostics.render(d);
        quote_spanned!(span=> ::core::compile_error! { #message })
    });
    quote! {
        #(#errors)*
        const _: &[u8] = include_bytes!(#absolute);
    }
}

/// `integration!("specs/x.toml")`.
pub(crate) fn integration(input: TokenStream, caller: &Caller) -> Result<TokenStream, TokenStream> {
    let lit: LitStr = syn::parse2(input).map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected the spec path as a string literal: `integration!(\"specs/api.toml\")`",
        )
        .to_compile_error()
    })?;
    let (spec, loaded) = load_spec(&lit, caller)?;
    Ok(codegen::generate(
        &spec,
        &Options {
            track_file: Some(loaded.absolute),
        },
    ))
}

/// Which derive is expanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeriveKind {
    /// `#[derive(IntegrationRequest)]`: the struct supplies an endpoint's request.
    Request,
    /// `#[derive(IntegrationResponse)]`: the struct reads a result entity.
    Response,
}

struct DeriveArgs {
    spec: LitStr,
    target: LitStr,
}

fn derive_args(input: &DeriveInput, kind: DeriveKind) -> syn::Result<DeriveArgs> {
    let target_key = match kind {
        DeriveKind::Request => "endpoint",
        DeriveKind::Response => "entity",
    };
    let usage = format!("#[integration(spec = \"specs/api.toml\", {target_key} = \"...\")]");
    let (mut spec, mut target) = (None, None);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("integration")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("spec") {
                spec = Some(meta.value()?.parse::<LitStr>()?);
            } else if meta.path.is_ident(target_key) {
                target = Some(meta.value()?.parse::<LitStr>()?);
            } else {
                let got = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
                return Err(meta.error(format!(
                    "unknown key `{got}`; expected `spec` and `{target_key}`: {usage}"
                )));
            }
            Ok(())
        })?;
    }
    match (spec, target) {
        (Some(spec), Some(target)) => Ok(DeriveArgs { spec, target }),
        (None, _) => Err(syn::Error::new(
            input.ident.span(),
            format!("missing `spec`: add {usage}"),
        )),
        (_, None) => Err(syn::Error::new(
            input.ident.span(),
            format!("missing `{target_key}`: add {usage}"),
        )),
    }
}

/// One field of the user's struct and the spec field name it stands for.
struct UserField<'a> {
    field: &'a syn::Field,
    spec_name: String,
    span: Span,
}

fn user_fields(input: &DeriveInput) -> syn::Result<Vec<UserField<'_>>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "only structs with named fields can be bound to a spec",
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new(
            input.ident.span(),
            "only structs with named fields can be bound to a spec",
        ));
    };
    let mut out = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for field in &named.named {
        let ident = field.ident.as_ref().expect("named field");
        let mut spec_name = ident.to_string().trim_start_matches("r#").to_owned();
        let mut skip = false;
        let mut span = ident.span();
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("integration")) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    let lit: LitStr = meta.value()?.parse()?;
                    spec_name = lit.value();
                    span = lit.span();
                } else if meta.path.is_ident("skip") {
                    skip = true;
                } else {
                    return Err(meta.error("unknown field attribute; expected `rename = \"spec_field\"` or `skip`"));
                }
                Ok(())
            });
            if let Err(e) = result {
                combine(&mut errors, e);
            }
        }
        if !skip {
            out.push(UserField { field, spec_name, span });
        }
    }
    errors.map_or(Ok(out), Err)
}

fn combine(errors: &mut Option<syn::Error>, error: syn::Error) {
    match errors {
        Some(existing) => existing.combine(error),
        None => *errors = Some(error),
    }
}

/// A spec-level explanation when the user's field type is plainly not the
/// spec's (a primitive of another kind, or `Option` for a required field).
/// Anything less obvious is left to the `Conforms` trait check, which rustc
/// reports at the field's type.
fn obvious_type_mismatch(ty: &syn::Type, field: &Field) -> Option<String> {
    let last = |ty: &syn::Type| match ty {
        syn::Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .map(|s| (s.ident.to_string(), s.arguments.clone())),
        _ => None,
    };
    let (name, args) = last(ty)?;
    if name == "Option" {
        if field.is_required() {
            return Some("the spec requires it; drop the `Option` or make the spec field `optional = true`".into());
        }
        let syn::PathArguments::AngleBracketed(args) = args else {
            return None;
        };
        let Some(syn::GenericArgument::Type(inner)) = args.args.first() else {
            return None;
        };
        return obvious_type_mismatch(inner, field);
    }
    let kind = match name.as_str() {
        "String" | "str" => "string",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "int",
        "f32" | "f64" => "float",
        "bool" => "bool",
        _ => return None,
    };
    let expected = match &field.ty {
        Type::String | Type::Enum(_) => "string",
        Type::Int => "int",
        Type::Float => "float",
        Type::Bool => "bool",
        // A primitive can never be one of the structured spec types.
        Type::Timestamp => return Some("use `chrono::DateTime<chrono::Utc>`".into()),
        Type::Uuid => return Some("use `uuid::Uuid`".into()),
        Type::Json => return Some("use `serde_json::Value`".into()),
        Type::List(_) => return Some("use a `Vec` of the item type".into()),
        Type::Entity(name) => return Some(format!("use a struct that serializes like the entity `{name}`")),
    };
    // An int is a valid float.
    if kind == expected || (kind == "int" && expected == "float") {
        return None;
    }
    let rust = match expected {
        "string" => "`String`",
        "int" => "an integer type such as `i64`",
        "float" => "`f64`",
        _ => "`bool`",
    };
    Some(format!("use {rust}"))
}

/// The `kinds` marker a user field must conform to.
fn kind_marker(ty: &Type, wrap_optional: bool) -> TokenStream {
    let base = match ty {
        Type::String => quote!(::integration_runtime::__private::kinds::String),
        Type::Int => quote!(::integration_runtime::__private::kinds::Int),
        Type::Float => quote!(::integration_runtime::__private::kinds::Float),
        Type::Bool => quote!(::integration_runtime::__private::kinds::Bool),
        Type::Timestamp => quote!(::integration_runtime::__private::kinds::Timestamp),
        Type::Uuid => quote!(::integration_runtime::__private::kinds::Uuid),
        Type::Json => quote!(::integration_runtime::__private::kinds::Json),
        // The generated enum or plain strings both serialize to the allowed text;
        // the runtime's validation rejects any other value.
        Type::Enum(_) | Type::Entity(_) => quote!(::integration_runtime::__private::kinds::Entity),
        Type::List(item) => {
            let item = kind_marker(item, false);
            quote!(::integration_runtime::__private::kinds::List<#item>)
        }
    };
    if wrap_optional {
        quote!(::integration_runtime::__private::kinds::Optional<#base>)
    } else {
        base
    }
}

/// `#[derive(IntegrationRequest)]` and `#[derive(IntegrationResponse)]`.
pub(crate) fn derive(input: TokenStream, kind: DeriveKind, caller: &Caller) -> Result<TokenStream, TokenStream> {
    let input: DeriveInput = syn::parse2(input).map_err(|e| e.to_compile_error())?;
    let args = derive_args(&input, kind).map_err(|e| e.to_compile_error())?;
    let fields = user_fields(&input).map_err(|e| e.to_compile_error())?;
    let (spec, loaded) = load_spec(&args.spec, caller)?;
    let target = args.target.value();
    // Derive errors point at the user's Rust code; this names the spec place too.
    let line_of = |span: &std::ops::Range<usize>| {
        let before = loaded.source.get(..span.start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{column}", loaded.display)
    };
    let (entity, endpoint_name) = match kind {
        DeriveKind::Request => {
            let Some(endpoint) = spec.endpoint(&target) else {
                let mut msg = format!("spec `{}` has no endpoint `{target}`", loaded.display);
                if let Some(best) = closest(&target, spec.endpoints.iter().map(|e| e.name.as_str())) {
                    msg.push_str(&format!("\n  help: did you mean `{best}`?"));
                }
                return Err(syn::Error::new(args.target.span(), msg).to_compile_error());
            };
            if endpoint.list.is_some() {
                let msg = format!(
                    "endpoint `{target}` ({}) is a list endpoint (it has `paginate`), so no call can be created for it\n  help: call the client's `{target}` method to read its pages; bind a struct to an endpoint that starts calls",
                    line_of(&endpoint.span)
                );
                return Err(syn::Error::new(args.target.span(), msg).to_compile_error());
            }
            let Some(entity) = endpoint.request.as_ref().and_then(|r| spec.entity(r)) else {
                let msg = format!(
                    "endpoint `{target}` ({}) has no `request` entity, so no call can be created for it\n  help: bind a struct to an endpoint with `request = \"...\"`",
                    line_of(&endpoint.span)
                );
                return Err(syn::Error::new(args.target.span(), msg).to_compile_error());
            };
            (entity, Some(endpoint.name.clone()))
        }
        DeriveKind::Response => {
            let Some(entity) = spec.entity(&target) else {
                let mut msg = format!("spec `{}` has no entity `{target}`", loaded.display);
                if let Some(best) = closest(&target, spec.entities.iter().map(|e| e.name.as_str())) {
                    msg.push_str(&format!("\n  help: did you mean `{best}`?"));
                }
                return Err(syn::Error::new(args.target.span(), msg).to_compile_error());
            };
            (entity, None)
        }
    };

    let mut errors: Option<syn::Error> = None;
    let mut bound: Vec<(&UserField<'_>, &Field)> = Vec::new();
    // Spec fields already suggested for a misspelt user field: not reported missing too.
    let mut suggested: Vec<&str> = Vec::new();
    for user in &fields {
        match entity.field(&user.spec_name) {
            Some(spec_field) => {
                if let Some(mismatch) = obvious_type_mismatch(&user.field.ty, spec_field) {
                    let ty = &user.field.ty;
                    let msg = format!(
                        "field `{}` is `{}` but `{}.{}` ({}) is {}\n  help: {mismatch}",
                        user.spec_name,
                        quote!(#ty).to_string().replace(' ', ""),
                        entity.name,
                        spec_field.name,
                        line_of(&spec_field.span),
                        spec_field.ty.spec_name(),
                    );
                    combine(&mut errors, syn::Error::new(user.field.ty.span(), msg));
                }
                bound.push((user, spec_field));
            }
            None => {
                let mut msg = format!(
                    "entity `{}` ({}) has no field `{}`",
                    entity.name,
                    line_of(&entity.span),
                    user.spec_name
                );
                let best = closest(&user.spec_name, entity.fields.iter().map(|f| f.name.as_str()));
                if let Some(best) = best {
                    suggested.push(best);
                }
                match best {
                    Some(best) => msg.push_str(&format!("\n  help: did you mean `{best}`? rename with `#[integration(rename = \"{best}\")]`")),
                    None => msg.push_str("\n  help: rename it with `#[integration(rename = \"...\")]`, or leave it out with `#[integration(skip)]`"),
                }
                combine(&mut errors, syn::Error::new(user.span, msg));
            }
        }
    }
    if kind == DeriveKind::Request {
        for spec_field in entity
            .fields
            .iter()
            .filter(|f| f.is_required() && !suggested.contains(&f.name.as_str()))
        {
            if !fields.iter().any(|u| u.spec_name == spec_field.name) {
                let msg = format!(
                    "`{}` lacks field `{}` ({}), which entity `{}` requires ({})\n  help: add `{}: ...` or map a field to it with `#[integration(rename = \"{}\")]`",
                    input.ident,
                    spec_field.name,
                    spec_field.ty.spec_name(),
                    entity.name,
                    line_of(&spec_field.span),
                    spec_field.name,
                    spec_field.name
                );
                combine(&mut errors, syn::Error::new(input.ident.span(), msg));
            }
        }
    }
    if let Some(errors) = errors {
        return Err(errors.to_compile_error());
    }

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let absolute = &loaded.absolute;
    let checks = bound.iter().map(|(user, spec_field)| {
        let field = user.field.ident.as_ref().expect("named field");
        let marker = kind_marker(&spec_field.ty, !spec_field.is_required());
        let ty_span = user.field.ty.span();
        quote_spanned!(ty_span=> ::integration_runtime::__private::assert_conforms::<#marker, _>(&value.#field);)
    });
    let check_fn = format_ident!("__check_{}", crate::case::to_snake(&ident.to_string()));
    let checks = quote! {
        #[allow(dead_code, non_snake_case)]
        fn #check_fn #impl_generics (value: &#ident #ty_generics) #where_clause {
            #(#checks)*
        }
    };
    let body = match kind {
        DeriveKind::Request => {
            let integration = &spec.integration.name;
            let endpoint = endpoint_name.unwrap_or_default();
            let inserts = bound.iter().map(|(user, spec_field)| {
                let field = user.field.ident.as_ref().expect("named field");
                let key = &spec_field.name;
                quote! {
                    let value = ::integration_runtime::__private::to_value(&self.#field);
                    if !value.is_null() {
                        params.insert(::std::string::String::from(#key), value);
                    }
                }
            });
            quote! {
                impl #impl_generics ::integration_runtime::IntoCall for #ident #ty_generics #where_clause {
                    const INTEGRATION: &'static str = #integration;
                    fn endpoint(&self) -> &'static str {
                        #endpoint
                    }
                    fn into_params(self) -> ::integration_runtime::__private::serde_json::Value {
                        let mut params = ::integration_runtime::__private::serde_json::Map::new();
                        #(#inserts)*
                        ::integration_runtime::__private::serde_json::Value::Object(params)
                    }
                }
            }
        }
        DeriveKind::Response => {
            let reads = bound.iter().map(|(user, spec_field)| {
                let field = user.field.ident.as_ref().expect("named field");
                let key = &spec_field.name;
                quote! {
                    #field: ::integration_runtime::__private::serde_json::from_value(
                        value.get(#key).cloned().unwrap_or(::integration_runtime::__private::serde_json::Value::Null),
                    )?,
                }
            });
            let skipped = match &input.data {
                Data::Struct(data) => data
                    .fields
                    .iter()
                    .filter_map(|f| f.ident.as_ref())
                    .filter(|i| !bound.iter().any(|(u, _)| u.field.ident.as_ref() == Some(*i)))
                    .map(|i| quote!(#i: ::std::default::Default::default(),))
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            };
            quote! {
                impl #impl_generics ::integration_runtime::FromResult for #ident #ty_generics #where_clause {
                    fn from_result(value: &::integration_runtime::__private::serde_json::Value) -> ::std::result::Result<Self, ::integration_runtime::__private::serde_json::Error> {
                        ::std::result::Result::Ok(#ident {
                            #(#reads)*
                            #(#skipped)*
                        })
                    }
                }
            }
        }
    };
    Ok(quote! {
        const _: () = {
            const _: &[u8] = include_bytes!(#absolute);
            #body
            #checks
        };
    })
}
