//! The driver core: what the live fleet and the simulator do alike around the decision
//! crates, so that a policy meets the same inputs in both.
//!
//! - `settings`: the settings a revision runs with, computed once from the typed model and
//!   the fleet config.

pub mod settings;

pub use settings::{
    DEFAULT_HOLD_LIMIT, DEFAULT_TIMEOUT, DRAIN_PROPAGATION, QUEUE_DEPTH_FACTOR, RevisionSettings,
    SettingsProblem,
};
