//! `PATCH` on an object: a JSON merge patch (RFC 7386; kantai reads a strategic merge
//! patch as one), a JSON patch (RFC 6902), or a server-side apply (handed to [`super::apply`]).

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use kantai_model::meta::JsonMeta;
use serde_json::Value;

use super::admission::admit;
use super::apply;
use super::body::{json_body, read_body};
use super::managers::{field_manager, tracks_managers};
use super::options::{Options, PatchOptions, dry_run};
use super::path::Target;
use super::query;
use super::respond::{ApiFailure, fail, json_response, not_found_in, store_failure};
use crate::Shared;
use crate::store::StoreError;

/// How many times a patch is applied again to a newer version before the conflict is the
/// client's.
pub const ATTEMPTS: u32 = 5;

/// Answers a patch of `name`.
pub async fn patch(
    s: &Shared,
    req: Request,
    t: &Target,
    name: &str,
) -> Result<Response, ApiFailure> {
    let (r, ns) = (t.resource, t.ns());
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let opts: PatchOptions = query::decode(req.uri())?;
    let dry = dry_run(&opts.dry_run, Options::Patch)?;
    if ct.starts_with("application/apply-patch") {
        return apply::apply(s, req, t, name, opts, dry).await;
    }
    let manager = field_manager(&req, opts.field_manager);
    let json_patch = ct.starts_with("application/json-patch+json");
    if !json_patch
        && !ct.starts_with("application/merge-patch+json")
        && !ct.starts_with("application/strategic-merge-patch+json")
        && !ct.starts_with("application/json")
    {
        return Err(fail(
            415,
            "UnsupportedMediaType",
            format!(
                "patch type {ct:?} is not supported; use application/merge-patch+json or application/apply-patch+yaml"
            ),
        ));
    }
    let patch = json_body(&read_body(req).await?)?;
    // As Kubernetes' GuaranteedUpdate: the patch applies to the version read, and is
    // applied again to a newer one if another write came in between (unless the client
    // made a version its precondition).
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing = s
            .store
            .get(&r, ns, name)
            .ok_or_else(|| not_found_in(&r, name))?;
        let read_rv = existing.resource_version().map(str::to_owned);
        let mut merged = (*existing).clone();
        let client_rv = if json_patch {
            apply_json_patch(&mut merged, &patch, read_rv.as_deref())?
        } else {
            json_patch::merge(&mut merged, &patch);
            patch.resource_version().map(str::to_owned)
        };
        let mut obj = admit(s, &r, ns, Some(name), merged, Some(&existing))?;
        if dry {
            return Ok(json_response(StatusCode::OK, &obj));
        }
        if tracks_managers(&r) {
            crate::ssa::record_update(
                Some(&existing),
                &mut obj,
                &manager,
                &kantai_api::time::now(),
            );
        }
        let expect = client_rv.clone().or(read_rv);
        match s.store.update(&r, ns, name, obj, expect.as_deref()) {
            Ok(stored) => {
                s.changed();
                return Ok(json_response(StatusCode::OK, &stored));
            }
            Err(StoreError::Conflict { .. }) if client_rv.is_none() && attempt < ATTEMPTS => {}
            Err(e) => return Err(store_failure(e, &r)),
        }
    }
}

/// RFC 6902: a list of operations (kubectl patch --type=json, and kubectl's move of
/// client-side-apply ownership to server-side apply). Gives the version the client made
/// its precondition: a `test` of the resourceVersion, or a replaced one.
fn apply_json_patch(
    merged: &mut Value,
    patch: &Value,
    read_rv: Option<&str>,
) -> Result<Option<String>, ApiFailure> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| fail(400, "BadRequest", format!("invalid JSON patch: {e}")))?;
    json_patch::patch(merged, &ops).map_err(|e| {
        fail(
            422,
            "Invalid",
            format!("the JSON patch does not apply: {e}"),
        )
    })?;
    let tested = ops.iter().any(|op| {
        matches!(op, json_patch::PatchOperation::Test(t)
            if t.path.as_str() == "/metadata/resourceVersion")
    });
    Ok(merged
        .resource_version()
        .filter(|v| tested || Some(*v) != read_rv)
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn merge_patches_follow_rfc_7386() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        json_patch::merge(&mut v, &json!({"a": {"b": null, "e": 3}, "d": [2, 3]}));
        assert_eq!(v, json!({"a": {"c": 2, "e": 3}, "d": [2, 3]}));
    }

    #[test]
    fn a_merge_patch_that_is_not_an_object_replaces_the_target() {
        let mut v = json!({"a": 1});
        json_patch::merge(&mut v, &json!([1, 2]));
        assert_eq!(v, json!([1, 2]));
        let mut v = json!("text");
        json_patch::merge(&mut v, &json!({"a": {"b": null, "c": 1}}));
        assert_eq!(v, json!({"a": {"c": 1}}));
    }
}
