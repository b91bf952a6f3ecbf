//! The `/status` subresource: read an object's status, or replace it (what a controller
//! or an agent reports), checked like any write.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use kantai_model::meta::JsonMeta;

use super::admission;
use super::body::{json_body, read_body};
use super::options::{GetOptions, Options, WriteOptions, dry_run};
use super::path::Target;
use super::query;
use super::respond::{ApiFailure, json_response, not_found_in, object_response, store_failure};
use super::{objects, table};
use crate::Shared;

/// Answers `GET .../status`: the whole object, as Kubernetes does.
pub fn get_status(
    s: &Shared,
    req: &Request,
    t: &Target,
    name: &str,
) -> Result<Response, ApiFailure> {
    let r = t.resource;
    let o = objects::get(s, &r, t.ns(), name).ok_or_else(|| not_found_in(&r, name))?;
    // A stored object's status has always been answered as the object, whatever the
    // `Accept`; a view's as its get is.
    if !objects::is_view(&r) {
        return Ok(json_response(StatusCode::OK, &o));
    }
    let opts: GetOptions = query::decode(req.uri())?;
    let as_table = table::asked(req.headers(), opts.include_object);
    Ok(object_response(&r, &o, as_table, &s.node_order()))
}

/// Answers `PUT .../status`.
pub async fn replace_status(
    s: &Shared,
    req: Request,
    t: &Target,
    name: &str,
) -> Result<Response, ApiFailure> {
    let r = t.resource;
    let ns = t.ns();
    let opts: WriteOptions = query::decode(req.uri())?;
    let dry = dry_run(&opts.dry_run, Options::Update)?;
    let body = json_body(&read_body(req).await?)?;
    let existing = s
        .store
        .get(&r, ns, name)
        .ok_or_else(|| not_found_in(&r, name))?;
    let obj = admission::admit_status(s, &r, ns, name, body, &existing)?;
    if dry {
        return Ok(json_response(StatusCode::OK, &obj));
    }
    let rv = obj.resource_version().map(str::to_owned);
    let stored = s
        .store
        .update(&r, ns, name, obj, rv.as_deref())
        .map_err(|e| store_failure(e, &r))?;
    s.changed();
    Ok(json_response(StatusCode::OK, &stored))
}
