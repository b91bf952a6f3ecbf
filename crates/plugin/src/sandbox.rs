//! Loading a plug-in, and the sandbox every call into it runs in: a fuel budget, a memory
//! limit, a seeded generator as the only import, and a pool of instances shared by the
//! policy values made from the plug-in.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kantai_policy::Params;
use kantai_policy::registry::{self, ExtendError, Factory, Kind};
use parking_lot::Mutex;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

use crate::bindings::{keep_alive, lb, placement, queue};
use crate::fallback::Reason;

/// The `kantai:policy` WIT package every plug-in implements one world of.
pub const WIT: &str = include_str!("../wit/policy.wit");

/// Fuel per call, by what the call decides. Fuel counts WebAssembly instructions, so a
/// budget is the same on every machine (the simulator and the fleet cut a guest off at the
/// same point); on this project's 2-core test machines a unit is about a nanosecond, so a
/// pick's budget is about a millisecond and a placement's about 50 ms (BENCHMARKS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// `create`: setting up one policy value.
    pub create: u64,
    /// Per request: a pick or an observation, a queue's push, peek, remove or lesson.
    pub per_request: u64,
    /// Per tick: a placement, a keep-alive decision.
    pub per_tick: u64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            create: 200_000_000,
            per_request: 1_000_000,
            per_tick: 50_000_000,
        }
    }
}

/// What a plug-in may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call.
    pub fuel: Budget,
    /// Bytes of linear memory one instance may have (a Python guest, a whole interpreter,
    /// starts at about 20 MiB).
    pub memory: usize,
    /// Instances of the module, each serving a share of the policy values: calls on
    /// different instances run at once, calls on one instance one after another.
    pub instances: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: Budget::default(),
            memory: 256 << 20,
            instances: 4,
        }
    }
}

/// Table elements one instance may have.
const TABLE_ELEMENTS: usize = 100_000;

/// Why a plug-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its module could not be read.
    #[error("plug-in {name:?}: cannot read its module {module}: {reason}")]
    Read {
        /// The plug-in's name.
        name: String,
        /// The module's path, as the config gives it.
        module: String,
        /// Why.
        reason: String,
    },
    /// The bytes are not a WebAssembly component (or its text).
    #[error("plug-in {name:?}: not a WebAssembly component: {reason}")]
    Compile {
        /// The plug-in's name.
        name: String,
        /// What the compiler said.
        reason: String,
    },
    /// It does not instantiate, or does not implement its kind's interface.
    #[error("plug-in {name:?} is not a {kind} plug-in of kantai:policy@0.1.0: {reason}")]
    Interface {
        /// The plug-in's name.
        name: String,
        /// The kind of policy, as a noun.
        kind: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
    /// Its `create` failed with the default parameters.
    #[error("plug-in {name:?}: `create` failed: {reason}")]
    Create {
        /// The plug-in's name.
        name: String,
        /// The trap or limit.
        reason: String,
    },
    /// The registry refused its name.
    #[error(transparent)]
    Name(#[from] ExtendError),
}

/// A loaded plug-in. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) limits: Limits,
    /// Whether the module imports `host.random`: only then does a call take a seed from
    /// the driver's generator, so that a port of a built-in that draws nothing leaves the
    /// driver's draws (and the run) as the built-in does.
    pub(crate) draws: bool,
    engine: Engine,
    component: Component,
    linker: Linker<HostState>,
    /// Instances made so far, up to `limits.instances`; a broken one is replaced.
    pool: Mutex<Vec<Arc<Mutex<Instance>>>>,
    /// Which pool entry the next policy value uses.
    next: AtomicUsize,
}

/// One plug-in's bindings, of its kind.
pub(crate) enum Bindings {
    LoadBalancer(lb::LoadBalancerPlugin),
    Placement(placement::PlacementPlugin),
    Queue(queue::QueuePlugin),
    KeepAlive(keep_alive::KeepAlivePlugin),
}

