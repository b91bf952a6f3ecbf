//! The settings a revision runs with, computed once from the typed model and the fleet config.

use kantai_autoscaler::ScalingSpec;
use kantai_policy::{Params, Resources};

/// What one revision asks of the autoscaler, placement and the data plane.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionSettings {
    /// The KPA's per-revision spec (`reachable` is the driver's to set).
    pub scaling: ScalingSpec,
    /// CPU and memory one instance asks for (requests, else limits).
    pub resources: Resources,
    /// The placement policy's name.
    pub placement: String,
    /// The `kantai.dev/*` policy parameters.
    pub params: Params,
}
