//! The OpenAPI documents kubectl reads from the API server: `/openapi/v3` (an index of one
//! document per group-version), `/openapi/v3/{gv}`, and `/openapi/v2` (one Swagger 2.0
//! document with every definition).
//!
//! What kubectl (1.27 and later) does with them:
//! - `kubectl explain` reads the group-version's v3 document as JSON, finds the resource's
//!   paths (`…/{plural}`, `…/{plural}/{name}`, with or without `namespaces/{namespace}`), takes
//!   the `x-kubernetes-group-version-kind` *object* of their first operation, and then the
//!   schema in `components.schemas` whose `x-kubernetes-group-version-kind` *list* contains
//!   exactly that object. Nested fields are followed through `$ref`, `allOf`, `items` and
//!   `additionalProperties`.
//! - `kubectl apply`/`create` look for the PATCH operation carrying the kind's
//!   `x-kubernetes-group-version-kind` in the v3 document; when its own `parameters` name
//!   `fieldValidation`, kubectl leaves validation to the server (`?fieldValidation=Strict`).
//!   Otherwise it validates on the client with the v2 document, which kubectl only reads as
//!   protobuf.
//! - The PATCH operation's request content types decide the patch kubectl computes: without
//!   `application/strategic-merge-patch+json` it sends a JSON merge patch, which kantai applies.
//!
//! The schemas are written once, in a neutral form whose `$ref`s are bare schema names, and
//! rendered for each OpenAPI version.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use crate::resources::{self, Resource};

/// `/openapi/v3`: the index of group-version documents.
pub fn v3_index() -> Value {
    V3_INDEX.clone()
}

/// `/openapi/v3/{gv}` where gv is e.g. "apis/serving.knative.dev/v1", "apis/kantai.dev/v1alpha1", "api/v1"; None if unknown.
pub fn v3_group_version(gv: &str) -> Option<Value> {
    // Lenient about a leading slash or a `?hash=` the caller forgot to strip.
    let gv = gv.trim_start_matches('/');
    let gv = gv.split_once('?').map_or(gv, |(p, _)| p);
    V3_DOCS
        .iter()
        .find(|(key, _)| key == gv)
        .map(|(_, doc)| doc.clone())
}

/// `/openapi/v2`: one Swagger 2.0 document with every definition.
pub fn v2() -> Value {
    V2_DOC.clone()
}

static DEFINITIONS: LazyLock<Map<String, Value>> = LazyLock::new(definitions);

static V3_DOCS: LazyLock<Vec<(String, Value)>> = LazyLock::new(|| {
    group_versions()
        .into_iter()
        .map(|(key, rs)| {
            let doc = v3_document(&rs);
            (key, doc)
        })
        .collect()
});

static V3_INDEX: LazyLock<Value> = LazyLock::new(|| {
    let paths: Map<String, Value> = V3_DOCS
        .iter()
        .map(|(key, doc)| {
            let url = format!("/openapi/v3/{key}?hash={}", content_hash(doc));
            (key.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
});

static V2_DOC: LazyLock<Value> = LazyLock::new(v2_document);

/// A stable hash of a document's content (over its JSON), for the index's cache-busting
/// `?hash=`: kubectl caches each document under its URL.
fn content_hash(doc: &Value) -> String {
    format!(
        "{:016X}",
        kantai_policy::stable_hash(doc.to_string().as_bytes())
    )
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    V2,
    V3,
}

const GVK: &str = "x-kubernetes-group-version-kind";
const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";

/// Turns a neutral schema or path tree into one OpenAPI version's form.
fn render(v: &Value, f: Flavor) -> Value {
    match v {
        Value::Object(m) => {
            // Swagger 2.0 cannot keep unknown fields beside declared ones, and kubectl's v2
            // validator rejects fields a schema does not declare: like the apiextensions
            // server, publish such objects to v2 without their properties.
            let open = f == Flavor::V2 && m.get(PRESERVE) == Some(&Value::Bool(true));
            // Swagger 2.0 has no oneOf/anyOf. A `type` would reject one of the alternatives
            // (`type: string` the integer port of a probe), so the schema is left untyped,
            // which every JSON Schema validator (and kubectl's, as "arbitrary") accepts, with
            // Kubernetes' `format: int-or-string` where that is what it is.
            let alternatives =
                f == Flavor::V2 && (m.contains_key("oneOf") || m.contains_key("anyOf"));
            let mut out = Map::new();
            if alternatives && m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                out.insert("format".into(), "int-or-string".into());
            }
            for (k, val) in m {
                let dropped = match k.as_str() {
                    "$ref" => true,
                    "properties" | "required" => open,
                    "oneOf" | "anyOf" => alternatives,
                    "nullable" => f == Flavor::V2,
                    _ => false,
                };
                if !dropped {
                    out.insert(k.clone(), render(val, f));
                }
            }
            let Some(Value::String(name)) = m.get("$ref") else {
                return Value::Object(out);
            };
            match f {
                Flavor::V2 => {
                    let mut with_ref = Map::new();
                    with_ref.insert("$ref".into(), format!("#/definitions/{name}").into());
                    with_ref.extend(out);
                    Value::Object(with_ref)
                }
                // OpenAPI 3.0 ignores a $ref's siblings, so a described reference becomes an
                // allOf of one, as Kubernetes publishes it.
                Flavor::V3 => {
                    let target = json!({ "$ref": format!("#/components/schemas/{name}") });
                    if out.is_empty() {
                        return target;
                    }
                    let mut wrapped = Map::new();
                    wrapped.insert("allOf".into(), json!([target]));
                    wrapped.extend(out);
                    Value::Object(wrapped)
                }
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| render(i, f)).collect()),
        other => other.clone(),
    }
}

/// Every schema name a neutral tree refers to.
fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(name)) = m.get("$ref") {
                out.insert(name.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// The schemas reachable from `roots`, sorted by name.
fn closure(roots: BTreeSet<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = DEFINITIONS.get(&name) {
            let mut refs = BTreeSet::new();
            collect_refs(schema, &mut refs);
            todo.extend(refs.into_iter().filter(|r| !seen.contains(r)));
        }
    }
    seen
}

fn rendered_schemas(names: &BTreeSet<String>, f: Flavor) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|n| DEFINITIONS.get(n).map(|s| (n.clone(), render(s, f))))
        .collect()
}

fn info() -> Value {
    json!({ "title": "kantai", "version": env!("CARGO_PKG_VERSION") })
}

fn security_scheme() -> Value {
    json!({
        "BearerToken": {
            "type": "apiKey",
            "name": "authorization",
            "in": "header",
            "description": "The fleet's bearer token: `Authorization: Bearer TOKEN` (see `kantai kubeconfig`)."
        }
    })
}

fn v3_document(rs: &[Resource]) -> Value {
    let paths = neutral_paths(rs, Flavor::V3);
    let mut roots = BTreeSet::new();
    collect_refs(&paths, &mut roots);
    let schemas = rendered_schemas(&closure(roots), Flavor::V3);
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": render(&paths, Flavor::V3),
        "components": {
            "schemas": schemas,
            "securitySchemes": security_scheme(),
        },
        "security": [{ "BearerToken": [] }],
    })
}

fn v2_document() -> Value {
    let all = resources::ALL.to_vec();
    let paths = neutral_paths(&all, Flavor::V2);
    let names: BTreeSet<String> = DEFINITIONS.keys().cloned().collect();
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": render(&paths, Flavor::V2),
        "definitions": rendered_schemas(&names, Flavor::V2),
        "securityDefinitions": security_scheme(),
        "security": [{ "BearerToken": [] }],
    })
}

// ---------------------------------------------------------------------------------------------
// Resources and paths
// ---------------------------------------------------------------------------------------------

/// The group-versions, keyed as the v3 index keys them (`api/v1`, `apis/GROUP/VERSION`).
fn group_versions() -> Vec<(String, Vec<Resource>)> {
    let mut out: Vec<(String, Vec<Resource>)> = Vec::new();
    for r in resources::ALL.iter().copied() {
        let key = r.group_path().trim_start_matches('/').to_owned();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rs)) => rs.push(r),
            None => out.push((key, vec![r])),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `serving.knative.dev` + `v1` → `dev.knative.serving.v1`; the core group is
/// `io.k8s.api.core.v1`, as Kubernetes names its definitions.
fn schema_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        return format!("io.k8s.api.core.{version}");
    }
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}", reversed.join("."))
}

fn kind_schema_name(r: &Resource) -> String {
    format!("{}.{}", schema_prefix(r.group, r.version), r.kind)
}

fn list_schema_name(r: &Resource) -> String {
    format!("{}List", kind_schema_name(r))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    List,
    ListAllNamespaces,
    Create,
    Read,
    Replace,
    Patch,
    Delete,
    ReadStatus,
    ReplaceStatus,
    ReadLog,
}

/// The paths of the given resources, with neutral `$ref`s: exactly the verbs of each
/// resource's table, so a client (or a fuzzer) is never told of an operation the server
/// refuses.
fn neutral_paths(rs: &[Resource], f: Flavor) -> Value {
    let mut paths = Map::new();
    for r in rs {
        let v = r.verbs;
        let collection = if r.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", r.group_path(), r.plural)
        } else {
            format!("{}/{}", r.group_path(), r.plural)
        };
        let object = format!("{collection}/{{name}}");
        let scope: &[&str] = if r.namespaced { &["namespace"] } else { &[] };
        let named: &[&str] = if r.namespaced {
            &["name", "namespace"]
        } else {
            &["name"]
        };

        let mut ops = vec![Action::List];
        if v.create {
            ops.push(Action::Create);
        }
        paths.insert(collection.clone(), path_item(r, scope, &ops, f));

        let mut ops = vec![Action::Read];
        if v.update {
            ops.push(Action::Replace);
        }
        if v.patch {
            ops.push(Action::Patch);
        }
        if v.delete {
            ops.push(Action::Delete);
        }
        paths.insert(object.clone(), path_item(r, named, &ops, f));

        if v.get_status {
            let mut ops = vec![Action::ReadStatus];
            if v.update_status {
                ops.push(Action::ReplaceStatus);
            }
            paths.insert(format!("{object}/status"), path_item(r, named, &ops, f));
        }

        if v.log {
            paths.insert(
                format!("{object}/log"),
                path_item(r, named, &[Action::ReadLog], f),
            );
        }

        if r.namespaced {
            paths.insert(
                format!("{}/{}", r.group_path(), r.plural),
                path_item(r, &[], &[Action::ListAllNamespaces], f),
            );
        }
    }
    Value::Object(paths)
}

fn path_item(r: &Resource, path_params: &[&str], actions: &[Action], f: Flavor) -> Value {
    let mut item = Map::new();
    for a in actions {
        let method = match a {
            Action::List
            | Action::ListAllNamespaces
            | Action::Read
            | Action::ReadStatus
            | Action::ReadLog => "get",
            Action::Create => "post",
            Action::Replace | Action::ReplaceStatus => "put",
            Action::Patch => "patch",
            Action::Delete => "delete",
        };
        item.insert(method.into(), operation(r, *a, f));
    }
    let params: Vec<Value> = path_params
        .iter()
        .map(|p| {
            let what = if *p == "name" {
                format!("name of the {}", r.kind)
            } else {
                "namespace of the objects".to_owned()
            };
            param(p, "path", json!({ "type": "string" }), &what, true, f)
        })
        .collect();
    if !params.is_empty() {
        item.insert("parameters".into(), Value::Array(params));
    }
    Value::Object(item)
}

/// A parameter whose value is described by `schema` (a scalar's type, format and enum):
/// inline in Swagger 2.0, under `schema` in OpenAPI 3.
fn param(
    name: &str,
    location: &str,
    schema: Value,
    description: &str,
    required: bool,
    f: Flavor,
) -> Value {
    let mut p = Map::new();
    p.insert("name".into(), name.into());
    p.insert("in".into(), location.into());
    p.insert("description".into(), description.into());
    if required {
        p.insert("required".into(), true.into());
    }
    match f {
        Flavor::V2 => {
            if let Value::Object(s) = schema {
                p.extend(s);
            }
        }
        Flavor::V3 => {
            p.insert("schema".into(), schema);
        }
    }
    Value::Object(p)
}

fn query(name: &str, schema: Value, description: &str, f: Flavor) -> Value {
    param(name, "query", schema, description, false, f)
}

const MERGE_PATCH: &str = "application/merge-patch+json";
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    MERGE_PATCH,
    "application/apply-patch+yaml",
];

fn dry_run(f: Flavor) -> Value {
    query(
        "dryRun",
        json!({ "type": "string", "enum": ["All"] }),
        "When present, indicates that modifications should not be persisted. The only valid \
         value is `All`: process the request in full but do not store the result; any other \
         is refused with 422.",
        f,
    )
}

fn write_params(f: Flavor, patch: bool) -> Vec<Value> {
    let mut out = vec![
        dry_run(f),
        query(
            "fieldManager",
            json!({ "type": "string" }),
            "A name for the actor making these changes, at most 128 printable characters.",
            f,
        ),
        query(
            "fieldValidation",
            json!({ "type": "string", "enum": ["Ignore", "Warn", "Strict"] }),
            "How the server handles fields the schema does not know and duplicate fields: \
             `Ignore`, `Warn` or `Strict`. kantai always validates strictly: unknown fields \
             are rejected with the closest known name suggested.",
            f,
        ),
    ];
    if patch {
        out.push(query(
            "force",
            json!({ "type": "boolean" }),
            "For apply patches: take over fields managed by others instead of failing on \
             conflicts.",
            f,
        ));
    }
    out
}

