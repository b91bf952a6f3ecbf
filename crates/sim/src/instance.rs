//! The serving node: the queue-proxy role (containerConcurrency slots, a queue of
//! 10 × containerConcurrency in the revision's queue-discipline order, then 503) and the
//! instance itself (a service time per request); and an instance's life: cold start,
//! readiness, drain (it keeps answering for the drain propagation, then stops once idle).

use std::time::Duration;

use kantai_policy::{Admission, RequestKey, registry};

use crate::engine::{DRAIN_PROPAGATION_NS, Ev, IState, Inst, QUEUE_DEPTH_FACTOR, Sim, St};

impl Sim {
    /// A request reaches its instance's node.
    pub(crate) fn at_instance(&mut self, r: u32) {
        let now = self.now;
        let q = &mut self.reqs[r as usize];
        let inst = q.inst;
        // From here, `wait_from` is when it reached the instance (its serving time starts).
        q.wait_from = now;
        if q.answered {
            // Timed out on the way: the gateway dropped the connection.
            self.free_req(r);
            return;
        }
        let i = &self.insts[inst as usize];
        let cc = self.funcs[i.function as usize].cc;
        if i.state == IState::Stopped {
            self.bounce(r, 503);
            return;
        }
        if cc == 0 || i.busy < cc {
            self.start_service(r);
            return;
        }
        let limit = (cc * QUEUE_DEPTH_FACTOR) as usize;
        let i = &mut self.insts[inst as usize];
        let queue = i.queue.get_or_insert_with(|| {
            let f = &self.funcs[i.function as usize];
            registry::queue(&f.queue_name, f.scaler.params())
                .unwrap_or_else(|| Box::new(kantai_policy::queue::Fifo::default()))
        });
        let kind = &self.kinds[self.reqs[r as usize].kind as usize];
        match queue.push(u64::from(r), kind, Duration::from_nanos(now), limit) {
            Admission::Rejected => {
                self.bounce(r, 503);
                return;
            }
            Admission::Queued => {
                i.queued += 1;
            }
            // The newcomer takes the evicted one's place: the count stays.
            Admission::Evicted(v) => self.bounce(v as u32, 503),
        }
        self.reqs[r as usize].state = St::Queued;
        let deadline = self.deadline(r);
        self.arm_timeout(r, deadline);
    }

    /// Sends an error back to the gateway from the instance's node.
    fn bounce(&mut self, r: u32, code: u16) {
        let q = &mut self.reqs[r as usize];
        q.code = code;
        q.state = St::Returning;
        let t = self.now + q.hop_back;
        self.at(t, Ev::Respond(r));
    }

    /// The instance starts on request `r`.
    fn start_service(&mut self, r: u32) {
        let now = self.now;
        let deadline = self.deadline(r);
        let q = &mut self.reqs[r as usize];
        q.state = St::Serving;
        let end = now + q.service_ns;
        let late = end + q.hop_back > deadline;
        self.insts[q.inst as usize].busy += 1;
        if late {
            self.arm_timeout(r, deadline);
        }
        self.at(end, Ev::Done(r));
    }

    /// The instance finished request `r`; the next queued one gets the slot.
    pub(crate) fn done(&mut self, r: u32) {
        let now = self.now;
        let inst = self.reqs[r as usize].inst;
        if self.reqs[r as usize].answered {
            // Timed out while served: its slot was given back at the deadline.
            self.free_req(r);
            return;
        }
        let (node, function) = {
            let i = &self.insts[inst as usize];
            (i.node, i.function)
        };
        let took = now - self.reqs[r as usize].wait_from;
        let e = self.funcs[function as usize]
            .served_since
            .entry(node)
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += took;
        let key = RequestKey::of(&self.kinds[self.reqs[r as usize].kind as usize]);
        let service = Duration::from_nanos(self.reqs[r as usize].service_ns);
        if let Some(q) = &mut self.insts[inst as usize].queue {
            q.learn(key, service, Duration::from_nanos(now));
        }
        let q = &mut self.reqs[r as usize];
        q.code = 200;
        q.state = St::Returning;
        let t = now + q.hop_back;
        self.at(t, Ev::Respond(r));
        self.release_slot(inst);
    }

    /// A containerConcurrency slot frees (a request done, or cancelled by its gateway's
    /// timeout as the fleet's queue-proxy sees it): the next waiting request gets it.
    pub(crate) fn release_slot(&mut self, inst: u32) {
        let now = self.now;
        self.insts[inst as usize].busy -= 1;
        let mut next = None;
        if let Some(q) = &mut self.insts[inst as usize].queue
            && let Some(id) = q.peek()
        {
            q.remove(id);
            next = Some(id);
        }
        if let Some(id) = next {
            let n = id as u32;
            self.insts[inst as usize].queued -= 1;
            let q = &mut self.reqs[n as usize];
            // `wait_from` stays its arrival here: serving time includes queueing.
            q.waited += now - q.wait_from;
            self.start_service(n);
        }
        self.maybe_stop(inst);
    }

    /// A draining instance with nothing left stops at the end of the drain propagation.
    pub(crate) fn maybe_stop(&mut self, inst: u32) {
        let i = &mut self.insts[inst as usize];
        if i.state != IState::Draining || i.busy > 0 || i.queued > 0 || i.stop_scheduled {
            return;
        }
        i.stop_scheduled = true;
        let (t, epoch) = (i.drain_at + DRAIN_PROPAGATION_NS, i.epoch);
        self.at(t, Ev::Stop(inst, epoch));
    }

