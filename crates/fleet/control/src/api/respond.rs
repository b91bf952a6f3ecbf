//! What every verb answers with: failures as Kubernetes `Status` objects, and JSON bodies
//! (one object, a list, or a Table of either when the client asked for one).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kantai_api::Status;
use kantai_api::resources::Resource;
use kantai_model::meta::JsonMeta;
use serde_json::{Value, json};

use super::table::{self, Include};
use crate::store::StoreError;

/// An API error, rendered as a Kubernetes `Status`.
pub struct ApiFailure(pub Box<Status>);

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.0.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (code, axum::Json(*self.0)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

impl ApiFailure {
    /// Names the object concerned.
    pub fn with_details(self, group: &str, kind: &str, name: &str) -> ApiFailure {
        ApiFailure(Box::new(self.0.with_details(group, kind, name)))
    }
}

impl From<Box<Status>> for ApiFailure {
    fn from(st: Box<Status>) -> ApiFailure {
        ApiFailure(st)
    }
}

/// A failure with its code, reason and message.
pub fn fail(code: u16, reason: &str, message: impl Into<String>) -> ApiFailure {
    ApiFailure(Box::new(Status::failure(code, reason, message)))
}

/// 404 for a URL that names nothing kantai serves.
pub fn not_found() -> ApiFailure {
    fail(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// 404 for an object of `r` that does not exist.
pub fn not_found_in(r: &Resource, name: impl Into<String>) -> ApiFailure {
    store_failure(
        StoreError::NotFound {
            resource: r.plural,
            name: name.into(),
        },
        r,
    )
}

/// `services.serving.knative.dev`, or just `secrets` in the core group, as Kubernetes names
/// resources in its messages.
pub fn qualified(r: &Resource) -> String {
    if r.group.is_empty() {
        r.plural.to_owned()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

/// A store error as the `Status` Kubernetes answers for it.
pub fn store_failure(e: StoreError, r: &Resource) -> ApiFailure {
    let (code, reason, name) = match &e {
        StoreError::NotFound { name, .. } => (404, "NotFound", name.clone()),
        StoreError::AlreadyExists { name, .. } => (409, "AlreadyExists", name.clone()),
        StoreError::Conflict { name, .. } => (409, "Conflict", name.clone()),
        StoreError::Gone(_) => (410, "Expired", String::new()),
        StoreError::Database(_) | StoreError::Encryption(_) => {
            (500, "InternalError", String::new())
        }
    };
    let message = match &e {
        StoreError::NotFound { name, .. } => {
            format!("{} {name:?} not found", qualified(r))
        }
        StoreError::AlreadyExists { name, .. } => {
            format!("{} {name:?} already exists", qualified(r))
        }
        other => other.to_string(),
    };
    ApiFailure(Box::new(
        Status::failure(code, reason, message).with_details(r.group, r.plural, &name),
    ))
}

/// A JSON body with its status code.
pub fn json_response(code: StatusCode, v: &Value) -> Response {
    let mut r = (code, axum::Json(v)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A list of objects already filtered, or a Table of them when `table` says what its rows
/// include.
pub fn list_response(
    r: &Resource,
    items: Vec<Value>,
    rv: u64,
    table: Option<Include>,
    order: &[String],
) -> Response {
    if let Some(include) = table {
        return json_response(
            StatusCode::OK,
            &table::table(r, &items, &rv.to_string(), include, order),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": r.api_version(),
            "kind": format!("{}List", r.kind),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    )
}

/// One object, or a one-row Table of it when `table` says what its row includes.
pub fn object_response(
    r: &Resource,
    obj: &Value,
    table: Option<Include>,
    order: &[String],
) -> Response {
    if let Some(include) = table {
        let rv = obj.resource_version().unwrap_or("");
        return json_response(
            StatusCode::OK,
            &table::table(r, std::slice::from_ref(obj), rv, include, order),
        );
    }
    json_response(StatusCode::OK, obj)
}
