//! kantai's resource model: Knative `serving.knative.dev/v1` objects read from YAML/JSON,
//! defaulted and validated exactly as Knative's webhooks do, named and linked as Knative's
//! controllers do, and the fleet config that sets the defaults.
//!
//! This crate is pure: it never reads files, sockets or clocks. Callers pass text in and get
//! objects and findings out; times (for status conditions) are passed in as strings.

pub mod autoscaling;
pub mod config;
pub mod core;
pub mod decode;
pub mod error;
pub mod fleet;
pub mod lifecycle;
pub mod manifest;
pub mod meta;
pub mod node;
pub mod serving;
pub mod time;
pub mod topology;
pub mod units;

pub use config::{AutoscalerConfig, DefaultsConfig, ServingConfig};
pub use error::{FieldError, FieldPath, Findings, Severity};
pub use serving::Object;
