//! Where instances run (placement) and which instance serves a request (load balancing).
//!
//! Pure decisions: the driver passes a snapshot and a seeded generator; nothing here reads a
//! clock, a socket or global randomness. Today it holds Knative's defaults; the pluggable
//! policy traits build on the same seams.

pub mod lb;
pub mod placement;
