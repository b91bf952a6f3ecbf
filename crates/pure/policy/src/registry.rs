//! Policies by name: the names a manifest may use, and how each is built, for each of the
//! four plug points (placement, load balancing, queue discipline, keep-alive).
//!
//! Adding a built-in policy is one line in the table of its kind: a name and a constructor
//! from the revision's [`Params`]. A program built on kantai adds its own beside them
//! without touching these tables ([`Extensions`], installed once with [`install`] before
//! anything reads the registry: `kantai::Cli` does). Plug-ins (WebAssembly components,
//! loaded while the program runs) are registered by name with [`plug_in`]. The control
//! plane, the node agents, the
//! simulator, decision replay and the validating webhook all read the registry, so a name
//! works everywhere at once.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

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

/// Policies a program built on kantai adds beside the built-ins, by kind: a name (never a
/// built-in's) and a constructor, as the built-in tables have.
#[derive(Clone, Default)]
pub struct Extensions {
    placements: Vec<(&'static str, NewPlacement)>,
    load_balancers: Vec<(&'static str, NewLoadBalancer)>,
    queues: Vec<(&'static str, NewQueue)>,
    keep_alives: Vec<(&'static str, NewKeepAlive)>,
}

impl Extensions {
    /// Adds a placement policy.
    pub fn placement(mut self, name: &'static str, new: NewPlacement) -> Extensions {
        self.placements.push((name, new));
        self
    }

    /// Adds a load balancer.
    pub fn load_balancer(mut self, name: &'static str, new: NewLoadBalancer) -> Extensions {
        self.load_balancers.push((name, new));
        self
    }

    /// Adds a queue discipline.
    pub fn queue(mut self, name: &'static str, new: NewQueue) -> Extensions {
        self.queues.push((name, new));
        self
    }

    /// Adds a keep-alive policy.
    pub fn keep_alive(mut self, name: &'static str, new: NewKeepAlive) -> Extensions {
        self.keep_alives.push((name, new));
        self
    }

    /// Whether nothing is added.
    pub fn is_empty(&self) -> bool {
        KINDS.iter().all(|k| self.names(*k).is_empty())
    }

    /// The added names of `kind`, in the order they were added.
    fn names(&self, kind: Kind) -> Vec<&'static str> {
        match kind {
            Kind::Placement => self.placements.iter().map(|(n, _)| *n).collect(),
            Kind::LoadBalancer => self.load_balancers.iter().map(|(n, _)| *n).collect(),
            Kind::Queue => self.queues.iter().map(|(n, _)| *n).collect(),
            Kind::KeepAlive => self.keep_alives.iter().map(|(n, _)| *n).collect(),
        }
    }

    /// A problem with these names: one a built-in has, one added twice, or one a manifest
    /// cannot carry (empty, or with spaces around it).
    fn check(&self) -> Result<(), ExtendError> {
        for kind in KINDS {
            let added = self.names(kind);
            for (i, name) in added.iter().enumerate() {
                check_name(kind, name)?;
                if builtin_names(kind).contains(name) {
                    return Err(ExtendError::BuiltIn {
                        kind: kind.noun(),
                        name: name.to_string(),
                    });
                }
                if added[..i].contains(name) {
                    return Err(ExtendError::Twice {
                        kind: kind.noun(),
                        name: name.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A name a manifest can carry: non-empty, with no spaces around it.
fn check_name(kind: Kind, name: &str) -> Result<(), ExtendError> {
    if name.is_empty() || name.trim() != name {
        return Err(ExtendError::BadName {
            kind: kind.noun(),
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Why [`install`] refused extensions, or [`plug_in`] a plug-in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtendError {
    /// The name is a built-in policy's (or, for a plug-in, one the program added).
    #[error("cannot add the {kind} {name:?}: a built-in {kind} has that name; choose another")]
    BuiltIn {
        /// The kind of policy, as a noun.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// Two added policies of a kind have the name.
    #[error("cannot add the {kind} {name:?} twice")]
    Twice {
        /// The kind of policy, as a noun.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The name is empty or has spaces around it (an annotation's value is trimmed).
    #[error(
        "cannot add the {kind} {name:?}: a policy's name must be non-empty, with no spaces around it"
    )]
    BadName {
        /// The kind of policy, as a noun.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The registry was read (or extended) before.
    #[error(
        "cannot add policies now: the policy registry was already in use (policies are added once, before the program reads any policy by name)"
    )]
    TooLate,
}

static EXTENSIONS: OnceLock<Extensions> = OnceLock::new();

/// Adds `ext`'s policies to the registry for the rest of the process: once, before anything
/// reads a policy by name (the first read fixes the registry as it is).
pub fn install(ext: Extensions) -> Result<(), ExtendError> {
    ext.check()?;
    EXTENSIONS.set(ext).map_err(|_| ExtendError::TooLate)
}

/// The installed extensions (none, once the registry has been read without any).
fn extensions() -> &'static Extensions {
    EXTENSIONS.get_or_init(Extensions::default)
}

/// A plug-in's constructor: it holds the loaded module.
pub type PlugIn<T> = Arc<dyn Fn(&Params) -> Box<T> + Send + Sync>;

/// A plug-in policy of one kind, as [`plug_in`] registers it.
#[derive(Clone)]
pub enum Factory {
    /// A placement policy.
    Placement(PlugIn<dyn Placement>),
    /// A load balancer.
    LoadBalancer(PlugIn<dyn LoadBalancer>),
    /// A queue discipline.
    Queue(PlugIn<dyn QueueDiscipline>),
    /// A keep-alive policy.
    KeepAlive(PlugIn<dyn KeepAlive>),
}

impl Factory {
    /// The kind of policy it makes.
    pub fn kind(&self) -> Kind {
        match self {
            Factory::Placement(_) => Kind::Placement,
            Factory::LoadBalancer(_) => Kind::LoadBalancer,
            Factory::Queue(_) => Kind::Queue,
            Factory::KeepAlive(_) => Kind::KeepAlive,
        }
    }
}

/// The plug-ins registered so far, by kind and name. Read when a policy is built (per
/// revision and node, never per request), so a lock costs nothing that matters.
static PLUG_INS: RwLock<BTreeMap<(Kind, String), Factory>> = RwLock::new(BTreeMap::new());

/// Registers a plug-in policy under `name` for the rest of the process, or replaces the
/// plug-in of that kind and name (a module applied again, with new bytes); whether it
/// replaced one. Policies built before keep the module they were built with.
pub fn plug_in(name: &str, factory: Factory) -> Result<bool, ExtendError> {
    let kind = factory.kind();
    check_plug_in_name(kind, name)?;
    let mut table = PLUG_INS.write().unwrap_or_else(PoisonError::into_inner);
    Ok(table.insert((kind, name.to_owned()), factory).is_some())
}

/// Whether `name` may name a plug-in of `kind`: one a manifest can carry, and not a
/// built-in's or an added policy's (a plug-in of that name may be replaced).
pub fn check_plug_in_name(kind: Kind, name: &str) -> Result<(), ExtendError> {
    check_name(kind, name)?;
    if builtin_names(kind).contains(&name) || extensions().names(kind).contains(&name) {
        return Err(ExtendError::BuiltIn {
            kind: kind.noun(),
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Removes the plug-in of `kind` named `name`; whether there was one. Policies built from
/// it keep working.
pub fn unplug(kind: Kind, name: &str) -> bool {
    let mut table = PLUG_INS.write().unwrap_or_else(PoisonError::into_inner);
    table.remove(&(kind, name.to_owned())).is_some()
}

/// The plug-in of `kind` named `name`.
fn plugged(kind: Kind, name: &str) -> Option<Factory> {
    let table = PLUG_INS.read().unwrap_or_else(PoisonError::into_inner);
    table.get(&(kind, name.to_owned())).cloned()
}

/// The plug-in names of `kind`, in name order.
fn plugged_names(kind: Kind) -> Vec<String> {
    let table = PLUG_INS.read().unwrap_or_else(PoisonError::into_inner);
    table
        .keys()
        .filter(|(k, _)| *k == kind)
        .map(|(_, n)| n.clone())
        .collect()
}

/// The built-in names of `kind`, default first.
fn builtin_names(kind: Kind) -> Vec<&'static str> {
    match kind {
        Kind::Placement => PLACEMENTS.iter().map(|(n, _)| *n).collect(),
        Kind::LoadBalancer => LOAD_BALANCERS.iter().map(|(n, _)| *n).collect(),
        Kind::Queue => QUEUES.iter().map(|(n, _)| *n).collect(),
        Kind::KeepAlive => KEEP_ALIVES.iter().map(|(n, _)| *n).collect(),
    }
}

/// The constructor named `name` in a built-in table, else among the added ones.
fn find<T: Copy>(
    builtin: &[(&'static str, T)],
    added: &[(&'static str, T)],
    name: &str,
) -> Option<T> {
    builtin
        .iter()
        .chain(added)
        .find(|(n, _)| *n == name)
        .map(|(_, new)| *new)
}

/// The kinds of policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

    /// The known names of this kind: the built-ins (default first), those the program
    /// added, then the plug-ins registered now.
    pub fn names(self) -> Vec<String> {
        let mut names: Vec<String> = builtin_names(self).into_iter().map(String::from).collect();
        names.extend(extensions().names(self).into_iter().map(String::from));
        names.extend(plugged_names(self));
        names
    }

    /// This kind's key in the fleet config (`policies`, `plugins`): `placement`,
    /// `load-balancer`, `queue` or `keep-alive`.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Placement => "placement",
            Kind::LoadBalancer => "load-balancer",
            Kind::Queue => "queue",
            Kind::KeepAlive => "keep-alive",
        }
    }

    /// The kind whose [`Kind::key`] is `key`.
    pub fn from_key(key: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.key() == key)
    }

    /// This kind of policy, as a noun in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Placement => "placement policy",
            Kind::LoadBalancer => "load balancer",
            Kind::Queue => "queue discipline",
            Kind::KeepAlive => "keep-alive policy",
        }
    }

    /// Whether `name` is a known policy of this kind.
    pub fn knows(self, name: &str) -> bool {
        builtin_names(self).contains(&name)
            || extensions().names(self).contains(&name)
            || plugged(self, name).is_some()
    }

    /// Whether `name` is a plug-in of this kind (registered while the program runs).
    pub fn is_plug_in(self, name: &str) -> bool {
        plugged(self, name).is_some()
    }

    /// The default policy of this kind (always a built-in).
    pub fn default_name(self) -> &'static str {
        builtin_names(self)[0]
    }
}

/// A placement policy by name.
pub fn placement(name: &str, params: &Params) -> Option<Box<dyn Placement>> {
    if let Some(new) = find(PLACEMENTS, &extensions().placements, name) {
        return Some(new(params));
    }
    match plugged(Kind::Placement, name)? {
        Factory::Placement(new) => Some(new(params)),
        _ => None,
    }
}

/// A load balancer by name.
pub fn load_balancer(name: &str, params: &Params) -> Option<Box<dyn LoadBalancer>> {
    if let Some(new) = find(LOAD_BALANCERS, &extensions().load_balancers, name) {
        return Some(new(params));
    }
    match plugged(Kind::LoadBalancer, name)? {
        Factory::LoadBalancer(new) => Some(new(params)),
        _ => None,
    }
}

/// A queue discipline by name.
pub fn queue(name: &str, params: &Params) -> Option<Box<dyn QueueDiscipline>> {
    if let Some(new) = find(QUEUES, &extensions().queues, name) {
        return Some(new(params));
    }
    match plugged(Kind::Queue, name)? {
        Factory::Queue(new) => Some(new(params)),
        _ => None,
    }
}

/// A keep-alive policy by name.
pub fn keep_alive(name: &str, params: &Params) -> Option<Box<dyn KeepAlive>> {
    if let Some(new) = find(KEEP_ALIVES, &extensions().keep_alives, name) {
        return Some(new(params));
    }
    match plugged(Kind::KeepAlive, name)? {
        Factory::KeepAlive(new) => Some(new(params)),
        _ => None,
    }
}

/// The message for an unknown policy name, listing the known ones.
pub fn unknown(kind: Kind, name: &str) -> String {
    format!(
        "unknown {} {name:?}; known: {}",
        kind.noun(),
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
            for n in &names {
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
    fn an_added_policy_may_not_take_a_built_in_name_or_one_taken_twice() {
        let lb = Extensions::default().load_balancer("random", |_| Box::new(Random));
        assert_eq!(
            lb.check(),
            Err(ExtendError::BuiltIn {
                kind: "load balancer",
                name: "random".into()
            })
        );
        let twice = Extensions::default()
            .queue("mine", |_| Box::new(Fifo::default()))
            .queue("mine", |_| Box::new(Sjf::default()));
        assert_eq!(
            twice.check(),
            Err(ExtendError::Twice {
                kind: "queue discipline",
                name: "mine".into()
            })
        );
        let spaced = Extensions::default().placement(" mine", |_| Box::new(Pack));
        assert!(matches!(spaced.check(), Err(ExtendError::BadName { .. })));
        // The same name under two kinds is two policies.
        let ok = Extensions::default()
            .placement("mine", |_| Box::new(Pack))
            .keep_alive("mine", |_| Box::new(Fixed));
        assert_eq!(ok.check(), Ok(()));
        assert!(!ok.is_empty() && Extensions::default().is_empty());
    }

    #[test]
    fn policies_cannot_be_added_once_the_registry_was_read() {
        // Any read fixes the registry (this test binary never installs any).
        assert!(Kind::Placement.knows("spread"));
        let late = Extensions::default().placement("mine", |_| Box::new(Pack));
        assert_eq!(install(late), Err(ExtendError::TooLate));
        assert!(!Kind::Placement.knows("mine"));
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

    #[test]
    fn a_plug_in_is_known_by_its_name_until_unplugged() {
        let new: PlugIn<dyn LoadBalancer> = Arc::new(|_| Box::new(Random));
        let name = "plugged-test-lb";
        assert_eq!(plug_in(name, Factory::LoadBalancer(new.clone())), Ok(false));
        assert!(Kind::LoadBalancer.knows(name));
        assert!(!Kind::Queue.knows(name), "known under its own kind only");
        assert!(Kind::LoadBalancer.names().iter().any(|n| n == name));
        assert!(load_balancer(name, &Params::default()).is_some());
        assert_eq!(
            plug_in(name, Factory::LoadBalancer(new)),
            Ok(true),
            "replaced"
        );
        assert!(unplug(Kind::LoadBalancer, name));
        assert!(!Kind::LoadBalancer.knows(name));
        assert!(load_balancer(name, &Params::default()).is_none());
    }

    #[test]
    fn a_plug_in_may_not_take_a_built_in_name() {
        let new: PlugIn<dyn LoadBalancer> = Arc::new(|_| Box::new(Random));
        assert!(matches!(
            plug_in("knative", Factory::LoadBalancer(new.clone())),
            Err(ExtendError::BuiltIn { .. })
        ));
        assert!(matches!(
            plug_in("", Factory::LoadBalancer(new)),
            Err(ExtendError::BadName { .. })
        ));
    }
}
