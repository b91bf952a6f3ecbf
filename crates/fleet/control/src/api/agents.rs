//! The node agents' endpoints: their reports (load, heartbeat) answered with where each
//! revision serves, and `/kantai/v1/fleet`, what an agent or the CLI needs to join.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use kantai_api::{FleetInfo, Report};

use super::body::read_body;
use super::respond::fail;
use crate::Shared;

/// `GET /kantai/v1/fleet`.
pub async fn fleet_info(State(s): State<Arc<Shared>>) -> Response {
    let info = FleetInfo {
        topology: serde_json::to_value(&s.topology).unwrap_or_default(),
        domain: s.config.domain.clone(),
        config: s.config_text.clone(),
        peer_token: s.peer_token.clone(),
    };
    axum::Json(info).into_response()
}

/// `POST /kantai/v1/reports`.
pub async fn report(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    match serde_json::from_slice::<Report>(&body) {
        Ok(r) => {
            let at = tokio::time::Instant::now();
            // Heard when the API read it: a heartbeat counts even when the scaling loop is
            // behind, or its queue full.
            s.lifecycle.lock().heard(&r.node, s.since_epoch(at));
            // A full queue means the scaler is behind; the next report carries the same load.
            let _ = s.reports.try_send((r, at));
            let serving = s
                .serving
                .lock()
                .iter()
                .map(|((ns, rev), nodes)| kantai_api::RevisionServing {
                    namespace: ns.clone(),
                    revision: rev.clone(),
                    nodes: nodes.clone(),
                })
                .collect();
            axum::Json(kantai_api::ReportReply { serving }).into_response()
        }
        Err(e) => fail(400, "BadRequest", format!("invalid report: {e}")).into_response(),
    }
}
