//! The Kubernetes-style REST API: `/apis/{group}/{version}[/namespaces/{ns}]/{resource}
//! [/{name}[/{subresource}]]`, with create, get, list, watch, replace, JSON merge patch and
//! delete; errors as `Status` objects.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use kantai_api::resources::{self, Resource};
use kantai_api::wire::{FLEET_PATH, REPORTS_PATH};
use kantai_api::{FleetInfo, Report, Status};
use serde_json::{Value, json};

use crate::Shared;
use crate::store::{Event, StoreError};

mod admission;
mod auth;
mod core;
mod discovery;
mod options;
mod protobuf;
mod select;
mod table;

use admission::{admit, read_only};
use options::{Options, delete_options, dry_run};
use select::Selector;
use table::Include;

/// Largest request body the API accepts (Kubernetes' limit).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The router of the whole API.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/livez", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .route(FLEET_PATH, axum::routing::get(fleet_info))
        .route(REPORTS_PATH, axum::routing::post(report))
        .route(
            kantai_api::wire::CONFIGS_PATH,
            axum::routing::get(crate::configs::stream),
        )
        .fallback(api)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::require_token,
        ))
        .with_state(shared)
}

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

fn fail(code: u16, reason: &str, message: impl Into<String>) -> ApiFailure {
    ApiFailure(Box::new(Status::failure(code, reason, message)))
}

impl ApiFailure {
    /// Names the object concerned.
    fn with_details(self, group: &str, kind: &str, name: &str) -> ApiFailure {
        ApiFailure(Box::new(self.0.with_details(group, kind, name)))
    }
}

