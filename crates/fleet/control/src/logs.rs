//! `instances/{name}/log`: the control plane asks the instance's node agent for its output.
//! Failures are `Status` objects, which the API answers with as they are.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kantai_api::resources::{INSTANCES, NODES};
use kantai_api::{Client, Status};

use crate::Shared;

/// Path of an instance's log on its node agent.
pub fn agent_path(ns: &str, name: &str) -> String {
    format!("/kantai/v1/logs/{ns}/{name}")
}

/// Fetches an instance's recent output from its node.
pub async fn proxy(
    s: &Shared,
    ns: &str,
    name: &str,
    tail: Option<u64>,
    follow: bool,
) -> Result<Response, Box<Status>> {
    let inst = s.store.get(&INSTANCES, ns, name).ok_or_else(|| {
        Box::new(Status::failure(
            404,
            "NotFound",
            format!("instances.kantai.dev {name:?} not found"),
        ))
    })?;
    let node = inst["spec"]["node"].as_str().unwrap_or_default().to_owned();
    let admin = s
        .store
        .get(&NODES, "", &node)
        .and_then(|n| n["spec"]["admin"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            Box::new(Status::failure(
                503,
                "ServiceUnavailable",
                format!("node {node:?} of instance {name:?} is not registered"),
            ))
        })?;
    let client = Client::new(&format!("http://{admin}"))
        .map_err(|e| Box::new(Status::failure(502, "BadGateway", e.to_string())))?
        .with_token(Some(s.token.clone()));
    let mut path = agent_path(ns, name);
    if let Some(t) = tail {
        path.push_str(&format!("?tailLines={t}"));
    }
    let unreachable = |e: kantai_api::ApiError| {
        Box::new(Status::failure(
            e.code().unwrap_or(502),
            "BadGateway",
            format!("cannot get the log of {name:?} from node {node:?}: {e}"),
        ))
    };
    if follow {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str("follow=true");
        let body = client.stream(&path).await.map_err(unreachable)?;
        let mut r = Response::new(axum::body::Body::new(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Ok(r);
    }
    let text = client
        .call(axum::http::Method::GET, &path, None)
        .await
        .map_err(unreachable)?;
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}
