//! The simulated network: nodes grouped in sites, the link between every pair of sites, the
//! time each crossing takes (drawn by the same [`Link::one_way`] as the live fleet's link
//! emulation), and the latency monitor (monlat): per pair of sites an [`RttEstimator`] fed
//! by the round trips of forwarded requests, as each agent measures passively.
//!
//! A topology file gives each node a site of its own; a generated topology puts many nodes
//! in a site, so that what is kept per pair of sites stays small at 10,000 nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use kantai_latency::RttEstimator;
use kantai_model::topology::{Link, Topology};
use kantai_policy::{NodeView, RttMatrix};
use rand::Rng;
use rand::RngExt;

use crate::scenario::GeneratedTopology;

/// One node.
#[derive(Clone, Debug)]
pub struct SimNode {
    /// Its name.
    pub name: String,
    /// Its site.
    pub site: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Most instances (`None`: unlimited).
    pub max_instances: Option<u32>,
    /// CPU cores for instances.
    pub cpu: Option<f64>,
    /// Memory bytes for instances.
    pub memory: Option<f64>,
}

/// The nodes, the links and the latency monitor.
pub struct Network {
    /// The nodes, in the topology's order (node indices everywhere).
    pub nodes: Vec<SimNode>,
    /// Number of sites.
    pub sites: usize,
    /// `sites`×`sites` links (a site's own entry is its LAN).
    links: Vec<Link>,
    /// The node next to the control plane.
    pub control: u32,
    /// Round-trip estimators per (from site, to site), created by the first sample.
    monitors: Vec<Option<Box<RttEstimator>>>,
    /// Each site's row of estimated round trips to every node, as the balancers read it,
    /// rebuilt at most once a second when a sample changed it.
    rows: Vec<Row>,
    /// Whether a sample arrived since placement last read the matrix.
    sampled: bool,
}

#[derive(Default)]
struct Row {
    values: Vec<Option<f64>>,
    stale: bool,
    built_at: Option<u64>,
}

/// How often a balancer's view of the round trips is refreshed (the agents' report period).
const ROW_REFRESH_NS: u64 = 1_000_000_000;

