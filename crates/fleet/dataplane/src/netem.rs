//! User-space link emulation: the delay, jitter, loss and bandwidth of the topology's links,
//! paid on every hop between nodes (this kernel has no netem). Same-node hops are free.
//! Links can be changed, or stalled, while the fleet runs (fault injection).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kantai_model::topology::{Link, LinkSetting};
use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand::rngs::SmallRng;

/// The emulated links from this node to every other.
pub struct Netem {
    links: RwLock<HashMap<String, Link>>,
    /// Stalled links: nothing crosses them.
    down: RwLock<HashSet<String>>,
    rng: Mutex<SmallRng>,
}

/// What a crossing of a stalled link takes: longer than any request's timeout, so that the
/// caller's own timeout decides, as with a real link that drops everything.
pub const STALLED: Duration = Duration::from_secs(3600);

impl Netem {
    /// No emulated links (a real network, or a single node).
    pub fn new(seed: u64) -> Netem {
        Netem {
            links: RwLock::new(HashMap::new()),
            down: RwLock::new(HashSet::new()),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
        }
    }

    /// Replaces the links (peer node name → link).
    pub fn set_links(&self, links: HashMap<String, Link>) {
        *self.links.write() = links;
    }

    /// Changes the link to one peer while the fleet runs.
    pub fn set(&self, peer: &str, setting: LinkSetting) {
        self.links.write().insert(peer.to_owned(), setting.link);
        let mut down = self.down.write();
        if setting.down {
            down.insert(peer.to_owned());
        } else {
            down.remove(peer);
        }
    }

    /// The link to a peer (free when unknown).
    pub fn link(&self, peer: &str) -> Link {
        self.links.read().get(peer).copied().unwrap_or(Link::LOCAL)
    }

    /// Every link set, and whether it is stalled, by peer.
    pub fn settings(&self) -> Vec<(String, LinkSetting)> {
        let down = self.down.read();
        let mut out: Vec<(String, LinkSetting)> = self
            .links
            .read()
            .iter()
            .map(|(p, l)| {
                (
                    p.clone(),
                    LinkSetting {
                        link: *l,
                        down: down.contains(p),
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The time one crossing towards `peer` takes for a message of `bytes` bytes
    /// ([`Link::one_way`]).
    pub fn one_way(&self, peer: &str, bytes: u64) -> Duration {
        {
            let down = self.down.read();
            if !down.is_empty() && down.contains(peer) {
                return STALLED;
            }
        }
        let link = self.link(peer);
        if link.is_free() {
            return Duration::ZERO;
        }
        link.one_way(bytes, &mut *self.rng.lock())
    }

    /// Waits one crossing towards `peer`.
    pub async fn cross(&self, peer: &str, bytes: u64) {
        let d = self.one_way(peer, bytes);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossings_average_half_the_round_trip() {
        let n = Netem::new(1);
        n.set_links(HashMap::from([(
            "edge".to_owned(),
            Link {
                rtt: Duration::from_millis(50),
                jitter: Duration::from_millis(10),
                loss: 0.0,
                bandwidth: None,
            },
        )]));
        let samples: Vec<f64> = (0..2000)
            .map(|_| n.one_way("edge", 0).as_secs_f64() * 1e3)
            .collect();
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((mean - 25.0).abs() < 0.5, "{mean}");
        assert!(samples.iter().all(|s| (20.0..=30.0).contains(s)));
        assert_eq!(n.one_way("unknown", 0), Duration::ZERO);
    }

    #[test]
    fn a_stalled_link_holds_every_crossing_until_it_is_up_again() {
        let n = Netem::new(3);
        let slow = LinkSetting {
            link: Link {
                rtt: Duration::from_millis(10),
                ..Link::LOCAL
            },
            down: true,
        };
        n.set("far", slow);
        assert_eq!(n.one_way("far", 0), STALLED);
        assert_eq!(n.one_way("near", 0), Duration::ZERO);
        assert_eq!(n.settings(), vec![("far".to_owned(), slow)]);
        n.set(
            "far",
            LinkSetting {
                down: false,
                ..slow
            },
        );
        assert_eq!(n.one_way("far", 0), Duration::from_millis(5));
    }

    #[test]
    fn bandwidth_and_loss_add_time() {
        let n = Netem::new(2);
        n.set_links(HashMap::from([(
            "slow".to_owned(),
            Link {
                rtt: Duration::from_millis(10),
                jitter: Duration::ZERO,
                loss: 0.5,
                bandwidth: Some(8_000_000),
            },
        )]));
        let d: Vec<Duration> = (0..200).map(|_| n.one_way("slow", 1_000_000)).collect();
        // 1 MB at 1 MB/s is a second on top of the 5 ms half round trip.
        assert!(d.iter().all(|d| *d >= Duration::from_millis(1005)));
        let lost = d
            .iter()
            .filter(|d| **d >= Duration::from_millis(1200))
            .count();
        assert!((60..140).contains(&lost), "{lost} of 200 lost at 50 %");
    }
}
