//! The event queue: a binary heap for the current millisecond, a ring of per-millisecond
//! buckets for the next minute or so, and a heap beyond. Events come out in exactly the
//! order one binary heap would give ((time, sequence) ascending), but an event due in
//! seconds costs an append now and one heap operation in its own millisecond, instead of
//! sifting through every request in flight (a million-request run holds hundreds of
//! thousands of future events).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Width of a bucket, ns.
const WIDTH: u64 = 1_000_000;
/// Buckets in the ring (about 65 s ahead).
const RING: u64 = 1 << 16;

/// An event of type `E` due at `t`, `seq` breaking ties in scheduling order.
#[derive(Clone, Copy, Debug)]
pub struct Entry<E> {
    /// When, ns.
    pub t: u64,
    /// Scheduling order.
    pub seq: u64,
    /// What.
    pub ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Entry<E> {
    // Reversed: the heaps pop the earliest, then the first scheduled.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

/// A monotone priority queue of events (nothing is scheduled before the last event taken).
pub struct EventQueue<E> {
    /// The bucket of the last event taken; `near` holds every event up to its end.
    bucket: u64,
    near: BinaryHeap<Entry<E>>,
    ring: Vec<Vec<Entry<E>>>,
    in_ring: usize,
    far: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            bucket: 0,
            near: BinaryHeap::new(),
            ring: (0..RING).map(|_| Vec::new()).collect(),
            in_ring: 0,
            far: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `ev` at `t` (not before the last event taken).
    pub fn push(&mut self, t: u64, ev: E) {
        self.seq += 1;
        let e = Entry {
            t,
            seq: self.seq,
            ev,
        };
        let b = t / WIDTH;
        if b <= self.bucket {
            self.near.push(e);
        } else if b < self.bucket + RING {
            self.ring[(b % RING) as usize].push(e);
            self.in_ring += 1;
        } else {
            self.far.push(e);
        }
    }

    /// Takes the earliest event.
    pub fn pop(&mut self) -> Option<Entry<E>> {
        loop {
            if let Some(e) = self.near.pop() {
                return Some(e);
            }
            if self.in_ring == 0 {
                // Nothing in the next minute: jump to the first far event.
                let next = self.far.peek()?.t / WIDTH;
                self.bucket = self.bucket.max(next - 1);
            }
            self.advance();
        }
    }

    /// Moves to the next bucket: its events go to the heap, and far events that now fall
    /// within the ring join it.
    fn advance(&mut self) {
        self.bucket += 1;
        let slot = (self.bucket % RING) as usize;
        let events = std::mem::take(&mut self.ring[slot]);
        self.in_ring -= events.len();
        self.near.extend(events);
        while let Some(e) = self.far.peek() {
            let b = e.t / WIDTH;
            if b >= self.bucket + RING {
                break;
            }
            let Some(e) = self.far.pop() else { break };
            if b <= self.bucket {
                self.near.push(e);
            } else {
                self.ring[(b % RING) as usize].push(e);
                self.in_ring += 1;
            }
        }
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.near.len() + self.in_ring + self.far.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn events_come_out_as_from_one_heap() {
        let mut rng = SmallRng::seed_from_u64(5);
        let mut q = EventQueue::default();
        let mut reference = BinaryHeap::new();
        let mut seq = 0;
        let mut now = 0;
        let mut out = (Vec::new(), Vec::new());
        for step in 0..200_000u32 {
            if rng.random_bool(0.55) {
                // Near, in the ring, and far beyond it; ties on purpose.
                let ahead = match rng.random_range(0..4) {
                    0 => 0,
                    1 => rng.random_range(0..WIDTH),
                    2 => rng.random_range(0..RING * WIDTH),
                    _ => rng.random_range(0..4 * RING * WIDTH),
                };
                seq += 1;
                q.push(now + ahead, step);
                reference.push(Entry {
                    t: now + ahead,
                    seq,
                    ev: step,
                });
            } else if let Some(e) = q.pop() {
                let r = reference.pop().expect("same length");
                now = e.t;
                out.0.push((e.t, e.ev));
                out.1.push((r.t, r.ev));
            }
            assert_eq!(q.len(), reference.len());
        }
        while let Some(e) = q.pop() {
            let r = reference.pop().expect("same length");
            out.0.push((e.t, e.ev));
            out.1.push((r.t, r.ev));
        }
        assert!(reference.is_empty() && q.is_empty());
        assert_eq!(out.0, out.1);
        assert!(out.0.len() > 50_000);
    }
}
