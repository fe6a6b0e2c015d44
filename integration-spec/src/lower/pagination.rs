//! List endpoints: `items` (where the page's entities are) and `paginate`
//! (how to ask for the next page: cursor, cursor header, offset, page or
//! link header).

use super::Lower;
use crate::check;
use crate::ir::*;
use crate::jsonpath::JsonPath;
use crate::read::{join, Entry, Table};

pub(super) const PAGINATE_KEYS: &[&str] = &[
    "style",
    "cursor",
    "header",
    "param",
    "limit_param",
    "limit",
    "start",
    "size_param",
    "size",
];
pub(super) const PAGINATION_STYLES: &[&str] = &["cursor", "cursor_header", "offset", "page", "link"];

impl Lower<'_> {
    /// `items` and `paginate`: what makes an endpoint a list endpoint. A broken
    /// `paginate` still makes one (with placeholders), so rules about call
    /// endpoints do not misfire on it.
    pub(super) fn list(
        &mut self,
        name: &str,
        t: Table<'_, '_>,
        entities: &[Entity],
        query: &[Mapping],
        api_key_query: Option<&str>,
    ) -> Option<List> {
        let items = t.get("items");
        let Some(paginate) = t.get("paginate") else {
            if let Some(items) = items {
                check::items_need_paginate(self.cx, name, items.key_span.into(), &items.key_path());
            }
            return None;
        };
        for key in ["mode", "result", "status", "external_id", "idempotency_key"] {
            let Some(e) = t.get(key) else { continue };
            if key == "mode" && e.value.get_ref().as_str() != Some("async") {
                continue;
            }
            check::list_endpoint_excludes(self.cx, name, key, e.key_span.into(), &e.key_path());
        }
        if items.is_none() {
            check::paginate_needs_items(self.cx, name, paginate.key_span.into(), t.path);
        }
        let items = items.and_then(|e| self.items(e, entities));
        let pagination = self.pagination(paginate);
        if let Some(p) = &pagination {
            check::pagination_params_are_free(
                self.cx,
                p,
                query,
                api_key_query,
                paginate.key_span.into(),
                &paginate.key_path(),
            );
        }
        Some(List {
            items: items.unwrap_or_else(|| Items {
                path: JsonPath::root(),
                entity: String::new(),
            }),
            paginate: pagination.unwrap_or(Pagination::Link),
        })
    }

    fn items(&mut self, e: Entry<'_, '_>, entities: &[Entity]) -> Option<Items> {
        let key_path = e.key_path();
        let t = Table::new(self.cx, &key_path, e.key_span.into(), e.value, &["path", "entity"])?;
        let entity = t.require_str(
            self.cx,
            "entity",
            "add `entity = \"EntityName\"` (the type of each item)",
        );
        let path = match t.str(self.cx, "path") {
            Some((text, span)) => self.json_path(text, span, &join(&key_path, "path")),
            None => Some(JsonPath::root()),
        };
        let (name, span) = entity?;
        if !entities.iter().any(|e| e.name == name) {
            self.cx
                .error(span, join(&key_path, "entity"), format!("unknown entity `{name}`"))
                .expected_one_of(name, entities.iter().map(|e| e.name.as_str()));
            return None;
        }
        Some(Items {
            path: path?,
            entity: name.to_owned(),
        })
    }

    fn pagination(&mut self, e: Entry<'_, '_>) -> Option<Pagination> {
        let key_path = e.key_path();
        let t = Table::new(self.cx, &key_path, e.key_span.into(), e.value, PAGINATE_KEYS)?;
        let (style, style_span) = t.require_str(
            self.cx,
            "style",
            "add `style = \"cursor\"` (or cursor_header, offset, page, link)",
        )?;
        let style_keys: &[&str] = match style {
            "cursor" => &["cursor", "param"],
            "cursor_header" => &["header", "param"],
            "offset" => &["param", "limit_param", "limit"],
            "page" => &["param", "start", "size_param", "size"],
            "link" => &[],
            other => {
                self.cx
                    .error(
                        style_span,
                        join(&key_path, "style"),
                        format!("unknown pagination style `{other}`"),
                    )
                    .expected_one_of(other, PAGINATION_STYLES.iter().copied());
                return None;
            }
        };
        for entry in t
            .entries()
            .filter(|x| x.key != "style" && PAGINATE_KEYS.contains(&x.key))
        {
            check::pagination_key_fits_style(
                self.cx,
                style,
                style_keys,
                entry.key,
                entry.key_span.into(),
                &entry.key_path(),
            );
        }
        let query_param = |this: &mut Self, key: &str, example: &str| -> Option<String> {
            let (name, span) = t.require_str(
                this.cx,
                key,
                &format!("add `{key} = \"{example}\"` (a query parameter of the `{style}` style)"),
            )?;
            if name.is_empty() {
                this.cx
                    .error(span, join(&key_path, key), format!("`{key}` must not be empty"))
                    .help(format!("e.g. `{key} = \"{example}\"`"));
                return None;
            }
            Some(name.to_owned())
        };
        let size = |this: &mut Self, key: &str| -> Option<u64> {
            t.require(this.cx, key, &format!("add `{key} = 100` (items per page)"))?;
            t.positive(this.cx, key)
        };
        Some(match style {
            "cursor" => {
                let cursor = t
                    .require_str(
                        self.cx,
                        "cursor",
                        "add `cursor = \"$.next_cursor\"` (where the next page's cursor is in the body)",
                    )
                    .and_then(|(text, span)| self.json_path(text, span, &join(&key_path, "cursor")));
                let param = query_param(self, "param", "cursor");
                Pagination::Cursor {
                    cursor: cursor?,
                    param: param?,
                }
            }
            "cursor_header" => {
                let header = t.require_str(
                    self.cx,
                    "header",
                    "add `header = \"X-Next-Cursor\"` (the response header with the next page's cursor)",
                );
                if let Some((h, span)) = &header {
                    check::header_name(self.cx, h, span.clone(), &join(&key_path, "header"));
                }
                let param = query_param(self, "param", "cursor");
                Pagination::CursorHeader {
                    header: header?.0.to_owned(),
                    param: param?,
                }
            }
            "offset" => {
                let param = query_param(self, "param", "offset");
                let limit_param = query_param(self, "limit_param", "limit");
                let limit = size(self, "limit");
                Pagination::Offset {
                    param: param?,
                    limit_param: limit_param?,
                    limit: limit?,
                }
            }
            "page" => {
                let param = query_param(self, "param", "page");
                let start = t.u64(self.cx, "start").unwrap_or(1);
                let size_param = query_param(self, "size_param", "per_page");
                let size = size(self, "size");
                Pagination::Page {
                    param: param?,
                    start,
                    size_param: size_param?,
                    size: size?,
                }
            }
            _ => Pagination::Link,
        })
    }
}
