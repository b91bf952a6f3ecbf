//! The control plane's HTTP API, shared by its server, the node agents and the CLI: the
//! resources and their Kubernetes-style paths, the wire types, and a client.

mod client;
pub mod decisions;
pub mod openapi;
pub mod printers;
pub mod resources;
pub mod time;
pub mod wire;

pub use client::{ApiError, Client, DelayFn, Watch};
pub use resources::Resource;
pub use wire::{
    FleetInfo, Report, ReportReply, RevisionLoad, RevisionServing, RttSample, Status, StatusCause,
    WatchEvent,
};
