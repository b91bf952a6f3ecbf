//! The kantai crate's integration tests as one binary: the shared fleet fixtures (`common`,
//! `python`) are built once, and each module is one area of behaviour. Run one area with
//! `cargo test -p kantai --test suite -- <module>::`, e.g. `containers::`.

mod common;
mod python;

mod api_fuzz;
mod architecture;
mod cli;
mod config;
mod containers;
mod edge;
mod fleet;
mod hostile;
mod kubectl;
mod multihost;
mod nodes;
mod policies;
mod protocols;
mod python_client;
