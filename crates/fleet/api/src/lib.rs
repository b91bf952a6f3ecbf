//! The control plane's HTTP API, shared by its server, the node agents and the CLI: the
//! resources and their Kubernetes-style paths, the wire types, and a client.

pub mod auth;
mod client;
pub mod openapi;
pub mod printers;
pub mod resources;
pub mod wire;

/// The decision log (records shared with the simulator).
pub use kantai_decisions as decisions;
/// RFC 3339 timestamps.
pub use kantai_decisions::time;

pub use client::{ApiError, Client, ConfigStream, DelayFn, Watch};
pub use resources::Resource;
pub use wire::{
    ConfigEvent, FleetInfo, LocalStarts, Report, ReportReply, RevisionLoad, RevisionServing,
    RttSample, Status, StatusCause, WatchEvent,
};
