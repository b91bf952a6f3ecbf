//! The topology file: the nodes of a fleet and the network links between them.
//!
//! ```yaml
//! nodes:
//!   - name: node1
//!     labels: {tier: cloud}
//!     address: 127.0.1.1          # the node's host address (its gateway and data port bind here)
//!     gateway: 127.0.1.1:8080     # where clients send requests (default: address, port 8080)
//!     capacity: {instances: 20, cpu: "4", memory: 8Gi}
//! links:
//!   default: {rtt: 0s}            # pairs not listed below
//!   pairs:
//!     - {between: [node1, node3], rtt: 50ms, jitter: 10ms, loss: 0.001, bandwidth: 100Mbit}
//! control:
//!   node: node1                   # the control plane runs next to this node
//!   listen: 127.0.0.1:7400
//! emulate: true                   # emulate the links in user space (false: a real network)
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::config::ConfigError;
use crate::decode::{Decode, Fields};
use crate::error::{FieldError, FieldPath, Findings};
use crate::node::{Node as DocNode, ParseLimits, Value, parse_documents};
use crate::serving::naming::is_dns1123_label;
use crate::units::{Quantity, format_go_duration, parse_go_duration};

/// Default port of a node's gateway.
pub const DEFAULT_GATEWAY_PORT: u16 = 8080;
/// Default listen address of the control plane.
pub const DEFAULT_CONTROL_LISTEN: &str = "127.0.0.1:7400";

/// A whole fleet: nodes, links, where the control plane runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Topology {
    /// The nodes, in display order (placement strings such as `0-0-1` follow it).
    pub nodes: Vec<NodeSpec>,
    /// Links between nodes.
    pub links: Links,
    /// The control plane.
    pub control: ControlSpec,
    /// Whether link properties are emulated in user space (no real network between nodes).
    pub emulate: bool,
}

/// One node of the topology.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeSpec {
    /// Node name (DNS-1123 label).
    pub name: String,
    /// Labels such as `tier: edge`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The node's host address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// The gateway's listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<SocketAddr>,
    /// What the node can run.
    pub capacity: Capacity,
}

impl NodeSpec {
    /// The gateway address: the explicit one, else the node's address on port 8080.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway.or_else(|| {
            self.address
                .map(|a| SocketAddr::new(a, DEFAULT_GATEWAY_PORT))
        })
    }
}

/// A node's capacity.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Capacity {
    /// Most instances the node runs at once (unlimited when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// CPU cores available to instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory available to instances, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// Properties of the path between two nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Link {
    /// Round-trip time.
    pub rtt: Duration,
    /// Variation of the round-trip time: each crossing takes `rtt/2 ± jitter/2`.
    pub jitter: Duration,
    /// Probability that a message is lost once (and retransmitted), 0 ≤ loss < 1.
    pub loss: f64,
    /// Bits per second; `None` is unlimited.
    pub bandwidth: Option<u64>,
}

impl Link {
    /// A link with no emulated effect.
    pub const LOCAL: Link = Link {
        rtt: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        bandwidth: None,
    };

    /// Whether crossing the link costs anything.
    pub fn is_free(&self) -> bool {
        self.rtt.is_zero() && self.jitter.is_zero() && self.loss == 0.0 && self.bandwidth.is_none()
    }

    /// The time one crossing takes for a message of `bytes` bytes: half the round trip,
    /// ± half the jitter (uniform), plus transmission time at the link's bandwidth, plus a
    /// retransmission (at least TCP's minimum RTO) when the message is lost. The live fleet's
    /// link emulation and the simulator both draw from here.
    pub fn one_way(&self, bytes: u64, rng: &mut dyn rand::Rng) -> Duration {
        use rand::RngExt;
        if self.is_free() {
            return Duration::ZERO;
        }
        let half = self.rtt.as_secs_f64() / 2.0;
        let jitter = self.jitter.as_secs_f64() / 2.0;
        let mut d = half
            + if jitter > 0.0 {
                rng.random_range(-jitter..=jitter)
            } else {
                0.0
            };
        if let Some(bw) = self.bandwidth {
            d += bytes as f64 * 8.0 / bw as f64;
        }
        if self.loss > 0.0 && rng.random_bool(self.loss) {
            d += MIN_RTO.max(self.rtt).as_secs_f64();
        }
        Duration::from_secs_f64(d.max(0.0))
    }
}

