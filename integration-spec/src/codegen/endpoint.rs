//! Each endpoint's client method, and the static description it hands the
//! runtime: how its request is built and how its answer is read. The logic
//! lives in the runtime (`__rt::exchange`, `__rt::list`, `__rt::read_reply`);
//! what is generated per endpoint is data and a two-line method.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::{ident, json_path};
use crate::ir::*;

/// The name of the static describing endpoint `name`.
pub(super) fn spec_name(name: &str) -> Ident {
    format_ident!("__ENDPOINT_{}", name.to_uppercase())
}

/// The name of the static describing the webhook's payloads.
pub(super) fn webhook_spec_name() -> Ident {
    format_ident!("__WEBHOOK_REPLY")
}

/// The type of an endpoint's result: its entity, or `()`.
pub(super) fn result_type(result: Option<&ResultSpec>) -> TokenStream {
    match result {
        Some(r) => {
            let entity = format_ident!("{}", r.entity);
            quote!(#entity)
        }
        None => quote!(()),
    }
}

/// The client method of endpoint number `index`, and the static it reads.
pub(super) fn method(index: usize, e: &Endpoint) -> (TokenStream, TokenStream) {
    let method_name = ident(&e.name);
    let name = &e.name;
    let spec = spec_name(name);
    let http_method = e.method.as_str();
    let takes_external_id = e.path.contains(&PathPart::ExternalId);
    let request = request_spec(index, e);
    if let Some(list) = &e.list {
        let item = format_ident!("{}", list.items.entity);
        let items_path = json_path(&list.items.path);
        let items_text = &list.items.path.text;
        let pagination = pagination(&list.paginate);
        let (params, validate, input) = match (&e.request, takes_external_id) {
            (Some(entity), _) => {
                let entity = format_ident!("{}", entity);
                (
                    quote!(request: &#entity),
                    quote! {
                        if let __rt::Err(e) = request.validate() {
                            return __rt::Paginator::failed(__rt::invalid_request(#name, e));
                        }
                    },
                    quote!(__rt::Input::request(request)),
                )
            }
            (None, true) => (
                quote!(external_id: &str),
                quote!(),
                quote!(__rt::Input::external_id(external_id)),
            ),
            (None, false) => (quote!(), quote!(), quote!(__rt::Input::none())),
        };
        let doc = format!(
            " `{http_method} {}`: the `{}` items at `{items_text}` of every page ({} pagination).",
            e.path_text,
            list.items.entity,
            list.paginate.style()
        );
        let method = quote! {
            #[doc = #doc]
            ///
            /// Nothing is sent until the first item is asked for; each further page is
            /// fetched when the previous one's items are consumed, and retried under the
            /// endpoint's retry policy. Iterate with `next_item().await`, `collect_all().await`,
            /// or as a `Stream`.
            pub fn #method_name(&self, #params) -> __rt::Paginator<#item> {
                #validate
                __rt::list(&self.http, &#spec, #input)
            }
        };
        let data = quote! {
            static #spec: __rt::ListSpec = __rt::ListSpec {
                request: #request,
                pagination: #pagination,
                items: #items_path,
            };
        };
        return (method, data);
    }
    let (params, send) = match (&e.request, takes_external_id) {
        (Some(entity), _) => {
            let entity = format_ident!("{}", entity);
            (
                quote!(request: &#entity, options: &__rt::CallOptions),
                quote!(__rt::send(&self.http, &#spec, request, options)),
            )
        }
        (None, true) => (
            quote!(external_id: &str),
            quote!(__rt::exchange(&self.http, &#spec, __rt::Input::external_id(external_id))),
        ),
        (None, false) => (
            quote!(),
            quote!(__rt::exchange(&self.http, &#spec, __rt::Input::none())),
        ),
    };
    let mut doc = format!(" `{http_method} {}`", e.path_text);
    if e.mode == Mode::Async {
        doc.push_str(" (async: the call finishes later)");
    }
    doc.push('.');
    let result_ty = result_type(e.result.as_ref());
    let reply = reply_spec(
        name,
        &e.external_id,
        e.status.as_ref(),
        e.result.as_ref(),
        e.error.as_ref(),
    );
    let method = quote! {
        #[doc = #doc]
        pub async fn #method_name(&self, #params) -> __rt::Result<__rt::Reply<#result_ty>, __rt::ClientError> {
            #send.await
        }
    };
    let data = quote! {
        static #spec: __rt::Exchange = __rt::Exchange { request: #request, reply: #reply };
    };
    (method, data)
}

/// How the request of endpoint number `index` is built.
fn request_spec(index: usize, e: &Endpoint) -> TokenStream {
    let path = e.path.iter().map(|part| match part {
        PathPart::Literal(text) => quote!(__rt::PathPart::Literal(#text)),
        PathPart::ExternalId => quote!(__rt::PathPart::ExternalId),
        PathPart::Field(field) => quote!(__rt::PathPart::Field(#field)),
    });
    let named = |mappings: &[Mapping]| -> Vec<TokenStream> {
        mappings
            .iter()
            .map(|m| {
                let key = &m.target[0];
                let source = source(&m.value);
                quote!((#key, #source))
            })
            .collect()
    };
    let query = named(&e.query);
    let headers = named(&e.headers);
    let body = e.body.iter().map(|m| {
        let target = &m.target;
        let source = source(&m.value);
        quote!((&[#(#target),*], #source))
    });
    let encoding = match e.encoding {
        Encoding::Json => quote!(__rt::BodyEncoding::Json),
        Encoding::Form => quote!(__rt::BodyEncoding::Form),
    };
    let error = optional_path(e.error.as_ref());
    quote!(__rt::RequestSpec {
        endpoint: &__DESCRIPTOR.endpoints[#index],
        path: &[#(#path),*],
        query: &[#(#query),*],
        headers: &[#(#headers),*],
        body: &[#(#body),*],
        encoding: #encoding,
        error: #error,
    })
}

/// Where one value of a request comes from.
fn source(value: &MappingValue) -> TokenStream {
    match value {
        MappingValue::Field(name) => quote!(__rt::Source::Field(#name)),
        MappingValue::Constant(c) => {
            let c = constant(c);
            quote!(__rt::Source::Constant(#c))
        }
        MappingValue::Template(parts) => {
            let pieces = parts.iter().map(|part| match part {
                TemplatePart::Literal(text) => quote!(__rt::Piece::Literal(#text)),
                TemplatePart::Field(name) => quote!(__rt::Piece::Field(#name)),
            });
            quote!(__rt::Source::Template(&[#(#pieces),*]))
        }
        MappingValue::ValueMap { field, map } => {
            let entries = map.iter().map(|(from, to)| {
                let to = constant(to);
                quote!((#from, #to))
            });
            quote!(__rt::Source::ValueMap { field: #field, map: &[#(#entries),*] })
        }
        MappingValue::WithDefault { field, default } => {
            let default = constant(default);
            quote!(__rt::Source::WithDefault { field: #field, default: #default })
        }
    }
}

/// A constant of the spec as the runtime's `Constant`.
fn constant(constant: &Constant) -> TokenStream {
    match constant {
        Constant::String(s) => quote!(__rt::Constant::String(#s)),
        Constant::Int(i) => quote!(__rt::Constant::Int(#i)),
        Constant::Float(f) => quote!(__rt::Constant::Float(#f)),
        Constant::Bool(b) => quote!(__rt::Constant::Bool(#b)),
    }
}

/// The runtime's description of a pagination style.
fn pagination(p: &Pagination) -> TokenStream {
    match p {
        Pagination::Cursor { cursor, param } => {
            let cursor = json_path(cursor);
            quote!(__rt::Pagination::Cursor { cursor: #cursor, param: #param })
        }
        Pagination::CursorHeader { header, param } => {
            quote!(__rt::Pagination::CursorHeader { header: #header, param: #param })
        }
        Pagination::Offset {
            param,
            limit_param,
            limit,
        } => quote!(__rt::Pagination::Offset { param: #param, limit_param: #limit_param, limit: #limit }),
        Pagination::Page {
            param,
            start,
            size_param,
            size,
        } => {
            quote!(__rt::Pagination::Page { param: #param, start: #start, size_param: #size_param, size: #size })
        }
        Pagination::Link => quote!(__rt::Pagination::Link),
    }
}

/// Where an answer keeps its status, external id, result and message.
pub(super) fn reply_spec(
    endpoint: &str,
    external_id: &ExternalId,
    status: Option<&StatusMap>,
    result: Option<&ResultSpec>,
    error: Option<&JsonPath>,
) -> TokenStream {
    let external_id = match external_id {
        ExternalId::Path(path) => {
            let p = json_path(path);
            quote!(__rt::ExternalIdSpec::Required(#p))
        }
        ExternalId::OptionalPath(path) => {
            let p = json_path(path);
            quote!(__rt::ExternalIdSpec::Optional(#p))
        }
        ExternalId::Generated => quote!(__rt::ExternalIdSpec::Generated),
    };
    let status = match status {
        Some(s) => {
            let p = json_path(&s.path);
            let entries = s.map.iter().map(|(external, status)| {
                let status = match status {
                    RemoteStatus::Processing => quote!(__rt::RemoteStatus::Processing),
                    RemoteStatus::Completed => quote!(__rt::RemoteStatus::Completed),
                    RemoteStatus::Failed => quote!(__rt::RemoteStatus::Failed),
                    RemoteStatus::Cancelled => quote!(__rt::RemoteStatus::Cancelled),
                };
                quote!((#external, #status))
            });
            quote!(__rt::Some(__rt::StatusSpec { path: #p, map: &[#(#entries),*] }))
        }
        None => quote!(__rt::None),
    };
    let result = match result {
        Some(r) => {
            let fields = r.fields.iter().map(|(field, path)| {
                let p = json_path(path);
                quote!((#field, #p))
            });
            quote!(__rt::Some(&[#(#fields),*]))
        }
        None => quote!(__rt::None),
    };
    let error = optional_path(error);
    quote!(__rt::ReplySpec {
        endpoint: #endpoint,
        status: #status,
        external_id: #external_id,
        result: #result,
        error: #error,
    })
}

fn optional_path(path: Option<&JsonPath>) -> TokenStream {
    match path {
        Some(p) => {
            let p = json_path(p);
            quote!(__rt::Some(#p))
        }
        None => quote!(__rt::None),
    }
}