/// An instance of the module with its store.
pub(crate) struct Instance {
    pub(crate) store: Store<HostState>,
    pub(crate) bindings: Bindings,
    /// A call trapped: the component model forbids entering the instance again.
    pub(crate) broken: bool,
}

/// What a store holds for its instance.
pub(crate) struct HostState {
    /// The plug-in's name, for its log lines.
    name: Arc<str>,
    /// The generator `host.random` draws from, seeded per call.
    rng: u64,
    limiter: Limiter,
}

/// The memory and table limits, remembering a refusal so that the trap is named for it.
struct Limiter {
    memory: usize,
    refused: Option<usize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.refused = Some(desired);
            return Err(wasmtime::Error::msg("memory over the plug-in's limit"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }
}

impl lb::kantai::policy::host::Host for HostState {
    fn random(&mut self) -> u64 {
        // splitmix64: a full-period generator from one word of seed.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn log(&mut self, message: String) {
        let mut end = message.len().min(LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        tracing::info!(plugin = &*self.name, "{}", &message[..end]);
    }
}

/// Bytes of a guest's log line kept.
const LOG_LINE: usize = 1024;

/// The engine every plug-in is compiled by: fuel on, nothing else beyond the defaults.
fn engine() -> Result<Engine, String> {
    let mut config = Config::new();
    config.consume_fuel(true);
    Engine::new(&config).map_err(|e| format!("{e:#}"))
}

/// Compiles `bytes` (a component, binary or WebAssembly text) as the `kind` plug-in named
/// `name`, instantiates it once and makes one policy value with the default parameters,
/// so that a module that cannot serve is refused here, not at its first call.
pub fn load(name: &str, kind: Kind, bytes: &[u8], limits: Limits) -> Result<Plugin, LoadError> {
    let compile = |reason: String| LoadError::Compile {
        name: name.to_owned(),
        reason,
    };
    let engine = engine().map_err(compile)?;
    let bytes = componentize(kind, bytes).map_err(|e| match e {
        Componentize::Text(reason) => compile(reason),
        Componentize::Interface(reason) => LoadError::Interface {
            name: name.to_owned(),
            kind: kind.noun(),
            reason,
        },
    })?;
    let component = Component::new(&engine, &bytes).map_err(|e| compile(format!("{e:#}")))?;
    let draws = imports_random(&engine, &component);
    let mut linker = Linker::new(&engine);
    lb::kantai::policy::host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
        .map_err(|e| compile(format!("{e:#}")))?;
    let plugin = Plugin {
        shared: Arc::new(Shared {
            name: name.to_owned(),
            kind,
            limits: Limits {
                instances: limits.instances.max(1),
                ..limits
            },
            draws,
            engine,
            component,
            linker,
            pool: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
        }),
    };
    let first = plugin
        .shared
        .instantiate()
        .map_err(|reason| LoadError::Interface {
            name: name.to_owned(),
            kind: kind.noun(),
            reason,
        })?;
    let first = Arc::new(Mutex::new(first));
    plugin.shared.pool.lock().push(first.clone());
    plugin
        .shared
        .check_create(&first)
        .map_err(|reason| LoadError::Create {
            name: name.to_owned(),
            reason,
        })?;
    Ok(plugin)
}

/// Loads and registers the plug-ins of a fleet config's `plugins` section, in order:
/// `read` gives a module's bytes from its `module` path (the driver reads the file,
/// relative to the config file). The first that cannot be read or loaded stops it, with
/// the plug-in's name in the message.
pub fn install(
    plugins: &[kantai_model::config::PluginConfig],
    mut read: impl FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Vec<Plugin>, LoadError> {
    let mut loaded = Vec::with_capacity(plugins.len());
    for p in plugins {
        let bytes = read(&p.module).map_err(|reason| LoadError::Read {
            name: p.name.clone(),
            module: p.module.clone(),
            reason,
        })?;
        let mut limits = Limits::default();
        if let Some(m) = p.memory {
            limits.memory = usize::try_from(m).unwrap_or(usize::MAX);
        }
        let plugin = load(&p.name, p.kind, &bytes, limits)?;
        plugin.register()?;
        loaded.push(plugin);
    }
    Ok(loaded)
}

/// Whether `component` imports the host's `random`.
fn imports_random(engine: &Engine, component: &Component) -> bool {
    let ty = component.component_type();
    match ty
        .get_import(engine, "kantai:policy/host@0.1.0")
        .map(|e| e.ty)
    {
        Some(ComponentItem::ComponentInstance(host)) => host.get_export(engine, "random").is_some(),
        _ => false,
    }
}

/// The world a plug-in of `kind` implements.
fn world(kind: Kind) -> &'static str {
    match kind {
        Kind::LoadBalancer => "load-balancer-plugin",
        Kind::Placement => "placement-plugin",
        Kind::Queue => "queue-plugin",
        Kind::KeepAlive => "keep-alive-plugin",
    }
}

/// A component from `bytes`: a component (binary or text) as it is; a core module (binary
/// or text) made a component of `kind`'s world, as `wasm-tools component embed` and
/// `component new` would, so that a guest written by hand need not spell out the
/// component model's types.
fn componentize(kind: Kind, bytes: &[u8]) -> Result<Vec<u8>, Componentize> {
    let binary = wat::parse_bytes(bytes).map_err(|e| Componentize::Text(format!("{e}")))?;
    // A core module's preamble is version 1, layer 0; a component's is layer 1.
    if binary.get(4..8) != Some(&[1, 0, 0, 0]) {
        return Ok(binary.into_owned());
    }
    let mut resolve = wit_parser::Resolve::default();
    fn own(e: impl std::fmt::Display) -> Componentize {
        Componentize::Text(format!("kantai's own WIT: {e:#}"))
    }
    let package = resolve.push_str("policy.wit", WIT).map_err(own)?;
    let world_id = resolve
        .select_world(&[package], Some(world(kind)))
        .map_err(own)?;
    let mut module = binary.into_owned();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world_id,
        wit_component::StringEncoding::UTF8,
    )
    .map_err(|e| Componentize::Text(format!("{e:#}")))?;
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| {
            Componentize::Interface(format!(
                "a core module, made a component of the world {}: {e:#}",
                world(kind)
            ))
        })
}