/// TCP's minimum retransmission timeout: what a lost message costs at least.
pub const MIN_RTO: Duration = Duration::from_millis(200);

impl Serialize for Link {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("rtt", &format_go_duration(self.rtt))?;
        if !self.jitter.is_zero() {
            m.serialize_entry("jitter", &format_go_duration(self.jitter))?;
        }
        if self.loss > 0.0 {
            m.serialize_entry("loss", &self.loss)?;
        }
        if let Some(b) = self.bandwidth {
            m.serialize_entry("bandwidth", &format!("{b}bit"))?;
        }
        m.end()
    }
}

/// The links of a topology.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Links {
    /// For pairs that are not listed.
    pub default: Link,
    /// Listed pairs (symmetric).
    pub pairs: Vec<LinkPair>,
}

/// A link between two named nodes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkPair {
    /// The two nodes.
    pub between: [String; 2],
    /// The link.
    #[serde(flatten)]
    pub link: Link,
}

impl Links {
    /// The link between two nodes (free within a node).
    pub fn between(&self, a: &str, b: &str) -> Link {
        if a == b {
            return Link::LOCAL;
        }
        self.pairs
            .iter()
            .find(|p| {
                (p.between[0] == a && p.between[1] == b) || (p.between[0] == b && p.between[1] == a)
            })
            .map_or(self.default, |p| p.link)
    }
}

/// Where the control plane runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ControlSpec {
    /// The node the control plane sits next to; its traffic to other nodes crosses their links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Listen address of the API.
    pub listen: SocketAddr,
}

impl Topology {
    /// The fleet's node order, the one every driver and printer uses (placement strings such
    /// as `0-0-1` and the index of every node in a `FleetView` follow it): the topology's
    /// nodes as listed, then every other registered node by name.
    pub fn node_order<'a>(&self, registered: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut order: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let mut extra: Vec<String> = registered
            .into_iter()
            .filter(|n| !order.iter().any(|o| o == n))
            .map(str::to_owned)
            .collect();
        extra.sort();
        extra.dedup();
        order.extend(extra);
        order
    }

    /// The seed's testbed: node1 and node2 in the cloud, node3 at the edge 50 ms ± 10 ms round
    /// trip from both; node1–node2 on the same LAN (no emulated delay).
    pub fn seed_testbed() -> Topology {
        let node = |name: &str, i: u8, tier: &str| NodeSpec {
            name: name.to_owned(),
            labels: BTreeMap::from([("tier".to_owned(), tier.to_owned())]),
            address: Some(IpAddr::from([127, 0, 1, i])),
            gateway: None,
            capacity: Capacity {
                instances: Some(20),
                ..Capacity::default()
            },
        };
        let edge = Link {
            rtt: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            loss: 0.0,
            bandwidth: None,
        };
        Topology {
            nodes: vec![
                node("node1", 1, "cloud"),
                node("node2", 2, "cloud"),
                node("node3", 3, "edge"),
            ],
            links: Links {
                default: Link::LOCAL,
                pairs: vec![
                    LinkPair {
                        between: ["node1".into(), "node3".into()],
                        link: edge,
                    },
                    LinkPair {
                        between: ["node2".into(), "node3".into()],
                        link: edge,
                    },
                ],
            },
            control: ControlSpec {
                node: Some("node1".into()),
                listen: DEFAULT_CONTROL_LISTEN
                    .parse()
                    .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7400))),
            },
            emulate: true,
        }
    }

    /// Parses a topology file; errors name the line and the field.
    pub fn parse(text: &str) -> Result<Topology, ConfigError> {
        Topology::from_node(&one_document(
            text,
            "a topology file holds exactly one YAML document",
        )?)
    }

    /// Reads a topology from a parsed document (also used for JSON from the API).
    pub fn from_node(doc: &DocNode) -> Result<Topology, ConfigError> {
        let mut out = Findings::new();
        let t = Topology::decode(doc, &FieldPath::root(), &mut out);
        out.locate_in(doc);
        match t {
            Some(t) if !out.has_errors() => Ok(t),
            _ => Err(ConfigError(out.errors().cloned().collect())),
        }
    }

    /// The node of a name.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The link between two nodes, as emulated (free when emulation is off).
    pub fn link(&self, a: &str, b: &str) -> Link {
        if self.emulate {
            self.links.between(a, b)
        } else {
            Link::LOCAL
        }
    }
}

