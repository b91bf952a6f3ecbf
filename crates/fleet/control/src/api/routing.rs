//! The router: health, metrics, the agents' endpoints and the config stream by path, and
//! every other URL dispatched as Kubernetes does — discovery documents, else a resource
//! URL read by [`super::path`], its verb found by [`super::gate`], and that verb's module
//! called.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kantai_api::resources;
use kantai_api::wire::{CONFIGS_PATH, FLEET_PATH, REPORTS_PATH};

use super::gate::{self, Verb};
use super::options::ListOptions;
use super::respond::{ApiFailure, fail};
use super::{
    agents, auth, create, delete, discovery, get, list, log, objects, patch, path, query, replace,
    status, watch,
};
use crate::Shared;

/// The router of the whole API.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/livez", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .route(FLEET_PATH, axum::routing::get(agents::fleet_info))
        .route(REPORTS_PATH, axum::routing::post(agents::report))
        .route(CONFIGS_PATH, axum::routing::get(crate::configs::stream))
        .fallback(api)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::require_token,
        ))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        crate::metrics::text(&s),
    )
        .into_response()
}

/// Ready while the control plane serves: 503 once it is stopping, so that a load balancer
/// in front of it moves on.
async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if *s.stopping.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response();
    }
    "ok".into_response()
}

async fn api(State(s): State<Arc<Shared>>, req: Request) -> Response {
    match dispatch(&s, req).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn dispatch(s: &Arc<Shared>, req: Request) -> Result<Response, ApiFailure> {
    if let Some(doc) = discovery::document(&req) {
        return doc;
    }
    let t = path::parse(req.uri().path())?;
    let r = t.resource;
    // A view reads across namespaces where it must (a pod by name without one is simply
    // not found); a stored namespaced object is named only inside its namespace.
    if !objects::is_view(&r)
        && r.namespaced
        && t.namespace.is_none()
        && (t.name.is_some() || req.method() != Method::GET)
    {
        return Err(fail(
            404,
            "NotFound",
            format!(
                "{} are namespaced: use /namespaces/NAMESPACE/{}",
                r.plural, r.plural
            ),
        ));
    }
    let verb = gate::verb(req.method(), &t, req.uri().path())?;
    let name = t.name.clone().unwrap_or_default();
    let namespaces = r == resources::NAMESPACES;
    match verb {
        Verb::List => {
            let opts: ListOptions = query::decode(req.uri())?;
            if opts.watch {
                gate::watchable(&r)?;
                watch::watch(s, &req, &t, &opts)
            } else {
                list::list(s, &req, &t, &opts)
            }
        }
        Verb::Get => get::get(s, &req, &t, &name),
        Verb::Create if namespaces => create::namespace(s, req, &t).await,
        Verb::Create => create::create(s, req, &t).await,
        Verb::Replace => replace::replace(s, req, &t, &name).await,
        Verb::Patch => patch::patch(s, req, &t, &name).await,
        Verb::Delete if namespaces => delete::namespace(s, req, &t, &name).await,
        Verb::Delete => delete::delete(s, req, &t, &name).await,
        Verb::GetStatus => status::get_status(s, &req, &t, &name),
        Verb::ReplaceStatus => status::replace_status(s, req, &t, &name).await,
        Verb::Log => log::log(s, req, &t, &name).await,
    }
}
