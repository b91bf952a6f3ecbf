//! `DELETE` on an object (a Service with what it owns), or on a namespace with everything
//! in it; `DeleteOptions` preconditions checked first, a dry run answered as a delete.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use kantai_api::Status;
use kantai_api::resources::{self, Resource};
use kantai_model::meta::JsonMeta;
use serde_json::{Value, json};

use super::options::{DeleteOptions, delete_options};
use super::path::Target;
use super::respond::{ApiFailure, fail, json_response, not_found_in, qualified, store_failure};
use super::views;
use crate::Shared;

/// Answers a delete of `name`.
pub async fn delete(
    s: &Shared,
    req: Request,
    t: &Target,
    name: &str,
) -> Result<Response, ApiFailure> {
    let (r, ns) = (t.resource, t.ns());
    let opts = delete_options(req).await?;
    let o = s
        .store
        .get(&r, ns, name)
        .ok_or_else(|| not_found_in(&r, name))?;
    preconditions(&opts, &r, name, &o)?;
    if opts.dry_run {
        return Ok(deleted(&r, name, &o));
    }
    let old = s
        .store
        .delete(&r, ns, name)
        .map_err(|e| store_failure(e, &r))?;
    if r.plural == "services" {
        crate::reconcile::cascade_delete(&s.store, ns, name);
    }
    s.changed();
    Ok(deleted(&r, name, &old))
}

/// Answers a namespace's delete: without finalizers, everything in it goes now, services
/// with what they own.
pub async fn namespace(
    s: &Shared,
    req: Request,
    t: &Target,
    name: &str,
) -> Result<Response, ApiFailure> {
    let r = t.resource;
    if name == "default" {
        return Err(fail(
            403,
            "Forbidden",
            "namespaces \"default\" is forbidden: this namespace may not be deleted",
        ));
    }
    let Some(found) = views::namespaces(s).into_iter().find(|n| n.name() == name) else {
        return Err(not_found_in(&r, name));
    };
    let opts = delete_options(req).await?;
    preconditions(&opts, &r, name, &found)?;
    if opts.dry_run {
        return Ok(deleted(&r, name, &found));
    }
    for svc in s.store.list(&resources::SERVICES, Some(name)).0 {
        let _ = s.store.delete(&resources::SERVICES, name, svc.name());
        crate::reconcile::cascade_delete(&s.store, name, svc.name());
    }
    for kind in [
        resources::ROUTES,
        resources::EVENTS,
        resources::SECRETS,
        resources::CONFIGMAPS,
    ] {
        for o in s.store.list(&kind, Some(name)).0 {
            let _ = s.store.delete(&kind, name, o.name());
        }
    }
    let _ = s.store.delete(&r, "", name);
    s.changed();
    Ok(deleted(&r, name, &found))
}

/// The answer to a DELETE, a dry run's included: a `Status` naming what was (or would be)
/// deleted, with its uid, as the OpenAPI documents declare.
fn deleted(r: &Resource, name: &str, obj: &Value) -> Response {
    let what = qualified(r);
    let status =
        Status::success(format!("{what} {name:?} deleted")).with_details(r.group, r.plural, name);
    let mut v = serde_json::to_value(status).unwrap_or_default();
    v["details"]["uid"] = json!(obj.uid());
    json_response(StatusCode::OK, &v)
}

/// A DELETE's preconditions: 409 when the object is not the one (uid) or the version the
/// client meant, as Kubernetes answers.
fn preconditions(
    opts: &DeleteOptions,
    r: &Resource,
    name: &str,
    found: &Value,
) -> Result<(), ApiFailure> {
    for (k, want, stored) in [
        ("uid", &opts.uid, found.uid()),
        (
            "resourceVersion",
            &opts.resource_version,
            found.resource_version(),
        ),
    ] {
        let stored = stored.unwrap_or("");
        if let Some(want) = want
            && want != stored
        {
            return Err(fail(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: Precondition failed: {k} in precondition: {want}, {k} in object meta: {stored}",
                    qualified(r),
                ),
            )
            .with_details(r.group, r.plural, name));
        }
    }
    Ok(())
}
