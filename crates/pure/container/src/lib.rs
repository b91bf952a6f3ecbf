//! What a container runs: Kubernetes' rules applied to a container spec and an image's
//! config, giving the OCI runtime config (`config.json`) of one instance.
//!
//! The crate is pure: the driver reads the image's config blob and the rootfs's
//! `/etc/passwd` and `/etc/group` and passes their text in; nothing here touches files, the
//! clock or the environment.
//!
//! Modules, in the order data flows through them:
//! - [`image`]: the image's config blob → [`ImageConfig`] (Entrypoint, Cmd, Env, User, ...).
//! - [`command`]: `$(VAR)` expansion and the argument vector ([`argv`]).
//! - [`security`]: the merged [`Security`] settings and Kubernetes' `runAsNonRoot` check.
//! - [`user`]: uid, gid and groups from `runAsUser`/`runAsGroup` or the image's User
//!   ([`resolve_user`]).
//! - [`env`]: the process environment: image, container (with Secrets, ConfigMaps and the
//!   Downward API resolved), Knative, `PATH`/`HOSTNAME`/`HOME`.
//! - [`capabilities`]: Docker's default set with add and drop ([`DEFAULT_CAPABILITIES`]).
//! - [`resources`]: cgroup limits for CPU, memory and pids.
//! - [`mounts`]: kernel filesystems, the node's files, the revision's volumes, masked and
//!   read-only paths.
//! - [`spec`]: all of the above as one [`oci_spec::runtime::Spec`] ([`runtime_spec`]).
//! - [`error`]: [`SpecError`], worded for the operator, with its Kubernetes reason.

pub mod capabilities;
pub mod command;
pub mod env;
pub mod error;
pub mod image;
pub mod mounts;
pub mod resources;
pub mod security;
pub mod spec;
pub mod user;

pub use capabilities::DEFAULT_CAPABILITIES;
pub use command::argv;
pub use env::{Downward, resolved_env};
pub use error::SpecError;
pub use image::ImageConfig;
pub use mounts::{HostVolume, HostVolumeKind, volume_mounts};
pub use security::Security;
pub use spec::{Inputs, Network, runtime_spec, to_json};
pub use user::{User, resolve_user};