/// Why a core module could not be made a component.
enum Componentize {
    /// Not WebAssembly (binary or text).
    Text(String),
    /// It does not export (or import) what its kind's world has.
    Interface(String),
}

impl Plugin {
    /// The plug-in's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The kind of policy it is.
    pub fn kind(&self) -> Kind {
        self.shared.kind
    }

    /// Registers it in the policy registry under its name, replacing a plug-in of that
    /// kind and name (whether it did); from then on a revision may name it as it names a
    /// built-in.
    pub fn register(&self) -> Result<bool, ExtendError> {
        registry::plug_in(&self.shared.name, self.factory())
    }

    /// The registry's constructor for this plug-in's policies.
    pub fn factory(&self) -> Factory {
        let p = self.clone();
        match self.shared.kind {
            Kind::LoadBalancer => {
                Factory::LoadBalancer(Arc::new(move |params| p.load_balancer(params)))
            }
            Kind::Placement => Factory::Placement(Arc::new(move |params| p.placement(params))),
            Kind::Queue => Factory::Queue(Arc::new(move |params| p.queue(params))),
            Kind::KeepAlive => Factory::KeepAlive(Arc::new(move |params| p.keep_alive(params))),
        }
    }
}

impl Shared {
    /// A new instance of the module, checked to export its kind's interface.
    fn instantiate(&self) -> Result<Instance, String> {
        let mut store = Store::new(
            &self.engine,
            HostState {
                name: self.name.as_str().into(),
                rng: 0,
                limiter: Limiter {
                    memory: self.limits.memory,
                    refused: None,
                },
            },
        );
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(self.limits.fuel.create)
            .map_err(|e| format!("{e:#}"))?;
        let c = &self.component;
        let l = &self.linker;
        let bindings = match self.kind {
            Kind::LoadBalancer => {
                lb::LoadBalancerPlugin::instantiate(&mut store, c, l).map(Bindings::LoadBalancer)
            }
            Kind::Placement => {
                placement::PlacementPlugin::instantiate(&mut store, c, l).map(Bindings::Placement)
            }
            Kind::Queue => queue::QueuePlugin::instantiate(&mut store, c, l).map(Bindings::Queue),
            Kind::KeepAlive => {
                keep_alive::KeepAlivePlugin::instantiate(&mut store, c, l).map(Bindings::KeepAlive)
            }
        };
        match bindings {
            Ok(bindings) => Ok(Instance {
                store,
                bindings,
                broken: false,
            }),
            Err(e) => Err(describe(&store, &e, self.limits.fuel.create).to_string()),
        }
    }

