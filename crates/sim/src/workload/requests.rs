//! A scenario's requests for a driver other than the simulator: `kantai experiment` replays
//! them against a live fleet. They are the very arrivals the simulator would see for the
//! same seed (the same sources, drawn from the same seeded streams), so a live run and a
//! simulated run of one scenario differ in the fleet, never in the load.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::SmallRng;

use crate::dist::Dist;
use crate::engine::{Kind, Sim, stream};
use crate::workload::Source;

/// What a driver needs to know of a function to call it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The service's namespace.
    pub namespace: String,
    /// The service.
    pub service: String,
    /// Its revision.
    pub revision: String,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// Its placement policy.
    pub placement: String,
    /// Its load balancer.
    pub load_balancer: String,
    /// Its queue discipline.
    pub queue: String,
    /// Its keep-alive policy.
    pub keep_alive: String,
    /// `containerConcurrency` (0: unlimited).
    pub container_concurrency: u32,
}

/// One request to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// When, from the start of the run.
    pub at: Duration,
    /// The function (index into [`Requests::targets`]).
    pub function: u32,
    /// The node it enters (index into [`Requests::nodes`]).
    pub origin: u32,
    /// How long the function should work on it (the trace's, or drawn from the function's
    /// service time).
    pub service: Duration,
    /// Its method, path and headers (index into [`Requests::kinds`]); 0 is `GET /` unless
    /// the workload gave none, see [`Requests::has_path`].
    pub kind: u32,
}

/// One closed-loop user, for a driver that runs it: it sends its first request at `first`,
/// then after each answer thinks for [`User::draw`]'s think time; none at or after `end`.
pub struct User {
    /// The function.
    pub function: u32,
    /// Its node.
    pub origin: u32,
    /// Its request kind (method, path, headers; see [`Requests::has_path`]).
    pub kind: u32,
    /// Its first request.
    pub first: Duration,
    /// No request at or after this.
    pub end: Duration,
    think: Dist,
    service: Dist,
    rng: SmallRng,
}

impl User {
    /// The next request's service time and the think time after its answer.
    pub fn draw(&mut self) -> (Duration, Duration) {
        (
            Duration::from_nanos(self.service.sample_ns(&mut self.rng)),
            Duration::from_nanos(self.think.sample_ns(&mut self.rng)),
        )
    }
}

/// The requests of a scenario in time order.
pub struct Requests {
    sources: Vec<Source>,
    next: BinaryHeap<Reverse<(u64, u32)>>,
    kinds: Vec<Kind>,
    /// Whether each kind came from a workload that named a path or headers.
    given: Vec<bool>,
    targets: Vec<Target>,
    service_time: Vec<Dist>,
    nodes: Vec<String>,
    rng: SmallRng,
    duration: Duration,
    warmup: Duration,
    users: Vec<User>,
}

impl Sim {
    /// The run's requests, for another driver; the simulator is consumed.
    pub fn into_requests(self) -> Requests {
        let mut next = BinaryHeap::new();
        let mut users = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            if let Source::Users {
                function,
                kind,
                think,
                end,
                pending,
                ..
            } = s
            {
                // Each user its own generator: live, users run concurrently.
                for (k, Reverse((t, origin))) in pending.iter().enumerate() {
                    users.push(User {
                        function: *function,
                        origin: *origin,
                        kind: *kind,
                        first: Duration::from_nanos(*t),
                        end: Duration::from_nanos(*end),
                        think: think.clone(),
                        service: self.funcs[*function as usize].service_time.clone(),
                        rng: stream(self.seed, 1_000_000 + ((i as u64) << 20) + k as u64),
                    });
                }
                continue;
            }
            if let Some(t) = s.peek() {
                next.push(Reverse((t, i as u32)));
            }
        }
        users.sort_by_key(|u| (u.first, u.origin));
        let given = self.kinds_given;
        Requests {
            users,
            sources: self.sources,
            next,
            kinds: self.kinds,
            given,
            targets: self
                .funcs
                .iter()
                .map(|f| Target {
                    namespace: f.namespace.clone(),
                    service: f.service.clone(),
                    revision: f.revision.clone(),
                    timeout: Duration::from_nanos(f.timeout_ns),
                    placement: f.scaler.policy().to_owned(),
                    load_balancer: f.lb_name.clone(),
                    queue: f.queue_name.clone(),
                    keep_alive: f.scaler.keep_alive().to_owned(),
                    container_concurrency: f.cc,
                })
                .collect(),
            service_time: self.funcs.iter().map(|f| f.service_time.clone()).collect(),
            nodes: self.node_names,
            // The simulator's own service-time stream: same seed, same draws in the same order
            // while requests are served in arrival order.
            rng: stream(self.seed, 1),
            duration: Duration::from_nanos(self.duration),
            warmup: Duration::from_nanos(self.warmup),
        }
    }
}

