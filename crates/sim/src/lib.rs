//! `kantai sim`: a deterministic discrete-event simulator of a kantai fleet.
//!
//! It is a driver, like the live fleet: the decisions (the KPA autoscaler, placement, load
//! balancing, queue disciplines, latency estimation) are the pure crates' own code, called
//! by name through `kantai_policy::registry`, with virtual time and seeded generators. What
//! the simulator adds is the world around them: nodes and links (`network`), requests
//! (`workload`), the request path (`gateway`, then `instance`) and the control loop
//! (`control`), all in virtual time (`engine`). `docs/simulator.md` is the user's guide.
//!
//! The same scenario and seed give byte-identical output: there is no wall clock, no global
//! random generator, and nothing iterates a hash map where order could matter.

pub mod control;
pub mod dist;
pub mod engine;
pub mod load;
pub mod network;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod workload;

mod edge;
mod gateway;
mod instance;

use std::path::PathBuf;

pub use engine::{Progress, Sim};
pub use load::{Prepared, prepare, prepare_parsed};
pub use report::{Outcome, Summary};
pub use scenario::Scenario;

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario or a file it names is wrong.
    #[error("{file}: {message}")]
    Scenario {
        /// The file.
        file: String,
        /// What is wrong, and where.
        message: String,
    },
}

/// Runs a prepared simulation to the end; `progress` hears from it every million events.
pub fn run(
    prepared: &mut Prepared,
    progress: &mut dyn FnMut(Progress),
) -> std::io::Result<Outcome> {
    prepared.sim.run(progress);
    prepared.sim.close_log()?;
    Ok(prepared.sim.outcome())
}
