//! Policies by name: the names a manifest may use, and how each is built, for each of the
//! four plug points (placement, load balancing, queue discipline, keep-alive).
//!
//! Adding a policy is one line in the table of its kind: a name and a constructor from the
//! revision's [`Params`]. The control plane, the node agents, the simulator and the
//! validating webhook all read these tables, so a name works everywhere at once.

use std::collections::BTreeMap;

use crate::keepalive::{Fixed, HybridHistogram, KeepAlive, Knative as KnativeKeepAlive};
use crate::lb::{
    ConsistentHash, Faast, Knative, LeastLatency, LeastRequest, LoadBalancer, LocalFirst,
    P2cPeakEwma, Random, RoundRobin,
};
use crate::params::{self, ParamError, Params};
use crate::placement::{LatencyAware, Pack, Pinned, Placement, Spread};
use crate::queue::{Edf, Fifo, Priority, QueueDiscipline, Sjf};

/// A placement policy's constructor.
pub type NewPlacement = fn(&Params) -> Box<dyn Placement>;
/// A load balancer's constructor.
pub type NewLoadBalancer = fn(&Params) -> Box<dyn LoadBalancer>;
/// A queue discipline's constructor.
pub type NewQueue = fn(&Params) -> Box<dyn QueueDiscipline>;
/// A keep-alive policy's constructor.
pub type NewKeepAlive = fn(&Params) -> Box<dyn KeepAlive>;

/// Placement policies by name. The first is the default.
pub const PLACEMENTS: &[(&str, NewPlacement)] = &[
    ("spread", |_| Box::new(Spread)),
    ("latency-aware", |_| Box::new(LatencyAware)),
    ("pack", |_| Box::new(Pack)),
    ("pinned", |_| Box::new(Pinned)),
];

/// Load balancers by name. The first is the default.
pub const LOAD_BALANCERS: &[(&str, NewLoadBalancer)] = &[
    ("knative", |_| Box::new(Knative::new())),
    ("round-robin", |_| Box::new(RoundRobin::default())),
    ("random", |_| Box::new(Random)),
    ("least-request", |_| Box::new(LeastRequest)),
    ("p2c-peak-ewma", |_| Box::new(P2cPeakEwma::default())),
    ("faast", |_| Box::new(Faast::default())),
    ("local-first", |_| Box::new(LocalFirst)),
    ("least-latency", |_| Box::new(LeastLatency)),
    ("consistent-hash", |p| {
        Box::new(ConsistentHash::new(p.hash_key.clone()))
    }),
];

/// Queue disciplines by name. The first is the default.
pub const QUEUES: &[(&str, NewQueue)] = &[
    ("fifo", |_| Box::new(Fifo::default())),
    ("priority", |p| Box::new(Priority::new(p))),
    ("edf", |p| Box::new(Edf::new(p))),
    ("sjf", |_| Box::new(Sjf::default())),
];

/// Keep-alive policies by name. The first is the default.
pub const KEEP_ALIVES: &[(&str, NewKeepAlive)] = &[
    ("knative", |_| Box::new(KnativeKeepAlive)),
    ("fixed", |_| Box::new(Fixed)),
    ("hybrid-histogram", |p| Box::new(HybridHistogram::new(p))),
];

/// The kinds of policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Placement.
    Placement,
    /// Load balancing.
    LoadBalancer,
    /// Queue discipline.
    Queue,
    /// Keep-alive and pre-warming.
    KeepAlive,
}

/// Every kind, in the order they are documented.
pub const KINDS: [Kind; 4] = [
    Kind::Placement,
    Kind::LoadBalancer,
    Kind::Queue,
    Kind::KeepAlive,
];

