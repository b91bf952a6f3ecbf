//! `GET` on a collection: the objects its selectors match (or a Table of them).

use axum::extract::Request;
use axum::response::Response;

use super::objects;
use super::options::ListOptions;
use super::path::Target;
use super::respond::{ApiFailure, fail, list_response};
use super::select::Selector;
use super::table;
use crate::Shared;

/// Answers a list.
pub fn list(
    s: &Shared,
    req: &Request,
    t: &Target,
    opts: &ListOptions,
) -> Result<Response, ApiFailure> {
    let r = t.resource;
    let sel = selector(opts)?;
    let (items, rv) = objects::list(s, &r, t.namespace.as_deref());
    let items = items
        .iter()
        .filter(|o| sel.matches(o))
        .map(|o| (**o).clone())
        .collect();
    let as_table = table::asked(req.headers(), opts.include_object);
    Ok(list_response(&r, items, rv, as_table, &s.node_order()))
}

/// The list's (or watch's) label and field selectors; 400 naming what does not parse.
pub fn selector(opts: &ListOptions) -> Result<Selector, ApiFailure> {
    Selector::parse(
        opts.label_selector.as_deref(),
        opts.field_selector.as_deref(),
    )
    .map_err(|e| fail(400, "BadRequest", format!("invalid selector: {e}")))
}
