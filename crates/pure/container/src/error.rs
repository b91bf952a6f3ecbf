//! Why no config could be made, worded for the operator who reads it in an instance's status.

/// Why an instance's OCI runtime config could not be made.
///
/// Every variant names the image (empty while a free function such as [`crate::resolve_user`]
/// runs outside [`crate::runtime_spec`]; `runtime_spec` fills it in) and the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// The config blob is not an OCI or Docker image config.
    #[error(
        "{}: the image's config blob is not an OCI or Docker image config ({detail}); check that \
         the registry serves the config blob the manifest names, or rebuild and push the image",
        named(image)
    )]
    ImageConfig {
        /// The image.
        image: String,
        /// What the JSON parser said.
        detail: String,
    },
    /// Neither the container nor the image says what to run.
    #[error(
        "{}: nothing to run: the container sets no `command` or `args` and the image has no \
         Entrypoint or Cmd; set `command` on the container",
        named(image)
    )]
    NoCommand {
        /// The image.
        image: String,
    },
    /// `runAsNonRoot` with `runAsUser: 0`.
    #[error(
        "container's runAsUser breaks non-root policy ({}): securityContext.runAsNonRoot is true \
         but securityContext.runAsUser is 0; set runAsUser to a non-zero uid or drop runAsNonRoot",
        named(image)
    )]
    RunAsUserIsRoot {
        /// The image.
        image: String,
    },
    /// `runAsNonRoot` with no `runAsUser` and an image that runs as uid 0.
    #[error(
        "container has runAsNonRoot and image will run as root ({}): securityContext.runAsNonRoot \
         is true, securityContext.runAsUser is unset and the image's User is empty or 0; set \
         securityContext.runAsUser to a non-zero uid, or rebuild the image with a non-root USER",
        named(image)
    )]
    ImageRunsAsRoot {
        /// The image.
        image: String,
    },
    /// `runAsNonRoot` with no `runAsUser` and an image user given by name.
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user \
         is non-root ({}): set securityContext.runAsUser to that user's uid, or rebuild the image \
         with a numeric USER",
        named(image)
    )]
    NonNumericUser {
        /// The image.
        image: String,
        /// The image's User, as written.
        user: String,
    },
    /// The image's User names a user the rootfs's `/etc/passwd` does not have.
    #[error(
        "{}: the image's User {user:?} is not in the image's /etc/passwd{}; set \
         securityContext.runAsUser to a uid, or rebuild the image with that user or a numeric USER",
        named(image),
        if *no_passwd { " (the image has no /etc/passwd)" } else { "" }
    )]
    UnknownUser {
        /// The image.
        image: String,
        /// The user name.
        user: String,
        /// The rootfs has no `/etc/passwd` at all.
        no_passwd: bool,
    },
    /// The image's User names a group the rootfs's `/etc/group` does not have.
    #[error(
        "{}: the group {group:?} in the image's User is not in the image's /etc/group; set \
         securityContext.runAsGroup to a gid, or rebuild the image with that group or a numeric \
         USER uid:gid",
        named(image)
    )]
    UnknownGroup {
        /// The image.
        image: String,
        /// The group name.
        group: String,
    },
    /// A capability name that Linux does not have.
    #[error(
        "{}: {field} lists {name:?}, which is not a Linux capability; use a name from \
         capabilities(7) without the CAP_ prefix, such as NET_ADMIN, or ALL",
        named(image)
    )]
    UnknownCapability {
        /// The image.
        image: String,
        /// `securityContext.capabilities.add` or `.drop`.
        field: &'static str,
        /// The name as written.
        name: String,
    },
    /// A capability that would act on the host's network, asked for by a container that
    /// shares it.
    #[error(
        "{}: securityContext.capabilities.add asks for {name}, but kantai's containers share \
         the node's network namespace, where {name} would reach the node's own network (its \
         traffic, other functions' requests); remove it from capabilities.add",
        named(image)
    )]
    HostNetworkCapability {
        /// The image.
        image: String,
        /// The capability (or `ALL`).
        name: String,
    },
    /// A working directory the runtime would refuse (it must be absolute).
    #[error(
        "{}: {field} is {dir:?}, which is not an absolute path; runc and crun need one, so \
         write it from the root, such as /app",
        named(image)
    )]
    RelativeWorkingDir {
        /// The image.
        image: String,
        /// `workingDir` or `the image's WorkingDir`.
        field: &'static str,
        /// The directory as written.
        dir: String,
    },
    /// A resource limit no cgroup can hold.
    #[error(
        "{}: {field} is {value}, which no cgroup limit can express; set a positive quantity \
         such as 500m or 256Mi, or remove the limit",
        named(image)
    )]
    BadLimit {
        /// The image.
        image: String,
        /// `resources.limits.cpu` or `resources.limits.memory`.
        field: &'static str,
        /// The quantity as written.
        value: String,
    },
    /// A host file bound to a relative path inside the container.
    #[error(
        "{}: the node binds {host:?} to {path:?} in the container, which is not an absolute \
         path; this is a bug in the node agent's runtime, not in the service",
        named(image)
    )]
    RelativeMount {
        /// The image.
        image: String,
        /// The host path.
        host: String,
        /// The container path as given.
        path: String,
    },
    /// A volume mount the node has no volume for.
    #[error(
        "{}: volumeMounts of {mount_path:?} names volume {volume:?}, which the node did not \
         prepare; the revision's spec.volumes must list it with a source kantai supports \
         (secret, configMap, projected, emptyDir)",
        named(image)
    )]
    UnknownVolume {
        /// The image.
        image: String,
        /// The volume's name.
        volume: String,
        /// Where it was to be mounted.
        mount_path: String,
    },
    /// A volume mount kantai cannot make as written.
    #[error(
        "{}: the mount of volume {volume:?} at {mount_path:?} {why}",
        named(image)
    )]
    BadVolumeMount {
        /// The image.
        image: String,
        /// The volume's name.
        volume: String,
        /// Where it was to be mounted.
        mount_path: String,
        /// What is wrong and what to do, starting with a verb phrase.
        why: String,
    },
}

