//! Container images for a node: pulled from OCI registries into a content-addressed layer
//! store under the node's state directory.
//!
//! [`Registry`] speaks the OCI distribution protocol (through `oci-client`) with the node's
//! credentials; [`Store`] keeps unpacked layers, one directory per compressed layer digest,
//! ready to be stacked as overlayfs lowerdirs, and hands out [`Image`]s that lease them.

mod auth;
mod error;
mod manifest;
mod registry;
mod store;
mod unpack;

use std::fmt;
use std::path::PathBuf;

pub use error::ImageError;
pub use registry::{Registry, normalize};
pub use store::{Image, Store};

/// Kubernetes' `imagePullPolicy`, re-exported from the model for callers of [`Store::pull`].
pub use kantai_model::serving::PullPolicy;

/// A platform an image manifest is built for, in the OCI image index's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in Go's `GOARCH` names, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v7` for `arm`; `None` accepts any variant of the architecture.
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's platform: `linux` and the `GOARCH` name of the architecture built for.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The default store limit: 10 GiB of unpacked layers.
pub const DEFAULT_STORE_LIMIT: u64 = 10 << 30;

/// What a node's image store needs to know (from the fleet config's `runtime.oci`).
#[derive(Clone, Debug)]
pub struct ImagesConfig {
    /// `host[:port]` of registries reached over plain HTTP; every other registry is HTTPS.
    pub insecure_registries: Vec<String>,
    /// Docker `config.json` with credentials; `None`: `$DOCKER_CONFIG/config.json`, then
    /// `$HOME/.docker/config.json`. An absent file means anonymous pulls.
    pub auth_file: Option<PathBuf>,
    /// Bytes of unpacked layers kept; least-recently-used unleased layers are evicted beyond it.
    pub store_limit: u64,
    /// The platform picked from multi-platform images.
    pub platform: Platform,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            insecure_registries: Vec::new(),
            auth_file: None,
            store_limit: DEFAULT_STORE_LIMIT,
            platform: Platform::host(),
        }
    }
}

/// How far a pull has got; sent on a watch channel as layers and bytes arrive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Layers in the image.
    pub layers_total: u32,
    /// Layers present (already stored, or downloaded and unpacked).
    pub layers_done: u32,
    /// Compressed bytes of all layers.
    pub bytes_total: u64,
    /// Compressed bytes present or downloaded so far.
    pub bytes_done: u64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |b: u64| b as f64 / 1_000_000.0;
        write!(
            f,
            "pulling {}/{} layers, {:.1} of {:.1} MB",
            self.layers_done,
            self.layers_total,
            mb(self.bytes_done),
            mb(self.bytes_total)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_layers_and_megabytes() {
        let p = Progress {
            layers_total: 5,
            layers_done: 3,
            bytes_total: 50_100_000,
            bytes_done: 12_340_000,
        };
        assert_eq!(p.to_string(), "pulling 3/5 layers, 12.3 of 50.1 MB");
    }

    #[test]
    fn reasons_follow_kubernetes() {
        let e = ImageError::NeverPull { image: "x".into() };
        assert_eq!(e.reason(), "ErrImageNeverPull");
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(normalize("  ").unwrap_err().reason(), "InvalidImageName");
    }
}
