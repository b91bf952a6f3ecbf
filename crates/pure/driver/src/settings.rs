//! The settings a revision runs with, computed once from the typed model and the fleet config,
//! and the constants both drivers (the fleet and the simulator) run revisions with.
//!
//! The control plane, the node agents and the simulator each call [`RevisionSettings::of`];
//! none reads a revision's annotations or timeouts itself, so a revision means the same to
//! each of them.

use std::fmt;
use std::time::Duration;

use kantai_autoscaler::ScalingSpec;
use kantai_model::autoscaling::AutoscalingAnnotations;
use kantai_model::config::{ConfigError, REVISION_TIMEOUT_SECONDS};
use kantai_model::serving::Revision;
use kantai_model::{FieldPath, Findings, ServingConfig};
use kantai_policy::registry::{self, Kind};
use kantai_policy::{Params, Resources};

pub use kantai_model::config::DEFAULT_HOLD_LIMIT;

/// The timeout of a revision that carries none: Knative's `revision-timeout-seconds`
/// default. Admission writes the fleet's default into every revision it stores, so this
/// only serves revisions that were never admitted.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(REVISION_TIMEOUT_SECONDS as u64);

/// Requests an instance queues per containerConcurrency slot beyond those it serves:
/// Knative's queue-proxy breaker (a queue depth of 10 × containerConcurrency).
pub const QUEUE_DEPTH_FACTOR: u32 = 10;

/// How long a draining instance keeps answering requests forwarded by other nodes: the time
/// for its Terminating status to reach their gateways (an API write and a watch event over
/// the slowest link, with a wide margin).
pub const DRAIN_PROPAGATION: Duration = Duration::from_secs(1);

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
    /// The load-balancing policy's name.
    pub load_balancer: String,
    /// The queue policy's name.
    pub queue: String,
    /// The keep-alive policy's name.
    pub keep_alive: String,
    /// `containerConcurrency` (0: unlimited).
    pub container_concurrency: u32,
    /// `timeoutSeconds`: the longest a request may take.
    pub timeout: Duration,
    /// `responseStartTimeoutSeconds`, when it is shorter than the timeout.
    pub response_start: Option<Duration>,
    /// `idleTimeoutSeconds`.
    pub idle: Option<Duration>,
    /// Whether the instance speaks HTTP/2 cleartext: Knative's rule, the serving container's
    /// first port is named `h2c`.
    pub h2c: bool,
    /// Requests a gateway holds for the revision while no instance has room (the fleet's
    /// `dataplane.hold-limit`).
    pub hold_limit: u32,
    /// Requests an instance queues beyond those it serves (0: unlimited, as its
    /// containerConcurrency).
    pub queue_limit: u32,
}

/// Something in a revision that its settings could not use; the settings hold the fallback.
#[derive(Clone, Debug, PartialEq)]
pub enum SettingsProblem {
    /// An autoscaling annotation is invalid (every one, with its path).
    Autoscaling(Vec<kantai_model::FieldError>),
    /// A `kantai.dev/*` parameter annotation is malformed.
    Param {
        /// The annotation key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A policy name no policy of that kind has (the fleet default is not used in its
    /// place: the driver decides what to run instead).
    UnknownPolicy {
        /// The policy kind.
        kind: Kind,
        /// The name asked for.
        name: String,
    },
}

impl fmt::Display for SettingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsProblem::Autoscaling(errs) => write!(f, "{}", ConfigError(errs.clone())),
            SettingsProblem::Param { key, message } => write!(f, "annotation {key}: {message}"),
            SettingsProblem::UnknownPolicy { kind, name } => {
                write!(f, "{}", registry::unknown(*kind, name))
            }
        }
    }
}

impl std::error::Error for SettingsProblem {}

impl RevisionSettings {
    /// The settings of `revision` under the fleet's `config`, and what in the revision could
    /// not be used, in the order a refusal reports it (autoscaling annotations, parameters,
    /// policy names). A stored revision always runs: the control plane and the node agents
    /// log the problems and use the settings, the simulator refuses the first problem (see
    /// [`RevisionSettings::checked`]).
    pub fn of(
        revision: &Revision,
        config: &ServingConfig,
    ) -> (RevisionSettings, Vec<SettingsProblem>) {
        let anns = &revision.metadata.annotations;
        let spec = &revision.spec;
        let mut problems = Vec::new();

        let mut out = Findings::new();
        let parsed =
            AutoscalingAnnotations::parse(anns, &config.autoscaler, &FieldPath::root(), &mut out);
        if out.has_errors() {
            problems.push(SettingsProblem::Autoscaling(
                out.errors().cloned().collect(),
            ));
        }
        let cc = u32::try_from(spec.container_concurrency.unwrap_or(0)).unwrap_or(0);
        let scaling =
            ScalingSpec::resolve(&config.autoscaler, &parsed, cc, config.progress_deadline);

        let (params, errors) = Params::parse(anns);
        problems.extend(errors.into_iter().map(|e| SettingsProblem::Param {
            key: e.key,
            message: e.message,
        }));
        let chosen = |kind: Kind, problems: &mut Vec<SettingsProblem>| {
            let name = config.policies.chosen(kind, anns).to_owned();
            if !kind.knows(&name) {
                problems.push(SettingsProblem::UnknownPolicy {
                    kind,
                    name: name.clone(),
                });
            }
            name
        };
        let placement = chosen(Kind::Placement, &mut problems);
        let load_balancer = chosen(Kind::LoadBalancer, &mut problems);
        let queue = chosen(Kind::Queue, &mut problems);
        let keep_alive = chosen(Kind::KeepAlive, &mut problems);

        // Knative's defaulting reads 0 as "not set".
        let secs = |s: Option<i64>| {
            s.and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
        };
        let timeout = secs(spec.timeout_seconds).unwrap_or(DEFAULT_TIMEOUT);
        let container = spec.containers.first();
        let quantity = |name: &str| {
            container
                .and_then(|c| {
                    c.resources
                        .requests
                        .get(name)
                        .or_else(|| c.resources.limits.get(name))
                        .map(|q| q.value())
                })
                .unwrap_or(0.0)
        };
        let settings = RevisionSettings {
            scaling,
            resources: Resources {
                cpu: quantity("cpu"),
                memory: quantity("memory"),
            },
            placement,
            params,
            load_balancer,
            queue,
            keep_alive,
            container_concurrency: cc,
            timeout,
            response_start: secs(spec.response_start_timeout_seconds).filter(|d| *d < timeout),
            idle: secs(spec.idle_timeout_seconds),
            h2c: spec.h2c(),
            hold_limit: config.dataplane.hold_limit,
            queue_limit: cc.saturating_mul(QUEUE_DEPTH_FACTOR),
        };
        (settings, problems)
    }

    /// The settings of `revision`, or the first thing in it that could not be used.
    pub fn checked(
        revision: &Revision,
        config: &ServingConfig,
    ) -> Result<RevisionSettings, SettingsProblem> {
        let (settings, problems) = RevisionSettings::of(revision, config);
        match problems.into_iter().next() {
            Some(p) => Err(p),
            None => Ok(settings),
        }
    }
}
