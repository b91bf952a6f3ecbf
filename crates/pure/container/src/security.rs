//! The container's security settings and the checks Kubernetes makes on them before anything
//! is created.

use serde::Deserialize;

use crate::SpecError;

/// Security settings after pod- and container-level merge (the driver maps the model's types into this).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Security {
    /// `runAsUser`: the uid, overriding the image's User.
    pub run_as_user: Option<u32>,
    /// `runAsGroup`: the primary gid, overriding the one the user would get.
    pub run_as_group: Option<u32>,
    /// `runAsNonRoot`: refuse to start what would run as uid 0.
    pub run_as_non_root: bool,
    /// `readOnlyRootFilesystem`.
    pub read_only_root_filesystem: bool,
    /// `allowPrivilegeEscalation`; unset means allowed, as in Kubernetes.
    pub allow_privilege_escalation: Option<bool>,
    /// `capabilities.add`, without the `CAP_` prefix (given, it is accepted too).
    pub cap_add: Vec<String>,
    /// `capabilities.drop`, likewise.
    pub cap_drop: Vec<String>,
}

/// Kubernetes' `runAsNonRoot` check (the kubelet's `verifyRunAsNonRoot`), made on what the
/// spec and the image say before any name is resolved.
///
/// With `runAsUser` given only its value counts. Otherwise the user part of the image's User
/// decides: empty or `0` is root, a number is checked, and a name is refused outright because
/// the kubelet cannot see the image's `/etc/passwd` to learn its uid. kantai could, but an
/// image that starts here and not on Kubernetes would be a trap.
pub fn check_run_as_non_root(image_user: Option<&str>, s: &Security) -> Result<(), SpecError> {
    if !s.run_as_non_root {
        return Ok(());
    }
    if let Some(uid) = s.run_as_user {
        return match uid {
            0 => Err(SpecError::RunAsUserIsRoot {
                image: String::new(),
            }),
            _ => Ok(()),
        };
    }
    let user = image_user.unwrap_or("");
    let user = user.split_once(':').map_or(user, |(u, _)| u);
    match user.parse::<i64>() {
        _ if user.is_empty() => Err(SpecError::ImageRunsAsRoot {
            image: String::new(),
        }),
        Ok(0) => Err(SpecError::ImageRunsAsRoot {
            image: String::new(),
        }),
        Ok(_) => Ok(()),
        Err(_) => Err(SpecError::NonNumericUser {
            image: String::new(),
            user: user.to_owned(),
        }),
    }
}

/// `process.noNewPrivileges`: set only for `allowPrivilegeEscalation: false`.
///
/// Kubernetes' default is to allow escalation, and containerd's CRI sets the flag only when
/// asked, so setuid binaries (`su`, `ping` on older images) keep working unless the service
/// opts out.
pub fn no_new_privileges(s: &Security) -> bool {
    s.allow_privilege_escalation == Some(false)
}
