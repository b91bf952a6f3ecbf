//! `PATCH` with `application/apply-patch+yaml`: Kubernetes' server-side apply (the merge
//! and the field ownership are [`crate::ssa`]'s), creating the object if it does not exist.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use kantai_api::resources::Resource;
use kantai_model::meta::JsonMeta;
use serde_json::Value;

use super::admission::admit;
use super::body::read_body;
use super::gate::read_only;
use super::managers::tracks_managers;
use super::options::PatchOptions;
use super::patch::ATTEMPTS;
use super::path::Target;
use super::respond::{ApiFailure, fail, json_response, store_failure};
use crate::Shared;
use crate::store::StoreError;

/// Answers a server-side apply to `name`.
pub async fn apply(
    s: &Shared,
    req: Request,
    t: &Target,
    name: &str,
    opts: PatchOptions,
    dry: bool,
) -> Result<Response, ApiFailure> {
    let (r, ns) = (&t.resource, t.ns());
    if !tracks_managers(r) {
        return Err(read_only(r));
    }
    let Some(manager) = opts.field_manager.filter(|m| !m.is_empty()) else {
        return Err(fail(
            400,
            "BadRequest",
            "fieldManager is required for apply requests (kubectl sends it)",
        ));
    };
    let applied = apply_body(r, &read_body(req).await?)?;
    let client_rv = applied.resource_version().map(str::to_owned);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing = s.store.get(r, ns, name);
        let out = crate::ssa::apply(
            existing.as_deref(),
            &applied,
            &manager,
            opts.force,
            &kantai_api::time::now(),
        )
        .map_err(|e| match e {
            crate::ssa::ApplyError::Conflict { .. } => {
                fail(409, "Conflict", e.to_string()).with_details(r.group, r.plural, name)
            }
            crate::ssa::ApplyError::Invalid(m) => fail(400, "BadRequest", m),
        })?;
        let obj = admit(s, r, ns, Some(name), out.object, existing.as_deref())?;
        let code = if out.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        if dry {
            return Ok(json_response(code, &obj));
        }
        // Applied to the version read: a write in between means applying again.
        let expect = client_rv.clone().or_else(|| {
            existing
                .as_ref()
                .and_then(|e| e.resource_version().map(str::to_owned))
        });
        let result = match &existing {
            Some(_) => s.store.update(r, ns, name, obj, expect.as_deref()),
            None => s.store.create(r, ns, obj, &kantai_api::time::now()),
        };
        match result {
            Ok(stored) => {
                s.changed();
                return Ok(json_response(code, &stored));
            }
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. })
                if client_rv.is_none() && attempt < ATTEMPTS => {}
            Err(e) => return Err(store_failure(e, r)),
        }
    }
}

/// An apply configuration: JSON, or YAML (one document). For a Secret a YAML error gives
/// its place only: the parser's message may quote the text, and the text holds values.
fn apply_body(r: &Resource, bytes: &[u8]) -> Result<Value, ApiFailure> {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return Ok(v);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| fail(400, "BadRequest", "the apply configuration is not UTF-8"))?;
    let docs = kantai_model::node::parse_documents(text, Default::default()).map_err(|e| {
        let why = if r.plural == "secrets" {
            format!(
                "at line {} column {} (the parser's message is withheld for a Secret)",
                e.pos.line, e.pos.column
            )
        } else {
            e.to_string()
        };
        fail(
            400,
            "BadRequest",
            format!("the apply configuration is not valid YAML: {why}"),
        )
    })?;
    match docs.as_slice() {
        [one] => Ok(one.to_json()),
        _ => Err(fail(
            400,
            "BadRequest",
            "an apply configuration must be exactly one object",
        )),
    }
}
