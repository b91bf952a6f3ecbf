//! Discovery, as kubectl reads it: `/version`, `/api`, `/apis` and each group version's
//! resource list, in the legacy (unaggregated) format. kubectl asks for the aggregated
//! format first and falls back to these when the answer is plain `application/json`.
//! Also the OpenAPI documents kubectl reads for `explain` and validation.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use kantai_api::resources::{self, Resource};
use serde_json::{Value, json};

use super::respond::{ApiFailure, fail, json_response, not_found};

/// The Kubernetes version kantai's API follows (what kubectl's version skew check reads).
const KUBE_MINOR: &str = "32";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-kantai.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `/api`.
pub fn core_versions(host: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    })
}

/// `/apis`: every named group (the core group is at `/api`).
pub fn groups() -> Value {
    let groups: Vec<Value> = resources::GROUP_VERSIONS
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}` (one group's versions), if served.
pub fn group(name: &str) -> Option<Value> {
    let (g, v) = resources::GROUP_VERSIONS
        .iter()
        .find(|(g, _)| !g.is_empty() && *g == name)?;
    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
    Some(json!({"kind": "APIGroup", "apiVersion": "v1", "name": g,
                "versions": [gv.clone()], "preferredVersion": gv}))
}

fn categories(r: &Resource) -> &'static [&'static str] {
    match r.group {
        "serving.knative.dev" => &["all", "knative", "serving"],
        "kantai.dev" => &["kantai"],
        _ if r.plural == "pods" => &["all"],
        _ => &[],
    }
}

/// `/api/v1` or `/apis/{group}/{version}`: the resources of a group version, if served.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    if !resources::GROUP_VERSIONS.contains(&(group, version)) {
        return None;
    }
    let mut list = Vec::new();
    for r in resources::ALL
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs.names(),
            "shortNames": r.short_names,
            "categories": categories(r),
        }));
        let sub = |name: &str, kind: &str, verbs: &[&str]| {
            json!({"name": format!("{}/{name}", r.plural), "singularName": "",
                   "namespaced": r.namespaced, "kind": kind, "verbs": verbs})
        };
        let v = r.verbs;
        if v.get_status {
            let verbs: &[&str] = if v.update_status {
                &["get", "update"]
            } else {
                &["get"]
            };
            list.push(sub("status", r.kind, verbs));
        }
        if v.log {
            list.push(sub("log", "Pod", &["get"]));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

/// Discovery and OpenAPI documents, if `path` is one.
pub fn document(req: &Request) -> Option<Result<Response, ApiFailure>> {
    let path = req.uri().path().trim_end_matches('/');
    let ok = |v: Value| Some(Ok(json_response(StatusCode::OK, &v)));
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match seg.as_slice() {
        ["version"] => ok(version()),
        ["api"] => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            ok(core_versions(host))
        }
        ["api", v] => Some(resources("", v).map_or_else(
            || Err(not_found()),
            |d| Ok(json_response(StatusCode::OK, &d)),
        )),
        ["apis"] => ok(groups()),
        ["apis", g] => Some(group(g).map_or_else(
            || Err(not_found()),
            |d| Ok(json_response(StatusCode::OK, &d)),
        )),
        ["apis", g, v] => Some(resources(g, v).map_or_else(
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
