//! Admission: what Kubernetes' API server and Knative's webhooks check before an object is
//! stored, on every write path alike (create, replace, patch, apply and `/status`): the
//! envelope (kind, apiVersion, namespace, name), the fields only the server may set, and
//! each kind's own rules — so that nothing stored can break a client that reads it back.

use kantai_api::resources::{self, Resource};
use kantai_api::{Status, StatusCause};
use kantai_model::fleet;
use kantai_model::manifest;
use kantai_model::meta::JsonMeta;
use kantai_model::node::Node;
use serde_json::{Value, json};

use super::gate::read_only;
use super::respond::{ApiFailure, fail};
use crate::Shared;

/// Checks and normalises an object before it is stored: the webhooks' work. `name` is the
/// URL's, `existing` what is stored (for a replace).
pub fn admit(
    s: &Shared,
    r: &Resource,
    ns: &str,
    name: Option<&str>,
    mut body: Value,
    existing: Option<&Value>,
) -> Result<Value, ApiFailure> {
    envelope(r, ns, name, &mut body)?;
    server_fields(r, &mut body, existing)?;
    let name = body.name().to_owned();
    match r.plural {
        "services" => read_serving(s, body, existing, "Service").map_err(|f| f.render(r, &name)),
        "routes" => {
            if s.store.get(&resources::SERVICES, ns, &name).is_some() {
                return Err(fail(
                    409,
                    "Conflict",
                    format!(
                        "route {name:?} belongs to Service {name:?}; change the Service's traffic instead"
                    ),
                ));
            }
            read_serving(s, body, existing, "Route").map_err(|f| f.render(r, &name))
        }
        // Kubernetes' own rules (keys, 1 MiB, immutable, type), `stringData` folded into
        // `data`; findings name keys, never values.
        "secrets" => {
            kantai_model::core::admit_secret(&body, existing).map_err(|f| invalid(r, &name, &f))
        }
        "configmaps" => {
            kantai_model::core::admit_config_map(&body, existing).map_err(|f| invalid(r, &name, &f))
        }
        "instances" => fleet::admit::<fleet::Instance>(&body)
            .map(|_| body)
            .map_err(|f| invalid(r, &name, &f)),
        "nodes" => {
            // A node's status is the control plane's, from its agent's reports: what a client
            // sends is ignored (as for a Service), what is stored is kept.
            if let Some(o) = body.as_object_mut() {
                o.remove("status");
            }
            fleet::admit::<fleet::Node>(&body).map_err(|f| invalid(r, &name, &f))?;
            if let Some(st) = existing
                .and_then(|e| e.get("status"))
                .filter(|v| !v.is_null())
            {
                body["status"] = st.clone();
            }
            Ok(body)
        }
        _ => Err(read_only(r)),
    }
}

/// `PUT .../status`: the stored object with the body's status, checked like any write. The
/// body is a whole object of the kind (its spec is ignored), so it gets the same envelope
/// checks, and fields the kind does not have are refused rather than dropped.
pub fn admit_status(
    s: &Shared,
    r: &Resource,
    ns: &str,
    name: &str,
    mut body: Value,
    existing: &Value,
) -> Result<Value, ApiFailure> {
    envelope(r, ns, Some(name), &mut body)?;
    let known = ["apiVersion", "kind", "metadata", "spec", "status"];
    let mut causes: Vec<StatusCause> = body
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "unknown field: a {} has apiVersion, kind, metadata, spec and status",
                r.kind
            ),
            field: k.clone(),
        })
        .collect();
    if !body.get("status").is_some_and(Value::is_object) {
        causes.push(StatusCause {
            reason: "FieldValueRequired".into(),
            message: "required field is missing: PUT on /status replaces the status with the body's, which must be an object".into(),
            field: "status".into(),
        });
    }
    if !causes.is_empty() {
        return Err(invalid_causes(r, name, causes));
    }
    if let Some(uid) = body.uid().filter(|u| !u.is_empty())
        && Some(uid) != existing.uid()
    {
        return Err(uid_conflict(r, name, uid, existing));
    }
    let mut obj = existing.clone();
    obj["status"] = body["status"].take();
    if let Some(rv) = body["metadata"].get("resourceVersion").cloned() {
        obj["metadata"]["resourceVersion"] = rv;
    }
    admit(s, r, ns, Some(name), obj, Some(existing))
}

