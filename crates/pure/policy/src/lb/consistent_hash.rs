//! `consistent-hash`: consistent hashing with bounded loads (Mirrokni, Thorup and
//! Zadimoghaddam, SODA 2018; HAProxy's `hash-balance-factor`). The key (the path, the
//! client's address, or a header, per `kantai.dev/hash-key`) picks a point on a ring of the
//! instances; the request goes to the first instance from there whose in-flight count is
//! below 1.25 × the average (rounded up), so one hot key cannot overload an instance while
//! the same key keeps landing on the same instance otherwise.

use rand::Rng;

use super::{Candidate, LbContext, LoadBalancer};
use crate::hash::stable_hash;
use crate::params::HashKey;
use crate::request::RequestInfo;

/// The bound on an instance's load relative to the average (ε = 0.25).
pub const LOAD_FACTOR: f64 = 1.25;
/// Points per instance on the ring.
pub const POINTS: u64 = 64;

/// The `consistent-hash` balancer (it caches the ring of the current instances).
#[derive(Clone, Debug, Default)]
pub struct ConsistentHash {
    key: HashKey,
    /// The instance ids the ring was built from.
    ids: Vec<u64>,
    /// (point, instance id), sorted.
    ring: Vec<(u64, u64)>,
}

impl ConsistentHash {
    /// A balancer keyed as `key` says.
    pub fn new(key: HashKey) -> ConsistentHash {
        ConsistentHash {
            key,
            ..ConsistentHash::default()
        }
    }

    fn key_of(&self, req: &dyn RequestInfo) -> u64 {
        mix(match &self.key {
            HashKey::Path => stable_hash(req.path().as_bytes()),
            HashKey::Source => match req.source() {
                Some(ip) => stable_hash(ip.to_string().as_bytes()),
                None => stable_hash(req.path().as_bytes()),
            },
            HashKey::Header(h) => match req.header(h) {
                Some(v) => stable_hash(v.as_bytes()),
                None => stable_hash(req.path().as_bytes()),
            },
        })
    }

    fn rebuild(&mut self, candidates: &[Candidate]) {
        let ids: Vec<u64> = candidates.iter().map(|c| c.id).collect();
        if ids == self.ids {
            return;
        }
        self.ring = ids
            .iter()
            .flat_map(|&id| {
                (0..POINTS).map(move |p| {
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&id.to_le_bytes());
                    b[8..].copy_from_slice(&p.to_le_bytes());
                    (mix(stable_hash(&b)), id)
                })
            })
            .collect();
        self.ring.sort_unstable();
        self.ids = ids;
    }
}

/// MurmurHash3's 64-bit finalizer. FNV-1a alone barely moves the high bits for a change in
/// the last bytes, and the ring is ordered by the high bits: keys differing only at their end
/// (`user-1`, `user-2`, ...) would all land on one instance, and ring points would bunch up,
/// giving instances very unequal arcs.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9f5_3fe6_ec53);
    h ^ (h >> 33)
}

impl LoadBalancer for ConsistentHash {
    fn pick(
        &mut self,
        req: &dyn RequestInfo,
        candidates: &[Candidate],
        _ctx: &LbContext<'_>,
        _rng: &mut dyn Rng,
    ) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        self.rebuild(candidates);
        let total: u32 = candidates.iter().map(|c| c.in_flight).sum();
        let bound = (LOAD_FACTOR * f64::from(total + 1) / candidates.len() as f64).ceil() as u32;
        let key = self.key_of(req);
        let start = self.ring.partition_point(|(p, _)| *p < key);
        let mut tried: Vec<u64> = Vec::new();
        for k in 0..self.ring.len() {
            let (_, id) = self.ring[(start + k) % self.ring.len()];
            if tried.contains(&id) {
                continue;
            }
            tried.push(id);
            if let Some(i) = candidates.iter().position(|c| c.id == id)
                && candidates[i].has_room()
                && candidates[i].in_flight < bound
            {
                return Some(i);
            }
            if tried.len() == candidates.len() {
                break;
            }
        }
        None
    }
}