impl Kind {
    /// The annotation that chooses this kind's policy.
    pub fn annotation(self) -> &'static str {
        match self {
            Kind::Placement => params::PLACEMENT,
            Kind::LoadBalancer => params::LOAD_BALANCER,
            Kind::Queue => params::QUEUE,
            Kind::KeepAlive => params::KEEP_ALIVE,
        }
    }

    /// The known names of this kind, default first.
    pub fn names(self) -> Vec<&'static str> {
        match self {
            Kind::Placement => PLACEMENTS.iter().map(|(n, _)| *n).collect(),
            Kind::LoadBalancer => LOAD_BALANCERS.iter().map(|(n, _)| *n).collect(),
            Kind::Queue => QUEUES.iter().map(|(n, _)| *n).collect(),
            Kind::KeepAlive => KEEP_ALIVES.iter().map(|(n, _)| *n).collect(),
        }
    }

    /// Whether `name` is a known policy of this kind.
    pub fn knows(self, name: &str) -> bool {
        self.names().contains(&name)
    }

    /// The default policy of this kind.
    pub fn default_name(self) -> &'static str {
        self.names()[0]
    }
}

/// A placement policy by name.
pub fn placement(name: &str, params: &Params) -> Option<Box<dyn Placement>> {
    PLACEMENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, new)| new(params))
}

/// A load balancer by name.
pub fn load_balancer(name: &str, params: &Params) -> Option<Box<dyn LoadBalancer>> {
    LOAD_BALANCERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, new)| new(params))
}

/// A queue discipline by name.
pub fn queue(name: &str, params: &Params) -> Option<Box<dyn QueueDiscipline>> {
    QUEUES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, new)| new(params))
}

/// A keep-alive policy by name.
pub fn keep_alive(name: &str, params: &Params) -> Option<Box<dyn KeepAlive>> {
    KEEP_ALIVES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, new)| new(params))
}

/// The message for an unknown policy name, listing the known ones.
pub fn unknown(kind: Kind, name: &str) -> String {
    format!(
        "unknown {} {name:?}; known: {}",
        match kind {
            Kind::Placement => "placement policy",
            Kind::LoadBalancer => "load balancer",
            Kind::Queue => "queue discipline",
            Kind::KeepAlive => "keep-alive policy",
        },
        kind.names().join(", ")
    )
}

/// Checks a revision's `kantai.dev/*` annotations: known policy names and well-formed
/// parameters. Each problem comes with its annotation key. Keys kantai does not read are not
/// reported here: callers compare them with [`params::KEYS`].
pub fn validate(annotations: &BTreeMap<String, String>) -> Vec<ParamError> {
    let mut errors = Vec::new();
    for kind in KINDS {
        if let Some(name) = annotations.get(kind.annotation())
            && !kind.knows(name.trim())
        {
            errors.push(ParamError {
                key: kind.annotation(),
                message: unknown(kind, name),
            });
        }
    }
    let (_, param_errors) = Params::parse(annotations);
    errors.extend(param_errors);
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_builds_and_names_are_unique() {
        let p = Params::default();
        for kind in KINDS {
            let names = kind.names();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{kind:?}");
            for n in names {
                let built = match kind {
                    Kind::Placement => placement(n, &p).is_some(),
                    Kind::LoadBalancer => load_balancer(n, &p).is_some(),
                    Kind::Queue => queue(n, &p).is_some(),
                    Kind::KeepAlive => keep_alive(n, &p).is_some(),
                };
                assert!(built, "{n}");
            }
        }
        assert_eq!(Kind::Placement.default_name(), "spread");
        assert_eq!(Kind::LoadBalancer.default_name(), "knative");
        assert_eq!(Kind::Queue.default_name(), "fifo");
        assert_eq!(Kind::KeepAlive.default_name(), "knative");
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let a: BTreeMap<String, String> =
            [(params::LOAD_BALANCER.to_owned(), "fastest".to_owned())]
                .into_iter()
                .collect();
        let e = validate(&a);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key, params::LOAD_BALANCER);
        assert!(e[0].message.contains("unknown load balancer \"fastest\""));
        assert!(e[0].message.contains("faast"), "{}", e[0].message);
    }
}
