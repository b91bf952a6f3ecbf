//! Subcommands.

pub mod autoscale;
pub mod client;
pub mod control;
pub mod create;
pub mod decisions;
pub mod demo;
pub mod describe;
pub mod edit;
pub mod experiment;
pub mod func;
pub mod kubeconfig;
pub mod node;
pub mod sim;
pub mod up;
pub mod validate;
