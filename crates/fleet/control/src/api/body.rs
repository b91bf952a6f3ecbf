//! Request bodies: read under Kubernetes' size limit, then as JSON, or as protobuf for the
//! kinds kubectl's typed client sends that way.

use axum::extract::Request;
use axum::http::header;
use bytes::Bytes;
use http_body_util::BodyExt;
use kantai_api::resources::Resource;
use serde_json::Value;

use super::protobuf;
use super::respond::{ApiFailure, fail};

/// Largest request body the API accepts (Kubernetes' limit).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The whole body, or 413 past [`MAX_BODY_BYTES`].
pub async fn read_body(req: Request) -> Result<Bytes, ApiFailure> {
    let too_large = || {
        fail(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
        )
    };
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH)
        && len
            .to_str()
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|l| l > MAX_BODY_BYTES)
    {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(fail(
            400,
            "BadRequest",
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// The body as JSON, or 400.
pub fn json_body(bytes: &[u8]) -> Result<Value, ApiFailure> {
    serde_json::from_slice(bytes).map_err(|e| {
        fail(
            400,
            "BadRequest",
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

/// Whether the body is Kubernetes' protobuf (kubectl's typed client sends core objects so).
pub fn is_protobuf(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"))
}

/// A create's or replace's body: JSON, or protobuf for the kinds kubectl's typed client
/// sends that way (`kubectl create secret`, `kubectl create configmap`), read into the same
/// JSON form so that both meet the same admission.
pub fn object_body(r: &Resource, protobuf: bool, bytes: &[u8]) -> Result<Value, ApiFailure> {
    if !protobuf {
        return json_body(bytes);
    }
    let decoded = match r.plural {
        "secrets" => protobuf::secret(bytes),
        "configmaps" => protobuf::config_map(bytes),
        _ => {
            return Err(fail(
                415,
                "UnsupportedMediaType",
                format!(
                    "kantai reads {} as application/json only (protobuf: namespaces, secrets and configmaps)",
                    r.plural
                ),
            ));
        }
    };
    decoded.map_err(|e| {
        fail(
            400,
            "BadRequest",
            format!("cannot read the {}: {e}", r.kind),
        )
    })
}