impl Requests {
    /// The functions, by index.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The nodes, by index.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The request kinds (method, path, headers), by index.
    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// The closed-loop users (their requests are not in the iterator: they follow answers).
    pub fn take_users(&mut self) -> Vec<User> {
        std::mem::take(&mut self.users)
    }

    /// Whether a kind's path and headers were given by the workload (not the default `/`).
    pub fn has_path(&self, kind: u32) -> bool {
        self.given.get(kind as usize).copied().unwrap_or(false)
    }

    /// The scenario's duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The scenario's warm-up (requests before it are not counted).
    pub fn warmup(&self) -> Duration {
        self.warmup
    }
}

impl Iterator for Requests {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        let Reverse((_, s)) = self.next.pop()?;
        let source = &mut self.sources[s as usize];
        let a = source.pop()?;
        if let Some(t) = source.peek() {
            self.next.push(Reverse((t, s)));
        }
        let service = a
            .service_ns
            .unwrap_or_else(|| self.service_time[a.function as usize].sample_ns(&mut self.rng));
        Some(Planned {
            at: Duration::from_nanos(a.t),
            function: a.function,
            origin: a.origin,
            service: Duration::from_nanos(service),
            kind: a.kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Scenario;

    #[test]
    fn the_requests_are_the_simulators_arrivals_in_time_order() {
        let text = "seed: 3\nduration: 20s\nservices: [../../examples/hello.yaml]\n\
                    functions: {hello: {service-time: {uniform: {min: 3ms, max: 5ms}}}}\n\
                    workload:\n  - {function: hello, origins: {node3: 1}, arrivals: {poisson: {rate: 10}}}\n\
                    \x20 - {function: hello, origins: {node1: 1}, arrivals: {constant: {rate: 5}}, path: /x}\n";
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("s.yaml");
        let plan = || {
            let s = Scenario::parse(text, "s.yaml").expect("scenario");
            crate::prepare_parsed(s, &here, None)
                .expect("prepared")
                .sim
                .into_requests()
        };
        let r = plan();
        assert_eq!(r.nodes(), ["node1", "node2", "node3"]);
        assert_eq!(r.targets()[0].service, "hello");
        let all: Vec<_> = plan().collect();
        assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
        let from = |n: u32| all.iter().filter(|p| p.origin == n).count();
        // Poisson at 10/s and constant at 5/s over 20 s.
        assert!((150..250).contains(&from(2)), "{}", from(2));
        assert_eq!(from(0), 100);
        assert!(
            all.iter()
                .all(|p| p.service >= std::time::Duration::from_millis(3)
                    && p.service <= std::time::Duration::from_millis(5))
        );
        assert!(all.iter().all(|p| r.has_path(p.kind) == (p.origin == 0)));
        // The same seed, the same requests.
        assert_eq!(all, plan().collect::<Vec<_>>());
    }

    #[test]
    fn closed_loop_users_are_handed_over_one_by_one() {
        let text = "seed: 3\nduration: 20s\nservices: [../../examples/hello.yaml]\n\
                    workload:\n  - {function: hello, origins: {node3: 1}, start: 2s, arrivals: {users: {count: 4, think: 1s}}}\n";
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("s.yaml");
        let s = Scenario::parse(text, "s.yaml").expect("scenario");
        // A level of 2.4 makes 10 users (rounded).
        let mut r = crate::prepare_parsed(s.scaled(2.4), &here, None)
            .expect("prepared")
            .sim
            .into_requests();
        let mut users = r.take_users();
        assert_eq!(users.len(), 10);
        // Their requests follow answers: none is planned ahead.
        assert_eq!(r.next(), None);
        let u = &mut users[0];
        assert_eq!((u.origin, u.end), (2, std::time::Duration::from_secs(20)));
        // First request one think time (1 s) after the start.
        assert_eq!(u.first, std::time::Duration::from_secs(3));
        let (service, think) = u.draw();
        assert_eq!(think, std::time::Duration::from_secs(1));
        assert!(service > std::time::Duration::ZERO);
        assert!(!r.has_path(u.kind));
        let bad = Scenario::parse(
            "duration: 20s\nservices: [x.yaml]\nworkload:\n  - {function: hello, arrivals: {users: {count: -1, think: 1s}}}\n",
            "s.yaml",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(bad.contains("users count -1"), "{bad}");
    }
}
