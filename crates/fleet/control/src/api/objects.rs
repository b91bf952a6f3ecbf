//! Any resource read the same way: stored objects as stored, the core views (pods, nodes)
//! computed from the objects they show, and namespaces from every object's namespace.

use std::sync::Arc;

use kantai_api::resources::{self, Resource};
use kantai_model::meta::JsonMeta;
use serde_json::Value;

use super::views;
use crate::Shared;

/// The core kinds computed rather than stored as written: pods, nodes, namespaces. (Core
/// events, secrets and configmaps are stored objects like any other.)
pub fn is_view(r: &Resource) -> bool {
    r.group.is_empty() && matches!(r.plural, "pods" | "nodes" | "namespaces")
}

/// One object of `r`, as a client reads it.
pub fn get(s: &Shared, r: &Resource, ns: &str, name: &str) -> Option<Arc<Value>> {
    if *r == resources::NAMESPACES {
        return views::namespaces(s)
            .into_iter()
            .find(|n| n.name() == name)
            .map(Arc::new);
    }
    match views::backing(r) {
        Some(backing) => {
            let stored = s.store.get(&backing, ns, name)?;
            Some(Arc::new(views::view(s, r, &stored)))
        }
        None => s.store.get(r, ns, name),
    }
}

/// Every object of `r` (in `ns`, if given) as a client reads them, and the store's version
/// they were read at.
pub fn list(s: &Shared, r: &Resource, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
    if *r == resources::NAMESPACES {
        let all = views::namespaces(s).into_iter().map(Arc::new).collect();
        return (all, s.store.version());
    }
    match views::backing(r) {
        Some(backing) => {
            let (stored, rv) = s.store.list(&backing, ns);
            let shown = stored
                .iter()
                .map(|o| Arc::new(views::view(s, r, o)))
                .collect();
            (shown, rv)
        }
        None => s.store.list(r, ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pods_nodes_and_namespaces_are_views() {
        for r in [
            resources::PODS,
            resources::CORE_NODES,
            resources::NAMESPACES,
        ] {
            assert!(is_view(&r), "{}", r.plural);
        }
        for r in [
            resources::SECRETS,
            resources::CONFIGMAPS,
            resources::EVENTS,
            resources::NODES,
            resources::INSTANCES,
        ] {
            assert!(!is_view(&r), "{} {}", r.group, r.plural);
        }
    }
}
