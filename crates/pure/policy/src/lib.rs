//! Where instances run (placement), which instance serves a request (load balancing), in
//! what order waiting requests go (queue disciplines) and how long an idle revision keeps
//! an instance (keep-alive): four traits, their built-ins, and a registry of names.
//!
//! Pure decisions: the driver passes a read-only view of the fleet, the time and a seeded
//! generator; nothing here reads a clock, a socket or global randomness. The same policy,
//! by the same name, runs in the live fleet and in the simulator.

pub mod fleet;
pub mod hash;
pub mod keepalive;
pub mod lb;
pub mod params;
pub mod placement;
pub mod queue;
pub mod registry;
pub mod request;

/// The random-number crate whose [`rand::Rng`] policies draw from (seeded by the driver).
pub use rand;

pub use fleet::{FleetView, NodeView, Resources, RttMatrix};
pub use hash::stable_hash;
pub use keepalive::{Arrival, Hold, Idleness, KeepAlive, KeepAliveInput};
pub use lb::{Candidate, LbContext, LoadBalancer};
pub use params::Params;
pub use placement::{Placement, PlacementDecision, PlacementInput};
pub use queue::{Admission, QueueDiscipline};
pub use request::{RequestInfo, RequestKey, SimpleRequest};
