//! Which capabilities the process keeps: Docker's default set, adjusted by the container's
//! `capabilities.add` and `capabilities.drop`.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::SpecError;
use crate::security::Security;

/// Docker's default capability set (Kubernetes' containers get it).
///
/// containerd's CRI and CRI-O start from the same list (moby's `caps.DefaultCapabilities`).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability Linux has, for `ALL`.
pub const ALL_CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETGID",
    "SETFCAP",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// The capability set, by name without `CAP_`, in [`ALL_CAPABILITIES`]' order.
///
/// containerd's CRI order: `ALL` in add grants everything, then `ALL` in drop clears
/// everything, then each named add, then each named drop, so a name in both lists ends up
/// dropped and `add: [ALL], drop: [CHOWN]` means all but CHOWN. Names are matched without
/// case and with or without `CAP_`, as Docker reads them.
pub fn capability_set(s: &Security) -> Result<Vec<&'static str>, SpecError> {
    let add = normalise(&s.cap_add, "securityContext.capabilities.add")?;
    let drop = normalise(&s.cap_drop, "securityContext.capabilities.drop")?;
    let mut set: Vec<&'static str> = DEFAULT_CAPABILITIES.to_vec();
    if add.contains(&"ALL") {
        set = ALL_CAPABILITIES.to_vec();
    }
    if drop.contains(&"ALL") {
        set.clear();
    }
    for c in add.iter().filter(|c| **c != "ALL") {
        if !set.contains(c) {
            set.push(c);
        }
    }
    set.retain(|c| !drop.contains(c));
    set.sort_by_key(|c| ALL_CAPABILITIES.iter().position(|a| a == c));
    Ok(set)
}

/// Capabilities that act on the network namespace a process is in: in the host's (where
/// kantai's containers listen on the port they are given), NET_RAW would let a container
/// read and forge the host's traffic (other functions' requests, the peer token between
/// nodes) and NET_ADMIN would let it reconfigure the host's network.
pub const HOST_NETWORK_CAPABILITIES: &[&str] = &["NET_RAW", "NET_ADMIN"];

/// The set for a container in the host's network namespace: Docker's default without
/// NET_RAW (as when `drop: [NET_RAW]` is written, which Kubernetes' restricted Pod Security
/// Standard asks for anyway); asking for NET_RAW or NET_ADMIN (by name or through `ALL`)
/// is refused, since no namespace of its own would bound them.
pub fn on_host_network(
    mut set: Vec<&'static str>,
    s: &Security,
) -> Result<Vec<&'static str>, SpecError> {
    let add = normalise(&s.cap_add, "securityContext.capabilities.add")?;
    if let Some(name) = add
        .iter()
        .find(|c| **c == "ALL" || HOST_NETWORK_CAPABILITIES.contains(c))
    {
        return Err(SpecError::HostNetworkCapability {
            image: String::new(),
            name: (*name).to_owned(),
        });
    }
    set.retain(|c| !HOST_NETWORK_CAPABILITIES.contains(c));
    Ok(set)
}

/// `process.capabilities` for the set: the same list in bounding, effective and permitted;
/// inheritable and ambient empty.
///
/// - Inheritable is empty since Docker 20.10.14 and containerd 1.6.2 (CVE-2022-24769: a
///   non-empty inheritable set let file capabilities of binaries run by non-root users
///   exceed the bounding set's intent).
/// - Ambient is empty: containerd's CRI clears it (`WithoutAmbientCaps`), and Kubernetes has
///   no field for it (KEP-2763 was never merged).
/// - The sets are the same for a non-root user. Docker emptied effective and permitted for
///   them in 2018 (moby#36587) and put them back in 2023 (moby#45511): the kernel already
///   clears both at the first `execve` by a non-zero uid unless the binary carries file
///   capabilities, and emptying them early broke exactly those binaries under
///   `no-new-privileges`. containerd never emptied them. So a non-root process ends up with
///   no capabilities either way, and a `setcap`'d binary in the image still works.
pub fn linux_capabilities(set: &[&str]) -> LinuxCapabilities {
    let caps: Capabilities = set.iter().filter_map(|c| to_capability(c)).collect();
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(Some(Capabilities::new()))
        .set_ambient(Some(Capabilities::new()));
    lc
}

/// oci-spec's own reader of names is its `Deserialize` (its `FromStr` spells some names
/// differently from the kernel), so names go through it.
fn to_capability(name: &str) -> Option<Capability> {
    serde_json::from_value(serde_json::Value::String(format!("CAP_{name}"))).ok()
}

fn normalise(names: &[String], field: &'static str) -> Result<Vec<&'static str>, SpecError> {
    names
        .iter()
        .map(|name| {
            let upper = name.trim().to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
            std::iter::once(&"ALL")
                .chain(ALL_CAPABILITIES)
                .find(|c| **c == bare)
                .copied()
                .ok_or_else(|| SpecError::UnknownCapability {
                    image: String::new(),
                    field,
                    name: name.clone(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_a_capability_oci_spec_knows() {
        for name in ALL_CAPABILITIES {
            assert!(to_capability(name).is_some(), "{name}");
        }
    }
}
