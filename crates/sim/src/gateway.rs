//! The origin node's gateway and activator role, as in `kantai-dataplane`'s `server.rs` and
//! `revision.rs`: a request goes to the instance its revision's load balancer picks, or is
//! held (in the queue discipline's order, up to the hold limit, then 503) until one has
//! room; a held request pokes the control plane; a request not answered within the
//! revision's `timeoutSeconds` gets a 504. Leases on instances are returned when the
//! response reaches the gateway.

use std::time::Duration;

use kantai_decisions::{Decision, LoadBalanceRecord};
use kantai_policy::registry;
use kantai_policy::{Admission, Candidate, LbContext, RequestInfo};

use crate::engine::{Ev, Gate, GateStats, IState, POKE_EVERY_NS, Req, Sim, St, histogram, stream};
use crate::workload::Arrival;

impl Sim {
    /// The gate of a function at a node, created on the first request there.
    pub(crate) fn gate(&mut self, function: u32, origin: u32) -> u32 {
        if let Some(g) = self.gate_index.get(&(function, origin)) {
            return *g;
        }
        let f = &self.funcs[function as usize];
        let params = f.scaler.params();
        let lb = registry::load_balancer(&f.lb_name, params)
            .unwrap_or_else(|| Box::new(kantai_policy::lb::Knative::new()));
        let held = registry::queue(&f.queue_name, params)
            .unwrap_or_else(|| Box::new(kantai_policy::queue::Fifo::default()));
        let who = format!(
            "{}/{}@{}",
            f.namespace, f.revision, self.net.nodes[origin as usize].name
        );
        let seed = kantai_policy::stable_hash(who.as_bytes()) ^ self.seed;
        let id = self.gates.len() as u32;
        self.gates.push(Gate {
            function,
            origin,
            lb,
            rng: stream(seed, 7),
            held,
            in_flight: Vec::new(),
            last_poke: None,
            cands: Vec::new(),
            cand_insts: Vec::new(),
            cand_version: 0,
            cand_until: 0,
            cand_pos: Vec::new(),
            arrivals: 0,
            stats: GateStats {
                latency: histogram(),
                ok: 0,
                overflow: 0,
                timeout: 0,
                cold: 0,
                cold_wait: None,
                queueing: None,
                queued: 0,
            },
        });
        self.gate_index.insert((function, origin), id);
        self.funcs[function as usize].gates.push(id);
        id
    }

    /// A request enters the fleet at its origin's gateway.
    pub(crate) fn enter(&mut self, a: Arrival) {
        let g = self.gate(a.function, a.origin);
        let now = self.now;
        let f = &mut self.funcs[a.function as usize];
        let service_ns = match a.service_ns {
            Some(s) => s,
            None => f.service_time.sample_ns(&mut self.service_rng),
        };
        f.change_in_flight(now, true);
        self.gates[g as usize].arrivals += 1;
        let r = self.alloc_req();
        self.open += 1;
        let q = &mut self.reqs[r as usize];
        let epoch = q.epoch;
        *q = Req {
            gate: g,
            kind: a.kind as u16,
            epoch,
            arrived: now,
            service_ns,
            state: St::Held,
            ..Req::free_value()
        };
        self.acquire(r);
    }

