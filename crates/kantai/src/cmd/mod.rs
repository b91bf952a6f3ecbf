//! Subcommands.

pub mod autoscale;
pub mod validate;
