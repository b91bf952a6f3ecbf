//! `GET` on one object (or a one-row Table of it).

use axum::extract::Request;
use axum::response::Response;

use super::objects;
use super::options::GetOptions;
use super::path::Target;
use super::query;
use super::respond::{ApiFailure, not_found_in, object_response};
use super::table;
use crate::Shared;

/// Answers a get of `name`.
pub fn get(s: &Shared, req: &Request, t: &Target, name: &str) -> Result<Response, ApiFailure> {
    let opts: GetOptions = query::decode(req.uri())?;
    let r = t.resource;
    let o = objects::get(s, &r, t.ns(), name).ok_or_else(|| not_found_in(&r, name))?;
    let as_table = table::asked(req.headers(), opts.include_object);
    Ok(object_response(&r, &o, as_table, &s.node_order()))
}
