//! kantai with one more load balancer, `first-with-room`: every request goes to the first
//! candidate instance with a free slot, in the order the driver lists them. This program
//! is the whole `kantai` command (`up`, `node`, `sim`, `validate`, ...) with that name added:
//! a revision chooses it with `kantai.dev/load-balancer: first-with-room`, a simulator
//! scenario with `policies: {load-balancer: first-with-room}`.
//!
//! ```text
//! cargo build -p kantai-own-policy
//! target/debug/kantai-own-policy sim SCENARIO   # with policies: {load-balancer: first-with-room}
//! ```

use kantai::policy::RequestInfo;
use kantai::policy::lb::{Candidate, LbContext, LoadBalancer, with_room};
use kantai::policy::rand::Rng;

/// The first candidate with room, always; none with room: held.
struct FirstWithRoom;

impl LoadBalancer for FirstWithRoom {
    fn pick(
        &mut self,
        _req: &dyn RequestInfo,
        candidates: &[Candidate],
        _ctx: &LbContext<'_>,
        _rng: &mut dyn Rng,
    ) -> Option<usize> {
        with_room(candidates).next()
    }
}

fn main() -> std::process::ExitCode {
    kantai::Cli::new()
        .load_balancer("first-with-room", |_| Box::new(FirstWithRoom))
        .run()
}
