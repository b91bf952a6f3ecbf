//! What the plug-in tests share.

use kantai_plugin::fallbacks;

/// The fallbacks counted for `plugin` for the reason labelled `reason`.
pub fn fell_back(plugin: &str, reason: &str) -> u64 {
    fallbacks()
        .iter()
        .filter(|f| f.plugin == plugin && f.reason == reason)
        .map(|f| f.count)
        .sum()
}
