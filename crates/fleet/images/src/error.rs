//! Errors of pulls and of the store, each naming the image, the registry and what it said.

use std::io;
use std::path::{Path, PathBuf};

/// Why an image could not be resolved, pulled or stored.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse as an image name.
    #[error("invalid image reference {image:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry does not know the repository, tag, manifest or blob.
    #[error("image {image} not found at registry {registry}: {message}")]
    NotFound {
        /// The normalised reference.
        image: String,
        /// The registry host.
        registry: String,
        /// What the registry said.
        message: String,
    },
    /// The registry refused the credentials (or wants some and the node has none).
    #[error("registry {registry} refused access to image {image} with {credentials}: {message}")]
    Unauthorized {
        /// The normalised reference.
        image: String,
        /// The registry host.
        registry: String,
        /// Which credentials were offered, e.g. `no credentials` or `user alice from /root/.docker/config.json`.
        credentials: String,
        /// What the registry said.
        message: String,
    },
    /// The registry could not be reached: connect failure, timeout, TLS failure, cut connection.
    #[error("registry {registry} is unreachable while pulling image {image}: {message}")]
    Unreachable {
        /// The normalised reference.
        image: String,
        /// The registry host.
        registry: String,
        /// The transport error, with its causes.
        message: String,
    },
    /// The registry answered with an error that is none of the above.
    #[error("registry {registry} failed a request for image {image}: {message}")]
    Registry {
        /// The normalised reference.
        image: String,
        /// The registry host.
        registry: String,
        /// What the registry said.
        message: String,
    },
    /// The manifest does not parse or has a media type kantai cannot run.
    #[error("the manifest of image {image} from registry {registry} cannot be used: {message}")]
    BadManifest {
        /// The normalised reference.
        image: String,
        /// The registry host.
        registry: String,
        /// What is wrong with it.
        message: String,
    },
    /// A multi-platform image has no manifest for the node's platform.
    #[error(
        "image {image} from registry {registry} has no manifest for this node's platform {wanted}; it has: {available}"
    )]
    NoPlatform {
        /// The normalised reference.
        image: String,
        /// The registry host.
        registry: String,
        /// The node's platform.
        wanted: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A blob's content does not hash to its digest.
    #[error(
        "{what} of image {image} from registry {registry} is corrupt: expected digest {expected}, got {actual}"
    )]
    DigestMismatch {
        /// The normalised reference.
        image: String,
        /// The registry host.
        registry: String,
        /// Which blob: `layer sha256:…`, `config sha256:…` or `manifest`.
        what: String,
        /// The digest the manifest (or reference) names.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A layer is not a tar archive kantai can unpack safely.
    #[error("layer {digest} of image {image} cannot be unpacked: {message}")]
    BadLayer {
        /// The normalised reference.
        image: String,
        /// The layer's compressed digest.
        digest: String,
        /// What is wrong with it.
        message: String,
    },
    /// The image exceeds one of the store's limits (manifest size, layer count, store size).
    #[error("image {image} from registry {registry} exceeds a limit: {message}")]
    Limit {
        /// The normalised reference.
        image: String,
        /// The registry host.
        registry: String,
        /// Which limit and by how much.
        message: String,
    },
    /// The disk holding the store is full.
    #[error(
        "no space left on the disk holding the image store while storing image {image}: {op} {path}"
    )]
    DiskFull {
        /// The normalised reference.
        image: String,
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
    },
    /// Any other I/O error while storing or reading the store.
    #[error("image store I/O failed for image {image}: {op} {path}: {source}")]
    Io {
        /// The normalised reference, or `-` outside a pull.
        image: String,
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The image is not stored and the pull policy forbids asking the registry.
    #[error("image {image} is not present on this node and its pull policy is Never")]
    NeverPull {
        /// The normalised reference.
        image: String,
    },
    /// The Docker credentials file is unreadable or malformed.
    #[error("registry credentials file {path}: {message}")]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line or key.
        message: String,
    },
    /// Another process holds the store's lock.
    #[error("image store {path} is in use by another process (its lock file is held)")]
    StoreInUse {
        /// The store directory.
        path: PathBuf,
    },
}

impl ImageError {
    /// Kubernetes' waiting reason for this error (`InvalidImageName`, `ErrImageNeverPull`, `ErrImagePull`).
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::InvalidReference { .. } => "InvalidImageName",
            ImageError::NeverPull { .. } => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }

    /// An I/O error while storing, told apart into a full disk and anything else.
    pub(crate) fn io(image: &str, op: &'static str, path: &Path, source: io::Error) -> ImageError {
        let full = matches!(source.raw_os_error(), Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT)
            || source.kind() == io::ErrorKind::StorageFull;
        if full {
            ImageError::DiskFull {
                image: image.to_owned(),
                op,
                path: path.to_owned(),
            }
        } else {
            ImageError::Io {
                image: image.to_owned(),
                op,
                path: path.to_owned(),
                source,
            }
        }
    }
}

/// An error and its causes on one line; reqwest's own message hides the interesting part.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
