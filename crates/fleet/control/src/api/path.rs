//! The Kubernetes URL of a resource: `/apis/{group}/{version}[/namespaces/{ns}]/{resource}
//! [/{name}[/{subresource}]]`, or `/api/{version}/...` for the core group.

use kantai_api::resources::{self, Resource};

use super::respond::{ApiFailure, not_found};

/// Where a request points.
#[derive(Debug, PartialEq)]
pub struct Target {
    /// The resource named.
    pub resource: Resource,
    /// `/namespaces/{ns}`, if given.
    pub namespace: Option<String>,
    /// The object, if one is named.
    pub name: Option<String>,
    /// `status` or `log`, if given.
    pub sub: Option<String>,
}

impl Target {
    /// The namespace to read or write in (`""` for cluster-scoped objects).
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }
}

/// Reads a URL path; 404 for one that names no resource kantai serves.
pub fn parse(path: &str) -> Result<Target, ApiFailure> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resource_namespace_name_and_subresource() {
        for (path, want) in [
            (
                "/apis/serving.knative.dev/v1/namespaces/default/services/hello",
                ("services", Some("default"), Some("hello"), None),
            ),
            (
                "/apis/serving.knative.dev/v1/namespaces/default/services",
                ("services", Some("default"), None, None),
            ),
            (
                "/apis/serving.knative.dev/v1/services",
                ("services", None, None, None),
            ),
            (
                "/apis/kantai.dev/v1alpha1/namespaces/default/instances/x/log",
                ("instances", Some("default"), Some("x"), Some("log")),
            ),
            (
                "/apis/kantai.dev/v1alpha1/nodes/node1/status",
                ("nodes", None, Some("node1"), Some("status")),
            ),
            (
                "/api/v1/namespaces/default/secrets/db",
                ("secrets", Some("default"), Some("db"), None),
            ),
            ("/api/v1/pods", ("pods", None, None, None)),
            (
                "/api/v1/namespaces/default/events",
                ("events", Some("default"), None, None),
            ),
            // The namespaces collection itself, and one namespace.
            ("/api/v1/namespaces", ("namespaces", None, None, None)),
            (
                "/api/v1/namespaces/default",
                ("namespaces", None, Some("default"), None),
            ),
        ] {
            let Ok(t) = parse(path) else {
                panic!("{path} is served")
            };
            assert_eq!(
                (
                    t.resource.plural,
                    t.namespace.as_deref(),
                    t.name.as_deref(),
                    t.sub.as_deref()
                ),
                want,
                "{path}"
            );
        }
    }

    #[test]
    fn the_core_group_has_its_own_kinds() {
        assert_eq!(
            parse("/api/v1/pods").ok().map(|t| t.resource.kind),
            Some("Pod")
        );
        assert_eq!(
            parse("/api/v1/nodes").ok().map(|t| t.resource.group),
            Some("")
        );
    }

    #[test]
    fn what_kantai_does_not_serve_is_not_found() {
        for path in [
            "/apis/apps/v1/namespaces/default/deployments",
            "/api/v1/persistentvolumeclaims",
            "/apis/serving.knative.dev/v1",
            "/apis/serving.knative.dev/v2/services",
            "/apis/serving.knative.dev/v1/namespaces/default/services/a/status/more",
            "/healthz",
        ] {
            let Err(ApiFailure(st)) = parse(path) else {
                panic!("{path} is not served")
            };
            assert_eq!(st.code, 404, "{path}");
        }
    }
}
