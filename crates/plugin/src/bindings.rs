//! The host's side of the four worlds, generated from `wit/policy.wit` (`host` and the
//! shared `types` once, in `lb`, and used by the other three), and the conversions of the
//! policy crate's views into those shared types.

// Generated code: its items carry the WIT's own docs, or none.
#![allow(missing_docs)]

/// `load-balancer-plugin`.
pub mod lb {
    wasmtime::component::bindgen!({ path: "wit", world: "load-balancer-plugin" });
}

/// `placement-plugin`.
pub mod placement {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "placement-plugin",
        with: {
            "kantai:policy/host": super::lb::kantai::policy::host,
            "kantai:policy/types": super::lb::kantai::policy::types,
        },
    });
}

/// `queue-plugin`.
pub mod queue {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "queue-plugin",
        with: {
            "kantai:policy/host": super::lb::kantai::policy::host,
            "kantai:policy/types": super::lb::kantai::policy::types,
        },
    });
}

/// `keep-alive-plugin`.
pub mod keep_alive {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "keep-alive-plugin",
        with: {
            "kantai:policy/host": super::lb::kantai::policy::host,
            "kantai:policy/types": super::lb::kantai::policy::types,
        },
    });
}

use std::time::Duration;

use kantai_policy::RequestInfo;

use lb::kantai::policy::types::{Request, Resources};

/// A duration in the WIT's nanoseconds (saturating: 584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The request as a guest sees it: method, path and the `headers` it asked for that the
/// request has.
pub(crate) fn request_of(req: &dyn RequestInfo, headers: &[String]) -> Request {
    Request {
        method: req.method().to_owned(),
        path: req.path().to_owned(),
        headers: headers
            .iter()
            .filter_map(|n| Some((n.clone(), req.header(n)?.to_owned())))
            .collect(),
    }
}

/// What one instance asks for, as the WIT has it.
pub(crate) fn resources_of(r: kantai_policy::Resources) -> Resources {
    Resources {
        cpu: r.cpu,
        memory: r.memory,
    }
}