    /// Makes and ends one policy value with the default parameters.
    fn check_create(&self, inst: &Arc<Mutex<Instance>>) -> Result<(), String> {
        let mut inst = inst.lock();
        let params = params_of(&Params::default());
        let handle = inst
            .call(self.limits.fuel.create, 0, |b, s| b.create(s, &params))
            .map_err(|r| r.to_string())?;
        inst.destroy(handle, self.limits.fuel.per_request);
        Ok(())
    }

    /// The instance a new policy value lives in: the pool's next, made (or made again, if
    /// broken) when needed; why, when none can be made.
    pub(crate) fn instance(&self) -> Result<Arc<Mutex<Instance>>, Reason> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.limits.instances;
        let mut pool = self.pool.lock();
        if let Some(inst) = pool.get(i)
            && !inst.lock().broken
        {
            return Ok(inst.clone());
        }
        let fresh = Arc::new(Mutex::new(self.instantiate().map_err(Reason::Trap)?));
        if i < pool.len() {
            pool[i] = fresh.clone();
        } else {
            pool.push(fresh.clone());
        }
        Ok(fresh)
    }
}

impl Bindings {
    /// `create` of whichever interface this is.
    #[allow(
        clippy::ptr_arg,
        reason = "the generated bindings take the WIT's list as a Vec"
    )]
    fn create(
        &self,
        store: &mut Store<HostState>,
        params: &Vec<(String, String)>,
    ) -> wasmtime::Result<u32> {
        match self {
            Bindings::LoadBalancer(b) => b.kantai_policy_load_balancer().call_create(store, params),
            Bindings::Placement(b) => b.kantai_policy_placement().call_create(store, params),
            Bindings::Queue(b) => b.kantai_policy_queue().call_create(store, params),
            Bindings::KeepAlive(b) => b.kantai_policy_keep_alive().call_create(store, params),
        }
    }

    /// `destroy` of whichever interface this is.
    fn destroy(&self, store: &mut Store<HostState>, handle: u32) -> wasmtime::Result<()> {
        match self {
            Bindings::LoadBalancer(b) => {
                b.kantai_policy_load_balancer().call_destroy(store, handle)
            }
            Bindings::Placement(b) => b.kantai_policy_placement().call_destroy(store, handle),
            Bindings::Queue(b) => b.kantai_policy_queue().call_destroy(store, handle),
            Bindings::KeepAlive(b) => b.kantai_policy_keep_alive().call_destroy(store, handle),
        }
    }
}

impl Instance {
    /// Runs one call with `fuel` and the generator seeded with `seed`. A trap or an
    /// exhausted budget breaks the instance, and says why.
    pub(crate) fn call<R>(
        &mut self,
        fuel: u64,
        seed: u64,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, Reason> {
        if self.broken {
            return Err(Reason::Broken);
        }
        let store = &mut self.store;
        store.data_mut().rng = seed;
        if let Err(e) = store.set_fuel(fuel) {
            return Err(Reason::Trap(format!("{e:#}")));
        }
        match f(&self.bindings, store) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.broken = true;
                Err(describe(&self.store, &e, fuel))
            }
        }
    }

    /// Ends a policy value's state in the guest, if the instance still runs.
    pub(crate) fn destroy(&mut self, handle: u32, fuel: u64) {
        // A guest that cannot clean up only keeps its own memory.
        let _ = self.call(fuel, 0, |b, s| b.destroy(s, handle));
    }
}

