//! `POST` on a collection: a new object after admission, or a new namespace.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use kantai_model::meta::JsonMeta;

use super::admission::{self, admit};
use super::body::{is_protobuf, json_body, object_body, read_body};
use super::managers::{field_manager, tracks_managers};
use super::options::{Options, WriteOptions, dry_run};
use super::path::Target;
use super::query;
use super::respond::{ApiFailure, fail, json_response, store_failure};
use super::{protobuf, views};
use crate::Shared;

/// Answers a create.
pub async fn create(s: &Shared, req: Request, t: &Target) -> Result<Response, ApiFailure> {
    let r = t.resource;
    let opts: WriteOptions = query::decode(req.uri())?;
    let dry = dry_run(&opts.dry_run, Options::Create)?;
    let manager = field_manager(&req, opts.field_manager);
    let protobuf = is_protobuf(&req);
    let body = object_body(&r, protobuf, &read_body(req).await?)?;
    let ns = t.ns();
    let mut obj = admit(s, &r, ns, None, body, None)?;
    if dry {
        return Ok(json_response(StatusCode::CREATED, &obj));
    }
    if tracks_managers(&r) {
        crate::ssa::record_update(None, &mut obj, &manager, &kantai_api::time::now());
    }
    let created = s
        .store
        .create(&r, ns, obj, &kantai_api::time::now())
        .map_err(|e| store_failure(e, &r))?;
    s.changed();
    Ok(json_response(StatusCode::CREATED, &created))
}

/// Answers a namespace's create: stored only so that it is listed while it holds nothing.
pub async fn namespace(s: &Shared, req: Request, t: &Target) -> Result<Response, ApiFailure> {
    let r = t.resource;
    let opts: WriteOptions = query::decode(req.uri())?;
    let dry = dry_run(&opts.dry_run, Options::Create)?;
    let protobuf = is_protobuf(&req);
    let bytes = read_body(req).await?;
    let body = if protobuf {
        protobuf::namespace(&bytes)
            .map_err(|e| fail(400, "BadRequest", format!("cannot read the Namespace: {e}")))?
    } else {
        json_body(&bytes)?
    };
    let body = admission::admit_namespace(body)?;
    let obj = views::new_namespace(&body);
    let name = obj.name().to_owned();
    if views::namespaces(s).iter().any(|n| n.name() == name) {
        return Err(fail(
            409,
            "AlreadyExists",
            format!("namespaces {name:?} already exists"),
        )
        .with_details("", "namespaces", &name));
    }
    if dry {
        return Ok(json_response(StatusCode::CREATED, &obj));
    }
    let created = s
        .store
        .create(&r, "", obj, &kantai_api::time::now())
        .map_err(|e| store_failure(e, &r))?;
    Ok(json_response(StatusCode::CREATED, &created))
}
