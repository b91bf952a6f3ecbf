//! The resources the API serves, with their Kubernetes names and REST paths.

/// One resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural name, used in paths (`services`).
    pub plural: &'static str,
    /// Singular name (`service`).
    pub singular: &'static str,
    /// Kind (`Service`).
    pub kind: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`ksvc`).
    pub short_names: &'static [&'static str],
    /// What clients may do with it: the one table the API's dispatch, discovery and the
    /// OpenAPI documents all read.
    pub verbs: Verbs,
}

/// The verbs a resource answers. Reads (`get`, `list`) are always allowed; everything else
/// is refused with 405 and the reason, and left out of discovery and OpenAPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verbs {
    /// `watch=true` on the collection.
    pub watch: bool,
    /// `POST` on the collection.
    pub create: bool,
    /// `PUT` on an object (for nodes and instances, also how their agents create them).
    pub update: bool,
    /// `PATCH` on an object (merge, JSON and apply patches).
    pub patch: bool,
    /// `DELETE` on an object.
    pub delete: bool,
    /// `PUT` on `/status`.
    pub update_status: bool,
    /// `GET` on `/status`.
    pub get_status: bool,
    /// `GET` on `/log`.
    pub log: bool,
}

impl Verbs {
    /// Read and watch only.
    pub const READ: Verbs = Verbs {
        watch: true,
        create: false,
        update: false,
        patch: false,
        delete: false,
        update_status: false,
        get_status: false,
        log: false,
    };

    /// Every verb a user's own objects take (Services, Routes).
    pub const USER: Verbs = Verbs {
        create: true,
        update: true,
        patch: true,
        delete: true,
        get_status: true,
        ..Verbs::READ
    };

    /// Kubernetes' names of the collection and object verbs, in discovery's order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.create, "create"),
            (self.delete, "delete"),
            (true, "get"),
            (true, "list"),
            (self.patch, "patch"),
            (self.update, "update"),
            (self.watch, "watch"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// Knative Services.
pub const SERVICES: Resource = Resource {
    group: "serving.knative.dev",
    version: "v1",
    plural: "services",
    singular: "service",
    kind: "Service",
    namespaced: true,
    short_names: &["ksvc", "kservice"],
    verbs: Verbs::USER,
};
/// Knative Configurations.
pub const CONFIGURATIONS: Resource = Resource {
    group: "serving.knative.dev",
    version: "v1",
    plural: "configurations",
    singular: "configuration",
    kind: "Configuration",
    namespaced: true,
    short_names: &["config", "cfg"],
    verbs: Verbs {
        get_status: true,
        ..Verbs::READ
    },
};
/// Knative Revisions.
pub const REVISIONS: Resource = Resource {
    group: "serving.knative.dev",
    version: "v1",
    plural: "revisions",
    singular: "revision",
    kind: "Revision",
    namespaced: true,
    short_names: &["rev"],
    verbs: Verbs {
        delete: true,
        get_status: true,
        ..Verbs::READ
    },
};
/// Knative Routes.
pub const ROUTES: Resource = Resource {
    group: "serving.knative.dev",
    version: "v1",
    plural: "routes",
    singular: "route",
    kind: "Route",
    namespaced: true,
    short_names: &["rt"],
    verbs: Verbs::USER,
};
/// kantai Placements (per revision, instances per node).
pub const PLACEMENTS: Resource = Resource {
    group: "kantai.dev",
    version: "v1alpha1",
    plural: "placements",
    singular: "placement",
    kind: "Placement",
    namespaced: true,
    short_names: &["seika", "pl"],
    verbs: Verbs {
        get_status: true,
        ..Verbs::READ
    },
};
/// kantai Instances (the Pod equivalent).
pub const INSTANCES: Resource = Resource {
    group: "kantai.dev",
    version: "v1alpha1",
    plural: "instances",
    singular: "instance",
    kind: "Instance",
    namespaced: true,
    short_names: &["inst"],
    verbs: Verbs {
        update: true,
        delete: true,
        update_status: true,
        get_status: true,
        log: true,
        ..Verbs::READ
    },
};
/// kantai Nodes.
pub const NODES: Resource = Resource {
    group: "kantai.dev",
    version: "v1alpha1",
    plural: "nodes",
    singular: "node",
    kind: "Node",
    namespaced: false,
    short_names: &["no"],
    verbs: Verbs {
        update: true,
        delete: true,
        get_status: true,
        ..Verbs::READ
    },
};

/// Events (Kubernetes' core `v1` Events): what kantai's controllers want an operator to
/// know about an object, such as an instance that fits on no node.
pub const EVENTS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    namespaced: true,
    short_names: &["ev"],
    verbs: Verbs::READ,
};

/// Core `v1` Pods: kantai's instances seen as Kubernetes pods (read-only), so kubectl's
/// `get pod`, `logs` and `describe pod` work.
pub const PODS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    namespaced: true,
    short_names: &["po"],
    verbs: Verbs {
        log: true,
        get_status: true,
        ..Verbs::READ
    },
};
/// Core `v1` Nodes: kantai's nodes seen as Kubernetes nodes (read-only).
pub const CORE_NODES: Resource = Resource {
    group: "",
    version: "v1",
    plural: "nodes",
    singular: "node",
    kind: "Node",
    namespaced: false,
    short_names: &[],
    verbs: Verbs {
        get_status: true,
        ..Verbs::READ
    },
};
/// Core `v1` Namespaces: every namespace holding an object, and `default` (read-only).
pub const NAMESPACES: Resource = Resource {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    short_names: &["ns"],
    verbs: Verbs {
        watch: false,
        create: true,
        delete: true,
        ..Verbs::READ
    },
};