/// Why a call failed, in the words an operator needs.
fn describe(store: &Store<HostState>, e: &wasmtime::Error, fuel: u64) -> Reason {
    if let Some(bytes) = store.data().limiter.refused {
        return Reason::Memory {
            asked: bytes,
            limit: store.data().limiter.memory,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Reason::OutOfFuel(fuel),
        _ => Reason::Trap(format!("{e:#}")),
    }
}

/// The revision's parameters as the WIT's `params`: the annotations that give them.
pub(crate) fn params_of(params: &Params) -> Vec<(String, String)> {
    params.to_annotations().into_iter().collect()
}

/// One policy value's state in a plug-in: its instance and its handle there. Once a call
/// on it fails (or its instance broke), it is dead and its policy answers by the default.
pub(crate) struct Value {
    plugin: Arc<Shared>,
    /// `None`: dead.
    live: Option<(Arc<Mutex<Instance>>, u32)>,
    /// Whether a fallback was logged already.
    told: bool,
    /// The reason of the latest fallback, until taken.
    last: Option<Reason>,
}

impl Value {
    /// A new value, made by the guest's `create`.
    pub(crate) fn new(plugin: &Arc<Shared>, params: &Params) -> Value {
        let mut v = Value {
            plugin: plugin.clone(),
            live: None,
            told: false,
            last: None,
        };
        let made = plugin.instance().and_then(|inst| {
            let params = params_of(params);
            let handle = inst
                .lock()
                .call(plugin.limits.fuel.create, 0, |b, s| b.create(s, &params))?;
            Ok((inst, handle))
        });
        match made {
            Ok(live) => v.live = Some(live),
            Err(reason) => v.fell_back(&reason),
        }
        v
    }

    /// The plug-in's limits.
    pub(crate) fn limits(&self) -> Limits {
        self.plugin.limits
    }

    /// A call's seed: a draw from the driver's generator if the guest draws at all.
    pub(crate) fn seed(&self, rng: &mut dyn kantai_policy::rand::Rng) -> u64 {
        if self.plugin.draws { rng.next_u64() } else { 0 }
    }

    /// Runs `f` on the value's instance with `fuel`; `None` (counted, and the value dead)
    /// when it cannot or the call failed.
    pub(crate) fn call<R>(
        &mut self,
        fuel: u64,
        seed: u64,
        f: impl FnOnce(&Bindings, &mut Store<HostState>, u32) -> wasmtime::Result<R>,
    ) -> Option<R> {
        let (inst, handle) = self.live.as_ref()?;
        let handle = *handle;
        let result = inst.lock().call(fuel, seed, |b, s| f(b, s, handle));
        match result {
            Ok(r) => Some(r),
            Err(reason) => {
                self.live = None;
                self.fell_back(&reason);
                None
            }
        }
    }

    /// Whether calls still reach the guest.
    pub(crate) fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Counts a fallback and ends the value: its guest state can no longer be trusted.
    pub(crate) fn kill(&mut self, reason: &Reason) {
        self.fell_back(reason);
        if let Some((inst, handle)) = self.live.take() {
            inst.lock()
                .destroy(handle, self.plugin.limits.fuel.per_request);
        }
    }

    /// Counts a fallback (logged the first time).
    pub(crate) fn fell_back(&mut self, reason: &Reason) {
        crate::fallback::record(
            &self.plugin.name,
            self.plugin.kind.noun(),
            reason,
            !self.told,
        );
        self.told = true;
        self.last = Some(reason.clone());
    }

    /// The reason of the latest fallback since the last call of this.
    pub(crate) fn take_fallback(&mut self) -> Option<Reason> {
        self.last.take()
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        if let Some((inst, handle)) = self.live.take() {
            inst.lock()
                .destroy(handle, self.plugin.limits.fuel.per_request);
        }
    }
}
