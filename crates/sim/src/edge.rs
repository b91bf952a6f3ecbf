//! Cold starts decided at the node, as the live agent's `edge.rs` decides them (docs/fleet.md,
//! "Cold starts at the node and edge autonomy"): before a gateway's poke leaves for the
//! control plane, its node asks the driver core (`kantai_driver::local_start`) whether the
//! revision's placement policy, run on the node's own view, puts the instance there; if so
//! the instance starts at once, and the node names it in its reports until a placement
//! counts it (adopted) or, [`kantai_driver::ADOPT_WITHIN`] passed without one, it follows
//! the placement like any other. The control plane's side (`told_local`) counts the starts
//! its reports name, with the rules the live control plane's `scaling.rs` applies.
//!
//! The simulated control plane is always reachable: a node here never turns autonomous.

use std::time::Duration;

use kantai_policy::FleetView;

use kantai_driver::{
    LocalView, Settled, considers_local_start, counted, local_seed, local_start, may_start_locally,
    settle,
};

use crate::engine::{Ev, IState, Sim};

impl Sim {
    /// A request for function `f` is held at `node` (its gateway holds `held`) and the
    /// gateway pokes: the node starts an instance itself if the revision's placement
    /// policy, on the node's own view, puts it there. Returns the instances of `f` the node
    /// started on its own that no placement counts yet, which its poke names.
    pub(crate) fn consider_local_start(&mut self, f: u32, node: u32, held: u32) -> u32 {
        let func = &self.funcs[f as usize];
        let local = func.local.get(&node).map_or(0, |l| l.0);
        let running = func.on_node.get(&node).map_or(0, |l| {
            l.iter()
                .filter(|&&i| {
                    matches!(
                        self.insts[i as usize].state,
                        IState::Starting | IState::Ready
                    )
                })
                .count() as u32
        });
        if !considers_local_start(local, running, func.placed[node as usize]) {
            return local;
        }
        // The node's view: the fleet as the published placements fill it (with the local
        // starts the control plane counted, which a live node sees once a placement counts
        // them), the node itself serving, and its own round trips only (as a live agent
        // builds it). Those round trips are the costly part, so the policy (or a forced
        // choice) is asked first, on the same view without them.
        let me = node as usize;
        let now = Duration::from_nanos(self.now);
        if !may_start_locally(
            &func.settings,
            &node_view(&self.fleet, &func.placed, me, held, now),
        ) {
            return local;
        }
        let own = self.net.own_matrix(node);
        let rtt = std::mem::replace(&mut self.fleet.rtt, own);
        let was_ready = std::mem::replace(&mut self.fleet.nodes[me].ready, true);
        let seed = local_seed(&func.namespace, &func.revision, &self.node_names[me]) ^ self.seed;
        let decided = local_start(
            &func.settings,
            seed,
            &node_view(&self.fleet, &func.placed, me, held, now),
        );
        self.fleet.rtt = rtt;
        self.fleet.nodes[me].ready = was_ready;
        if decided.is_err() {
            return 0;
        }
        let now = self.now;
        let func = &mut self.funcs[f as usize];
        func.local.insert(node, (1, now));
        func.local_starts += 1;
        self.start_instance(f, node);
        1
    }

    /// A node's pass over its local starts of `f`: forgotten once a placement counts them,
    /// or once the control plane had the adoption window to. Returns whether they now
    /// follow a placement that does not count them (the node applies it).
    pub(crate) fn settle_local(&mut self, f: u32, node: u32) -> bool {
        let now = self.now;
        let func = &mut self.funcs[f as usize];
        let Some(&(count, since)) = func.local.get(&node) else {
            return false;
        };
        let age = Duration::from_nanos(now - since);
        match settle(func.placed[node as usize], count, false, age) {
            Settled::Kept => false,
            Settled::Adopted => {
                func.local.remove(&node);
                false
            }
            Settled::Expired => {
                func.local.remove(&node);
                true
            }
        }
    }

    /// The instances of `f` node `node` runs: its placement's count, or its own local
    /// starts when more.
    pub(crate) fn desired_here(&self, f: u32, node: u32) -> u32 {
        let func = &self.funcs[f as usize];
        let local = func.local.get(&node).map_or(0, |l| l.0);
        counted(func.placed[node as usize], local)
    }

    /// Every report period: each node settles its local starts and names those left in its
    /// report, which crosses the link to the control plane (as does a report that names
    /// none any more, so that the control plane forgets them).
    pub(crate) fn report_local(&mut self, f: u32) {
        let func = &self.funcs[f as usize];
        if func.local.is_empty() && func.adopted.is_empty() {
            return;
        }
        let nodes: Vec<u32> = func
            .local
            .keys()
            .chain(func.adopted.keys())
            .copied()
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .collect();
        for node in nodes {
            if self.settle_local(f, node) {
                self.apply(f, node);
            }
            let func = &self.funcs[f as usize];
            let count = func.local.get(&node).map_or(0, |l| l.0);
            if count == 0 && !func.adopted.contains_key(&node) {
                continue;
            }
            let d = self
                .net
                .one_way(node, self.net.control, 0, &mut self.net_rng);
            self.at(self.now + d, Ev::Local(f, node, count));
        }
    }
}

/// A reachable node's view of a revision, over `fleet` (the shared one, or the one with the
/// node's own round trips).
fn node_view<'a>(
    fleet: &'a FleetView,
    current: &'a [u32],
    node: usize,
    held: u32,
    now: Duration,
) -> LocalView<'a> {
    LocalView {
        fleet,
        node,
        current,
        held,
        autonomous: false,
        now,
    }
}