impl Decode for Topology {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let nodes: Vec<NodeSpec> = f.req("nodes", out).unwrap_or_default();
        let links: Links = f.opt("links", out).unwrap_or_default();
        let control: Option<ControlSpec> = f.opt("control", out);
        let emulate = f.opt("emulate", out).unwrap_or(true);
        f.close(out);

        if nodes.is_empty() {
            out.push(FieldError::error(
                path.field("nodes"),
                "a fleet needs at least one node",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, n) in nodes.iter().enumerate() {
            if !seen.insert(n.name.as_str()) {
                out.push(FieldError::error(
                    path.field("nodes").index(i).field("name"),
                    format!("node {:?} is defined twice", n.name),
                ));
            }
        }
        for (i, p) in links.pairs.iter().enumerate() {
            for (j, end) in p.between.iter().enumerate() {
                if !seen.contains(end.as_str()) {
                    out.push(FieldError::error(
                        path.field("links")
                            .field("pairs")
                            .index(i)
                            .field("between")
                            .index(j),
                        format!(
                            "{end:?} is not a node of this topology (nodes: {})",
                            nodes
                                .iter()
                                .map(|n| n.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            if p.between[0] == p.between[1] {
                out.push(FieldError::error(
                    path.field("links").field("pairs").index(i).field("between"),
                    "a link joins two different nodes",
                ));
            }
        }
        let control = control.unwrap_or(ControlSpec {
            node: nodes.first().map(|n| n.name.clone()),
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
        });
        if let Some(c) = &control.node
            && !seen.contains(c.as_str())
        {
            out.push(FieldError::error(
                path.field("control").field("node"),
                format!("{c:?} is not a node of this topology"),
            ));
        }
        Some(Topology {
            nodes,
            links,
            control,
            emulate,
        })
    }
}

impl Decode for NodeSpec {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let name: String = f.req("name", out).unwrap_or_default();
        if !name.is_empty() && !is_dns1123_label(&name) {
            out.push(FieldError::invalid(
                path.field("name"),
                &name,
                "a node name must be a DNS-1123 label (lowercase letters, digits, '-')",
            ));
        }
        let address = parse_with(
            &mut f,
            "address",
            out,
            |s| s.parse::<IpAddr>().ok(),
            "an IP address such as 127.0.1.3",
        );
        let gateway = parse_with(
            &mut f,
            "gateway",
            out,
            |s| s.parse::<SocketAddr>().ok(),
            "an address and port such as 127.0.1.3:8080",
        );
        let n = NodeSpec {
            name,
            labels: f.or_default("labels", out),
            address,
            gateway,
            capacity: f.opt("capacity", out).unwrap_or_default(),
        };
        f.close(out);
        Some(n)
    }
}

fn parse_with<T>(
    f: &mut Fields<'_>,
    name: &'static str,
    out: &mut Findings,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Option<T> {
    let text: String = f.opt(name, out)?;
    let v = parse(text.trim());
    if v.is_none() {
        out.push(FieldError::invalid(
            f.path().field(name),
            &text,
            &format!("must be {what}"),
        ));
    }
    v
}

impl Decode for Capacity {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let instances: Option<i64> = f.opt("instances", out);
        let c = Capacity {
            instances: instances.and_then(|i| {
                let v = u32::try_from(i).ok();
                if v.is_none() {
                    out.push(FieldError::out_of_bounds(
                        path.field("instances"),
                        i,
                        0,
                        u32::MAX,
                    ));
                }
                v
            }),
            cpu: f.opt("cpu", out),
            memory: f.opt("memory", out),
        };
        f.close(out);
        Some(c)
    }
}

impl Decode for ControlSpec {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let node_name = f.opt("node", out);
        let listen = parse_with(
            &mut f,
            "listen",
            out,
            |s| s.parse::<SocketAddr>().ok(),
            "an address and port such as 127.0.0.1:7400",
        )
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7400)));
        f.close(out);
        Some(ControlSpec {
            node: node_name,
            listen,
        })
    }
}

impl Decode for Links {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let mut f = Fields::open(node, path, out)?;
        let l = Links {
            default: f.opt("default", out).unwrap_or_default(),
            pairs: f.or_default("pairs", out),
        };
        f.close(out);
        Some(l)
    }
}

impl Decode for LinkPair {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        let between: Vec<String> = node
            .get("between")
            .and_then(|b| Vec::<String>::decode(b, &path.field("between"), out))
            .unwrap_or_default();
        let link = decode_link(node, path, out, &["between"])?;
        match <[String; 2]>::try_from(between) {
            Ok(between) => Some(LinkPair { between, link }),
            Err(v) => {
                out.push(FieldError::error(
                    path.field("between"),
                    format!("names exactly two nodes, got {}", v.len()),
                ));
                None
            }
        }
    }
}

