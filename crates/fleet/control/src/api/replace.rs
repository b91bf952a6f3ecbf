//! `PUT` on an object: the whole object replaced after admission (and, for nodes and
//! instances, created: their agents register them so).

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use kantai_model::meta::JsonMeta;

use super::admission::admit;
use super::body::{is_protobuf, object_body, read_body};
use super::managers::{field_manager, tracks_managers};
use super::options::{Options, WriteOptions, dry_run};
use super::path::Target;
use super::query;
use super::respond::{ApiFailure, json_response, store_failure};
use crate::Shared;
use crate::store::StoreError;

/// Answers a replace of `name`.
pub async fn replace(
    s: &Shared,
    req: Request,
    t: &Target,
    name: &str,
) -> Result<Response, ApiFailure> {
    let r = t.resource;
    let ns = t.ns();
    let opts: WriteOptions = query::decode(req.uri())?;
    let dry = dry_run(&opts.dry_run, Options::Update)?;
    let manager = field_manager(&req, opts.field_manager);
    let protobuf = is_protobuf(&req);
    let body = object_body(&r, protobuf, &read_body(req).await?)?;
    let existing = s.store.get(&r, ns, name);
    let rv = body.resource_version().map(str::to_owned);
    let mut obj = admit(s, &r, ns, Some(name), body, existing.as_deref())?;
    if dry {
        return Ok(json_response(StatusCode::OK, &obj));
    }
    if tracks_managers(&r) {
        crate::ssa::record_update(
            existing.as_deref(),
            &mut obj,
            &manager,
            &kantai_api::time::now(),
        );
    }
    let stored = match existing {
        Some(_) => s.store.update(&r, ns, name, obj, rv.as_deref()),
        // Kubernetes creates on PUT only for some resources; kantai's agents register
        // their nodes and instances this way.
        None if matches!(r.plural, "nodes" | "instances") => {
            s.store.create(&r, ns, obj, &kantai_api::time::now())
        }
        None => Err(StoreError::NotFound {
            resource: r.plural,
            name: name.to_owned(),
        }),
    }
    .map_err(|e| store_failure(e, &r))?;
    s.changed();
    Ok(json_response(StatusCode::OK, &stored))
}