    /// An instance with room now, or a place in the hold queue.
    fn acquire(&mut self, r: u32) {
        let g = self.reqs[r as usize].gate;
        if self.gates[g as usize].held.is_empty()
            && let Some(inst) = self.choose(g, r)
        {
            self.send(r, inst);
            return;
        }
        let now = self.now;
        let visible = self.visible_count(g);
        let gate = &mut self.gates[g as usize];
        let kind = &self.kinds[self.reqs[r as usize].kind as usize];
        match gate.held.push(
            u64::from(r),
            kind,
            Duration::from_nanos(now),
            self.hold_limit as usize,
        ) {
            Admission::Rejected => {
                self.answer(r, 503);
                self.free_req(r);
                return;
            }
            Admission::Queued => {}
            Admission::Evicted(v) => {
                let v = v as u32;
                self.answer(v, 503);
                self.free_req(v);
            }
        }
        let q = &mut self.reqs[r as usize];
        q.state = St::Held;
        q.wait_from = now;
        q.cold = visible == 0;
        let deadline = self.deadline(r);
        self.arm_timeout(r, deadline);
        let gate = &mut self.gates[g as usize];
        if gate.last_poke.is_none_or(|t| now >= t + POKE_EVERY_NS) {
            gate.last_poke = Some(now);
            let (f, origin) = (gate.function, gate.origin);
            let held = gate.held.len() as u32;
            // Before the poke leaves, the node may start the instance itself; the poke
            // tells the control plane.
            let local = self.consider_local_start(f, origin, held);
            let d = self
                .net
                .one_way(origin, self.net.control, 0, &mut self.net_rng);
            self.at(now + d, Ev::Poke(f, origin, local));
        }
    }

    pub(crate) fn arm_timeout(&mut self, r: u32, deadline: u64) {
        let q = &mut self.reqs[r as usize];
        if !q.timeout_armed {
            q.timeout_armed = true;
            let epoch = q.epoch;
            self.at(deadline, Ev::Timeout(r, epoch));
        }
    }

    /// Instances of the gate's function its node knows of (ready, and the news arrived).
    fn visible_count(&mut self, g: u32) -> usize {
        self.refresh_candidates(g);
        self.gates[g as usize].cands.len()
    }

    /// Rebuilds the gate's candidates if the function's instances changed or one became
    /// visible at this node since.
    fn refresh_candidates(&mut self, g: u32) {
        let now = self.now;
        let gate = &mut self.gates[g as usize];
        let f = &self.funcs[gate.function as usize];
        if gate.cand_version == f.ready_version && now < gate.cand_until {
            return;
        }
        gate.cand_version = f.ready_version;
        gate.cand_until = u64::MAX;
        let delay = self.cp_delay[gate.origin as usize];
        // With the activator out of the path, requests go straight to an instance and queue
        // there; the balancer then ignores capacity.
        let capacity = if f.activator_in_path { f.cc } else { 0 };
        for &i in &gate.cand_insts {
            let slot = self.insts[i as usize].slot as usize;
            if let Some(p) = gate.cand_pos.get_mut(slot) {
                *p = u32::MAX;
            }
        }
        gate.cands.clear();
        gate.cand_insts.clear();
        for &i in &f.ready {
            let inst = &self.insts[i as usize];
            // A node's own instances reach its data plane at once (the agent tells it);
            // others' through the control plane's watch.
            let seen = if inst.node == gate.origin {
                0
            } else {
                inst.visible_at + delay
            };
            if seen > now {
                gate.cand_until = gate.cand_until.min(seen);
                continue;
            }
            let slot = inst.slot as usize;
            if gate.cand_pos.len() <= slot {
                gate.cand_pos.resize(slot + 1, u32::MAX);
            }
            gate.cand_pos[slot] = gate.cands.len() as u32;
            gate.cands.push(Candidate {
                id: inst.seq,
                node: inst.node as usize,
                in_flight: gate.in_flight.get(slot).copied().unwrap_or(0),
                capacity,
            });
            gate.cand_insts.push(i);
        }
    }

