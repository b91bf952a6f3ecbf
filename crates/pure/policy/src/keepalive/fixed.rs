//! Knative's keep-alive (the KPA's windows alone) and a fixed one (AWS's and Azure's
//! 10–20 minutes, OpenWhisk's `idle-container`).

use super::{Arrival, Hold, KeepAlive, KeepAliveInput};

/// Knative's behaviour: the KPA's stable window, grace period and retention decide when
/// an idle revision goes to zero, and nothing starts ahead of demand. The default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Knative;

impl KeepAlive for Knative {
    fn arrived(&mut self, _: Arrival) {}

    fn hold(&mut self, _: &KeepAliveInput<'_>) -> Hold {
        Hold::Kpa
    }
}

/// One instance kept for `kantai.dev/keep-alive-window` (default 10 minutes) after the
/// revision's last request, then released; the KPA scales it while it is busy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fixed;

impl KeepAlive for Fixed {
    fn arrived(&mut self, _: Arrival) {}

    fn hold(&mut self, input: &KeepAliveInput<'_>) -> Hold {
        match input.idle_since {
            None => Hold::Kpa,
            Some(since) if input.now.saturating_sub(since) < input.params.keep_alive_window => {
                Hold::Keep(1)
            }
            Some(_) => Hold::Release,
        }
    }
}