impl Decode for Link {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        decode_link(node, path, out, &[])
    }
}

fn decode_link(
    node: &DocNode,
    path: &FieldPath,
    out: &mut Findings,
    extra: &[&'static str],
) -> Option<Link> {
    let mut f = Fields::open(node, path, out)?;
    for e in extra {
        f.skip(e);
    }
    let dur = |f: &mut Fields<'_>, name: &'static str, out: &mut Findings| -> Duration {
        let Some(text) = f.opt::<ScalarText>(name, out) else {
            return Duration::ZERO;
        };
        match parse_go_duration(&text.0) {
            Ok(n) if n >= 0 => Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX)),
            Ok(_) => {
                out.push(FieldError::error(path.field(name), "cannot be negative"));
                Duration::ZERO
            }
            Err(e) => {
                out.push(FieldError::error(path.field(name), e));
                Duration::ZERO
            }
        }
    };
    let rtt = dur(&mut f, "rtt", out);
    let jitter = dur(&mut f, "jitter", out);
    let loss: f64 = f.opt("loss", out).unwrap_or(0.0);
    if !(0.0..1.0).contains(&loss) {
        out.push(FieldError::error(
            path.field("loss"),
            format!("{loss} must be in [0, 1)"),
        ));
    }
    let bandwidth =
        f.opt::<ScalarText>("bandwidth", out)
            .and_then(|t| match parse_bandwidth(&t.0) {
                Some(b) => Some(b),
                None => {
                    out.push(FieldError::invalid(
                        path.field("bandwidth"),
                        &t.0,
                        "must be a rate such as 100Mbit, 1Gbit or 500kbit",
                    ));
                    None
                }
            });
    f.close(out);
    if jitter > rtt {
        out.push(FieldError::error(
            path.field("jitter"),
            "must not exceed rtt",
        ));
    }
    Some(Link {
        rtt,
        jitter,
        loss: loss.clamp(0.0, 0.999),
        bandwidth,
    })
}

/// A link as changed while the fleet runs (a node agent's `PUT /kantai/v1/links/{peer}`):
/// the topology's link fields, plus `down`, a stalled link that no message crosses.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkSetting {
    /// Delay, jitter, loss and bandwidth.
    pub link: Link,
    /// Stalled: every crossing waits until the caller's own timeout.
    pub down: bool,
}

impl LinkSetting {
    /// Reads a setting from YAML or JSON text (`{rtt: 50ms, loss: 0.2}`, `{down: true}`).
    pub fn parse(text: &str) -> Result<LinkSetting, ConfigError> {
        let doc = &one_document(text, "a link setting is exactly one YAML or JSON document")?;
        let mut out = Findings::new();
        let root = FieldPath::root();
        let link = decode_link(doc, &root, &mut out, &["down"]);
        let down = Fields::open(doc, &root, &mut out)
            .and_then(|mut f| f.opt::<bool>("down", &mut out))
            .unwrap_or(false);
        out.locate_in(doc);
        match link {
            Some(link) if !out.has_errors() => Ok(LinkSetting { link, down }),
            _ => Err(ConfigError(out.errors().cloned().collect())),
        }
    }
}

/// The one document of `text`; `otherwise` says what is wrong when there are more or none.
fn one_document(text: &str, otherwise: &str) -> Result<DocNode, ConfigError> {
    let docs = parse_documents(text, ParseLimits::default()).map_err(|e| {
        ConfigError(vec![FieldError {
            pos: e.pos,
            ..FieldError::error(FieldPath::root(), e.message)
        }])
    })?;
    match <[DocNode; 1]>::try_from(docs) {
        Ok([doc]) => Ok(doc),
        Err(_) => Err(ConfigError(vec![FieldError::error(
            FieldPath::root(),
            otherwise,
        )])),
    }
}

/// A scalar written as a string or a number (`rtt: 0` and `rtt: "50ms"`).
struct ScalarText(String);