/// A Namespace a client creates: the envelope as for any object, then only what a Namespace
/// has (metadata, `spec.finalizers`; a status is the server's), its name a DNS-1123 label.
pub fn admit_namespace(mut body: Value) -> Result<Value, ApiFailure> {
    let r = resources::NAMESPACES;
    envelope(&r, "", None, &mut body)?;
    let name = body.name().to_owned();
    let mut causes: Vec<StatusCause> = Vec::new();
    let unknown = |field: String| StatusCause {
        reason: "FieldValueInvalid".into(),
        message: "unknown field".into(),
        field,
    };
    for k in body.as_object().into_iter().flat_map(|o| o.keys()) {
        if !["apiVersion", "kind", "metadata", "spec", "status"].contains(&k.as_str()) {
            causes.push(unknown(k.clone()));
        }
    }
    match &body["spec"] {
        Value::Null => {}
        Value::Object(spec) => {
            for k in spec.keys().filter(|k| *k != "finalizers") {
                causes.push(unknown(format!("spec.{k}")));
            }
        }
        _ => causes.push(StatusCause {
            reason: "FieldValueInvalid".into(),
            message: "must be an object".into(),
            field: "spec".into(),
        }),
    }
    let mut findings = kantai_model::Findings::new();
    let node = Node::from_json(&body["metadata"]);
    let meta_path = kantai_model::FieldPath::fields("metadata");
    if let Some(meta) = <kantai_model::meta::ObjectMeta as kantai_model::decode::Decode>::decode(
        &node,
        &meta_path,
        &mut findings,
    ) {
        kantai_model::meta::validate(
            &meta,
            &meta_path,
            kantai_model::meta::NameRule::Dns1123Label,
            &mut findings,
        );
    }
    causes.extend(causes_of(&findings));
    if causes.is_empty() {
        Ok(body)
    } else {
        Err(invalid_causes(&r, &name, causes))
    }
}

/// The parts every object shares: an object with an object `metadata`, the URL's kind,
/// apiVersion, namespace and name (400 when the body names others, as Kubernetes answers).
fn envelope(
    r: &Resource,
    ns: &str,
    name: Option<&str>,
    body: &mut Value,
) -> Result<(), ApiFailure> {
    if !body.is_object() {
        return Err(fail(
            400,
            "BadRequest",
            format!("the request body must be a JSON object (a {})", r.kind),
        ));
    }
    match body.get("metadata") {
        None | Some(Value::Null) => body["metadata"] = json!({}),
        Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(fail(
                400,
                "BadRequest",
                "metadata must be an object (name, namespace, labels, annotations, ...)",
            ));
        }
    }
    let want_version = r.api_version();
    match body.get("apiVersion") {
        Some(Value::String(v)) if *v == want_version => {}
        None | Some(Value::Null) => body["apiVersion"] = Value::String(want_version.clone()),
        Some(v) => {
            return Err(fail(
                400,
                "BadRequest",
                format!("apiVersion {v} does not match {want_version:?} of the URL"),
            ));
        }
    }
    match body.get("kind") {
        Some(Value::String(k)) if k == r.kind => {}
        None | Some(Value::Null) => body["kind"] = Value::String(r.kind.to_owned()),
        Some(k) => {
            return Err(fail(
                400,
                "BadRequest",
                format!("kind {k} does not match {:?} of the URL", r.kind),
            ));
        }
    }
    if r.namespaced {
        match body["metadata"].get("namespace") {
            Some(Value::String(b)) if b != ns => {
                return Err(fail(
                    400,
                    "BadRequest",
                    format!(
                        "the namespace of the object ({b:?}) does not match the namespace of the request ({ns:?})"
                    ),
                ));
            }
            _ => body["metadata"]["namespace"] = Value::String(ns.to_owned()),
        }
        if !kantai_model::serving::naming::is_dns1123_label(ns) {
            return Err(invalid_causes(
                r,
                body.name(),
                vec![StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "invalid value {ns:?}: a namespace must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"
                    ),
                    field: "metadata.namespace".into(),
                }],
            ));
        }
    } else if let Some(m) = body["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    let body_name = match body["metadata"].get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(n)) => n.clone(),
        Some(other) => {
            return Err(fail(
                400,
                "BadRequest",
                format!("metadata.name must be a string, not {other}"),
            ));
        }
    };
    if let Some(n) = name {
        if body_name.is_empty() {
            body["metadata"]["name"] = Value::String(n.to_owned());
        } else if body_name != n {
            return Err(fail(
                400,
                "BadRequest",
                format!(
                    "the name of the object ({body_name:?}) does not match the name in the URL ({n:?})"
                ),
            ));
        }
    }
    Ok(())
}

