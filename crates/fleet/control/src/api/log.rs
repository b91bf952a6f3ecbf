//! The `/log` subresource of instances and pods: the instance's output, from its node.

use axum::extract::Request;
use axum::response::Response;

use super::options::LogOptions;
use super::path::Target;
use super::query;
use super::respond::ApiFailure;
use crate::Shared;

/// Answers `GET .../log`.
pub async fn log(s: &Shared, req: Request, t: &Target, name: &str) -> Result<Response, ApiFailure> {
    let opts: LogOptions = query::decode(req.uri())?;
    Ok(crate::logs::proxy(s, t.ns(), name, opts.tail_lines, opts.follow).await?)
}
