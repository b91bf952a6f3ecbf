//! Server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` gets a
//! `meta.k8s.io/v1` Table (the columns of `kantai_api::printers`), as kubectl asks for.

use std::time::SystemTime;

use axum::http::{HeaderMap, header};
use kantai_api::Resource;
use kantai_api::printers;
use serde::Deserialize;
use serde_json::{Value, json};

/// Whether the client asked for a Table.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|a| a.split(',').any(|m| m.contains("as=Table")))
}

/// What the rows of the Table a client asked for carry besides their cells: `None` when
/// it asked for no Table.
pub fn asked(headers: &HeaderMap, include: Option<Include>) -> Option<Include> {
    wanted(headers).then(|| include.unwrap_or_default())
}

/// What each row carries besides its cells (`?includeObject=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
pub enum Include {
    /// Nothing.
    None,
    /// The object's metadata (Kubernetes' default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

fn column_definitions(r: &Resource) -> Value {
    printers::columns(r)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

fn row(r: &Resource, obj: &Value, include: Include, order: &[String], now: SystemTime) -> Value {
    let mut row = json!({"cells": printers::cells(r, obj, order, now)});
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            });
        }
        Include::Object => row["object"] = obj.clone(),
    }
    row
}

/// A Table of `items`.
pub fn table(
    r: &Resource,
    items: &[Value],
    resource_version: &str,
    include: Include,
    order: &[String],
) -> Value {
    let now = SystemTime::now();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": column_definitions(r),
        "rows": items.iter().map(|o| row(r, o, include, order, now)).collect::<Vec<_>>(),
    })
}

/// A watch event's object as a one-row Table; the columns go with the first event only,
/// as the Kubernetes API server sends them.
pub fn watch_object(
    r: &Resource,
    obj: &Value,
    include: Include,
    order: &[String],
    first: bool,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
        "columnDefinitions": if first { column_definitions(r) } else { json!([]) },
        "rows": [row(r, obj, include, order, SystemTime::now())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use kantai_api::resources::{PLACEMENTS, SERVICES};

    #[test]
    fn kubectl_accept_headers_ask_for_tables() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            ),
        );
        assert!(wanted(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wanted(&h));
    }

    #[test]
    fn tables_carry_columns_rows_and_metadata() {
        let svc = json!({"metadata": {"name": "hello", "namespace": "default", "resourceVersion": "7"},
                         "status": {"url": "http://hello.default.svc.cluster.local"}});
        let t = table(
            &SERVICES,
            std::slice::from_ref(&svc),
            "9",
            Include::Metadata,
            &[],
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["metadata"]["resourceVersion"], "9");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["rows"][0]["cells"][0], "hello");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "default");
        let w = watch_object(&SERVICES, &svc, Include::Object, &[], false);
        assert_eq!(w["columnDefinitions"], json!([]));
        assert_eq!(w["rows"][0]["object"], svc);
        let p = json!({"metadata": {"name": "hello-00001"},
                       "spec": {"revision": "hello-00001", "nodes": {"node3": 1}},
                       "status": {"ready": {"node3": 1}}});
        let t = table(
            &PLACEMENTS,
            &[p],
            "1",
            Include::None,
            &["node1".into(), "node2".into(), "node3".into()],
        );
        assert_eq!(t["rows"][0]["cells"][1], "[\"node1\",\"node2\",\"node3\"]");
        assert!(t["rows"][0].get("object").is_none());
    }
}
