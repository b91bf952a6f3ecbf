//! A plug-in keep-alive policy behind [`KeepAlive`].

use std::time::Duration;

use kantai_policy::Params;
use kantai_policy::keepalive::{Arrival, Hold, KeepAlive, KeepAliveInput};
use kantai_policy::registry::{self, Kind};
use parking_lot::Mutex;

use crate::bindings::keep_alive::exports::kantai::policy::keep_alive as wit;
use crate::bindings::{nanos, resources_of};
use crate::sandbox::{Bindings, Plugin, Value};

/// A revision's keep-alive policy in a plug-in; the default answers for it when it cannot.
struct Keeping {
    /// Behind a lock because the trait asks for `priority` without `&mut`.
    value: Mutex<Value>,
    fallback: Box<dyn KeepAlive>,
}

fn guest(b: &Bindings) -> &wit::Guest {
    match b {
        Bindings::KeepAlive(b) => b.kantai_policy_keep_alive(),
        _ => unreachable!("a keep-alive plug-in has keep-alive bindings"),
    }
}

impl Plugin {
    /// A keep-alive policy of this plug-in (which must be one).
    pub(crate) fn keep_alive(&self, params: &Params) -> Box<dyn KeepAlive> {
        Box::new(Keeping {
            value: Mutex::new(Value::new(&self.shared, params)),
            fallback: registry::keep_alive(Kind::KeepAlive.default_name(), params)
                .unwrap_or_else(|| unreachable!("the default keep-alive is built in")),
        })
    }
}

fn input_of(i: &KeepAliveInput<'_>) -> wit::Input {
    wit::Input {
        now: nanos(i.now),
        idle_since: i.idle_since.map(nanos),
        ready: i.ready,
        resources: resources_of(i.resources),
        cold_start: i.cold_start.map(nanos),
    }
}

impl KeepAlive for Keeping {
    fn arrived(&mut self, arrival: Arrival) {
        let v = self.value.get_mut();
        let fuel = v.limits().fuel.per_request;
        let a = wit::Arrival {
            now: nanos(arrival.now),
            idle: arrival.idle.map(nanos),
            clock: arrival.clock,
        };
        v.call(fuel, 0, |b, s, h| guest(b).call_arrived(s, h, a));
        self.fallback.arrived(arrival);
    }

    fn hold(&mut self, input: &KeepAliveInput<'_>) -> Hold {
        let v = self.value.get_mut();
        let fuel = v.limits().fuel.per_tick;
        let i = input_of(input);
        match v.call(fuel, 0, |b, s, h| guest(b).call_hold(s, h, i)) {
            Some(wit::Decision::Kpa) => Hold::Kpa,
            Some(wit::Decision::Keep(n)) => Hold::Keep(n),
            Some(wit::Decision::Release) => Hold::Release,
            None => self.fallback.hold(input),
        }
    }

    fn priority(&self, input: &KeepAliveInput<'_>) -> Option<f64> {
        let mut v = self.value.lock();
        let fuel = v.limits().fuel.per_tick;
        let i = input_of(input);
        match v.call(fuel, 0, |b, s, h| guest(b).call_priority(s, h, i)) {
            Some(p) => p.filter(|p| p.is_finite()),
            None => self.fallback.priority(input),
        }
    }

    fn evicted(&mut self, now: Duration) {
        let v = self.value.get_mut();
        let fuel = v.limits().fuel.per_request;
        v.call(fuel, 0, |b, s, h| guest(b).call_evicted(s, h, nanos(now)));
        self.fallback.evicted(now);
    }
}
