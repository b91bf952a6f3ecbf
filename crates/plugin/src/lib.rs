//! Plug-in policies: WebAssembly components implementing one of the `kantai:policy` worlds
//! (`wit/policy.wit`), behind the same traits as the built-ins, so every driver runs them
//! by name as it runs a built-in.
//!
//! In the order a plug-in goes through:
//!
//! 1. [`load`]: the bytes (a component, binary or text) are compiled, instantiated once and
//!    checked against their kind's interface; any problem is a [`LoadError`] naming the
//!    plug-in and what is wrong.
//! 2. [`Plugin::register`]: the plug-in is added to the policy registry under its name;
//!    [`install`] does both for a fleet config's `plugins` section, for every driver.
//! 3. `sandbox`: each call runs with a fuel budget (a deterministic time budget: the same
//!    on every machine, so the simulator and the fleet agree) and a memory limit; the only
//!    import is the host's seeded generator.
//! 4. The adapters (`load_balancer`, `placement`, `queue`, `keep_alive`) turn the trait's
//!    views into the WIT's records and check every answer. A trap, an exhausted budget or
//!    an answer out of range never reaches the driver: the call is answered by the plug
//!    point's default policy and [`fallbacks`] counts it.
//!
//! Like the decision crates, this one reads no file, clock or socket: the driver hands in
//! the bytes and the time.

mod bindings;
mod fallback;
mod keep_alive;
mod load_balancer;
mod placement;
mod queue;
mod sandbox;

pub use fallback::{Fallback, Reason, fallbacks};
pub use sandbox::{Budget, Limits, LoadError, Plugin, WIT, install, load};