    /// The balancer's choice for request `r` at gate `g`; takes a lease on it.
    fn choose(&mut self, g: u32, r: u32) -> Option<u32> {
        self.refresh_candidates(g);
        let now = self.now;
        let gate = &mut self.gates[g as usize];
        if gate.cands.is_empty() {
            return None;
        }
        let f = &self.funcs[gate.function as usize];
        let cc = if f.activator_in_path { f.cc } else { 0 };
        let rtt = self.net.row(gate.origin, now);
        let ctx = LbContext {
            origin: gate.origin as usize,
            rtt_ms: rtt,
            serving_ms: &f.serving_dense,
            container_concurrency: cc,
            now: Duration::from_nanos(now),
        };
        let kind = &self.kinds[self.reqs[r as usize].kind as usize];
        let picked = gate.lb.pick(kind, &gate.cands, &ctx, &mut gate.rng);
        if self.lb_decisions {
            let names = &self.node_names;
            let name = |i: u32| format!("{}-{}", f.revision, self.insts[i as usize].seq);
            let mut rec = Decision::LoadBalance(Box::new(LoadBalanceRecord {
                time: String::new(),
                t: now as f64 / 1e9,
                node: names[gate.origin as usize].clone(),
                namespace: f.namespace.clone(),
                revision: f.revision.clone(),
                policy: f.lb_name.clone(),
                method: kind.method().to_owned(),
                path: kind.path().to_owned(),
                candidates: gate
                    .cand_insts
                    .iter()
                    .zip(&gate.cands)
                    .map(|(&i, c)| (name(i), names[c.node].clone(), c.in_flight, c.capacity))
                    .collect(),
                rtt_ms: ctx.rtt_ms.to_vec(),
                serving_ms: (0..names.len())
                    .map(|i| ctx.serving_ms.get(i).copied().flatten())
                    .collect(),
                nodes: names.clone(),
                choice: picked
                    .and_then(|p| gate.cand_insts.get(p))
                    .map(|&i| name(i)),
            }));
            if let Decision::LoadBalance(l) = &mut rec {
                l.time = self.record_time();
            }
            self.log(&rec);
        }
        let p = picked?;
        let gate = &mut self.gates[g as usize];
        let inst = *gate.cand_insts.get(p)?;
        gate.cands[p].in_flight += 1;
        let slot = self.insts[inst as usize].slot as usize;
        if gate.in_flight.len() <= slot {
            gate.in_flight.resize(slot + 1, 0);
        }
        gate.in_flight[slot] += 1;
        self.insts[inst as usize].leases += 1;
        Some(inst)
    }

    /// Sends request `r` to instance `inst` (its lease taken): both crossings are drawn now.
    fn send(&mut self, r: u32, inst: u32) {
        let g = self.reqs[r as usize].gate as usize;
        let origin = self.gates[g].origin;
        let f = &self.funcs[self.gates[g].function as usize];
        let (rb, sb) = (f.request_bytes, f.response_bytes);
        let node = self.insts[inst as usize].node;
        let out = self.net.one_way(origin, node, rb, &mut self.net_rng);
        let back = self.net.one_way(node, origin, sb, &mut self.net_rng);
        let q = &mut self.reqs[r as usize];
        q.inst = inst;
        q.hop_out = u32::try_from(out).unwrap_or(u32::MAX);
        q.hop_back = back;
        q.state = St::Transit;
        let t = self.now + out;
        self.at(t, Ev::AtInstance(r));
    }

    /// Serves held requests, in the discipline's order, while the balancer finds room.
    pub(crate) fn dispatch(&mut self, g: u32) {
        loop {
            let Some(id) = self.gates[g as usize].held.peek() else {
                return;
            };
            let r = id as u32;
            let Some(inst) = self.choose(g, r) else {
                return;
            };
            self.gates[g as usize].held.remove(id);
            let now = self.now;
            let q = &mut self.reqs[r as usize];
            q.waited += now - q.wait_from;
            if q.cold && q.arrived >= self.warmup {
                let waited = now - q.arrived;
                let stats = &mut self.gates[g as usize].stats;
                stats.cold += 1;
                stats
                    .cold_wait
                    .get_or_insert_with(|| Box::new(histogram()))
                    .saturating_record((waited / 1000).max(1));
            }
            self.send(r, inst);
        }
    }