impl Network {
    /// The network of a fleet topology file: a site per node.
    pub fn from_topology(t: &Topology) -> Network {
        let nodes: Vec<SimNode> = t
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| SimNode {
                name: n.name.clone(),
                site: i as u32,
                labels: n.labels.clone(),
                max_instances: n.capacity.instances,
                cpu: n.capacity.cpu.as_ref().map(|c| c.value()),
                memory: n.capacity.memory.as_ref().map(|m| m.value()),
            })
            .collect();
        let s = nodes.len();
        let mut links = vec![Link::LOCAL; s * s];
        for a in 0..s {
            for b in 0..s {
                links[a * s + b] = t.link(&nodes[a].name, &nodes[b].name);
            }
        }
        let control = t
            .control
            .node
            .as_deref()
            .and_then(|c| nodes.iter().position(|n| n.name == c))
            .unwrap_or(0) as u32;
        Network::new(nodes, s, links, control)
    }

    /// A generated network: sites at random points of a unit square, nodes dealt to sites
    /// in turn, round trips between sites growing linearly with their distance.
    pub fn generate(g: &GeneratedTopology, rng: &mut impl Rng) -> Network {
        let s = g.sites as usize;
        let points: Vec<(f64, f64)> = (0..s)
            .map(|_| (rng.random::<f64>(), rng.random::<f64>()))
            .collect();
        let (lo, hi) = (g.min_rtt.0.as_secs_f64(), g.max_rtt.0.as_secs_f64());
        let mut links = vec![Link::LOCAL; s * s];
        for a in 0..s {
            for b in 0..s {
                links[a * s + b] = if a == b {
                    Link {
                        rtt: g.lan_rtt.0,
                        ..Link::LOCAL
                    }
                } else {
                    let (dx, dy) = (points[a].0 - points[b].0, points[a].1 - points[b].1);
                    let dist = (dx * dx + dy * dy).sqrt() / std::f64::consts::SQRT_2;
                    let rtt = lo + (hi - lo) * dist;
                    Link {
                        rtt: Duration::from_secs_f64(rtt),
                        jitter: Duration::from_secs_f64(rtt * g.jitter),
                        loss: g.loss,
                        bandwidth: None,
                    }
                };
            }
        }
        let width = (g.nodes as usize).to_string().len();
        let nodes = (0..g.nodes as usize)
            .map(|i| SimNode {
                name: format!("node{:0width$}", i + 1),
                site: (i % s) as u32,
                labels: BTreeMap::from([("site".to_owned(), format!("site{}", i % s + 1))]),
                max_instances: g.instances_per_node,
                cpu: None,
                memory: None,
            })
            .collect();
        Network::new(nodes, s, links, 0)
    }

    fn new(nodes: Vec<SimNode>, sites: usize, links: Vec<Link>, control: u32) -> Network {
        Network {
            nodes,
            sites,
            links,
            control,
            monitors: (0..sites * sites).map(|_| None).collect(),
            rows: (0..sites).map(|_| Row::default()).collect(),
            sampled: false,
        }
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| i as u32)
    }

    fn link(&self, a: u32, b: u32) -> &Link {
        let (sa, sb) = (self.nodes[a as usize].site, self.nodes[b as usize].site);
        &self.links[sa as usize * self.sites + sb as usize]
    }

    /// One crossing from node `a` to node `b` of a message of `bytes`, in ns (same node: 0).
    pub fn one_way(&self, a: u32, b: u32, bytes: u64, rng: &mut impl Rng) -> u64 {
        if a == b {
            return 0;
        }
        let link = self.link(a, b);
        if link.is_free() {
            return 0;
        }
        link.one_way(bytes, rng).as_nanos() as u64
    }

    /// Half the configured round trip between two nodes, in ns: the delay of control
    /// messages (watch events, status updates), which kantai does not draw per message.
    pub fn mean_one_way(&self, a: u32, b: u32) -> u64 {
        if a == b {
            return 0;
        }
        self.link(a, b).rtt.as_nanos() as u64 / 2
    }

    /// A round trip measured from node `from` to node `to` at `now_ns`: what the origin's
    /// latency monitor learns from a forwarded request.
    pub fn sample(&mut self, from: u32, to: u32, rtt_ns: u64, now_ns: u64) {
        if from == to {
            return;
        }
        let (sa, sb) = (self.nodes[from as usize].site, self.nodes[to as usize].site);
        self.monitors[sa as usize * self.sites + sb as usize]
            .get_or_insert_with(Box::default)
            .record(Duration::from_nanos(now_ns), rtt_ns as f64 / 1e6);
        self.rows[sa as usize].stale = true;
        self.sampled = true;
    }

    /// Whether a round trip was sampled since the last call.
    pub fn take_sampled(&mut self) -> bool {
        std::mem::take(&mut self.sampled)
    }

    /// The estimated round trip between two sites in ms: the monitor's, else the link's
    /// configured value (what the agents' probes of idle peers find).
    pub fn estimate_sites(&self, sa: u32, sb: u32) -> f64 {
        self.monitors[sa as usize * self.sites + sb as usize]
            .as_deref()
            .and_then(RttEstimator::ewma_ms)
            .unwrap_or_else(|| {
                self.links[sa as usize * self.sites + sb as usize]
                    .rtt
                    .as_secs_f64()
                    * 1e3
            })
    }

    /// The estimated round trip from `origin` to every node, as its balancers see it.
    pub fn row(&mut self, origin: u32, now_ns: u64) -> &[Option<f64>] {
        let site = self.nodes[origin as usize].site as usize;
        let due = {
            let r = &self.rows[site];
            r.built_at.is_none()
                || (r.stale && r.built_at.is_some_and(|b| now_ns >= b + ROW_REFRESH_NS))
        };
        if due {
            let per_site: Vec<f64> = (0..self.sites as u32)
                .map(|b| self.estimate_sites(site as u32, b))
                .collect();
            let values = self
                .nodes
                .iter()
                .map(|n| Some(per_site[n.site as usize]))
                .collect();
            let r = &mut self.rows[site];
            r.values = values;
            r.stale = false;
            r.built_at = Some(now_ns);
        }
        &self.rows[site].values
    }

    /// The estimated round trips as placement sees them (per pair of sites).
    pub fn matrix(&self) -> RttMatrix {
        let of = self.nodes.iter().map(|n| n.site).collect();
        let mut m = RttMatrix::grouped(of, self.sites);
        for a in 0..self.sites as u32 {
            for b in 0..self.sites as u32 {
                m.set(a as usize, b as usize, self.estimate_sites(a, b));
            }
        }
        m
    }

    /// The round trips one node knows, as its own decisions see them: its own row only
    /// (what its latency monitor measured; a live agent knows no other node's).
    pub fn own_matrix(&self, node: u32) -> RttMatrix {
        let of = self.nodes.iter().map(|n| n.site).collect();
        let mut m = RttMatrix::grouped(of, self.sites);
        let a = self.nodes[node as usize].site;
        for b in 0..self.sites as u32 {
            m.set(a as usize, b as usize, self.estimate_sites(a, b));
        }
        m
    }

    /// The nodes as placement sees them, with nothing placed yet.
    pub fn node_views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|n| NodeView {
                name: n.name.clone(),
                labels: n.labels.clone(),
                ready: true,
                max_instances: n.max_instances,
                cpu: n.cpu,
                memory: n.memory,
                instances: 0,
                cpu_used: 0.0,
                memory_used: 0.0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn the_seed_testbed_pays_its_edge_links_only() {
        let mut net = Network::from_topology(&Topology::seed_testbed());
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(net.one_way(0, 1, 0, &mut rng), 0);
        let d = net.one_way(0, 2, 0, &mut rng);
        assert!((20_000_000..=30_000_000).contains(&d), "{d}");
        assert_eq!(net.mean_one_way(2, 0), 25_000_000);
        // Before any sample, the row holds the configured round trips.
        assert_eq!(net.row(2, 0), &[Some(50.0), Some(50.0), Some(0.0)][..]);
        net.sample(2, 0, 60_000_000, 1_000_000);
        // Not refreshed within the second...
        assert_eq!(net.row(2, 500_000_000)[0], Some(50.0));
        // ...and then the monitor's estimate.
        assert_eq!(net.row(2, 1_000_000_000)[0], Some(60.0));
        assert_eq!(net.matrix().get(2, 0), Some(60.0));
        assert_eq!(net.matrix().get(0, 2), Some(50.0));
    }

    #[test]
    fn generated_sites_share_their_round_trips() {
        let g: GeneratedTopology =
            serde_saphyr::from_str("{nodes: 1000, sites: 10, min-rtt: 10ms, max-rtt: 100ms}")
                .expect("parse");
        let net = Network::generate(&g, &mut SmallRng::seed_from_u64(3));
        assert_eq!(net.nodes.len(), 1000);
        let m = net.matrix();
        // Nodes 0 and 10 are in site 0; node 1 in site 1.
        assert_eq!(m.get(0, 10), Some(0.2));
        assert_eq!(m.get(0, 1), m.get(10, 11));
        let d = m.get(0, 1).expect("known");
        assert!((10.0..=100.0).contains(&d), "{d}");
    }
}