impl SpecError {
    /// The Kubernetes waiting reason a container with this error shows.
    ///
    /// The kubelet reports what fails while it builds the container's config (the non-root
    /// checks, limits, volume mounts and their subPaths) as `CreateContainerConfigError`, what the runtime refuses while creating it (no
    /// command, unknown users, groups and capabilities, relative paths) as
    /// `CreateContainerError`, and an image it cannot read as `ImageInspectError`.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::ImageConfig { .. } => "ImageInspectError",
            SpecError::RunAsUserIsRoot { .. }
            | SpecError::ImageRunsAsRoot { .. }
            | SpecError::NonNumericUser { .. }
            | SpecError::BadLimit { .. }
            | SpecError::UnknownVolume { .. }
            | SpecError::BadVolumeMount { .. } => "CreateContainerConfigError",
            SpecError::NoCommand { .. }
            | SpecError::UnknownUser { .. }
            | SpecError::UnknownGroup { .. }
            | SpecError::UnknownCapability { .. }
            | SpecError::HostNetworkCapability { .. }
            | SpecError::RelativeWorkingDir { .. }
            | SpecError::RelativeMount { .. } => "CreateContainerError",
        }
    }

    /// The same error, naming `name` as its image.
    pub fn in_image(mut self, name: &str) -> SpecError {
        let image = match &mut self {
            SpecError::ImageConfig { image, .. }
            | SpecError::NoCommand { image }
            | SpecError::RunAsUserIsRoot { image }
            | SpecError::ImageRunsAsRoot { image }
            | SpecError::NonNumericUser { image, .. }
            | SpecError::UnknownUser { image, .. }
            | SpecError::UnknownGroup { image, .. }
            | SpecError::UnknownCapability { image, .. }
            | SpecError::HostNetworkCapability { image, .. }
            | SpecError::RelativeWorkingDir { image, .. }
            | SpecError::BadLimit { image, .. }
            | SpecError::RelativeMount { image, .. }
            | SpecError::UnknownVolume { image, .. }
            | SpecError::BadVolumeMount { image, .. } => image,
        };
        name.clone_into(image);
        self
    }
}

fn named(image: &str) -> String {
    if image.is_empty() {
        "the image".to_owned()
    } else {
        format!("image {image}")
    }
}
