//! Knative's KPA autoscaler as a pure state machine.
//!
//! A driver (the live control plane, the simulator, `kantai autoscale replay`) feeds each
//! revision's [`RevisionAutoscaler`] timestamped [`Observation`]s and calls
//! [`RevisionAutoscaler::tick`] every [`TICK`] (2 s); each tick returns a [`Decision`]: the
//! instances to run, the panic state, the excess burst capacity and whether the activator
//! must stay in the request path. Time is a `Duration` since the driver's epoch; nothing here
//! reads a clock.

mod decider;
mod revision;
mod window;

pub mod replay;
pub mod spec;

pub use decider::{Decider, ScaleResult, TICK, initial_excess_burst_capacity};
pub use revision::{
    Activity, Decision, InactiveReason, MIN_ACTIVATORS, Observation, RevisionAutoscaler,
};
pub use spec::ScalingSpec;
pub use window::{Buckets, MaxWindow};
