//! When a plug-in's answer is not used: why, and how often, per plug-in. Drivers export the
//! counts as a metric; each policy value also says so once in the log.

use std::collections::BTreeMap;

use parking_lot::Mutex;

/// Why a call into a plug-in was answered by the default policy instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The call used its whole fuel budget (an endless loop, or too much work).
    #[error("ran out of its budget of {0} fuel units")]
    OutOfFuel(u64),
    /// The guest asked for more memory than it may have.
    #[error("asked for {asked} bytes of memory, over its limit of {limit}")]
    Memory {
        /// Bytes asked for.
        asked: usize,
        /// The limit.
        limit: usize,
    },
    /// The guest trapped (or could not be instantiated).
    #[error("trapped: {0}")]
    Trap(String),
    /// An earlier call on the same instance trapped, so the instance cannot run again.
    #[error("its instance stopped after an earlier trap")]
    Broken,
    /// The answer is not one the plug point can use.
    #[error("answered out of range: {0}")]
    OutOfRange(String),
}

impl Reason {
    /// The reason as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::OutOfFuel(_) => "out-of-fuel",
            Reason::Memory { .. } => "memory",
            Reason::Trap(_) => "trap",
            Reason::Broken => "broken",
            Reason::OutOfRange(_) => "out-of-range",
        }
    }
}

/// How many calls of one plug-in fell back for one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The plug-in's name.
    pub plugin: String,
    /// The kind of policy, as a noun.
    pub kind: &'static str,
    /// [`Reason::label`].
    pub reason: &'static str,
    /// Calls so far.
    pub count: u64,
}

type Key = (String, &'static str, &'static str);

static COUNTS: Mutex<BTreeMap<Key, u64>> = Mutex::new(BTreeMap::new());

/// Every plug-in's fallbacks so far, in plug-in and reason order.
pub fn fallbacks() -> Vec<Fallback> {
    COUNTS
        .lock()
        .iter()
        .map(|((plugin, kind, reason), count)| Fallback {
            plugin: plugin.clone(),
            kind,
            reason,
            count: *count,
        })
        .collect()
}

/// Counts one fallback; the first of a policy value (`first`) is also logged.
pub(crate) fn record(plugin: &str, kind: &'static str, reason: &Reason, first: bool) {
    *COUNTS
        .lock()
        .entry((plugin.to_owned(), kind, reason.label()))
        .or_default() += 1;
    if first {
        tracing::warn!(
            plugin,
            kind,
            reason = reason.label(),
            "plug-in {plugin:?} {reason}; its {kind} falls back to the default policy"
        );
    }
}