/// Core `v1` Secrets: stored encrypted at rest, their values never logged, sent to a node
/// only for the instances it runs that need them.
pub const SECRETS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    short_names: &[],
    verbs: CONFIG,
};
/// Core `v1` ConfigMaps.
pub const CONFIGMAPS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    short_names: &["cm"],
    verbs: CONFIG,
};

/// Secrets and ConfigMaps take every verb a user's objects do, but have no status.
const CONFIG: Verbs = Verbs {
    get_status: false,
    ..Verbs::USER
};

/// Every served resource. Lookups by name take the first match, so kantai's own kinds
/// (its `nodes`) come before the core views of them.
pub const ALL: &[Resource] = &[
    SERVICES,
    CONFIGURATIONS,
    REVISIONS,
    ROUTES,
    PLACEMENTS,
    INSTANCES,
    NODES,
    EVENTS,
    PODS,
    CORE_NODES,
    NAMESPACES,
    SECRETS,
    CONFIGMAPS,
];

/// The group versions served, in discovery order: the core group first, as Kubernetes does.
pub const GROUP_VERSIONS: &[(&str, &str)] = &[
    ("", "v1"),
    ("serving.knative.dev", "v1"),
    ("kantai.dev", "v1alpha1"),
];

impl Resource {
    /// `group/version` (`v1` for the core group).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `/apis/GROUP/VERSION`, or `/api/VERSION` for the core group.
    pub fn group_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection path, in a namespace or across all (`None`).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => {
                format!("{}/namespaces/{ns}/{}", self.group_path(), self.plural)
            }
            _ => format!("{}/{}", self.group_path(), self.plural),
        }
    }

    /// The path of one object.
    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(Some(namespace)))
    }

    /// Finds a resource by plural, singular, kind or short name, case-insensitively.
    pub fn lookup(name: &str) -> Option<Resource> {
        let n = name.to_ascii_lowercase();
        ALL.iter().copied().find(|r| {
            r.plural == n
                || r.singular == n
                || r.kind.to_ascii_lowercase() == n
                || r.short_names.contains(&n.as_str())
        })
    }

    /// Finds the resource of a kind in a group/version.
    pub fn of_kind(api_version: &str, kind: &str) -> Option<Resource> {
        ALL.iter()
            .copied()
            .find(|r| r.kind == kind && r.api_version() == api_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_kubernetes_conventions() {
        assert_eq!(
            SERVICES.object_path("default", "hello"),
            "/apis/serving.knative.dev/v1/namespaces/default/services/hello"
        );
        assert_eq!(
            INSTANCES.collection_path(None),
            "/apis/kantai.dev/v1alpha1/instances"
        );
        assert_eq!(
            NODES.collection_path(Some("x")),
            "/apis/kantai.dev/v1alpha1/nodes"
        );
        assert_eq!(Resource::lookup("ksvc"), Some(SERVICES));
        assert_eq!(Resource::lookup("Seika"), Some(PLACEMENTS));
        assert_eq!(Resource::lookup("instance"), Some(INSTANCES));
        assert_eq!(Resource::lookup("cm"), Some(CONFIGMAPS));
        assert_eq!(
            SECRETS.object_path("default", "db"),
            "/api/v1/namespaces/default/secrets/db"
        );
    }
}
