//! The driver core: what the live fleet and the simulator do alike around the decision
//! crates, so that a policy meets the same inputs in both.
//!
//! - `local`: starts a node decides on its own (a cold start at the node, an autonomous
//!   node's scaling).
//! - `scaler`: one revision's scaler (record a node's report, tick, place).
//! - `settings`: the settings a revision runs with, computed once from the typed model and
//!   the fleet config.

pub mod local;
/// The KPA's tick, for drivers that tick a revision's scaler themselves.
pub use kantai_autoscaler::TICK;
pub mod scaler;
pub mod settings;

pub use local::{
    ADOPT_WITHIN, AUTONOMOUS_AFTER, LocalView, Refusal, Settled, adopt_now, autonomous_count,
    considers_local_start, counted, local_seed, local_start, may_start_locally, policy_allows,
    settle, take_local,
};
pub use scaler::{MEASURE_HALF_LIFE, NodeLoad, POKE_INTERVAL, RevisionScaler};
pub use settings::{
    DEFAULT_HOLD_LIMIT, DEFAULT_TIMEOUT, DRAIN_PROPAGATION, QUEUE_DEPTH_FACTOR, RevisionSettings,
    SettingsProblem,
};