fn delete_params(f: Flavor) -> Vec<Value> {
    vec![
        dry_run(f),
        query(
            "gracePeriodSeconds",
            json!({ "type": "integer" }),
            "Seconds before the object is deleted, 0 or more. kantai deletes at once.",
            f,
        ),
        query(
            "propagationPolicy",
            json!({ "type": "string", "enum": ["Orphan", "Background", "Foreground"] }),
            "Whether and how dependents are deleted. kantai deletes what an object owns at \
             once, which is what each policy ends in without finalizers.",
            f,
        ),
    ]
}

fn list_params(r: &Resource, f: Flavor) -> Vec<Value> {
    let mut out = vec![
        query(
            "labelSelector",
            json!({ "type": "string" }),
            "Only objects whose labels match: `key=value`, `key!=value`, `key in (a,b)`, \
             `key notin (a,b)`, `key`, `!key`, joined by commas. A malformed selector is \
             refused with 400.",
            f,
        ),
        query(
            "fieldSelector",
            json!({ "type": "string" }),
            "Only objects whose fields match: `metadata.name=hello`, `spec.node!=node1`, \
             joined by commas. A malformed selector is refused with 400.",
            f,
        ),
    ];
    if r.verbs.watch {
        out.extend([
            query(
                "watch",
                json!({ "type": "boolean" }),
                "Stream added, modified and deleted objects instead of returning a list.",
                f,
            ),
            query(
                "resourceVersion",
                json!({ "type": "string" }),
                "With `watch`, stream the changes after this resource version (from a list's \
                 `metadata.resourceVersion`); one older than the server's history is refused \
                 with 410 `Expired`.",
                f,
            ),
            query(
                "timeoutSeconds",
                json!({ "type": "integer" }),
                "With `watch`, end the stream cleanly after this many seconds.",
                f,
            ),
            query(
                "allowWatchBookmarks",
                json!({ "type": "boolean" }),
                "With `watch`, send `BOOKMARK` events carrying the latest resourceVersion \
                 every 30 s and when the watch ends.",
                f,
            ),
        ]);
    }
    out
}

fn log_params(f: Flavor) -> Vec<Value> {
    vec![
        query(
            "tailLines",
            json!({ "type": "integer" }),
            "Only this many of the last lines (the node keeps an instance's last 2,000).",
            f,
        ),
        query(
            "follow",
            json!({ "type": "boolean" }),
            "Stream the output until the instance stops.",
            f,
        ),
    ]
}

/// `serving.knative.dev` → `ServingKnativeDev`, the core group → `Core`: the pieces of
/// Kubernetes-style operation ids.
fn camel(s: &str) -> String {
    if s.is_empty() {
        return "Core".into();
    }
    s.split(['.', '-'])
        .map(|w| {
            let mut cs = w.chars();
            cs.next()
                .map(|c| c.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect()
}

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";

/// The failures an action can answer, each as a Kubernetes `Status` with its code and reason:
/// declared so that clients (and conformance checks) know every answer but a server error.
fn failures(a: Action) -> &'static [(&'static str, &'static str)] {
    const BAD: (&str, &str) = (
        "400",
        "BadRequest: a malformed request (body, selector or parameter)",
    );
    const UNAUTHORIZED: (&str, &str) = ("401", "Unauthorized: no token, or another one");
    const FORBIDDEN: (&str, &str) = ("403", "Forbidden: this object may not be deleted");
    const NOT_FOUND: (&str, &str) = ("404", "NotFound: no such object or resource");
    const CONFLICT: (&str, &str) = (
        "409",
        "Conflict or AlreadyExists: a stale resourceVersion, a field another manager owns, \
         an object owned by another, a name in use",
    );
    const EXPIRED: (&str, &str) = (
        "410",
        "Expired: the watch's resourceVersion is older than the server's history",
    );
    const TOO_LARGE: (&str, &str) = (
        "413",
        "RequestEntityTooLarge: the body is over the server's limit",
    );
    const MEDIA: (&str, &str) = (
        "415",
        "UnsupportedMediaType: a patch type the server does not apply",
    );
    const INVALID: (&str, &str) = (
        "422",
        "Invalid: the object or the options fail validation; every cause is named",
    );
    match a {
        Action::List | Action::ListAllNamespaces => &[BAD, UNAUTHORIZED, NOT_FOUND, EXPIRED],
        Action::Read | Action::ReadStatus => &[UNAUTHORIZED, NOT_FOUND],
        Action::ReadLog => &[BAD, UNAUTHORIZED, NOT_FOUND],
        Action::Create | Action::Replace | Action::ReplaceStatus | Action::Patch => &[
            BAD,
            UNAUTHORIZED,
            NOT_FOUND,
            CONFLICT,
            TOO_LARGE,
            MEDIA,
            INVALID,
        ],
        Action::Delete => &[
            BAD,
            UNAUTHORIZED,
            FORBIDDEN,
            NOT_FOUND,
            CONFLICT,
            TOO_LARGE,
            INVALID,
        ],
    }
}

/// A response: its description, and each content type with its (neutral) schema.
fn response(description: &str, content: &[(&str, Value)], f: Flavor) -> Value {
    match f {
        // Swagger 2.0 gives content types per operation (`produces`), one schema per response.
        Flavor::V2 => match content.first() {
            Some((_, schema)) => json!({ "description": description, "schema": schema }),
            None => json!({ "description": description }),
        },
        Flavor::V3 => {
            let content: Map<String, Value> = content
                .iter()
                .map(|(ct, schema)| ((*ct).to_owned(), json!({ "schema": schema })))
                .collect();
            json!({ "description": description, "content": content })
        }
    }
}

fn operation(r: &Resource, a: Action, f: Flavor) -> Value {
    let kind = r.kind;
    let kind_schema = kind_schema_name(r);
    let (verb, action, description, suffix) = match a {
        Action::List => (
            "list",
            "list",
            if r.verbs.watch {
                format!("list or watch objects of kind {kind}")
            } else {
                format!("list objects of kind {kind}")
            },
            "",
        ),
        Action::ListAllNamespaces => (
            "list",
            "list",
            if r.verbs.watch {
                format!("list or watch objects of kind {kind} in every namespace")
            } else {
                format!("list objects of kind {kind} in every namespace")
            },
            "ForAllNamespaces",
        ),
        Action::Create => ("create", "post", format!("create a {kind}"), ""),
        Action::Read => ("read", "get", format!("read the specified {kind}"), ""),
        Action::Replace => (
            "replace",
            "put",
            format!("replace the specified {kind}"),
            "",
        ),
        Action::Patch => (
            "patch",
            "patch",
            format!("partially update the specified {kind}"),
            "",
        ),
        Action::Delete => ("delete", "delete", format!("delete a {kind}"), ""),
        Action::ReadStatus => (
            "read",
            "get",
            format!("read status of the specified {kind}"),
            "Status",
        ),
        Action::ReplaceStatus => (
            "replace",
            "put",
            format!("replace status of the specified {kind}"),
            "Status",
        ),
        Action::ReadLog => (
            "read",
            "get",
            format!("read log of the specified {kind}"),
            "Log",
        ),
    };
    let namespaced = if r.namespaced && a != Action::ListAllNamespaces {
        "Namespaced"
    } else {
        ""
    };
    let operation_id = format!(
        "{verb}{}{}{namespaced}{kind}{suffix}",
        camel(r.group),
        camel(r.version)
    );

    // (request schema, content types, required)
    let body: Option<(String, Vec<&str>, bool)> = match a {
        Action::Create | Action::Replace | Action::ReplaceStatus => {
            Some((kind_schema.clone(), vec!["application/json"], true))
        }
        Action::Patch => Some((
            "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".to_owned(),
            PATCH_TYPES.to_vec(),
            true,
        )),
        Action::Delete => Some((
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".to_owned(),
            vec!["application/json"],
            false,
        )),
        _ => None,
    };
    let (success, success_types): (Value, Vec<&str>) = match a {
        Action::List | Action::ListAllNamespaces if r.verbs.watch => (
            json!({ "$ref": list_schema_name(r) }),
            vec!["application/json", "application/json;stream=watch"],
        ),
        Action::List | Action::ListAllNamespaces => (
            json!({ "$ref": list_schema_name(r) }),
            vec!["application/json"],
        ),
        Action::Delete => (json!({ "$ref": STATUS }), vec!["application/json"]),
        Action::ReadLog => (json!({ "type": "string" }), vec!["text/plain"]),
        _ => (json!({ "$ref": kind_schema }), vec!["application/json"]),
    };
    let ok: Vec<(&str, Value)> = success_types
        .iter()
        .map(|ct| (*ct, success.clone()))
        .collect();
    let mut responses = Map::new();
    responses.insert("200".into(), response("OK", &ok, f));
    // Creating answers 201, and so do an apply patch and a PUT that create the object.
    if matches!(a, Action::Create | Action::Replace | Action::Patch) {
        responses.insert("201".into(), response("Created", &ok, f));
    }
    let status = [("application/json", json!({ "$ref": STATUS }))];
    for (code, description) in failures(a) {
        responses.insert((*code).into(), response(description, &status, f));
    }

    let mut query = Vec::new();
    match a {
        Action::List | Action::ListAllNamespaces => query.extend(list_params(r, f)),
        Action::Create | Action::Replace | Action::ReplaceStatus => {
            query.extend(write_params(f, false));
        }
        Action::Patch => query.extend(write_params(f, true)),
        Action::Delete => query.extend(delete_params(f)),
        Action::ReadLog => query.extend(log_params(f)),
        Action::Read | Action::ReadStatus => {}
    }

    let mut op = Map::new();
    op.insert(
        "tags".into(),
        json!([format!(
            "{}_{}",
            if r.group.is_empty() { "core" } else { r.group },
            r.version
        )]),
    );
    op.insert("description".into(), description.into());
    op.insert("operationId".into(), operation_id.into());
    let mut parameters = Vec::new();
    match f {
        Flavor::V2 => {
            if let Some((schema, types, required)) = &body {
                op.insert("consumes".into(), json!(types));
                let mut p = json!({ "name": "body", "in": "body", "schema": { "$ref": schema } });
                if *required {
                    p["required"] = true.into();
                }
                parameters.push(p);
            }
            // Failures are JSON Statuses whatever the success's type.
            let mut produces = success_types.clone();
            if !produces.contains(&"application/json") {
                produces.push("application/json");
            }
            op.insert("produces".into(), json!(produces));
            op.insert("schemes".into(), json!(["https"]));
        }
        Flavor::V3 => {
            if let Some((schema, types, required)) = &body {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|ct| ((*ct).to_owned(), json!({ "schema": { "$ref": schema } })))
                    .collect();
                let mut rb = json!({ "content": content });
                if *required {
                    rb["required"] = true.into();
                }
                op.insert("requestBody".into(), rb);
            }
        }
    }
    parameters.extend(query);
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    op.insert("responses".into(), Value::Object(responses));
    op.insert("x-kubernetes-action".into(), action.into());
    // An object, not a list: kubectl reads operations' GVK as map[string]string.
    op.insert(
        GVK.into(),
        json!({ "group": r.group, "kind": kind, "version": r.version }),
    );
    Value::Object(op)
}

// ---------------------------------------------------------------------------------------------
// Schemas (neutral form: `$ref` is a bare schema name)
// ---------------------------------------------------------------------------------------------

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const CORE: &str = "io.k8s.api.core.v1";
const SERVING: &str = "dev.knative.serving.v1";
const KANTAI: &str = "dev.kantai.v1alpha1";
const CONDITION: &str = "dev.knative.pkg.apis.Condition";
const ADDRESSABLE: &str = "dev.knative.pkg.apis.duck.v1.Addressable";

fn string(d: &str) -> Value {
    json!({ "type": "string", "description": d })
}

fn int64(d: &str) -> Value {
    json!({ "type": "integer", "format": "int64", "description": d })
}

fn int32(d: &str) -> Value {
    json!({ "type": "integer", "format": "int32", "description": d })
}

fn boolean(d: &str) -> Value {
    json!({ "type": "boolean", "description": d })
}

fn strings(d: &str) -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "description": d })
}

fn string_map(d: &str) -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" }, "description": d })
}

fn quantity_map(d: &str) -> Value {
    json!({ "type": "object", "additionalProperties": { "$ref": QUANTITY }, "description": d })
}

fn reference(name: &str, d: &str) -> Value {
    json!({ "$ref": name, "description": d })
}

fn time(d: &str) -> Value {
    reference(TIME, d)
}

fn list_of(name: &str, d: &str) -> Value {
    json!({ "type": "array", "items": { "$ref": name }, "description": d })
}