/// `services.serving.knative.dev`, or just `secrets` in the core group, as Kubernetes names
/// resources in its messages.
fn qualified(r: &Resource) -> String {
    if r.group.is_empty() {
        r.plural.to_owned()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

fn store_failure(e: StoreError, r: &Resource) -> ApiFailure {
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

async fn fleet_info(State(s): State<Arc<Shared>>) -> Response {
    let info = FleetInfo {
        topology: serde_json::to_value(&s.topology).unwrap_or_default(),
        domain: s.config.domain.clone(),
        config: s.config_text.clone(),
        peer_token: s.peer_token.clone(),
    };
    axum::Json(info).into_response()
}

async fn report(State(s): State<Arc<Shared>>, req: Request) -> Response {
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

/// Where a request points.
#[derive(Debug, PartialEq)]
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Result<Target, ApiFailure> {
    let not_found = || {
        fail(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    // `/apis/GROUP/VERSION/...`, or `/api/VERSION/...` for Kubernetes' core group.
    let seg: Vec<&str> = if let Some(rest) = path.strip_prefix("/apis/") {
        rest.split('/').filter(|s| !s.is_empty()).collect()
    } else if let Some(rest) = path.strip_prefix("/api/") {
        std::iter::once("")
            .chain(rest.split('/').filter(|s| !s.is_empty()))
            .collect()
    } else {
        return Err(not_found());
    };
    if seg.len() < 3 {
        return Err(not_found());
    }
    let (group, version) = (seg[0], seg[1]);
    let (namespace, tail) = if seg[2] == "namespaces" && seg.len() >= 5 {
        (Some(seg[3].to_owned()), &seg[4..])
    } else {
        (None, &seg[2..])
    };
    if tail.len() > 3 {
        return Err(not_found());
    }
    let resource = resources::ALL
        .iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == tail[0])
        .ok_or_else(not_found)?;
    Ok(Target {
        resource,
        namespace,
        name: tail.get(1).map(|s| (*s).to_owned()),
        sub: tail.get(2).map(|s| (*s).to_owned()),
    })
}

fn query_param(req: &Request, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// A boolean query parameter as Kubernetes reads one: absent, `0` or `false` (any case) is
/// false, any other value true.
fn query_bool(req: &Request, key: &str) -> bool {
    query_param(req, key).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Query parameters with a type, checked before anything else: 400 naming the parameter
/// when one does not parse, as Kubernetes answers, rather than a silent default.
fn check_query(req: &Request) -> Result<(), ApiFailure> {
    let bad = |key: &str, v: &str, want: &str| {
        fail(
            400,
            "BadRequest",
            format!("query parameter {key}={v:?} is invalid: it must be {want}"),
        )
    };
    for key in ["timeoutSeconds", "limit", "tailLines", "gracePeriodSeconds"] {
        for v in query_params(req, key) {
            if !v.is_empty() && v.parse::<u64>().is_err() {
                return Err(bad(key, &v, "a whole number, 0 or more"));
            }
        }
    }
    for (key, allowed) in [
        ("fieldValidation", &["Ignore", "Warn", "Strict"][..]),
        ("includeObject", &["None", "Metadata", "Object"][..]),
        ("resourceVersionMatch", &["NotOlderThan", "Exact"][..]),
    ] {
        for v in query_params(req, key) {
            if !v.is_empty() && !allowed.contains(&v.as_str()) {
                return Err(bad(key, &v, &format!("one of {}", allowed.join(", "))));
            }
        }
    }
    Ok(())
}

/// Every value of a repeated query parameter (`dryRun=All&dryRun=All`).
fn query_params(req: &Request, key: &str) -> Vec<String> {
    req.uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text (`%3D` → `=`, `+` → space); a broken
/// escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn read_body(req: Request) -> Result<Bytes, ApiFailure> {
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

fn json_body(bytes: &[u8]) -> Result<Value, ApiFailure> {
    serde_json::from_slice(bytes).map_err(|e| {
        fail(
            400,
            "BadRequest",
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

/// Whether the body is Kubernetes' protobuf (kubectl's typed client sends core objects so).
fn is_protobuf(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"))
}

/// A create's or replace's body: JSON, or protobuf for the kinds kubectl's typed client
/// sends that way (`kubectl create secret`, `kubectl create configmap`), read into the same
/// JSON form so that both meet the same admission.
fn object_body(r: &Resource, protobuf: bool, bytes: &[u8]) -> Result<Value, ApiFailure> {
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

fn json_response(code: StatusCode, v: &Value) -> Response {
    let mut r = (code, axum::Json(v)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn api(State(s): State<Arc<Shared>>, req: Request) -> Response {
    match handle(&s, req).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

/// Discovery and OpenAPI documents, if `path` is one.
fn documents(req: &Request) -> Option<Result<Response, ApiFailure>> {
    let path = req.uri().path().trim_end_matches('/');
    let ok = |v: Value| Some(Ok(json_response(StatusCode::OK, &v)));
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match seg.as_slice() {
        ["version"] => ok(discovery::version()),
        ["api"] => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            ok(discovery::core_versions(host))
        }
        ["api", v] => Some(discovery::resources("", v).map_or_else(
            || Err(not_found()),
            |d| Ok(json_response(StatusCode::OK, &d)),
        )),
        ["apis"] => ok(discovery::groups()),
        ["apis", g] => Some(discovery::group(g).map_or_else(
            || Err(not_found()),
            |d| Ok(json_response(StatusCode::OK, &d)),
        )),
        ["apis", g, v] => Some(discovery::resources(g, v).map_or_else(
            || Err(not_found()),
            |d| Ok(json_response(StatusCode::OK, &d)),
        )),
        ["openapi", "v2"] => {
            // kubectl asks for the protobuf encoding only and would misread JSON; kantai
            // serves OpenAPI v2 as JSON, and v3 (which kubectl prefers) for everything.
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .unwrap_or("*/*");
            if accept.contains("json") || accept.contains("*/*") {
                ok(kantai_api::openapi::v2())
            } else {
                Some(Err(fail(
                    406,
                    "NotAcceptable",
                    "kantai serves OpenAPI v2 as application/json only (and OpenAPI v3 at /openapi/v3)",
                )))
            }
        }
        ["openapi", "v3"] => ok(kantai_api::openapi::v3_index()),
        ["openapi", "v3", rest @ ..] => Some(
            kantai_api::openapi::v3_group_version(&rest.join("/")).map_or_else(
                || Err(not_found()),
                |d| Ok(json_response(StatusCode::OK, &d)),
            ),
        ),
        _ => None,
    }
}

fn not_found() -> ApiFailure {
    fail(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// 404 for an object of `r` that does not exist.
fn not_found_in(r: &Resource, name: impl Into<String>) -> ApiFailure {
    store_failure(
        StoreError::NotFound {
            resource: r.plural,
            name: name.into(),
        },
        r,
    )
}

fn bad_selector(e: String) -> ApiFailure {
    fail(400, "BadRequest", format!("invalid selector: {e}"))
}

/// A list (or a Table of it, if asked for) of objects already filtered.
fn list_response(
    req: &Request,
    r: &Resource,
    items: Vec<Value>,
    rv: u64,
    order: &[String],
) -> Response {
    if table::wanted(req.headers()) {
        let include = Include::parse(query_param(req, "includeObject").as_deref());
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

/// One object (or a one-row Table of it, if asked for).
fn object_response(req: &Request, r: &Resource, obj: &Value, order: &[String]) -> Response {
    if table::wanted(req.headers()) {
        let include = Include::parse(query_param(req, "includeObject").as_deref());
        let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
        return json_response(
            StatusCode::OK,
            &table::table(r, std::slice::from_ref(obj), rv, include, order),
        );
    }
    json_response(StatusCode::OK, obj)
}

/// Who is writing: `?fieldManager=`, else the user agent's program name, as Kubernetes
/// defaults it.
fn field_manager(req: &Request) -> String {
    query_param(req, "fieldManager")
        .filter(|m| !m.is_empty())
        .or_else(|| {
            req.headers()
                .get(header::USER_AGENT)
                .and_then(|u| u.to_str().ok())
                .and_then(|u| u.split('/').next())
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Whether this resource's writes record field managers (the user's own objects); these
/// also take server-side apply.
fn tracks_managers(r: &Resource) -> bool {
    matches!(r.plural, "services" | "routes" | "secrets" | "configmaps")
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

fn selector_of(req: &Request) -> Result<Selector, ApiFailure> {
    Selector::parse(
        query_param(req, "labelSelector").as_deref(),
        query_param(req, "fieldSelector").as_deref(),
    )
    .map_err(bad_selector)
}

/// Whether a list asks for a watch.
fn wants_watch(req: &Request) -> bool {
    query_bool(req, "watch")
}

/// Refuses what the resource's verb table does not allow: 404 for a subresource it does not
/// have, 405 with the reason for a verb it does not take.
fn gate(req: &Request, t: &Target) -> Result<(), ApiFailure> {
    let v = t.resource.verbs;
    let named = t.name.is_some();
    let allowed = match (req.method(), named, t.sub.as_deref()) {
        (_, true, Some("status")) if !v.get_status => return Err(not_found()),
        (_, true, Some("log")) if !v.log => return Err(not_found()),
        (_, true, Some(sub)) if sub != "status" && sub != "log" => return Err(not_found()),
        (&Method::GET, false, None) if wants_watch(req) && !v.watch => {
            return Err(fail(
                405,
                "MethodNotAllowed",
                format!(
                    "{} cannot be watched in kantai; list them again instead",
                    t.resource.plural
                ),
            ));
        }
        (&Method::GET, _, _) => true,
        (&Method::POST, false, None) => v.create,
        (&Method::PUT, true, None) => v.update,
        (&Method::PATCH, true, None) => v.patch,
        (&Method::DELETE, true, None) => v.delete,
        (&Method::PUT, true, Some("status")) => v.update_status,
        (m, _, _) => {
            return Err(fail(
                405,
                "MethodNotAllowed",
                format!("{m} is not supported on {}", req.uri().path()),
            ));
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(read_only(&t.resource))
    }
}

/// The answer to a DELETE, a dry run's included: a `Status` naming what was (or would be)
/// deleted, with its uid, as the OpenAPI documents declare.
fn deleted(r: &Resource, name: &str, obj: &Value) -> Response {
    let what = qualified(r);
    let status =
        Status::success(format!("{what} {name:?} deleted")).with_details(r.group, r.plural, name);
    let mut v = serde_json::to_value(status).unwrap_or_default();
    v["details"]["uid"] = obj["metadata"]["uid"].clone();
    json_response(StatusCode::OK, &v)
}

/// A DELETE's preconditions: 409 when the object is not the one (uid) or the version the
/// client meant, as Kubernetes answers.
fn preconditions(
    opts: &options::DeleteOptions,
    r: &Resource,
    name: &str,
    found: &Value,
) -> Result<(), ApiFailure> {
    let stored = |k: &str| found["metadata"][k].as_str().unwrap_or("").to_owned();
    for (k, want) in [
        ("uid", &opts.uid),
        ("resourceVersion", &opts.resource_version),
    ] {
        if let Some(want) = want
            && *want != stored(k)
        {
            return Err(fail(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: Precondition failed: {k} in precondition: {want}, {k} in object meta: {}",
                    qualified(r),
                    stored(k)
                ),
            )
            .with_details(r.group, r.plural, name));
        }
    }
    Ok(())
}

/// The core kinds computed rather than stored as written: pods, nodes, namespaces. (Core
/// events, secrets and configmaps are stored objects like any other.)
fn is_view(r: &Resource) -> bool {
    r.group.is_empty() && matches!(r.plural, "pods" | "nodes" | "namespaces")
}

/// Reads of the core views (pods, nodes, namespaces), and namespaces' create and delete.
async fn handle_view(s: &Arc<Shared>, req: Request, t: &Target) -> Result<Response, ApiFailure> {
    let r = t.resource;
    let order = s.node_order();
    let ns = t.namespace.clone().unwrap_or_default();
    gate(&req, t)?;
    if r.plural == "namespaces" && req.method() == Method::POST && t.name.is_none() {
        let dry = dry_run(&req, Options::Create)?;
        let protobuf = is_protobuf(&req);
        let bytes = read_body(req).await?;
        let body = if protobuf {
            protobuf::namespace(&bytes)
                .map_err(|e| fail(400, "BadRequest", format!("cannot read the Namespace: {e}")))?
        } else {
            json_body(&bytes)?
        };
        let body = admission::admit_namespace(body)?;
        let obj = core::new_namespace(&body);
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        if core::namespaces(s)
            .iter()
            .any(|n| n["metadata"]["name"] == name.as_str())
        {
            return Err(fail(
                409,
                "AlreadyExists",
                format!("namespaces {name:?} already exists"),
            )
            .with_details("", "namespaces", &name));
        }
        if dry {
            return Ok(json_response(StatusCode::CREATED, &obj));
        }
        let created = s
            .store
            .create(&r, "", obj, &kantai_api::time::now())
            .map_err(|e| store_failure(e, &r))?;
        return Ok(json_response(StatusCode::CREATED, &created));
    }
    if r.plural == "namespaces"
        && req.method() == Method::DELETE
        && let Some(name) = t.name.as_deref()
    {
        if name == "default" {
            return Err(fail(
                403,
                "Forbidden",
                "namespaces \"default\" is forbidden: this namespace may not be deleted",
            ));
        }
        let Some(found) = core::namespaces(s)
            .into_iter()
            .find(|n| n["metadata"]["name"] == name)
        else {
            return Err(
                fail(404, "NotFound", format!("namespaces {name:?} not found")).with_details(
                    "",
                    "namespaces",
                    name,
                ),
            );
        };
        let name = name.to_owned();
        let opts = delete_options(req).await?;
        preconditions(&opts, &r, &name, &found)?;
        if opts.dry_run {
            return Ok(deleted(&r, &name, &found));
        }
        let name = name.as_str();
        // Without finalizers: everything in it goes now, services with what they own.
        for svc in s.store.list(&resources::SERVICES, Some(name)).0 {
            if let Some(n) = svc["metadata"]["name"].as_str() {
                let _ = s.store.delete(&resources::SERVICES, name, n);
                crate::reconcile::cascade_delete(&s.store, name, n);
            }
        }
        for kind in [
            resources::ROUTES,
            resources::EVENTS,
            resources::SECRETS,
            resources::CONFIGMAPS,
        ] {
            for o in s.store.list(&kind, Some(name)).0 {
                if let Some(n) = o["metadata"]["name"].as_str() {
                    let _ = s.store.delete(&kind, name, n);
                }
            }
        }
        let _ = s.store.delete(&r, "", name);
        s.changed();
        return Ok(deleted(&r, name, &found));
    }
    let sel = selector_of(&req)?;
    if r.plural == "namespaces" {
        let all = core::namespaces(s);
        return match &t.name {
            Some(n) => all
                .into_iter()
                .find(|o| o["metadata"]["name"] == n.as_str())
                .map(|o| object_response(&req, &r, &o, &order))
                .ok_or_else(|| {
                    fail(404, "NotFound", format!("namespaces {n:?} not found")).with_details(
                        "",
                        "namespaces",
                        n,
                    )
                }),
            None => {
                let rv = s.store.version();
                let items = all.into_iter().filter(|o| sel.matches(o)).collect();
                Ok(list_response(&req, &r, items, rv, &order))
            }
        };
    }
    let Some(backing) = core::backing(&r) else {
        return Err(not_found());
    };
    match (t.name.as_deref(), t.sub.as_deref()) {
        (None, None) => {
            if query_bool(&req, "watch") {
                return watch_response(s, &req, r, t.namespace.as_deref(), sel);
            }
            let (items, rv) = s.store.list(&backing, t.namespace.as_deref());
            let items = items
                .iter()
                .map(|o| core::view(s, &r, o))
                .filter(|o| sel.matches(o))
                .collect();
            Ok(list_response(&req, &r, items, rv, &order))
        }
        (Some(name), None | Some("status")) => {
            let o = s.store.get(&backing, &ns, name).ok_or_else(|| {
                fail(404, "NotFound", format!("{} {name:?} not found", r.plural))
                    .with_details(r.group, r.plural, name)
            })?;
            Ok(object_response(&req, &r, &core::view(s, &r, &o), &order))
        }
        (Some(name), Some("log")) if r.plural == "pods" => {
            let tail = query_param(&req, "tailLines");
            let follow = query_bool(&req, "follow");
            crate::logs::proxy(s, &ns, name, tail, follow).await
        }
        _ => Err(not_found()),
    }
}

async fn handle(s: &Arc<Shared>, req: Request) -> Result<Response, ApiFailure> {
    if let Some(doc) = documents(&req) {
        return doc;
    }
    let t = parse_path(req.uri().path())?;
    check_query(&req)?;
    if is_view(&t.resource) {
        return handle_view(s, req, &t).await;
    }
    let r = t.resource;
    if r.namespaced && t.namespace.is_none() && (t.name.is_some() || req.method() != Method::GET) {
        return Err(fail(
            404,
            "NotFound",
            format!(
                "{} are namespaced: use /namespaces/NAMESPACE/{}",
                r.plural, r.plural
            ),
        ));
    }
    gate(&req, &t)?;
    let ns = t.namespace.clone().unwrap_or_default();
    let method = req.method().clone();
    match (&method, t.name.as_deref(), t.sub.as_deref()) {
        (&Method::GET, None, None) => {
            let watch = query_bool(&req, "watch");
            let ns_filter = t.namespace.as_deref();
            let sel = selector_of(&req)?;
            if watch {
                return watch_response(s, &req, r, ns_filter, sel);
            }
            let (items, rv) = s.store.list(&r, ns_filter);
            let items = items
                .iter()
                .filter(|o| sel.matches(o))
                .map(|o| (**o).clone())
                .collect();
            Ok(list_response(&req, &r, items, rv, &s.node_order()))
        }
        (&Method::POST, None, None) => {
            let (dry, manager) = (dry_run(&req, Options::Create)?, field_manager(&req));
            let protobuf = is_protobuf(&req);
            let body = object_body(&r, protobuf, &read_body(req).await?)?;
            let mut obj = admit(s, &r, &ns, None, body, None)?;
            if dry {
                return Ok(json_response(StatusCode::CREATED, &obj));
            }
            if tracks_managers(&r) {
                crate::ssa::record_update(None, &mut obj, &manager, &kantai_api::time::now());
            }
            let created = s
                .store
                .create(&r, &ns, obj, &kantai_api::time::now())
                .map_err(|e| store_failure(e, &r))?;
            s.changed();
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (&Method::GET, Some(name), None) => {
            let o = s
                .store
                .get(&r, &ns, name)
                .ok_or_else(|| not_found_in(&r, name.to_owned()))?;
            Ok(object_response(&req, &r, &o, &s.node_order()))
        }
        (&Method::PUT, Some(name), None) => {
            let (dry, manager) = (dry_run(&req, Options::Update)?, field_manager(&req));
            let protobuf = is_protobuf(&req);
            let body = object_body(&r, protobuf, &read_body(req).await?)?;
            let name = name.to_owned();
            let existing = s.store.get(&r, &ns, &name);
            let rv = body["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
            let mut obj = admit(s, &r, &ns, Some(&name), body, existing.as_deref())?;
            if dry {
                return Ok(json_response(StatusCode::OK, &obj));
            }
            if tracks_managers(&r) {
                crate::ssa::record_update(
                    existing.as_deref(),
                    &mut obj,
                    &manager,
                    &kantai_api::time::now(),
                );
            }
            let stored = match existing {
                Some(_) => s.store.update(&r, &ns, &name, obj, rv.as_deref()),
                // Kubernetes creates on PUT only for some resources; kantai's agents register
                // their nodes and instances this way.
                None if matches!(r.plural, "nodes" | "instances") => {
                    s.store.create(&r, &ns, obj, &kantai_api::time::now())
                }
                None => Err(StoreError::NotFound {
                    resource: r.plural,
                    name: name.clone(),
                }),
            }
            .map_err(|e| store_failure(e, &r))?;
            s.changed();
            Ok(json_response(StatusCode::OK, &stored))
        }
        (&Method::PATCH, Some(name), None) => {
            let ct = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let (dry, manager) = (dry_run(&req, Options::Patch)?, field_manager(&req));
            if ct.starts_with("application/apply-patch") {
                return server_side_apply(s, req, &r, &ns, name, dry).await;
            }
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
            let name = name.to_owned();
            // As Kubernetes' GuaranteedUpdate: the patch applies to the version read, and is
            // applied again to a newer one if another write came in between (unless the
            // client made a version its precondition).
            let mut attempt = 0;
            loop {
                attempt += 1;
                let existing = s
                    .store
                    .get(&r, &ns, &name)
                    .ok_or_else(|| not_found_in(&r, name.clone()))?;
                let read_rv = existing["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned);
                let mut merged = (*existing).clone();
                let client_rv = if json_patch {
                    // RFC 6902: a list of operations (kubectl patch --type=json, and kubectl's
                    // move of client-side-apply ownership to server-side apply).
                    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                        .map_err(|e| fail(400, "BadRequest", format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut merged, &ops).map_err(|e| {
                        fail(
                            422,
                            "Invalid",
                            format!("the JSON patch does not apply: {e}"),
                        )
                    })?;
                    // A `test` of the resourceVersion is the client's precondition, or a
                    // replaced resourceVersion.
                    let tested = ops.iter().any(|op| {
                        matches!(op, json_patch::PatchOperation::Test(t)
                            if t.path.as_str() == "/metadata/resourceVersion")
                    });
                    merged["metadata"]["resourceVersion"]
                        .as_str()
                        .filter(|v| tested || Some(*v) != read_rv.as_deref())
                        .map(str::to_owned)
                } else {
                    merge_patch(&mut merged, &patch);
                    patch["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_owned)
                };
                let mut obj = admit(s, &r, &ns, Some(&name), merged, Some(&existing))?;
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
                match s.store.update(&r, &ns, &name, obj, expect.as_deref()) {
                    Ok(stored) => {
                        s.changed();
                        return Ok(json_response(StatusCode::OK, &stored));
                    }
                    Err(StoreError::Conflict { .. }) if client_rv.is_none() && attempt < 5 => {}
                    Err(e) => return Err(store_failure(e, &r)),
                }
            }
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_options(req).await?;
            let o = s
                .store
                .get(&r, &ns, name)
                .ok_or_else(|| not_found_in(&r, name.to_owned()))?;
            preconditions(&opts, &r, name, &o)?;
            if opts.dry_run {
                return Ok(deleted(&r, name, &o));
            }
            let old = s
                .store
                .delete(&r, &ns, name)
                .map_err(|e| store_failure(e, &r))?;
            if r.plural == "services" {
                crate::reconcile::cascade_delete(&s.store, &ns, name);
            }
            s.changed();
            Ok(deleted(&r, name, &old))
        }
        (&Method::PUT, Some(name), Some("status")) => {
            let dry = dry_run(&req, Options::Update)?;
            let body = json_body(&read_body(req).await?)?;
            let name = name.to_owned();
            let existing = s
                .store
                .get(&r, &ns, &name)
                .ok_or_else(|| not_found_in(&r, name.clone()))?;
            let obj = admission::admit_status(s, &r, &ns, &name, body, &existing)?;
            if dry {
                return Ok(json_response(StatusCode::OK, &obj));
            }
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
            let stored = s
                .store
                .update(&r, &ns, &name, obj, rv.as_deref())
                .map_err(|e| store_failure(e, &r))?;
            s.changed();
            Ok(json_response(StatusCode::OK, &stored))
        }
        (&Method::GET, Some(name), Some("status")) => {
            let o = s
                .store
                .get(&r, &ns, name)
                .ok_or_else(|| not_found_in(&r, name.to_owned()))?;
            Ok(json_response(StatusCode::OK, &o))
        }
        (&Method::GET, Some(name), Some("log")) if r.plural == "instances" => {
            let tail = query_param(&req, "tailLines");
            let follow = query_bool(&req, "follow");
            crate::logs::proxy(s, &ns, name, tail, follow).await
        }
        _ => Err(fail(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {}", req.uri().path()),
        )),
    }
}

/// `PATCH` with `application/apply-patch+yaml`: Kubernetes' server-side apply, creating the
/// object if it does not exist.
async fn server_side_apply(
    s: &Arc<Shared>,
    req: Request,
    r: &Resource,
    ns: &str,
    name: &str,
    dry: bool,
) -> Result<Response, ApiFailure> {
    if !tracks_managers(r) {
        return Err(read_only(r));
    }
    let Some(manager) = query_param(&req, "fieldManager").filter(|m| !m.is_empty()) else {
        return Err(fail(
            400,
            "BadRequest",
            "fieldManager is required for apply requests (kubectl sends it)",
        ));
    };
    let force = query_bool(&req, "force");
    let applied = apply_body(r, &read_body(req).await?)?;
    let client_rv = applied["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_owned);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing = s.store.get(r, ns, name);
        let out = crate::ssa::apply(
            existing.as_deref(),
            &applied,
            &manager,
            force,
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
                .and_then(|e| e["metadata"]["resourceVersion"].as_str().map(str::to_owned))
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
                if client_rv.is_none() && attempt < 5 => {}
            Err(e) => return Err(store_failure(e, r)),
        }
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            let t = target.as_object_mut().expect("made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn watch_line(type_: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// How often a watch that allows bookmarks gets one while nothing it selects changes.
const BOOKMARK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// A watch stream's state between events.
struct WatchState {
    pending: VecDeque<Bytes>,
    rx: tokio::sync::broadcast::Receiver<Event>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The newest store version seen (for bookmarks).
    last_rv: u64,
    next_bookmark: tokio::time::Instant,
    /// The watch timed out: send what is pending, then end.
    ended: bool,
}

fn watch_response(
    s: &Arc<Shared>,
    req: &Request,
    r: Resource,
    ns: Option<&str>,
    sel: Selector,
) -> Result<Response, ApiFailure> {
    let since = query_param(req, "resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0);
    // A view (pods, nodes) watches what it is computed from.
    let backing = core::backing(&r).unwrap_or(r);
    let (snapshot, past, rx, start_rv) = s
        .store
        .watch(&backing, ns, since)
        .map_err(|e| store_failure(e, &r))?;
    let ns_filter = if r.namespaced {
        ns.map(str::to_owned)
    } else {
        None
    };
    let as_table = table::wanted(req.headers()).then(|| {
        (
            Include::parse(query_param(req, "includeObject").as_deref()),
            s.node_order(),
        )
    });
    let timeout = query_param(req, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    let plural = backing.plural;
    let bookmarks = query_bool(req, "allowWatchBookmarks");
    // Bookmarks carry the newest version seen: the store's at the snapshot, then each event's.
    let bookmark = move |rv: u64| {
        watch_line(
            "BOOKMARK",
            &json!({
                "kind": r.kind,
                "apiVersion": r.api_version(),
                "metadata": {"resourceVersion": rv.to_string()},
            }),
        )
    };
    let shared = s.clone();
    let mut first = true;
    // Each event as a line: the object as the client sees it (a view, or a one-row Table),
    // or nothing if the selector does not match.
    // Objects the client was told match the selector: one that stops matching is DELETED
    // for it, one that starts is ADDED, as Kubernetes' filtered watches do.
    let mut shown: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    let mut render = move |type_: &str, stored: &Value| -> Option<Bytes> {
        let obj = if backing == r {
            stored.clone()
        } else {
            core::view(&shared, &r, stored)
        };
        let key = (
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            obj["metadata"]["name"].as_str().unwrap_or("").to_owned(),
        );
        let was = shown.contains(&key);
        let type_ = match (type_, sel.matches(&obj), was) {
            // Without a selector everything matches: events go as they are.
            (t, _, _) if sel.is_empty() => t,
            ("DELETED", _, true) => {
                shown.remove(&key);
                "DELETED"
            }
            ("DELETED", _, false) => return None,
            (_, true, false) => {
                shown.insert(key);
                "ADDED"
            }
            (t, true, true) => t,
            (_, false, true) => {
                shown.remove(&key);
                "DELETED"
            }
            (_, false, false) => return None,
        };
        let obj = match &as_table {
            Some((include, order)) => {
                let t = table::watch_object(&r, &obj, *include, order, first);
                first = false;
                t
            }
            None => obj,
        };
        Some(watch_line(type_, &obj))
    };
    let matches = move |e: &Event| {
        e.resource == plural && ns_filter.as_ref().is_none_or(|n| *n == e.namespace)
    };
    let mut pending: VecDeque<Bytes> = snapshot.iter().filter_map(|o| render("ADDED", o)).collect();
    pending.extend(
        past.iter()
            .filter(|e| matches(e))
            .filter_map(|e| render(e.type_.as_str(), &e.object)),
    );
    let stopping = s.stopping.clone();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let state = WatchState {
        pending,
        rx,
        stopping,
        last_rv: start_rv,
        next_bookmark: tokio::time::Instant::now() + BOOKMARK_EVERY,
        ended: false,
    };
    let stream = futures_util::stream::unfold(
        (state, matches, render),
        move |(mut st, matches, mut render)| async move {
            loop {
                if let Some(b) = st.pending.pop_front() {
                    return Some((Ok::<Bytes, Infallible>(b), (st, matches, render)));
                }
                if st.ended {
                    return None;
                }
                let expire = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                let mark = async {
                    if bookmarks {
                        tokio::time::sleep_until(st.next_bookmark).await
                    } else {
                        std::future::pending().await
                    }
                };
                tokio::select! {
                    e = st.rx.recv() => match e {
                        Ok(e) => {
                            st.last_rv = st.last_rv.max(e.rv);
                            if matches(&e)
                                && let Some(line) = render(e.type_.as_str(), &e.object)
                            {
                                st.pending.push_back(line);
                            }
                        }
                        // A watcher too slow to keep up is ended; it lists and watches again.
                        Err(_) => return None,
                    },
                    _ = st.stopping.wait_for(|s| *s) => return None,
                    // A bookmark: the client may resume from here without a list.
                    _ = mark => {
                        st.pending.push_back(bookmark(st.last_rv));
                        st.next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
                    }
                    // `timeoutSeconds`: the watch ends cleanly (after a last bookmark, when
                    // asked for), as kubectl and informers expect.
                    _ = expire => {
                        if bookmarks {
                            st.pending.push_back(bookmark(st.last_rv));
                        }
                        st.ended = true;
                    }
                }
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_path("/apis/serving.knative.dev/v1/namespaces/default/services/hello")
            .ok()
            .expect("valid");
        assert_eq!(t.resource.plural, "services");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("hello"));
        let t = parse_path("/apis/kantai.dev/v1alpha1/namespaces/default/instances/x/log")
            .ok()
            .expect("valid");
        assert_eq!(t.sub.as_deref(), Some("log"));
        let t = parse_path("/apis/kantai.dev/v1alpha1/nodes/node1/status")
            .ok()
            .expect("valid");
        assert_eq!(
            (t.namespace, t.name.as_deref(), t.sub.as_deref()),
            (None, Some("node1"), Some("status"))
        );
        assert!(parse_path("/apis/apps/v1/namespaces/default/deployments").is_err());
        assert!(parse_path("/api/v1/persistentvolumeclaims").is_err());
        let Ok(t) = parse_path("/api/v1/namespaces/default/secrets/db") else {
            panic!("secrets are served")
        };
        assert!(!is_view(&t.resource));
        assert_eq!(
            parse_path("/api/v1/pods").ok().map(|t| t.resource.kind),
            Some("Pod")
        );
        let Ok(t) = parse_path("/api/v1/namespaces/default/events") else {
            panic!("events are served")
        };
        assert_eq!(
            (t.resource.plural, t.namespace.as_deref()),
            ("events", Some("default"))
        );
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            percent_decode("metadata.name%3Dhello"),
            "metadata.name=hello"
        );
        assert_eq!(percent_decode("a+b%2Cc"), "a b,c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn merge_patches() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut v, &json!({"a": {"b": null, "e": 3}, "d": [2, 3]}));
        assert_eq!(v, json!({"a": {"c": 2, "e": 3}, "d": [2, 3]}));
    }
}
