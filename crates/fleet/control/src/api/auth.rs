//! Bearer-token authentication: every request but the health checks carries the fleet's
//! token (`Authorization: Bearer TOKEN`), as a Kubernetes API server with token auth and no
//! anonymous access does.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::respond::fail;
use crate::Shared;

/// Paths served without a token: liveness checks, which reveal nothing.
const OPEN_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

/// Lets a request through only with the fleet's token; otherwise 401 `Unauthorized`.
pub async fn require_token(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(kantai_api::auth::bearer);
    match presented {
        Some(t) if kantai_api::auth::tokens_match(t.as_bytes(), s.token.as_bytes()) => {
            next.run(req).await
        }
        Some(_) => fail(401, "Unauthorized", "Unauthorized: the bearer token is not this fleet's (see `kantai kubeconfig`)").into_response(),
        None => fail(
            401,
            "Unauthorized",
            "Unauthorized: the request has no bearer token (use the kubeconfig `kantai up` writes, or `kantai kubeconfig`)",
        )
        .into_response(),
    }
}