fn object(d: &str, required: &[&str], properties: Value) -> Value {
    let mut o = json!({ "description": d, "type": "object", "properties": properties });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

/// An object kantai keeps verbatim: its properties document the usual fields, and any other
/// field is allowed too.
fn kept_object(d: &str, properties: Value) -> Value {
    let mut o = object(d, &[], properties);
    o[PRESERVE] = true.into();
    o
}

/// An object kantai keeps verbatim, without documented fields.
fn free_object(d: &str) -> Value {
    json!({ "description": d, "type": "object", PRESERVE: true })
}

fn gvk_list(group: &str, version: &str, kind: &str) -> Value {
    json!([{ "group": group, "kind": kind, "version": version }])
}

fn api_version_prop(api_version: &str) -> Value {
    string(&format!(
        "The versioned schema of this representation of an object: `{api_version}`."
    ))
}

fn kind_prop(kind: &str) -> Value {
    string(&format!(
        "The REST resource this object represents: `{kind}`. In CamelCase."
    ))
}

/// A top-level kind with `metadata`, `spec` and `status`.
fn kind_schema(r: &Resource, description: &str, spec: (&str, &str), status: (&str, &str)) -> Value {
    let mut s = object(
        description,
        &[],
        json!({
            "apiVersion": api_version_prop(&r.api_version()),
            "kind": kind_prop(r.kind),
            "metadata": reference(OBJECT_META, "Standard object metadata: name, namespace, labels, annotations, ..."),
            "spec": reference(spec.0, spec.1),
            "status": reference(status.0, status.1),
        }),
    );
    s[GVK] = gvk_list(r.group, r.version, r.kind);
    s
}

/// The `…List` kind of a resource.
fn list_kind_schema(r: &Resource) -> Value {
    let list_kind = format!("{}List", r.kind);
    let mut s = object(
        &format!("A list of {} objects.", r.kind),
        &["items"],
        json!({
            "apiVersion": api_version_prop(&r.api_version()),
            "items": list_of(&kind_schema_name(r), &format!("The {} objects.", r.kind)),
            "kind": kind_prop(&list_kind),
            "metadata": reference(LIST_META, "Standard list metadata: the resourceVersion to watch from."),
        }),
    );
    s[GVK] = gvk_list(r.group, r.version, &list_kind);
    s
}

fn definitions() -> Map<String, Value> {
    let mut d = Map::new();
    meta_definitions(&mut d);
    container_definitions(&mut d);
    serving_definitions(&mut d);
    kantai_definitions(&mut d);
    core_definitions(&mut d);
    // Every served resource has a List kind of the same shape.
    for r in resources::ALL {
        d.insert(list_schema_name(r), list_kind_schema(r));
    }
    d
}

fn insert(d: &mut Map<String, Value>, prefix: &str, name: &str, schema: Value) {
    d.insert(format!("{prefix}.{name}"), schema);
}

fn meta_definitions(d: &mut Map<String, Value>) {
    insert(
        d,
        META,
        "ObjectMeta",
        object(
            "Metadata every persisted object has. kantai sets uid, resourceVersion, generation and \
         creationTimestamp; it keeps finalizers, managedFields and the other bookkeeping fields \
         as they are.",
            &[],
            json!({
                "name": string("Name, unique within the namespace. Knative objects need a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, at most 63 characters."),
                "generateName": string("Prefix for a server-generated name. Kept, not acted on by kantai."),
                "namespace": string("Namespace of the object; `default` when not given."),
                "selfLink": string("Deprecated; kept as given."),
                "uid": string("Unique id assigned by the server on creation."),
                "resourceVersion": string("Opaque version of the object, for optimistic concurrency and watches. Send it back unchanged on updates."),
                "generation": int64("Sequence number of the desired state, incremented by the server on every spec change."),
                "creationTimestamp": time("When the object was created (set by the server)."),
                "deletionTimestamp": time("When the object will be deleted. Kept as given."),
                "deletionGracePeriodSeconds": int64("Seconds allowed for graceful termination. Kept as given."),
                "labels": string_map("Key/value pairs for selecting objects. Keys are `[prefix/]name`, values at most 63 characters of [A-Za-z0-9_.-]."),
                "annotations": string_map("Unstructured key/value settings. Knative's autoscaling settings (`autoscaling.knative.dev/*`) and kantai's live here. Values must be strings."),
                "ownerReferences": list_of(&format!("{META}.OwnerReference"), "Objects this one depends on: a Revision is owned by its Configuration, which is owned by its Service."),
                "finalizers": strings("Finalizers. Kept as given."),
                "managedFields": list_of(&format!("{META}.ManagedFieldsEntry"), "Field ownership written by server-side apply clients. Kept as given."),
            }),
        ),
    );
    insert(
        d,
        META,
        "OwnerReference",
        object(
            "Identifies an owning object.",
            &["apiVersion", "kind", "name", "uid"],
            json!({
                "apiVersion": string("API version of the owner."),
                "kind": string("Kind of the owner."),
                "name": string("Name of the owner."),
                "uid": string("UID of the owner."),
                "controller": boolean("Whether the owner is the managing controller."),
                "blockOwnerDeletion": boolean("Whether deleting the owner waits for this object."),
            }),
        ),
    );
    insert(
        d,
        META,
        "ManagedFieldsEntry",
        object(
            "The fields a manager owns.",
            &[],
            json!({
                "manager": string("Name of the manager."),
                "operation": string("`Apply` or `Update`."),
                "apiVersion": string("Version of the fields' schema."),
                "time": time("When the fields were last changed."),
                "fieldsType": string("Format of fieldsV1: `FieldsV1`."),
                "fieldsV1": reference(&format!("{META}.FieldsV1"), "The owned fields."),
                "subresource": string("The subresource the fields were written through."),
            }),
        ),
    );
    insert(
        d,
        META,
        "FieldsV1",
        json!({
            "description": "A set of fields, encoded as a trie of JSON objects.",
            "type": "object",
        }),
    );
    insert(
        d,
        META,
        "ListMeta",
        object(
            "Metadata of a list.",
            &[],
            json!({
                "resourceVersion": string("Version of the list; watch from it to see later changes."),
                "continue": string("Token for the next page; kantai returns every item at once."),
                "remainingItemCount": int64("Items after this page, when paginated."),
                "selfLink": string("Deprecated."),
            }),
        ),
    );
    insert(
        d,
        META,
        "Time",
        json!({
            "description": "An RFC 3339 timestamp in UTC, such as 2026-11-26T18:38:24Z.",
            "type": "string",
            "format": "date-time",
        }),
    );
    let mut status = object(
        "The result of an operation that returns no object: every error, and deletes.",
        &[],
        json!({
            "apiVersion": api_version_prop("v1"),
            "kind": kind_prop("Status"),
            "metadata": reference(LIST_META, "Standard list metadata."),
            "status": string("`Success` or `Failure`."),
            "message": string("Human-readable description of the status."),
            "reason": string("Machine-readable reason: NotFound, AlreadyExists, Conflict, Invalid, ..."),
            "details": reference(&format!("{META}.StatusDetails"), "The object concerned and, for Invalid, every cause."),
            "code": int32("HTTP status code."),
        }),
    );
    status[GVK] = gvk_list("", "v1", "Status");
    insert(d, META, "Status", status);
    insert(
        d,
        META,
        "StatusDetails",
        object(
            "Details of a Status.",
            &[],
            json!({
                "name": string("Name of the object concerned."),
                "group": string("Group of the object concerned."),
                "kind": string("Kind (resource) of the object concerned."),
                "uid": string("UID of the object concerned."),
                "causes": list_of(&format!("{META}.StatusCause"), "Every problem found, for validation failures."),
                "retryAfterSeconds": int32("Seconds to wait before retrying."),
            }),
        ),
    );
    insert(
        d,
        META,
        "StatusCause",
        object(
            "One cause of a failure.",
            &[],
            json!({
                "reason": string("Machine-readable cause: FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ..."),
                "message": string("What is wrong."),
                "field": string("Path of the field concerned, such as `spec.template.spec.containers[0].image`."),
            }),
        ),
    );
    let mut delete = object(
        "Options of a delete. kantai deletes at once and cascades from a Service to its \
         Configuration, Route and Revisions.",
        &[],
        json!({
            "apiVersion": string("The versioned schema of this representation of an object."),
            "kind": kind_prop("DeleteOptions"),
            "gracePeriodSeconds": int64("Seconds before the object is deleted."),
            "preconditions": reference(&format!("{META}.Preconditions"), "Must match for the delete to happen."),
            "propagationPolicy": string("`Orphan`, `Background` or `Foreground`."),
            "orphanDependents": boolean("Deprecated: use propagationPolicy."),
            "dryRun": strings("`All` to process the request without deleting."),
        }),
    );
    delete[GVK] = json!([
        { "group": "", "kind": "DeleteOptions", "version": "v1" },
        { "group": "kantai.dev", "kind": "DeleteOptions", "version": "v1alpha1" },
        { "group": "serving.knative.dev", "kind": "DeleteOptions", "version": "v1" },
    ]);
    insert(d, META, "DeleteOptions", delete);
    insert(
        d,
        META,
        "Preconditions",
        object(
            "Conditions for a delete.",
            &[],
            json!({
                "uid": string("The object's UID."),
                "resourceVersion": string("The object's resourceVersion."),
            }),
        ),
    );
    insert(
        d,
        META,
        "Patch",
        json!({
            "description": "A patch document: a JSON merge patch (application/merge-patch+json), a JSON patch (application/json-patch+json) or an apply configuration (application/apply-patch+yaml).",
            "type": "object",
        }),
    );
    d.insert(QUANTITY.into(), json!({
        "description": "A resource amount: a number with an optional suffix, such as 500m (half a CPU), 2, 128Mi or 1G.",
        "oneOf": [{ "type": "string" }, { "type": "number" }],
    }));
    d.insert(
        INT_OR_STRING.into(),
        json!({
            "description": "A port number or a port name.",
            "x-kubernetes-int-or-string": true,
            "anyOf": [{ "type": "integer" }, { "type": "string" }],
        }),
    );
}

/// The container and pod-spec pieces Knative's RevisionSpec takes from Kubernetes.
fn container_definitions(d: &mut Map<String, Value>) {
    let kept = "Accepted for Knative compatibility and kept as given; kantai's process runtime does not act on it.";
    insert(
        d,
        CORE,
        "Container",
        object(
            "The container of a revision. kantai runs exactly one per revision: an OCI container \
         of the image, or a process when the fleet config maps the image to a program.",
            &["image"],
            json!({
                "name": string("Name of the container; `user-container` when not given. A DNS-1123 label."),
                "image": string("Image reference. Required. The control plane resolves its tag to a digest (except on the registries in config `registries-skipping-tag-resolving`) and every instance runs that digest, reported in the revision's `status.containerStatuses`."),
                "imagePullPolicy": {
                    "type": "string",
                    "enum": ["Always", "IfNotPresent", "Never"],
                    "description": "When a node asks the registry for the image: `Always`, `IfNotPresent` or `Never`. When not given, Kubernetes' default: `Always` for the tag `latest` or no tag and no digest, `IfNotPresent` otherwise. Honoured by the OCI container runtime.",
                },
                "command": strings("Entrypoint, replacing the image's. Not run in a shell."),
                "args": strings("Arguments to the entrypoint."),
                "workingDir": string("Working directory of the process."),
                "env": list_of(&format!("{CORE}.EnvVar"), "Environment variables. PORT, K_SERVICE, K_CONFIGURATION and K_REVISION are reserved."),
                "envFrom": list_of(&format!("{CORE}.EnvFromSource"), "Every key of a ConfigMap or Secret as a variable, in order; `env` wins over them. Keys that are not valid variable names are skipped, with a Warning event. Fixed when an instance starts."),
                "ports": list_of(&format!("{CORE}.ContainerPort"), "At most one port: the one the process serves on, passed as $PORT (8080 when not given)."),
                "resources": reference(&format!("{CORE}.ResourceRequirements"), "CPU and memory requests and limits; requests decide placement."),
                "readinessProbe": reference(&format!("{CORE}.Probe"), "How to tell that an instance can take requests; a TCP probe of the serving port when not given."),
                "livenessProbe": reference(&format!("{CORE}.Probe"), "When to restart the container: it is restarted after failureThreshold failed checks. Not defaulted; `successThreshold` must be 1. Honoured by both runtimes."),
                "startupProbe": reference(&format!("{CORE}.Probe"), "Liveness checks wait until this probe has passed once. Not defaulted; `successThreshold` must be 1. Honoured by both runtimes."),
                "volumeMounts": list_of(&format!("{CORE}.VolumeMount"), "Where the revision's volumes appear in the container, by Knative's rules: absolute, unique, not a reserved path, `readOnly: true` except for emptyDir."),
                "securityContext": reference(&format!("{CORE}.SecurityContext"), "User, group, capabilities and filesystem of the container, over the pod's `securityContext`. Honoured by the OCI container runtime; the process runtime does not apply it."),
                "terminationMessagePath": string(kept),
                "terminationMessagePolicy": string(kept),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "ContainerPort",
        object(
            "The port the process listens on.",
            &["containerPort"],
            json!({
                "name": string("Protocol of the port: `http1`, `h2c` or empty (HTTP/1.1)."),
                "containerPort": int32("Port number, 1-65535; 8012, 8013, 8022, 9090 and 9091 are reserved."),
                "protocol": string("Only `TCP`."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "EnvVar",
        object(
            "An environment variable.",
            &["name"],
            json!({
                "name": string("Name: letters, digits, '_', '-' and '.', not starting with a digit."),
                "value": string("Literal value. Exclusive with valueFrom."),
                "valueFrom": reference(&format!("{CORE}.EnvVarSource"), "Where the value comes from instead: a key of a Secret or ConfigMap in the revision's namespace, or a field of the instance. Read when an instance starts; a missing required one keeps the revision from becoming Ready."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "EnvVarSource",
        object(
            "Where a variable's value comes from: exactly one of its references.",
            &[],
            json!({
                "configMapKeyRef": reference(&format!("{CORE}.ConfigMapKeySelector"), "A key of a ConfigMap."),
                "secretKeyRef": reference(&format!("{CORE}.SecretKeySelector"), "A key of a Secret."),
                "fieldRef": reference(&format!("{CORE}.ObjectFieldSelector"), "A field of the instance seen as a pod (Downward API); needs Knative's `kubernetes.podspec-fieldref` feature."),
                "resourceFieldRef": reference(&format!("{CORE}.ResourceFieldSelector"), "A resource limit or request of the container; needs Knative's `kubernetes.podspec-fieldref` feature."),
            }),
        ),
    );
    for (kind, what) in [
        ("ConfigMapKeySelector", "ConfigMap"),
        ("SecretKeySelector", "Secret"),
    ] {
        insert(
            d,
            CORE,
            kind,
            object(
                &format!("A key of a {what} in the revision's namespace."),
                &["key"],
                json!({
                    "name": string(&format!("Name of the {what}.")),
                    "key": string("The key whose value the variable takes."),
                    "optional": boolean(&format!("When true, a missing {what} or key leaves the variable unset instead of keeping the revision from starting.")),
                }),
            ),
        );
    }
    insert(
        d,
        CORE,
        "ObjectFieldSelector",
        object(
            "A field of the instance seen as a pod.",
            &["fieldPath"],
            json!({
                "apiVersion": string("Version of the schema the path is in: `v1`."),
                "fieldPath": string("The field: `metadata.name`, `metadata.namespace`, `metadata.uid`, `metadata.labels['KEY']`, `metadata.annotations['KEY']`, `spec.nodeName`, `spec.serviceAccountName`, `status.hostIP`, `status.podIP`, ..."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "ResourceFieldSelector",
        object(
            "A resource limit or request of a container.",
            &["resource"],
            json!({
                "containerName": string("The container; this one when not given."),
                "resource": string("`limits.cpu`, `limits.memory`, `limits.ephemeral-storage`, `requests.cpu`, `requests.memory` or `requests.ephemeral-storage`."),
                "divisor": reference(QUANTITY, "The unit of the value (1 when not given)."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "EnvFromSource",
        object(
            "Every key of a ConfigMap or a Secret as a variable: exactly one of them.",
            &[],
            json!({
                "prefix": string("Prefix added to each variable name."),
                "configMapRef": reference(&format!("{CORE}.ConfigMapEnvSource"), "The ConfigMap."),
                "secretRef": reference(&format!("{CORE}.SecretEnvSource"), "The Secret."),
            }),
        ),
    );
    for (kind, what) in [
        ("ConfigMapEnvSource", "ConfigMap"),
        ("SecretEnvSource", "Secret"),
    ] {
        insert(
            d,
            CORE,
            kind,
            object(
                &format!(
                    "A {what} in the revision's namespace, all of whose keys become variables."
                ),
                &[],
                json!({
                    "name": string(&format!("Name of the {what}.")),
                    "optional": boolean(&format!("When true, a missing {what} adds no variables instead of keeping the revision from starting.")),
                }),
            ),
        );
    }
    insert(
        d,
        CORE,
        "ResourceRequirements",
        object(
            "Compute resources of the container.",
            &[],
            json!({
                "limits": quantity_map("Upper bounds, by resource name (cpu, memory, ephemeral-storage)."),
                "requests": quantity_map("Reservations, by resource name; used to place instances on nodes. Not above the limits."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "Probe",
        object(
            "A health check: exactly one handler, with its timing.",
            &[],
            json!({
                "httpGet": reference(&format!("{CORE}.HTTPGetAction"), "An HTTP GET; success is a status from 200 to 399."),
                "tcpSocket": reference(&format!("{CORE}.TCPSocketAction"), "A TCP connect."),
                "exec": reference(&format!("{CORE}.ExecAction"), "A command; success is exit status 0."),
                "grpc": reference(&format!("{CORE}.GRPCAction"), "A gRPC health check."),
                "initialDelaySeconds": int32("Seconds before the first check."),
                "timeoutSeconds": int32("Seconds before a check times out (1 with periodSeconds set)."),
                "periodSeconds": int32("Seconds between checks; 0 means Knative's aggressive probing until ready."),
                "successThreshold": int32("Consecutive successes needed (1)."),
                "failureThreshold": int32("Consecutive failures tolerated (3 with periodSeconds set)."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "HTTPGetAction",
        object(
            "An HTTP GET check.",
            &[],
            json!({
                "path": string("Request path."),
                "port": reference(INT_OR_STRING, "Port; the serving port when not given."),
                "host": string("Host header."),
                "scheme": string("Only `HTTP`."),
                "httpHeaders": list_of(&format!("{CORE}.HTTPHeader"), "Extra request headers."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "HTTPHeader",
        object(
            "A request header.",
            &["name", "value"],
            json!({ "name": string("Header name."), "value": string("Header value.") }),
        ),
    );
    insert(
        d,
        CORE,
        "TCPSocketAction",
        object(
            "A TCP connect check.",
            &[],
            json!({
                "port": reference(INT_OR_STRING, "Port; absent or 0 means the serving port."),
                "host": string("Host to connect to."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "ExecAction",
        object(
            "A command check.",
            &[],
            json!({ "command": strings("The command and its arguments, not run in a shell.") }),
        ),
    );
    insert(
        d,
        CORE,
        "GRPCAction",
        object(
            "A gRPC health check.",
            &["port"],
            json!({
                "port": int32("Port of the gRPC service."),
                "service": string("Service name sent in the health check request."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "VolumeMount",
        kept_object(
            "Where a volume is mounted. Fields Knative does not allow (`mountPropagation`, \
             `subPathExpr`, ...) are refused by the server.",
            json!({
                "name": string("Name of the volume."),
                "mountPath": string("Absolute path in the container; unique, and not `/`, `/dev`, `/dev/log`, `/tmp`, `/var` or `/var/log`."),
                "readOnly": boolean("Mount read-only: required (true) for every volume but emptyDir."),
                "subPath": string("One file or directory within the volume instead of its root; a subPath mount does not see updates of its ConfigMap or Secret."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "SecurityContext",
        object(
            "Security options of the container; where it sets none, the pod's `runAsUser`, \
             `runAsGroup` and `runAsNonRoot` apply. Honoured by the OCI container runtime. \
             `privileged`, `seLinuxOptions`, `procMount`, `windowsOptions` and \
             `appArmorProfile` are refused, as Knative refuses them.",
            &[],
            json!({
                "runAsUser": int64("UID to run as, 0-2147483647."),
                "runAsGroup": int64("GID to run as, 0-2147483647."),
                "runAsNonRoot": boolean("Refuse to start the container when it would run as UID 0."),
                "readOnlyRootFilesystem": boolean("Mount the image's root filesystem read-only."),
                "allowPrivilegeEscalation": boolean("Whether the process may gain privileges (`no_new_privs` when false)."),
                "capabilities": reference(&format!("{CORE}.Capabilities"), "Linux capabilities to add or drop."),
                "seccompProfile": free_object(&format!("Seccomp profile. {kept}")),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "Capabilities",
        object(
            "Linux capabilities, named in upper case without the `CAP_` prefix (`NET_BIND_SERVICE`), or `ALL`.",
            &[],
            json!({
                "add": strings("Capabilities granted on top of the runtime's default set."),
                "drop": strings("Capabilities removed from the default set; `ALL` removes every one."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "PodSecurityContext",
        object(
            "Security options of the pod: defaults for each container's `securityContext`, \
             whose own values win field by field. `seLinuxOptions`, `windowsOptions`, `sysctls` \
             and the other fields Knative does not admit are refused.",
            &[],
            json!({
                "runAsUser": int64("UID of every container that sets none, 0-2147483647. Honoured by the OCI container runtime."),
                "runAsGroup": int64("GID of every container that sets none, 0-2147483647. Honoured by the OCI container runtime."),
                "runAsNonRoot": boolean("`runAsNonRoot` of every container that sets none. Honoured by the OCI container runtime."),
                "fsGroup": int64(&format!("Group owning the volumes. {kept}")),
                "supplementalGroups": { "type": "array", "items": { "type": "integer", "format": "int64" }, "description": kept },
                "seccompProfile": free_object(&format!("Seccomp profile. {kept}")),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "Volume",
        kept_object(
            "A volume: exactly one source. secret, configMap, projected and emptyDir are \
             served; other sources (persistentVolumeClaim, hostPath, ...) are refused by the \
             server, as Knative refuses them by default or because kantai has no such thing.",
            json!({
                "name": string("Name of the volume, unique in the revision; every volume must be mounted."),
                "configMap": reference(&format!("{CORE}.ConfigMapVolumeSource"), "A ConfigMap's keys as files; updates reach the files within seconds."),
                "secret": reference(&format!("{CORE}.SecretVolumeSource"), "A Secret's keys as files on a tmpfs; updates reach the files within seconds."),
                "projected": reference(&format!("{CORE}.ProjectedVolumeSource"), "Several Secrets' and ConfigMaps' keys in one directory."),
                "emptyDir": reference(&format!("{CORE}.EmptyDirVolumeSource"), "A scratch directory that lives as long as the instance; Knative's `kubernetes.podspec-volumes-emptydir` feature."),
                "persistentVolumeClaim": free_object("A persistent volume claim: behind Knative's `kubernetes.podspec-persistent-volume-claim` feature; kantai has no persistent volumes and refuses it."),
            }),
        ),
    );
    let items = || {
        list_of(
            &format!("{CORE}.KeyToPath"),
            "Which keys, at which paths; every key at its own name when empty. A listed key that does not exist is an error unless `optional`.",
        )
    };
    let default_mode = || int32("Permission bits of the files, 0-0777 (0644 when not given).");
    insert(
        d,
        CORE,
        "SecretVolumeSource",
        object(
            "A Secret's keys as files.",
            &[],
            json!({
                "secretName": string("Name of the Secret in the revision's namespace."),
                "items": items(),
                "defaultMode": default_mode(),
                "optional": boolean("When true, a missing Secret or key is no error."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "ConfigMapVolumeSource",
        object(
            "A ConfigMap's keys as files.",
            &[],
            json!({
                "name": string("Name of the ConfigMap in the revision's namespace."),
                "items": items(),
                "defaultMode": default_mode(),
                "optional": boolean("When true, a missing ConfigMap or key is no error."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "KeyToPath",
        object(
            "One key as one file.",
            &["key", "path"],
            json!({
                "key": string("The key."),
                "path": string("The file's path, relative, without a `..` element."),
                "mode": int32("This file's permission bits, 0-0777, instead of `defaultMode`."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "ProjectedVolumeSource",
        object(
            "Several sources in one directory.",
            &[],
            json!({
                "sources": list_of(&format!("{CORE}.VolumeProjection"), "The sources, in order."),
                "defaultMode": default_mode(),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "VolumeProjection",
        kept_object(
            "One source of a projected volume: a secret or a configMap. serviceAccountToken, \
             downwardAPI and clusterTrustBundle are refused: kantai has none to project.",
            json!({
                "secret": reference(&format!("{CORE}.SecretProjection"), "A Secret's keys."),
                "configMap": reference(&format!("{CORE}.ConfigMapProjection"), "A ConfigMap's keys."),
            }),
        ),
    );
    for (kind, what) in [
        ("SecretProjection", "Secret"),
        ("ConfigMapProjection", "ConfigMap"),
    ] {
        insert(
            d,
            CORE,
            kind,
            object(
                &format!("A {what}'s keys in a projected volume."),
                &[],
                json!({
                    "name": string(&format!("Name of the {what}.")),
                    "items": items(),
                    "optional": boolean(&format!("When true, a missing {what} or key is no error.")),
                }),
            ),
        );
    }
    insert(
        d,
        CORE,
        "EmptyDirVolumeSource",
        object(
            "A scratch directory.",
            &[],
            json!({
                "medium": string("`\"\"` (the node's disk) or `Memory` (a tmpfs)."),
                "sizeLimit": reference(QUANTITY, "The most it may hold; for `Memory`, the tmpfs's size."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "LocalObjectReference",
        kept_object(
            "A reference to an object in the same namespace.",
            json!({ "name": string("Name of the object.") }),
        ),
    );
    insert(
        d,
        CORE,
        "Toleration",
        kept_object(
            &format!("Tolerates a node taint. {kept}"),
            json!({
                "key": string("Taint key."),
                "operator": string("`Exists` or `Equal`."),
                "value": string("Taint value."),
                "effect": string("`NoSchedule`, `PreferNoSchedule` or `NoExecute`."),
                "tolerationSeconds": int64("How long a NoExecute taint is tolerated."),
            }),
        ),
    );
}

fn serving_definitions(d: &mut Map<String, Value>) {
    let kept = "Accepted for Knative compatibility and kept as given; kantai's process runtime does not act on it.";
    let traffic_ref = format!("{SERVING}.TrafficTarget");
    insert(
        d,
        SERVING,
        "Service",
        kind_schema(
            &resources::SERVICES,
            "A Knative Service: a revision template and a traffic split in one object. Every change \
         of the template creates a new immutable Revision (through the Service's Configuration); \
         the traffic split routes requests over the revisions (through its Route). kantai runs \
         each revision as processes placed on the fleet's nodes and scales them with Knative's \
         autoscaling annotations.",
            (
                &format!("{SERVING}.ServiceSpec"),
                "Desired state: the revision template and the traffic split.",
            ),
            (
                &format!("{SERVING}.ServiceStatus"),
                "Observed state, written by kantai; accepted in input but never trusted.",
            ),
        ),
    );
    insert(
        d,
        SERVING,
        "ServiceSpec",
        object(
            "The desired state of a Service: a ConfigurationSpec (template) and a RouteSpec \
         (traffic) inlined.",
            &["template"],
            json!({
                "template": reference(&format!("{SERVING}.RevisionTemplateSpec"), "The template of the revisions this Service creates. Changing it creates a new revision; changing only traffic does not."),
                "traffic": list_of(&traffic_ref, "How requests are split over revisions; the percents sum to 100. Empty means 100% to the latest ready revision. A Service's targets may not name a configurationName."),
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "Configuration",
        kind_schema(
            &resources::CONFIGURATIONS,
            "A Knative Configuration: the template half of a Service, which creates a Revision at \
         every template change. kantai derives Configurations from Services; they cannot be \
         written through the API.",
            (
                &format!("{SERVING}.ConfigurationSpec"),
                "Desired state: the revision template.",
            ),
            (
                &format!("{SERVING}.ConfigurationStatus"),
                "Observed state, written by kantai.",
            ),
        ),
    );
    insert(
        d,
        SERVING,
        "ConfigurationSpec",
        object(
            "The desired state of a Configuration.",
            &["template"],
            json!({
                "template": reference(&format!("{SERVING}.RevisionTemplateSpec"), "The template of the revisions."),
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "Revision",
        kind_schema(
            &resources::REVISIONS,
            "A Knative Revision: an immutable snapshot of a template, named \
         {configuration}-{generation:05}. kantai creates them; they can be deleted, not written.",
            (
                &format!("{SERVING}.RevisionSpec"),
                "The snapshot of the template's spec.",
            ),
            (
                &format!("{SERVING}.RevisionStatus"),
                "Observed state, written by kantai.",
            ),
        ),
    );
    insert(
        d,
        SERVING,
        "RevisionTemplateSpec",
        object(
            "The template of a revision.",
            &["spec"],
            json!({
                "metadata": reference(&format!("{SERVING}.RevisionTemplateMeta"), "Metadata copied onto each revision: its name, labels and annotations (autoscaling settings live here)."),
                "spec": reference(&format!("{SERVING}.RevisionSpec"), "The revision's spec."),
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "RevisionTemplateMeta",
        object(
            "The metadata Knative allows in a revision template.",
            &[],
            json!({
                "name": string("An explicit revision name: a DNS-1035 label starting with the owner's name and '-'. Generated when not given."),
                "labels": string_map("Labels copied onto the revision."),
                "annotations": string_map("Annotations copied onto the revision: `autoscaling.knative.dev/*` (min-scale, max-scale, target, metric, window, ...) and kantai's."),
                "creationTimestamp": {
                    "$ref": TIME,
                    "description": "Must be null or absent (kubectl prints `creationTimestamp: null` here).",
                    "nullable": true,
                },
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "RevisionSpec",
        object(
            "Knative's RevisionSpec: the pod-spec subset a revision runs, and its request limits.",
            &["containers"],
            json!({
                "containers": list_of(&format!("{CORE}.Container"), "The containers: exactly one, the serving process (Knative's multi-container sidecars are not supported by kantai)."),
                "containerConcurrency": int64("Most in-flight requests per instance, 0-1000; 0 means unlimited (the default, from config `container-concurrency`)."),
                "timeoutSeconds": int64("Limit on a request's duration, in seconds, at most `max-revision-timeout-seconds` (600); 300 by default."),
                "responseStartTimeoutSeconds": int64("Limit on the time until the first response byte, in seconds, at most timeoutSeconds."),
                "idleTimeoutSeconds": int64("Limit on the time between response bytes, in seconds."),
                "enableServiceLinks": boolean("Whether service environment variables are injected; false by default, as in Knative."),
                "serviceAccountName": string(kept),
                "automountServiceAccountToken": boolean(kept),
                "imagePullSecrets": list_of(&format!("{CORE}.LocalObjectReference"), kept),
                "volumes": list_of(&format!("{CORE}.Volume"), "Volumes the container mounts: secret, configMap, projected and emptyDir, by Knative's rules and the fleet config's `features`; every volume must be mounted."),
                "affinity": free_object(&format!("Scheduling affinity. {kept}")),
                "nodeSelector": string_map(kept),
                "tolerations": list_of(&format!("{CORE}.Toleration"), kept),
                "topologySpreadConstraints": { "type": "array", "items": free_object("A spread constraint."), "description": kept },
                "securityContext": reference(&format!("{CORE}.PodSecurityContext"), "Pod-level user and group, under each container's own `securityContext`."),
                "runtimeClassName": string(kept),
                "priorityClassName": string(kept),
                "schedulerName": string(kept),
                "hostAliases": { "type": "array", "items": free_object("Extra /etc/hosts entries."), "description": kept },
                "dnsPolicy": string(kept),
                "dnsConfig": free_object(&format!("DNS options. {kept}")),
                "shareProcessNamespace": boolean(kept),
                "initContainers": { "type": "array", "items": free_object("An init container."), "description": kept },
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "Route",
        kind_schema(
            &resources::ROUTES,
            "A Knative Route: a traffic split over revisions, reachable at its URL; the traffic half \
         of a Service.",
            (
                &format!("{SERVING}.RouteSpec"),
                "Desired state: the traffic split.",
            ),
            (
                &format!("{SERVING}.RouteStatus"),
                "Observed state, written by kantai.",
            ),
        ),
    );
    insert(
        d,
        SERVING,
        "RouteSpec",
        object(
            "The desired state of a Route.",
            &[],
            json!({
                "traffic": list_of(&traffic_ref, "How requests are split over revisions; the percents sum to 100. Each target names a revisionName or a configurationName."),
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "TrafficTarget",
        object(
            "A share of the traffic.",
            &[],
            json!({
                "tag": string("Gives the target its own URL, http://{tag}-{name}.{namespace}.{domain}. A DNS-1123 label, unique among the targets."),
                "revisionName": string("A fixed revision. Not allowed with latestRevision: true, required with latestRevision: false."),
                "configurationName": string("The configuration whose latest ready revision is meant (Routes only)."),
                "latestRevision": boolean("Follow the latest ready revision; true exactly when no revisionName is given, by default."),
                "percent": int64("Share of the requests, 0-100."),
                "url": string("The tag's URL (status only)."),
            }),
        ),
    );
    let conditions = |which: &str| {
        list_of(
            CONDITION,
            &format!("The latest observations of the object's state: {which}."),
        )
    };
    let observed = || int64("The generation this status describes.");
    insert(
        d,
        SERVING,
        "ServiceStatus",
        object(
            "The observed state of a Service.",
            &[],
            json!({
                "observedGeneration": observed(),
                "conditions": conditions("Ready, ConfigurationsReady, RoutesReady"),
                "url": string("The external URL, http://{name}.{namespace}.{domain}."),
                "address": reference(ADDRESSABLE, "The cluster-local address."),
                "latestCreatedRevisionName": string("The newest revision created from the template."),
                "latestReadyRevisionName": string("The newest revision that became ready."),
                "traffic": list_of(&traffic_ref, "The traffic split resolved to concrete revisions, with tag URLs."),
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "ConfigurationStatus",
        object(
            "The observed state of a Configuration.",
            &[],
            json!({
                "observedGeneration": observed(),
                "conditions": conditions("Ready"),
                "latestCreatedRevisionName": string("The newest revision created."),
                "latestReadyRevisionName": string("The newest revision that became ready."),
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "RevisionStatus",
        object(
            "The observed state of a Revision.",
            &[],
            json!({
                "observedGeneration": observed(),
                "conditions": conditions("Ready, ResourcesAvailable, ContainerHealthy, Active"),
                "actualReplicas": int32("Ready instances."),
                "desiredReplicas": int32("Instances the autoscaler wants."),
                "containerStatuses": list_of(&format!("{SERVING}.ContainerStatus"), "The image each container resolved to, written by the control plane when it resolves the tag; every instance of the revision runs exactly this image."),
                "logUrl": string("Reported by Knative; accepted in input, not kept by kantai."),
                "imageDigest": string("Reported by Knative; accepted in input, not kept by kantai."),
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "ContainerStatus",
        object(
            "The image a container resolved to.",
            &[],
            json!({
                "name": string("Container name."),
                "imageDigest": string("The image reference with the digest its tag resolved to, for example `127.0.0.1:5055/fn/hello@sha256:...`."),
            }),
        ),
    );
    insert(
        d,
        SERVING,
        "RouteStatus",
        object(
            "The observed state of a Route.",
            &[],
            json!({
                "observedGeneration": observed(),
                "conditions": conditions("Ready, AllTrafficAssigned, IngressReady, CertificateProvisioned"),
                "url": string("The external URL."),
                "address": reference(ADDRESSABLE, "The cluster-local address."),
                "traffic": list_of(&traffic_ref, "The traffic split resolved to concrete revisions, with tag URLs."),
            }),
        ),
    );
    d.insert(CONDITION.into(), object(
        "A Knative condition: one aspect of an object's state.",
        &["type", "status"],
        json!({
            "type": string("Type of the condition: Ready, ... ."),
            "status": { "type": "string", "enum": ["True", "False", "Unknown"], "description": "True, False or Unknown (in progress)." },
            "severity": string("`Error` (empty) for conditions that decide readiness; `Warning` or `Info` otherwise."),
            "lastTransitionTime": time("When the status last changed."),
            "reason": string("Machine-readable reason, in CamelCase."),
            "message": string("Human-readable explanation."),
        }),
    ));
    d.insert(
        ADDRESSABLE.into(),
        object(
            "An address.",
            &[],
            json!({ "url": string("The URL, http://{name}.{namespace}.svc.cluster.local.") }),
        ),
    );
}

fn kantai_definitions(d: &mut Map<String, Value>) {
    let node_count = format!("{KANTAI}.NodeCount");
    insert(
        d,
        KANTAI,
        "Placement",
        kind_schema(
            &resources::PLACEMENTS,
            "Per revision, how many instances each node should run and how many are ready \
         (ikukantai's Seika). Named after the revision; decided by kantai's placement policy, \
         not writable through the API.",
            (
                &format!("{KANTAI}.PlacementSpec"),
                "The placement policy's decision.",
            ),
            (
                &format!("{KANTAI}.PlacementStatus"),
                "What the nodes report.",
            ),
        ),
    );
    insert(
        d,
        KANTAI,
        "PlacementSpec",
        object(
            "The desired instances of a revision on each node.",
            &["revision"],
            json!({
                "revision": string("The revision placed."),
                "service": string("Its service."),
                "nodes": list_of(&node_count, "Desired instances per node, in the fleet's node order."),
                "activatorInPath": boolean("Whether requests pass an activator that waits for capacity (Knative's proxy mode); true when not given."),
                "unschedulable": { "type": "integer", "format": "int64", "minimum": 0, "description": "Instances the autoscaler wanted that fit on no node." },
                "policy": string("The placement policy that decided: spread, latency-aware, ... ."),
            }),
        ),
    );
    insert(
        d,
        KANTAI,
        "PlacementStatus",
        object(
            "The ready instances of a revision on each node.",
            &[],
            json!({
                "nodes": list_of(&node_count, "Ready instances per node, in the same order as the spec."),
                "conditions": list_of(CONDITION, "Scheduled: whether every instance the autoscaler wants fits on a node."),
            }),
        ),
    );
    insert(
        d,
        KANTAI,
        "NodeCount",
        object(
            "A count of instances on a node.",
            &["node"],
            json!({
                "node": string("Node name."),
                "count": { "type": "integer", "format": "int64", "minimum": 0, "description": "Instance count." },
            }),
        ),
    );
    insert(
        d,
        KANTAI,
        "Instance",
        kind_schema(
            &resources::INSTANCES,
            "One running copy of a revision on a node: kantai's Pod. Named \
         {service}-{node}-{5 letters} and labelled with its service, revision and node; \
         registered and updated by the node's agent.",
            (&format!("{KANTAI}.InstanceSpec"), "What runs where."),
            (
                &format!("{KANTAI}.InstanceStatus"),
                "What the node's agent observes.",
            ),
        ),
    );
    insert(
        d,
        KANTAI,
        "InstanceSpec",
        object(
            "What an instance runs, and where.",
            &["revision", "node"],
            json!({
                "revision": string("The revision."),
                "service": string("The revision's service; empty for a bare Configuration."),
                "node": string("The node running it."),
                "containerConcurrency": { "type": "integer", "format": "int64", "minimum": 0, "description": "The revision's containerConcurrency (0 = unlimited), for load balancing." },
                "image": string("The image it runs, as the revision names it; kept so that the instance reads the same while it drains after its revision is gone."),
            }),
        ),
    );
    insert(
        d,
        KANTAI,
        "InstanceStatus",
        object(
            "The state of an instance.",
            &[],
            json!({
                "phase": { "type": "string", "enum": ["Pending", "Running", "Terminating", "Failed"], "description": "Lifecycle phase: Pending (starting), Running (ready or not), Terminating (draining), Failed (exited and not restarted)." },
                "ready": boolean("Whether it passes its readiness probe and takes requests."),
                "address": string("Where the node's queue role reaches it (127.0.0.1:port)."),
                "restarts": { "type": "integer", "format": "int64", "minimum": 0, "description": "How often the process was restarted." },
                "startTime": time("When the current process started."),
                "message": string("Why it is not ready, or failed."),
                "lastExitCode": int32("Exit code of the last process that ended."),
                "reason": string("Kubernetes' reason for the state: ContainerCreating while the image is pulled, ErrImagePull, ErrImageNeverPull, InvalidImageName, CreateContainerConfigError, RuntimeUnavailable, OOMKilled, Error, Completed."),
                "imageDigest": string("The image the instance runs, pinned to its digest (containers)."),
            }),
        ),
    );
    insert(
        d,
        KANTAI,
        "Node",
        kind_schema(
            &resources::NODES,
            "A node of the fleet, registered by its agent; cluster-scoped.",
            (
                &format!("{KANTAI}.NodeSpec"),
                "How to reach the node and what it can run.",
            ),
            (
                &format!("{KANTAI}.NodeStatus"),
                "Health, from the agent's heartbeats.",
            ),
        ),
    );
    insert(
        d,
        KANTAI,
        "NodeSpec",
        object(
            "How to reach a node, and its capacity.",
            &["gateway", "data", "admin"],
            json!({
                "gateway": string("Where clients send requests (host:port)."),
                "data": string("Where other nodes forward requests for this node's instances (host:port)."),
                "admin": string("The agent's own endpoint: logs and metrics (host:port)."),
                "capacity": reference(&format!("{KANTAI}.Capacity"), "What the node can run."),
            }),
        ),
    );
    insert(
        d,
        KANTAI,
        "Capacity",
        object(
            "What a node can run.",
            &[],
            json!({
                "instances": { "type": "integer", "format": "int64", "minimum": 0, "description": "Most instances the node runs at once; unlimited when not given." },
                "cpu": reference(QUANTITY, "CPU cores available to instances."),
                "memory": reference(QUANTITY, "Memory available to instances."),
            }),
        ),
    );
    insert(
        d,
        KANTAI,
        "NodeStatus",
        object(
            "The health of a node.",
            &[],
            json!({
                "conditions": list_of(CONDITION, "Ready: whether the agent's heartbeats arrive."),
                "lastHeartbeatTime": time("When the agent's heartbeat was last recorded (every 30 s at most while nothing else changes)."),
            }),
        ),
    );
}

/// Kubernetes' core kinds, as kantai's read-only views fill them.
fn core_definitions(d: &mut Map<String, Value>) {
    let (pods, nodes, namespaces) = (
        resources::PODS,
        resources::CORE_NODES,
        resources::NAMESPACES,
    );
    insert(
        d,
        CORE,
        "Pod",
        kind_schema(
            &pods,
            "A view of a kantai Instance as a Kubernetes Pod, so that kubectl's pod commands work. \
         Read-only.",
            (&format!("{CORE}.PodSpec"), "What runs where."),
            (&format!("{CORE}.PodStatus"), "The instance's state."),
        ),
    );
    insert(
        d,
        CORE,
        "PodSpec",
        object(
            "The spec of a pod.",
            &["containers"],
            json!({
                "nodeName": string("The node running the pod."),
                "containers": list_of(&format!("{CORE}.Container"), "The pod's containers: the revision's one container."),
                "restartPolicy": string("`Always`: kantai restarts a process that exits."),
                "serviceAccountName": string("Service account, if the revision names one."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "PodStatus",
        object(
            "The state of a pod.",
            &[],
            json!({
                "phase": string("Pending, Running, Succeeded, Failed or Unknown."),
                "podIP": string("The address the instance serves on."),
                "podIPs": { "type": "array", "items": { "type": "object", "properties": { "ip": string("An address.") } }, "description": "The pod's addresses." },
                "hostIP": string("The address of the node."),
                "startTime": time("When the process started."),
                "conditions": list_of(&format!("{CORE}.PodCondition"), "Ready, ContainersReady, PodScheduled, ... ."),
                "containerStatuses": list_of(&format!("{CORE}.ContainerStatus"), "The state of each container."),
                "message": string("Why the pod is in this state."),
                "reason": string("Machine-readable reason for the state."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "PodCondition",
        object(
            "A condition of a pod.",
            &["type", "status"],
            json!({
                "type": string("Ready, ContainersReady, Initialized, PodScheduled."),
                "status": string("True, False or Unknown."),
                "lastProbeTime": time("When the condition was last probed."),
                "lastTransitionTime": time("When the status last changed."),
                "reason": string("Machine-readable reason."),
                "message": string("Human-readable explanation."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "ContainerStatus",
        object(
            "The state of a container.",
            &["name", "ready", "restartCount", "image", "imageID"],
            json!({
                "name": string("Container name."),
                "image": string("The container's image."),
                "imageID": string("The image's id."),
                "containerID": string("The process's id."),
                "ready": boolean("Whether it passes its readiness probe."),
                "started": boolean("Whether the process has started."),
                "restartCount": int32("How often the process was restarted."),
                "state": reference(&format!("{CORE}.ContainerState"), "The current state."),
                "lastState": reference(&format!("{CORE}.ContainerState"), "The state of the last process that ended."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "ContainerState",
        kept_object(
            "A container's state: exactly one of waiting, running and terminated.",
            json!({
                "waiting": free_object("Not running yet: reason and message."),
                "running": free_object("Running since startedAt."),
                "terminated": free_object("Ended: exitCode, reason, startedAt, finishedAt."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "Node",
        kind_schema(
            &nodes,
            "A view of a kantai Node as a Kubernetes Node, so that kubectl's node commands work. \
         Read-only.",
            (&format!("{CORE}.NodeSpec"), "The node's spec."),
            (&format!("{CORE}.NodeStatus"), "The node's state."),
        ),
    );
    insert(
        d,
        CORE,
        "NodeSpec",
        object(
            "The spec of a node.",
            &[],
            json!({
                "unschedulable": boolean("Whether new pods may be placed here."),
                "providerID": string("The node's id at its provider."),
                "podCIDR": string("Addresses assigned to the node's pods."),
                "taints": { "type": "array", "items": free_object("A taint."), "description": "The node's taints." },
            }),
        ),
    );
    insert(
        d,
        CORE,
        "NodeStatus",
        object(
            "The state of a node.",
            &[],
            json!({
                "conditions": list_of(&format!("{CORE}.NodeCondition"), "Ready, from the agent's heartbeats."),
                "addresses": list_of(&format!("{CORE}.NodeAddress"), "How to reach the node."),
                "capacity": quantity_map("What the node has: cpu, memory, pods."),
                "allocatable": quantity_map("What pods may use of it."),
                "nodeInfo": free_object("Versions and ids of the node's software."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "NodeCondition",
        object(
            "A condition of a node.",
            &["type", "status"],
            json!({
                "type": string("Ready, ... ."),
                "status": string("True, False or Unknown."),
                "lastHeartbeatTime": time("When the condition was last reported."),
                "lastTransitionTime": time("When the status last changed."),
                "reason": string("Machine-readable reason."),
                "message": string("Human-readable explanation."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "NodeAddress",
        object(
            "An address of a node.",
            &["type", "address"],
            json!({
                "type": string("Hostname, InternalIP or ExternalIP."),
                "address": string("The address."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "Namespace",
        kind_schema(
            &namespaces,
            "A namespace that holds kantai objects. Read-only: namespaces exist while they hold \
         objects.",
            (&format!("{CORE}.NamespaceSpec"), "The namespace's spec."),
            (&format!("{CORE}.NamespaceStatus"), "The namespace's state."),
        ),
    );
    insert(
        d,
        CORE,
        "NamespaceSpec",
        object(
            "The spec of a namespace.",
            &[],
            json!({ "finalizers": strings("Finalizers of the namespace.") }),
        ),
    );
    insert(
        d,
        CORE,
        "NamespaceStatus",
        object(
            "The state of a namespace.",
            &[],
            json!({ "phase": string("Active or Terminating.") }),
        ),
    );
    let events = resources::EVENTS;
    let mut event = object(
        "Something kantai's controllers want an operator to know about an object, such as an \
         instance that fits on no node. A repeated event updates its count and lastTimestamp.",
        &["metadata", "involvedObject"],
        json!({
            "apiVersion": api_version_prop(&events.api_version()),
            "kind": kind_prop(events.kind),
            "metadata": reference(OBJECT_META, "Standard object metadata."),
            "involvedObject": reference(&format!("{CORE}.ObjectReference"), "The object the event is about."),
            "reason": string("Machine-readable reason, in CamelCase."),
            "message": string("Human-readable description."),
            "type": string("`Normal` or `Warning`."),
            "count": int32("How often the event occurred."),
            "firstTimestamp": time("When the event first occurred."),
            "lastTimestamp": time("When the event last occurred."),
            "source": reference(&format!("{CORE}.EventSource"), "The component reporting the event."),
            "reportingComponent": string("The controller that emitted the event."),
            "reportingInstance": string("Which instance of that controller."),
            "action": string("What was done, or failed to be done."),
        }),
    );
    event[GVK] = gvk_list(events.group, events.version, events.kind);
    insert(d, CORE, "Event", event);
    let secrets = resources::SECRETS;
    let mut secret = object(
        "Secret holds secret data of a certain type. The total bytes of the values in the Data \
         field must be less than 1 MiB (1048576 bytes). kantai stores secrets encrypted \
         (AES-256-GCM) and sends them to a node only for the instances it runs that need them.",
        &[],
        json!({
            "apiVersion": api_version_prop(&secrets.api_version()),
            "kind": kind_prop(secrets.kind),
            "metadata": reference(OBJECT_META, "Standard object metadata."),
            "data": {
                "type": "object",
                "additionalProperties": { "type": "string", "format": "byte" },
                "description": "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here.",
            },
            "stringData": string_map("stringData allows specifying non-binary secret data in string form. It is provided as a write-only input field for convenience. All keys and values are merged into the data field on write, overwriting any existing values. The stringData field is never output when reading from the API."),
            "type": string("Used to facilitate programmatic handling of secret data: `Opaque` when not given. Cannot be changed."),
            "immutable": boolean("Immutable, if set to true, ensures that data stored in the Secret cannot be updated (only object metadata can be modified). If not set to true, the field can be modified at any time."),
        }),
    );
    secret[GVK] = gvk_list(secrets.group, secrets.version, secrets.kind);
    insert(d, CORE, "Secret", secret);
    let config_maps = resources::CONFIGMAPS;
    let mut config_map = object(
        "ConfigMap holds configuration data for functions to consume: as environment \
         variables or as files in a volume. The total size of data and binaryData is at most \
         1 MiB (1048576 bytes).",
        &[],
        json!({
            "apiVersion": api_version_prop(&config_maps.api_version()),
            "kind": kind_prop(config_maps.kind),
            "metadata": reference(OBJECT_META, "Standard object metadata."),
            "data": string_map("Data contains the configuration data, UTF-8 strings. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field."),
            "binaryData": {
                "type": "object",
                "additionalProperties": { "type": "string", "format": "byte" },
                "description": "BinaryData contains the binary data, base64 encoded. Each key must consist of alphanumeric characters, '-', '_' or '.'. The keys stored in BinaryData must not overlap with the ones in the Data field.",
            },
            "immutable": boolean("Immutable, if set to true, ensures that data stored in the ConfigMap cannot be updated (only object metadata can be modified). If not set to true, the field can be modified at any time."),
        }),
    );
    config_map[GVK] = gvk_list(config_maps.group, config_maps.version, config_maps.kind);
    insert(d, CORE, "ConfigMap", config_map);
    insert(
        d,
        CORE,
        "ObjectReference",
        object(
            "A reference to an object.",
            &[],
            json!({
                "apiVersion": string("API version of the object."),
                "kind": string("Kind of the object."),
                "name": string("Name of the object."),
                "namespace": string("Namespace of the object."),
                "uid": string("UID of the object."),
                "resourceVersion": string("Version of the object the reference was taken from."),
                "fieldPath": string("A field within the object."),
            }),
        ),
    );
    insert(
        d,
        CORE,
        "EventSource",
        object(
            "The source of an event.",
            &[],
            json!({
                "component": string("The component, such as kantai-control."),
                "host": string("The node it runs on."),
            }),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kantai_model::decode::{FieldNames, Use, fields_of};

    /// Every served resource with the group-version key of its v3 document.
    fn every_resource() -> Vec<Resource> {
        resources::ALL.to_vec()
    }

    fn gv_key(r: &Resource) -> String {
        r.group_path().trim_start_matches('/').to_owned()
    }

    fn gvk_in_list(schema: &Value, group: &str, version: &str, kind: &str) -> bool {
        let want = json!({ "group": group, "kind": kind, "version": version });
        schema[GVK].as_array().is_some_and(|l| l.contains(&want))
    }

    fn walk<'a>(v: &'a Value, f: &mut dyn FnMut(&'a Map<String, Value>)) {
        match v {
            Value::Object(m) => {
                f(m);
                m.values().for_each(|x| walk(x, f));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, f)),
            _ => {}
        }
    }

    #[test]
    fn every_kind_has_a_schema_with_its_gvk_in_v2_and_v3() {
        let v2 = v2();
        for r in every_resource() {
            let name = kind_schema_name(&r);
            let list = format!("{}List", r.kind);
            let defs = &v2["definitions"];
            assert!(
                gvk_in_list(&defs[&name], r.group, r.version, r.kind),
                "v2 {name}"
            );
            assert!(gvk_in_list(
                &defs[list_schema_name(&r)],
                r.group,
                r.version,
                &list
            ));
            let doc = v3_group_version(&gv_key(&r)).expect("a v3 document");
            let schemas = &doc["components"]["schemas"];
            assert!(
                gvk_in_list(&schemas[&name], r.group, r.version, r.kind),
                "v3 {name}"
            );
            assert!(gvk_in_list(
                &schemas[list_schema_name(&r)],
                r.group,
                r.version,
                &list
            ));
        }
        assert_eq!(
            kind_schema_name(&resources::SERVICES),
            "dev.knative.serving.v1.Service"
        );
        assert_eq!(
            kind_schema_name(&resources::PLACEMENTS),
            "dev.kantai.v1alpha1.Placement"
        );
        assert_eq!(kind_schema_name(&resources::PODS), "io.k8s.api.core.v1.Pod");
    }

    #[test]
    fn every_ref_resolves() {
        let mut docs: Vec<(Value, &str)> = vec![(v2(), "#/definitions/")];
        for (key, _) in V3_DOCS.iter() {
            let doc = v3_group_version(key).expect("indexed");
            docs.push((doc, "#/components/schemas/"));
        }
        for (doc, prefix) in &docs {
            let defined = if *prefix == "#/definitions/" {
                &doc["definitions"]
            } else {
                &doc["components"]["schemas"]
            };
            let mut refs = 0;
            walk(doc, &mut |m| {
                if let Some(r) = m.get("$ref") {
                    let r = r.as_str().expect("a string ref");
                    let name = r.strip_prefix(*prefix).unwrap_or_else(|| panic!("{r}"));
                    assert!(defined.get(name).is_some(), "dangling {r}");
                    refs += 1;
                }
            });
            assert!(refs > 10);
        }
    }

    #[test]
    fn v3_refs_have_no_siblings_and_v2_keeps_to_swagger_2() {
        for (key, _) in V3_DOCS.iter() {
            let doc = v3_group_version(key).expect("indexed");
            walk(&doc, &mut |m| {
                if m.contains_key("$ref") {
                    assert_eq!(m.len(), 1, "{m:?}");
                }
            });
        }
        walk(&v2(), &mut |m| {
            for k in ["allOf", "anyOf", "oneOf", "nullable", "requestBody"] {
                assert!(!m.contains_key(k), "{k} in {m:?}");
            }
            if m.get(PRESERVE) == Some(&Value::Bool(true)) {
                assert!(!m.contains_key("properties"), "{m:?}");
            }
        });
    }

    #[test]
    fn v2_alternatives_take_every_alternative() {
        let v2 = v2();
        let defs = &v2["definitions"];
        // A probe's port comes back as an integer or a name: no `type` may refuse either.
        let ios = &defs[INT_OR_STRING];
        assert_eq!(ios["format"], "int-or-string");
        assert!(ios.get("type").is_none(), "{ios}");
        let q = &defs[QUANTITY];
        assert!(q.get("type").is_none(), "{q}");
        assert!(q["description"].is_string());
        // Every schema that had alternatives in v3 is untyped in v2.
        for (key, _) in V3_DOCS.iter() {
            let doc = v3_group_version(key).expect("indexed");
            for (name, s) in doc["components"]["schemas"].as_object().expect("schemas") {
                if s.get("anyOf").is_some() || s.get("oneOf").is_some() {
                    assert!(
                        defs[name].get("type").is_none(),
                        "v2 {name}: {}",
                        defs[name]
                    );
                }
            }
        }
    }

    /// Every operation of a document: (path, method, operation).
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                if method != "parameters" {
                    out.push((path.clone(), method.clone(), op.clone()));
                }
            }
        }
        out
    }

    fn all_documents() -> Vec<(String, Value)> {
        let mut docs = vec![("v2".to_owned(), v2())];
        for (key, _) in V3_DOCS.iter() {
            docs.push((key.clone(), v3_group_version(key).expect("indexed")));
        }
        docs
    }

    #[test]
    fn parameters_are_scalars_without_array_keywords() {
        for (name, doc) in all_documents() {
            walk(&doc["paths"], &mut |m| {
                if m.contains_key("in") && m["in"] != "body" {
                    let schema = m.get("schema").and_then(Value::as_object).unwrap_or(m);
                    assert_ne!(schema["type"], "array", "{name}: {m:?}");
                    assert!(!schema.contains_key("uniqueItems"), "{name}: {m:?}");
                }
            });
        }
    }

    #[test]
    fn every_operation_declares_its_failures_as_statuses() {
        for (name, doc) in all_documents() {
            for (path, method, op) in operations(&doc) {
                let responses = op["responses"].as_object().expect("responses");
                for code in ["200", "401"] {
                    assert!(
                        responses.contains_key(code),
                        "{name} {method} {path}: {code}"
                    );
                }
                let writes = matches!(method.as_str(), "post" | "put" | "patch");
                if writes {
                    for code in ["400", "404", "409", "413", "422"] {
                        assert!(
                            responses.contains_key(code),
                            "{name} {method} {path}: {code}"
                        );
                    }
                }
                if method == "get" && !path.ends_with("}") && !path.ends_with("/status") {
                    assert!(responses.contains_key("400"), "{name} {path}: selectors");
                }
                for (code, resp) in responses {
                    if !code.starts_with('4') {
                        continue;
                    }
                    let schema = if name == "v2" {
                        &resp["schema"]
                    } else {
                        assert_eq!(
                            resp["content"].as_object().map(|c| c.len()),
                            Some(1),
                            "{resp}"
                        );
                        &resp["content"]["application/json"]["schema"]
                    };
                    assert!(
                        schema["$ref"]
                            .as_str()
                            .is_some_and(|r| r.ends_with("meta.v1.Status")),
                        "{name} {method} {path} {code}: {resp}"
                    );
                }
                if name == "v2" {
                    let produces = op["produces"].as_array().expect("produces");
                    assert!(produces.contains(&json!("application/json")), "{path}");
                }
            }
        }
    }

    /// The operations each document declares are exactly the verbs of the resource table.
    #[test]
    fn operations_are_exactly_the_verbs_of_the_table() {
        for r in every_resource() {
            let v = r.verbs;
            let gv = gv_key(&r);
            for doc in [v2(), v3_group_version(&gv).expect("indexed")] {
                let base = if r.namespaced {
                    format!("{}/namespaces/{{namespace}}/{}", r.group_path(), r.plural)
                } else {
                    format!("{}/{}", r.group_path(), r.plural)
                };
                let object = format!("{base}/{{name}}");
                let paths = &doc["paths"];
                let has = |path: &str, method: &str| paths[path].get(method).is_some();
                let what = format!("{} ({})", r.plural, r.api_version());
                assert!(has(&base, "get"), "{what}: list");
                assert_eq!(has(&base, "post"), v.create, "{what}: create");
                assert!(!has(&base, "delete"), "{what}: no deletecollection");
                assert!(has(&object, "get"), "{what}: get");
                assert_eq!(has(&object, "put"), v.update, "{what}: update");
                assert_eq!(has(&object, "patch"), v.patch, "{what}: patch");
                assert_eq!(has(&object, "delete"), v.delete, "{what}: delete");
                let status = format!("{object}/status");
                assert_eq!(has(&status, "get"), v.get_status, "{what}: get status");
                assert_eq!(
                    has(&status, "put"),
                    v.update_status,
                    "{what}: update status"
                );
                assert!(!has(&status, "patch"), "{what}: no patch of status");
                assert_eq!(has(&format!("{object}/log"), "get"), v.log, "{what}: log");
                let mut lists = vec![base.clone()];
                if r.namespaced {
                    lists.push(format!("{}/{}", r.group_path(), r.plural));
                    assert!(has(&lists[1], "get"), "{what}: list in every namespace");
                }
                for list in lists {
                    let names: Vec<&str> = paths[&list]["get"]["parameters"]
                        .as_array()
                        .expect("parameters")
                        .iter()
                        .filter_map(|p| p["name"].as_str())
                        .collect();
                    for watch_only in ["watch", "timeoutSeconds", "allowWatchBookmarks"] {
                        assert_eq!(
                            names.contains(&watch_only),
                            v.watch,
                            "{what} {list}: {watch_only}"
                        );
                    }
                    assert!(names.contains(&"labelSelector"), "{what}");
                    let types = &paths[&list]["get"]["responses"]["200"];
                    if let Some(content) = types.get("content") {
                        assert_eq!(
                            content.get("application/json;stream=watch").is_some(),
                            v.watch,
                            "{what}"
                        );
                    }
                }
            }
        }
        // Nothing is declared for a path no resource has.
        let known: BTreeSet<String> = resources::ALL
            .iter()
            .flat_map(|r| {
                let base = if r.namespaced {
                    format!("{}/namespaces/{{namespace}}/{}", r.group_path(), r.plural)
                } else {
                    format!("{}/{}", r.group_path(), r.plural)
                };
                let object = format!("{base}/{{name}}");
                [
                    format!("{}/{}", r.group_path(), r.plural),
                    base,
                    format!("{object}/status"),
                    format!("{object}/log"),
                    object,
                ]
            })
            .collect();
        for (_, doc) in all_documents() {
            for path in doc["paths"].as_object().expect("paths").keys() {
                assert!(known.contains(path), "{path}");
            }
        }
    }

    #[test]
    fn logs_are_text_and_their_failures_json() {
        let doc = v3_group_version("api/v1").expect("indexed");
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"];
        assert_eq!(op["operationId"], "readCoreV1NamespacedPodLog");
        assert_eq!(
            op["responses"]["200"]["content"]["text/plain"]["schema"]["type"],
            "string"
        );
        assert!(op["responses"]["404"]["content"]["application/json"].is_object());
        let v2 = v2();
        let op = &v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"];
        assert_eq!(op["produces"], json!(["text/plain", "application/json"]));
    }

    #[test]
    fn index_hashes_are_stable_and_follow_content() {
        let a = v3_index();
        assert_eq!(a, v3_index());
        let paths = a["paths"].as_object().expect("paths");
        for key in [
            "apis/serving.knative.dev/v1",
            "apis/kantai.dev/v1alpha1",
            "api/v1",
        ] {
            let url = paths[key]["serverRelativeURL"].as_str().expect("a URL");
            let doc = v3_group_version(key).expect("indexed");
            assert_eq!(
                url,
                format!("/openapi/v3/{key}?hash={}", content_hash(&doc))
            );
        }
        assert_eq!(paths.len(), 3);
        let doc = v3_group_version("apis/serving.knative.dev/v1").expect("indexed");
        let mut changed = doc.clone();
        changed["info"]["version"] = "something else".into();
        assert_ne!(content_hash(&doc), content_hash(&changed));
        assert_eq!(content_hash(&doc), content_hash(&doc.clone()));
        assert!(v3_group_version("/apis/kantai.dev/v1alpha1?hash=X").is_some());
        assert!(v3_group_version("apis/apps/v1").is_none());
    }

    /// Follows a v3 schema through `$ref` and single-element `allOf`, as kubectl explain does.
    fn resolve<'a>(doc: &'a Value, mut s: &'a Value) -> &'a Value {
        loop {
            if let Some(r) = s.get("$ref").and_then(Value::as_str) {
                let name = r.trim_start_matches("#/components/schemas/");
                s = &doc["components"]["schemas"][name];
            } else if let Some(first) = s.get("allOf").and_then(|a| a.get(0)) {
                s = first;
            } else {
                return s;
            }
        }
    }

    fn field<'a>(doc: &'a Value, s: &'a Value, path: &[&str]) -> &'a Value {
        let mut s = s;
        for p in path {
            let here = resolve(doc, s);
            let next = if *p == "[]" {
                &here["items"]
            } else {
                &here["properties"][*p]
            };
            assert!(!next.is_null(), "no {p} in {here}");
            s = next;
        }
        resolve(doc, s)
    }

    #[test]
    fn service_schema_reaches_containers_and_traffic() {
        let doc = v3_group_version("apis/serving.knative.dev/v1").expect("indexed");
        let svc = &doc["components"]["schemas"]["dev.knative.serving.v1.Service"];
        let container = field(&doc, svc, &["spec", "template", "spec", "containers", "[]"]);
        assert_eq!(container["properties"]["image"]["type"], "string");
        let target = field(&doc, svc, &["spec", "traffic", "[]"]);
        assert_eq!(target["properties"]["percent"]["type"], "integer");
        // Described references keep their description beside an allOf.
        let spec = &svc["properties"]["spec"];
        assert!(spec["description"].is_string() && spec["allOf"].is_array());
    }

    /// kubectl's `supportsQueryParamV3`: the first PATCH operation with the kind's GVK decides.
    fn patch_supports(
        doc: &Value,
        group: &str,
        version: &str,
        kind: &str,
        param: &str,
    ) -> Option<bool> {
        let want = json!({ "group": group, "kind": kind, "version": version });
        let paths = doc["paths"].as_object()?;
        paths.values().find_map(|p| {
            let op = p.get("patch")?;
            (op[GVK] == want).then(|| {
                op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|x| x["name"] == param && x["in"] == "query"))
            })
        })
    }

    #[test]
    fn writable_kinds_advertise_field_validation_on_patch() {
        let doc = v3_group_version("apis/serving.knative.dev/v1").expect("indexed");
        assert_eq!(
            patch_supports(
                &doc,
                "serving.knative.dev",
                "v1",
                "Service",
                "fieldValidation"
            ),
            Some(true)
        );
        assert_eq!(
            patch_supports(
                &doc,
                "serving.knative.dev",
                "v1",
                "Route",
                "fieldValidation"
            ),
            Some(true)
        );
        assert_eq!(
            patch_supports(
                &doc,
                "serving.knative.dev",
                "v1",
                "Revision",
                "fieldValidation"
            ),
            None
        );
        let svc =
            &doc["paths"]["/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}"];
        let names: Vec<&str> = svc["patch"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"dryRun") && names.contains(&"fieldManager"));
        let content = svc["patch"]["requestBody"]["content"]
            .as_object()
            .expect("content");
        assert!(content.contains_key(MERGE_PATCH));
        // A strategic merge patch type would make kubectl send patches kantai cannot apply.
        assert!(!content.contains_key("application/strategic-merge-patch+json"));
        for m in ["post", "put"] {
            let op = if m == "post" {
                &doc["paths"]["/apis/serving.knative.dev/v1/namespaces/{namespace}/services"][m]
            } else {
                &svc[m]
            };
            assert!(
                op["parameters"]
                    .as_array()
                    .expect("params")
                    .iter()
                    .any(|p| p["name"] == "fieldValidation")
            );
        }
        let v2 = v2();
        let op = &v2["paths"]["/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}"]
            ["patch"];
        assert_eq!(op["consumes"], json!(PATCH_TYPES));
        assert!(
            op["parameters"]
                .as_array()
                .expect("params")
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["type"] == "string")
        );
    }

    /// kubectl explain's lookup: an operation's GVK object on the resource's paths, then a
    /// schema listing exactly that object.
    #[test]
    fn explain_finds_every_kind() {
        for r in every_resource() {
            let doc = v3_group_version(&gv_key(&r)).expect("indexed");
            let base = r.group_path();
            let candidates = [
                format!("{base}/{}", r.plural),
                format!("{base}/{}/{{name}}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            ];
            let gvk = candidates
                .iter()
                .filter_map(|p| doc["paths"].get(p))
                .flat_map(|p| ["get", "post", "put", "patch", "delete"].map(|m| &p[m][GVK]))
                .find(|g| !g.is_null())
                .unwrap_or_else(|| panic!("no GVK for {}", r.plural));
            assert_eq!(gvk.as_object().expect("an object").len(), 3);
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            let found = schemas
                .values()
                .find(|s| s[GVK].as_array().is_some_and(|l| l.contains(gvk)))
                .unwrap_or_else(|| panic!("no schema for {gvk}"));
            assert!(found["properties"]["metadata"].is_object());
        }
    }

    #[test]
    fn secrets_and_config_maps_have_kubernetes_schemas() {
        let doc = v3_group_version("api/v1").expect("indexed");
        let schemas = &doc["components"]["schemas"];
        let secret = &schemas["io.k8s.api.core.v1.Secret"]["properties"];
        assert_eq!(secret["data"]["additionalProperties"]["format"], "byte");
        let cm = &schemas["io.k8s.api.core.v1.ConfigMap"]["properties"];
        assert_eq!(cm["data"]["additionalProperties"]["type"], "string");
        assert_eq!(cm["binaryData"]["additionalProperties"]["format"], "byte");
        assert!(cm.get("spec").is_none() && secret.get("status").is_none());
    }

    /// Env references are honoured now: their schemas are declared, not free objects.
    #[test]
    fn env_references_are_declared() {
        let doc = v3_group_version("apis/serving.knative.dev/v1").expect("indexed");
        let schemas = &doc["components"]["schemas"];
        let source = &schemas["io.k8s.api.core.v1.EnvVarSource"];
        assert!(source.get(PRESERVE).is_none(), "{source}");
        let key = resolve(&doc, &source["properties"]["secretKeyRef"]);
        assert_eq!(key["type"], "object", "{key}");
        let from = &schemas["io.k8s.api.core.v1.EnvFromSource"]["properties"];
        let secret_ref = resolve(&doc, &from["secretRef"]);
        assert!(secret_ref["properties"].get("optional").is_some());
    }

    /// Each schema that documents a model type, with the fields the type's reader asks for.
    fn model_schemas() -> Vec<(String, FieldNames)> {
        use kantai_model::{core, fleet, meta, serving as s, topology};
        vec![
            (OBJECT_META.into(), fields_of::<meta::ObjectMeta>()),
            (
                format!("{META}.OwnerReference"),
                fields_of::<meta::OwnerReference>(),
            ),
            (format!("{CORE}.Container"), fields_of::<s::Container>()),
            (
                format!("{CORE}.ContainerPort"),
                fields_of::<s::ContainerPort>(),
            ),
            (format!("{CORE}.EnvVar"), fields_of::<s::EnvVar>()),
            (
                format!("{CORE}.EnvVarSource"),
                fields_of::<s::EnvVarSource>(),
            ),
            (
                format!("{CORE}.ConfigMapKeySelector"),
                fields_of::<s::KeySelector>(),
            ),
            (
                format!("{CORE}.SecretKeySelector"),
                fields_of::<s::KeySelector>(),
            ),
            (
                format!("{CORE}.ObjectFieldSelector"),
                fields_of::<s::ObjectFieldSelector>(),
            ),
            (
                format!("{CORE}.ResourceFieldSelector"),
                fields_of::<s::ResourceFieldSelector>(),
            ),
            (
                format!("{CORE}.EnvFromSource"),
                fields_of::<s::EnvFromSource>(),
            ),
            (
                format!("{CORE}.ConfigMapEnvSource"),
                fields_of::<s::SourceRef>(),
            ),
            (
                format!("{CORE}.SecretEnvSource"),
                fields_of::<s::SourceRef>(),
            ),
            (
                format!("{CORE}.ResourceRequirements"),
                fields_of::<s::Resources>(),
            ),
            (format!("{CORE}.Probe"), fields_of::<s::Probe>()),
            (
                format!("{CORE}.HTTPGetAction"),
                fields_of::<s::HttpGetAction>(),
            ),
            (format!("{CORE}.HTTPHeader"), fields_of::<s::HttpHeader>()),
            (
                format!("{CORE}.TCPSocketAction"),
                fields_of::<s::TcpSocketAction>(),
            ),
            (format!("{CORE}.ExecAction"), fields_of::<s::ExecAction>()),
            (format!("{CORE}.GRPCAction"), fields_of::<s::GrpcAction>()),
            (format!("{CORE}.VolumeMount"), fields_of::<s::VolumeMount>()),
            (
                format!("{CORE}.SecurityContext"),
                fields_of::<s::SecurityContext>(),
            ),
            (
                format!("{CORE}.Capabilities"),
                fields_of::<s::Capabilities>(),
            ),
            (
                format!("{CORE}.PodSecurityContext"),
                fields_of::<s::PodSecurityContext>(),
            ),
            (format!("{CORE}.Volume"), fields_of::<s::Volume>()),
            (
                format!("{CORE}.SecretVolumeSource"),
                fields_of::<s::SecretVolume>(),
            ),
            (
                format!("{CORE}.ConfigMapVolumeSource"),
                fields_of::<s::ConfigMapVolume>(),
            ),
            (format!("{CORE}.KeyToPath"), fields_of::<s::KeyToPath>()),
            (
                format!("{CORE}.ProjectedVolumeSource"),
                fields_of::<s::ProjectedVolume>(),
            ),
            (
                format!("{CORE}.VolumeProjection"),
                fields_of::<s::Projection>(),
            ),
            (
                format!("{CORE}.SecretProjection"),
                fields_of::<s::ProjectedObject>(),
            ),
            (
                format!("{CORE}.ConfigMapProjection"),
                fields_of::<s::ProjectedObject>(),
            ),
            (
                format!("{CORE}.EmptyDirVolumeSource"),
                fields_of::<s::EmptyDirVolume>(),
            ),
            (format!("{CORE}.Secret"), core::secret_fields()),
            (format!("{CORE}.ConfigMap"), fields_of::<core::ConfigMap>()),
            (
                format!("{SERVING}.ServiceSpec"),
                fields_of::<s::ServiceSpec>(),
            ),
            (
                format!("{SERVING}.ConfigurationSpec"),
                fields_of::<s::ConfigurationSpec>(),
            ),
            (
                format!("{SERVING}.RevisionTemplateSpec"),
                fields_of::<s::RevisionTemplate>(),
            ),
            (
                format!("{SERVING}.RevisionTemplateMeta"),
                fields_of::<meta::TemplateMeta>(),
            ),
            (
                format!("{SERVING}.RevisionSpec"),
                fields_of::<s::RevisionSpec>(),
            ),
            (format!("{SERVING}.RouteSpec"), fields_of::<s::RouteSpec>()),
            (
                format!("{SERVING}.TrafficTarget"),
                fields_of::<s::TrafficTarget>(),
            ),
            (
                format!("{SERVING}.ServiceStatus"),
                fields_of::<s::ServiceStatus>(),
            ),
            (
                format!("{SERVING}.ConfigurationStatus"),
                fields_of::<s::ConfigurationStatus>(),
            ),
            (
                format!("{SERVING}.RevisionStatus"),
                fields_of::<s::RevisionStatus>(),
            ),
            (
                format!("{SERVING}.ContainerStatus"),
                fields_of::<s::ContainerStatus>(),
            ),
            (
                format!("{SERVING}.RouteStatus"),
                fields_of::<s::RouteStatus>(),
            ),
            (CONDITION.into(), fields_of::<s::Condition>()),
            (ADDRESSABLE.into(), fields_of::<s::Addressable>()),
            (format!("{KANTAI}.Node"), fields_of::<fleet::Node>()),
            (format!("{KANTAI}.NodeSpec"), fields_of::<fleet::NodeSpec>()),
            (
                format!("{KANTAI}.NodeStatus"),
                fields_of::<fleet::NodeStatus>(),
            ),
            (
                format!("{KANTAI}.Capacity"),
                fields_of::<topology::Capacity>(),
            ),
            (
                format!("{KANTAI}.Placement"),
                fields_of::<fleet::Placement>(),
            ),
            (
                format!("{KANTAI}.PlacementSpec"),
                fields_of::<fleet::PlacementSpec>(),
            ),
            (
                format!("{KANTAI}.PlacementStatus"),
                fields_of::<fleet::PlacementStatus>(),
            ),
            (
                format!("{KANTAI}.NodeCount"),
                fields_of::<fleet::NodeCount>(),
            ),
            (format!("{KANTAI}.Instance"), fields_of::<fleet::Instance>()),
            (
                format!("{KANTAI}.InstanceSpec"),
                fields_of::<fleet::InstanceSpec>(),
            ),
            (
                format!("{KANTAI}.InstanceStatus"),
                fields_of::<fleet::InstanceStatus>(),
            ),
        ]
    }

    fn declared(schema: &Value) -> BTreeSet<&str> {
        schema["properties"]
            .as_object()
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// A field the model reads (or accepts when null) that its schema forgets would be refused
    /// by kubectl's client-side validation and missing from `kubectl explain`.
    #[test]
    fn every_field_the_model_reads_is_declared() {
        for (name, fields) in model_schemas() {
            let schema = &DEFINITIONS[&name];
            let props = declared(schema);
            let missing: Vec<&str> = fields
                .used(Use::Read)
                .chain(fields.used(Use::Handled))
                .filter(|f| !props.contains(f))
                .collect();
            assert!(missing.is_empty(), "{name} does not declare {missing:?}");
        }
    }

    /// Fields kept verbatim may go undocumented, but then the schema must let them through.
    #[test]
    fn kept_fields_are_declared_or_the_object_is_open() {
        for (name, fields) in model_schemas() {
            let schema = &DEFINITIONS[&name];
            let props = declared(schema);
            let undeclared: Vec<&str> = fields
                .used(Use::Kept)
                .filter(|f| !props.contains(f))
                .collect();
            assert!(
                undeclared.is_empty() || schema[PRESERVE] == true,
                "{name} neither declares {undeclared:?} nor preserves unknown fields"
            );
        }
        assert_eq!(DEFINITIONS[&format!("{CORE}.Volume")][PRESERVE], true);
    }

    /// A declared field the model does not take, or refuses, would be refused by the server.
    #[test]
    fn every_declared_field_is_one_the_model_takes() {
        for (name, fields) in model_schemas() {
            let known: BTreeSet<&str> = fields
                .used(Use::Read)
                .chain(fields.used(Use::Kept))
                .chain(fields.used(Use::Handled))
                .collect();
            let extra: Vec<&str> = declared(&DEFINITIONS[&name])
                .into_iter()
                .filter(|p| !known.contains(p))
                .collect();
            assert!(
                extra.is_empty(),
                "{name} declares {extra:?}, which the server refuses"
            );
        }
    }
}