    /// The gateway answers request `r` with `code` now: records it, returns its lease and
    /// its place in the function's concurrency. The caller frees the request, or marks it
    /// answered while an instance still holds it.
    pub(crate) fn answer(&mut self, r: u32, code: u16) {
        let now = self.now;
        let q = &mut self.reqs[r as usize];
        debug_assert!(!q.answered);
        q.answered = true;
        let (g, inst, counted, kind) = (q.gate as usize, q.inst, q.arrived >= self.warmup, q.kind);
        let mut latency = now - q.arrived;
        if code == 200
            && let Some((d, rng)) = &mut self.overhead
        {
            latency += d.sample_ns(rng);
        }
        let waited = q.waited;
        let function = self.gates[g].function as usize;
        self.user_answered(kind, self.gates[g].origin);
        self.funcs[function].change_in_flight(now, false);
        self.answered += 1;
        self.open -= 1;
        if inst != u32::MAX {
            let slot = self.insts[inst as usize].slot as usize;
            let gate = &mut self.gates[g];
            gate.in_flight[slot] -= 1;
            if let Some(&p) = gate.cand_pos.get(slot)
                && let Some(c) = gate.cands.get_mut(p as usize)
            {
                c.in_flight -= 1;
            }
            self.release_lease(inst);
        }
        if counted {
            let s = &mut self.gates[g].stats;
            match code {
                200 => {
                    s.ok += 1;
                    let us = (latency / 1000).max(1);
                    s.latency.saturating_record(us);
                    self.fleet_window.saturating_record(us);
                    self.funcs[function]
                        .window
                        .get_or_insert_with(|| Box::new(histogram()))
                        .saturating_record(us);
                }
                503 => s.overflow += 1,
                _ => s.timeout += 1,
            }
            if waited > 0 {
                s.queued += 1;
                s.queueing
                    .get_or_insert_with(|| Box::new(histogram()))
                    .saturating_record((waited / 1000).max(1));
            }
        }
    }

    /// A response reaches the gateway.
    pub(crate) fn respond(&mut self, r: u32) {
        let q = &self.reqs[r as usize];
        if q.answered {
            self.free_req(r);
            return;
        }
        let (g, code, inst) = (q.gate, q.code, q.inst);
        let rtt = u64::from(q.hop_out) + q.hop_back;
        if code == 200 {
            let origin = self.gates[g as usize].origin;
            let node = self.insts[inst as usize].node;
            // The passive sample the origin's latency monitor takes from every response.
            self.net.sample(origin, node, rtt, self.now);
        }
        self.answer(r, code);
        self.free_req(r);
        self.dispatch(g);
    }

    /// A request's deadline passed: 504 unless it was answered.
    pub(crate) fn timeout(&mut self, r: u32, epoch: u32) {
        let q = &self.reqs[r as usize];
        if q.epoch != epoch || q.state == St::Free || q.answered {
            return;
        }
        let (state, g, inst) = (q.state, q.gate, q.inst);
        match state {
            St::Held => {
                let now = self.now;
                let q = &mut self.reqs[r as usize];
                q.waited += now - q.wait_from;
                self.gates[g as usize].held.remove(u64::from(r));
                self.answer(r, 504);
                self.free_req(r);
            }
            St::Queued => {
                let now = self.now;
                let q = &mut self.reqs[r as usize];
                q.waited += now - q.wait_from;
                let i = &mut self.insts[inst as usize];
                if let Some(queue) = &mut i.queue {
                    queue.remove(u64::from(r));
                }
                i.queued -= 1;
                self.answer(r, 504);
                self.free_req(r);
                self.maybe_stop(inst);
            }
            // The gateway drops the connection: the queue-proxy gives the slot back at once
            // (the fleet's does), and the request is freed when its events come back.
            St::Serving => {
                self.answer(r, 504);
                self.release_slot(inst);
            }
            St::Transit | St::Returning => self.answer(r, 504),
            St::Free => {}
        }
        self.dispatch(g);
    }

    /// A gateway's lease on an instance ends; a stopped instance with none left is freed.
    fn release_lease(&mut self, inst: u32) {
        let i = &mut self.insts[inst as usize];
        i.leases -= 1;
        if i.leases == 0 && i.state == IState::Stopped {
            self.free_instance(inst);
        }
    }
}
