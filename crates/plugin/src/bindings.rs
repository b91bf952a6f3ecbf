//! The host's side of the four worlds, generated from `wit/policy.wit`.

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
        with: { "kantai:policy/host": super::lb::kantai::policy::host },
    });
}

/// `queue-plugin`.
pub mod queue {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "queue-plugin",
        with: { "kantai:policy/host": super::lb::kantai::policy::host },
    });
}

/// `keep-alive-plugin`.
pub mod keep_alive {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "keep-alive-plugin",
        with: { "kantai:policy/host": super::lb::kantai::policy::host },
    });
}