/// Metadata only the server sets: a client's deletionTimestamp, deletionGracePeriodSeconds
/// and selfLink are dropped as Kubernetes drops them (the server sets the first two when it
/// deletes), a uid that names another object is a conflict, and a create without a name takes
/// one from `generateName`. `existing` is what a replace replaces (`None` for a create).
fn server_fields(
    r: &Resource,
    body: &mut Value,
    existing: Option<&Value>,
) -> Result<(), ApiFailure> {
    let Some(meta) = body["metadata"].as_object_mut() else {
        return Ok(());
    };
    for k in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(k);
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match existing {
        Some(old) => {
            if let Some(uid) = meta
                .get("uid")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                && Some(uid) != old.uid()
            {
                return Err(uid_conflict(r, &name, uid, old));
            }
        }
        None => {
            meta.remove("uid");
        }
    }
    if existing.is_none() && name.is_empty() {
        let prefix = match meta.get("generateName") {
            Some(Value::String(p)) if !p.is_empty() => p.clone(),
            _ => {
                return Err(invalid_causes(
                    r,
                    "",
                    vec![StatusCause {
                        reason: "FieldValueRequired".into(),
                        message: "name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ));
            }
        };
        meta.insert(
            "name".into(),
            Value::String(kantai_model::serving::naming::generate_name(
                &prefix,
                &mut rand::rng(),
            )),
        );
    }
    Ok(())
}

fn uid_conflict(r: &Resource, name: &str, uid: &str, existing: &Value) -> ApiFailure {
    fail(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {}.{} {name:?}: Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            r.plural,
            r.group,
            existing.uid().unwrap_or("")
        ),
    )
    .with_details(r.group, r.plural, name)
}

/// 422 `Invalid` listing every finding with its field, as Kubernetes' validation answers.
pub fn invalid(r: &Resource, name: &str, findings: &kantai_model::Findings) -> ApiFailure {
    invalid_causes(r, name, causes_of(findings))
}

fn causes_of(findings: &kantai_model::Findings) -> Vec<StatusCause> {
    findings
        .errors()
        .map(|e| StatusCause {
            reason: if e.message.contains("missing") {
                "FieldValueRequired"
            } else {
                "FieldValueInvalid"
            }
            .into(),
            message: e.message.clone(),
            field: e.path.to_string(),
        })
        .collect()
}

fn invalid_causes(r: &Resource, name: &str, causes: Vec<StatusCause>) -> ApiFailure {
    let summary = causes
        .iter()
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    // `Service.serving.knative.dev "x"`, or `Secret "x"` in the core group, as Kubernetes.
    let kind = if r.group.is_empty() {
        r.kind.to_owned()
    } else {
        format!("{}.{}", r.kind, r.group)
    };
    let mut st = Status::failure(
        422,
        "Invalid",
        format!("{kind} {name:?} is invalid: {summary}"),
    )
    .with_details(r.group, r.kind, name);
    if let Some(d) = &mut st.details {
        d.causes = causes;
    }
    ApiFailure(Box::new(st))
}

/// Why a serving object was not admitted.
enum Admission {
    /// The model's findings (rendered as 422, naming the object).
    Invalid(kantai_model::Findings),
    /// Anything else.
    Failed(ApiFailure),
}

impl Admission {
    fn render(self, r: &Resource, name: &str) -> ApiFailure {
        match self {
            Admission::Invalid(f) => invalid(r, name, &f),
            Admission::Failed(f) => f,
        }
    }
}

/// Reads a Service or Route through the model (defaults and validation, as Knative's
/// webhooks); its status is kantai's to write, so the stored one is kept and the client's
/// ignored.
fn read_serving(
    s: &Shared,
    mut body: Value,
    existing: Option<&Value>,
    kind: &str,
) -> Result<Value, Admission> {
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    let doc = manifest::read_one(&Node::from_json(&body), 0, &s.config);
    if doc.findings.has_errors() {
        return Err(Admission::Invalid(doc.findings));
    }
    let obj = doc
        .object
        .ok_or_else(|| Admission::Failed(fail(400, "BadRequest", format!("not a {kind}"))))?;
    let mut out = obj.to_json();
    if let Some(st) = existing
        .and_then(|o| o.get("status"))
        .filter(|v| !v.is_null())
    {
        out["status"] = st.clone();
    }
    Ok(out)
}