    /// A drained instance stops.
    pub(crate) fn stop(&mut self, inst: u32, epoch: u32) {
        let now = self.now;
        let i = &mut self.insts[inst as usize];
        if i.epoch != epoch || i.state != IState::Draining {
            return;
        }
        i.stop_scheduled = false;
        if i.busy > 0 || i.queued > 0 {
            return;
        }
        self.end_instance(inst, now);
    }

    /// Takes an instance out: its time is counted, its node's counts drop.
    fn end_instance(&mut self, inst: u32, now: u64) {
        let warmup = self.warmup;
        let i = &mut self.insts[inst as usize];
        let was = i.state;
        i.state = IState::Stopped;
        let (node, function, started, leases) = (i.node, i.function, i.started, i.leases);
        match was {
            IState::Starting => self.node_starting[node as usize] -= 1,
            IState::Ready | IState::Draining => self.node_ready[node as usize] -= 1,
            IState::Stopped => return,
        }
        let f = &mut self.funcs[function as usize];
        // Counted within the measured window, from the warm-up to the end of the arrivals.
        f.instance_ns += u128::from(now.min(self.duration).saturating_sub(started.max(warmup)));
        if let Some(list) = f.on_node.get_mut(&node) {
            list.retain(|x| *x != inst);
            if list.is_empty() {
                f.on_node.remove(&node);
            }
        }
        if let Some(p) = f.ready.iter().position(|x| *x == inst) {
            f.ready.remove(p);
            f.ready_version += 1;
        }
        if leases == 0 {
            self.free_instance(inst);
        }
    }

    /// Returns a stopped instance's slot and record for reuse.
    pub(crate) fn free_instance(&mut self, inst: u32) {
        let i = &mut self.insts[inst as usize];
        i.epoch = i.epoch.wrapping_add(1);
        let (function, slot) = (i.function, i.slot);
        i.function = u32::MAX;
        self.funcs[function as usize].free_slots.push(slot);
        self.free_insts.push(inst);
    }

    /// Starts an instance of `function` on `node` (its cold start begins).
    pub(crate) fn start_instance(&mut self, function: u32, node: u32) {
        let now = self.now;
        let f = &mut self.funcs[function as usize];
        let slot = f.free_slots.pop().unwrap_or_else(|| {
            f.next_slot += 1;
            f.next_slot - 1
        });
        f.instances_started += 1;
        let cold = f.cold_start.sample_ns(&mut self.cold_rng);
        self.inst_seq += 1;
        let fresh = Inst {
            function,
            node,
            slot,
            seq: self.inst_seq,
            epoch: 0,
            state: IState::Starting,
            started: now,
            visible_at: u64::MAX,
            drain_at: 0,
            busy: 0,
            queued: 0,
            queue: None,
            leases: 0,
            stop_scheduled: false,
        };
        let id = match self.free_insts.pop() {
            Some(id) => {
                let epoch = self.insts[id as usize].epoch;
                self.insts[id as usize] = Inst { epoch, ..fresh };
                id
            }
            None => {
                self.insts.push(fresh);
                (self.insts.len() - 1) as u32
            }
        };
        self.funcs[function as usize]
            .on_node
            .entry(node)
            .or_default()
            .push(id);
        self.node_starting[node as usize] += 1;
        let epoch = self.insts[id as usize].epoch;
        self.at(now + cold, Ev::Ready(id, epoch));
    }

    /// An instance is ready: its status reaches the control plane, then every gateway.
    pub(crate) fn ready(&mut self, inst: u32, epoch: u32) {
        let now = self.now;
        let i = &mut self.insts[inst as usize];
        if i.epoch != epoch || i.state != IState::Starting {
            return;
        }
        i.state = IState::Ready;
        let node = i.node;
        // Its status crosses the link to the control plane (drawn); every gateway's watch
        // then takes half its configured round trip (`cp_delay`).
        i.visible_at = now
            + self
                .net
                .one_way(node, self.net.control, 0, &mut self.net_rng);
        let (visible, seq, function) = (i.visible_at, i.seq, i.function);
        self.node_starting[node as usize] -= 1;
        self.node_ready[node as usize] += 1;
        let f = &mut self.funcs[function as usize];
        let at = f
            .ready
            .partition_point(|&x| self.insts[x as usize].seq < seq);
        f.ready.insert(at, inst);
        f.ready_version += 1;
        let gates = f.gates.clone();
        for g in gates {
            let gate = &self.gates[g as usize];
            if !gate.held.is_empty() {
                // Its own node's gateway serves what it holds at once.
                let t = if gate.origin == node {
                    now
                } else {
                    visible + self.cp_delay[gate.origin as usize]
                };
                self.at(t, Ev::Dispatch(g));
            }
        }
    }

    /// Stops one instance: a starting one at once, a ready one after draining.
    pub(crate) fn drain(&mut self, inst: u32) {
        let now = self.now;
        match self.insts[inst as usize].state {
            IState::Starting => self.end_instance(inst, now),
            IState::Ready => {
                let i = &mut self.insts[inst as usize];
                i.state = IState::Draining;
                i.drain_at = now;
                let function = i.function;
                let f = &mut self.funcs[function as usize];
                if let Some(p) = f.ready.iter().position(|x| *x == inst) {
                    f.ready.remove(p);
                    f.ready_version += 1;
                }
                self.maybe_stop(inst);
            }
            IState::Draining | IState::Stopped => {}
        }
    }
}