impl Decode for ScalarText {
    fn decode(node: &DocNode, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        match &node.value {
            Value::Str(s) => Some(ScalarText(s.trim().to_owned())),
            Value::Int(i) => Some(ScalarText(i.to_string())),
            Value::Float(f) => Some(ScalarText(f.to_string())),
            _ => {
                crate::decode::wrong_type(node, path, "string", out);
                None
            }
        }
    }
}

/// Parses `100Mbit`, `1Gbit`, `500kbit`, `64000bit` (tc's units) into bits per second.
pub fn parse_bandwidth(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "bit" | "bps" => 1.0,
        "kbit" | "kbps" => 1e3,
        "mbit" | "mbps" => 1e6,
        "gbit" | "gbps" => 1e9,
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 1.0).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_order_is_the_topologys_then_other_registered_nodes_by_name() {
        let t = Topology::seed_testbed();
        let order = t.node_order(["zeta", "node2", "alpha", "zeta"]);
        assert_eq!(order, ["node1", "node2", "node3", "alpha", "zeta"]);
    }

    #[test]
    fn link_settings_read_like_topology_links_plus_down() {
        let s = LinkSetting::parse("{rtt: 20ms, loss: 0.3}").expect("setting");
        assert_eq!(s.link.rtt, Duration::from_millis(20));
        assert!((s.link.loss - 0.3).abs() < 1e-12);
        assert!(!s.down);
        assert!(LinkSetting::parse("{\"down\": true}").expect("json").down);
        let err = LinkSetting::parse("{loss: 1.5, dwn: true}")
            .expect_err("bad")
            .to_string();
        assert!(err.contains("loss: 1.5 must be in [0, 1)"), "{err}");
        assert!(err.contains("dwn"), "{err}");
    }

    #[test]
    fn the_seed_testbed() {
        let t = Topology::seed_testbed();
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.link("node1", "node3").rtt, Duration::from_millis(50));
        assert_eq!(t.link("node3", "node2").jitter, Duration::from_millis(10));
        assert!(t.link("node1", "node2").is_free());
        assert!(t.link("node3", "node3").is_free());
        assert_eq!(
            t.nodes[2].gateway_addr(),
            Some("127.0.1.3:8080".parse().expect("addr"))
        );
    }

    #[test]
    fn a_topology_file_parses() {
        let t = Topology::parse(
            "nodes:\n  - name: a\n    address: 127.0.2.1\n    capacity: {instances: 4, cpu: 2, memory: 1Gi}\n  - name: b\n    labels: {tier: edge}\n    gateway: 127.0.2.2:0\n\
             links:\n  default: {rtt: 1ms}\n  pairs:\n    - {between: [a, b], rtt: 70ms, jitter: 10ms, loss: 0.01, bandwidth: 100Mbit}\n\
             control: {node: b, listen: 127.0.0.1:0}\nemulate: true\n",
        )
        .expect("valid");
        assert_eq!(t.link("a", "b").rtt, Duration::from_millis(70));
        assert_eq!(t.link("b", "a").bandwidth, Some(100_000_000));
        assert_eq!(t.nodes[0].capacity.instances, Some(4));
        assert_eq!(t.control.node.as_deref(), Some("b"));
        // Round trip through JSON (the API serves it to the agents).
        let json = serde_json::to_value(&t).expect("json");
        let again = Topology::from_node(&DocNode::from_json(&json)).expect("re-read");
        assert_eq!(again, t);
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let err = Topology::parse(
            "nodes:\n  - name: a\n  - name: a\n    address: nowhere\nlinks:\n  pairs:\n    - {between: [a, c], rtt: -5ms, loss: 2}\n",
        )
        .expect_err("invalid")
        .to_string();
        assert!(
            err.contains("line 3: nodes[1].name: node \"a\" is defined twice"),
            "{err}"
        );
        assert!(
            err.contains("line 4: nodes[1].address: invalid value \"nowhere\""),
            "{err}"
        );
        assert!(
            err.contains("links.pairs[0].between[1]: \"c\" is not a node"),
            "{err}"
        );
        assert!(
            err.contains("links.pairs[0].rtt: cannot be negative"),
            "{err}"
        );
        assert!(
            err.contains("links.pairs[0].loss: 2 must be in [0, 1)"),
            "{err}"
        );
    }

    #[test]
    fn bandwidths() {
        assert_eq!(parse_bandwidth("100Mbit"), Some(100_000_000));
        assert_eq!(parse_bandwidth("1.5gbit"), Some(1_500_000_000));
        assert_eq!(parse_bandwidth("fast"), None);
    }
}
