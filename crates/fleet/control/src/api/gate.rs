//! The verb gate: which verb a request is, from its method and what its URL names, and
//! whether the resource's verb table (`Resource::verbs`) takes it — 404 for a subresource
//! the resource does not have, 405 with the reason for a verb it does not take.

use axum::http::Method;
use kantai_api::resources::Resource;

use super::path::Target;
use super::respond::{ApiFailure, fail, not_found};

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `GET` on the collection: a list, or a watch with `?watch=true`.
    List,
    /// `GET` on an object.
    Get,
    /// `POST` on the collection.
    Create,
    /// `PUT` on an object.
    Replace,
    /// `PATCH` on an object.
    Patch,
    /// `DELETE` on an object.
    Delete,
    /// `GET` on `/status`.
    GetStatus,
    /// `PUT` on `/status`.
    ReplaceStatus,
    /// `GET` on `/log`.
    Log,
}

/// The verb of a request on `t`, if its resource takes it.
pub fn verb(method: &Method, t: &Target, path: &str) -> Result<Verb, ApiFailure> {
    let v = t.resource.verbs;
    let (verb, allowed) = match (method, t.name.is_some(), t.sub.as_deref()) {
        (_, true, Some("status")) if !v.get_status => return Err(not_found()),
        (_, true, Some("log")) if !v.log => return Err(not_found()),
        (_, true, Some(sub)) if sub != "status" && sub != "log" => return Err(not_found()),
        (&Method::GET, false, _) => (Verb::List, true),
        (&Method::GET, true, None) => (Verb::Get, true),
        (&Method::GET, true, Some("status")) => (Verb::GetStatus, true),
        (&Method::GET, true, Some(_)) => (Verb::Log, true),
        (&Method::POST, false, None) => (Verb::Create, v.create),
        (&Method::PUT, true, None) => (Verb::Replace, v.update),
        (&Method::PATCH, true, None) => (Verb::Patch, v.patch),
        (&Method::DELETE, true, None) => (Verb::Delete, v.delete),
        (&Method::PUT, true, Some("status")) => (Verb::ReplaceStatus, v.update_status),
        (m, _, _) => {
            return Err(fail(
                405,
                "MethodNotAllowed",
                format!("{m} is not supported on {path}"),
            ));
        }
    };
    if allowed {
        Ok(verb)
    } else {
        Err(read_only(&t.resource))
    }
}

/// A list that asks for a watch: 405 if the resource cannot be watched.
pub fn watchable(r: &Resource) -> Result<(), ApiFailure> {
    if r.verbs.watch {
        Ok(())
    } else {
        Err(fail(
            405,
            "MethodNotAllowed",
            format!(
                "{} cannot be watched in kantai; list them again instead",
                r.plural
            ),
        ))
    }
}

/// Why a verb is refused on a resource, for the 405 answer.
pub fn read_only(r: &Resource) -> ApiFailure {
    let why = match r.plural {
        "configurations" | "revisions" => {
            "kantai derives configurations and revisions from Services; create or change a Service instead"
        }
        "placements" => "placements are decided by kantai's placement policy",
        "events" => "events are written by kantai's controllers",
        "nodes" => {
            "a node registers itself through its agent (`kantai node`), which replaces its object with PUT; the control plane writes its status; delete the object to remove a node that is gone for good"
        }
        "instances" => {
            "instances are started, replaced and removed by their node's agent, following the placement: change the Service (or its scale annotations) instead"
        }
        "pods" => {
            "pods are kantai's instances, started and stopped by its placement: change the Service (or its scale annotations) instead"
        }
        "namespaces" => "namespaces can be created and deleted, not changed",
        _ => "this resource is managed by kantai",
    };
    fail(
        405,
        "MethodNotAllowed",
        format!("{} cannot be written this way: {why}", r.plural),
    )
}

#[cfg(test)]
mod tests {
    use kantai_api::resources;

    use super::*;
    use crate::api::path;

    fn gate(method: Method, path: &str) -> Result<Verb, u16> {
        let t = path::parse(path).ok().expect("a served path");
        verb(&method, &t, path).map_err(|ApiFailure(st)| st.code)
    }

    #[test]
    fn methods_and_urls_are_verbs() {
        let svc = "/apis/serving.knative.dev/v1/namespaces/default/services";
        let inst = "/apis/kantai.dev/v1alpha1/namespaces/default/instances/i";
        for (method, path, want) in [
            (Method::GET, svc.to_owned(), Verb::List),
            (Method::POST, svc.to_owned(), Verb::Create),
            (Method::GET, format!("{svc}/a"), Verb::Get),
            (Method::PUT, format!("{svc}/a"), Verb::Replace),
            (Method::PATCH, format!("{svc}/a"), Verb::Patch),
            (Method::DELETE, format!("{svc}/a"), Verb::Delete),
            (Method::GET, format!("{svc}/a/status"), Verb::GetStatus),
            (Method::PUT, format!("{inst}/status"), Verb::ReplaceStatus),
            (Method::GET, format!("{inst}/log"), Verb::Log),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/p/log".into(),
                Verb::Log,
            ),
        ] {
            assert_eq!(gate(method.clone(), &path), Ok(want), "{method} {path}");
        }
    }

    #[test]
    fn a_subresource_the_resource_lacks_is_not_found() {
        let svc = "/apis/serving.knative.dev/v1/namespaces/default/services/a";
        assert_eq!(gate(Method::GET, &format!("{svc}/log")), Err(404));
        assert_eq!(gate(Method::GET, &format!("{svc}/scale")), Err(404));
        assert_eq!(gate(Method::GET, "/api/v1/nodes/n/log"), Err(404));
    }

    #[test]
    fn a_verb_the_resource_does_not_take_is_not_allowed() {
        let svc = "/apis/serving.knative.dev/v1/namespaces/default/services";
        assert_eq!(gate(Method::TRACE, &format!("{svc}/a")), Err(405));
        assert_eq!(gate(Method::POST, &format!("{svc}/a")), Err(405));
        assert_eq!(gate(Method::PUT, &format!("{svc}/a/status")), Err(405));
        assert_eq!(
            gate(Method::DELETE, "/api/v1/namespaces/default/pods/p"),
            Err(405)
        );
        assert_eq!(gate(Method::PUT, "/api/v1/namespaces/default"), Err(405));
    }

    #[test]
    fn only_watchable_resources_are_watched() {
        assert!(watchable(&resources::SERVICES).is_ok());
        let Err(ApiFailure(st)) = watchable(&resources::NAMESPACES) else {
            panic!("namespaces are not watched")
        };
        assert_eq!(st.code, 405);
    }
}
