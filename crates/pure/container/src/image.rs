//! The image's config blob: the defaults for what runs, as the image's builder left them.

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use crate::SpecError;

/// The parts of an image's config (the OCI image config blob) that decide what runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageConfig {
    /// `Entrypoint`; `[""]` (Docker's `ENTRYPOINT [""]`, which resets it) is kept as written.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `K=V` entries.
    pub env: Vec<String>,
    /// `WorkingDir`; `None` when absent or empty.
    pub working_dir: Option<String>,
    /// `User` (`name`, `uid`, `name:group`, `uid:gid`); `None` when absent or empty.
    pub user: Option<String>,
    /// `StopSignal`; `None` when absent or empty.
    pub stop_signal: Option<String>,
}

impl ImageConfig {
    /// Reads an OCI image config blob, or a Docker one (the same JSON shape).
    pub fn parse(blob: &[u8]) -> Result<ImageConfig, SpecError> {
        let parsed: ImageConfiguration =
            serde_json::from_slice(blob).map_err(|e| SpecError::ImageConfig {
                image: String::new(),
                detail: e.to_string(),
            })?;
        let Some(c) = parsed.config() else {
            return Ok(ImageConfig::default());
        };
        // Builders write "" for an unset string field (Docker always does), which means the
        // same as absent.
        let text = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(ImageConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: text(c.working_dir()),
            user: text(c.user()),
            stop_signal: text(c.stop_signal()),
        })
    }
}
