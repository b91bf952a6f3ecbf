//! The cgroup limits: CPU and memory from the container's resources, the node's pids limit.

use kantai_model::serving::Resources;
use kantai_model::units::Quantity;
use oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxPids, LinuxResources};

use crate::SpecError;

/// The CFS period the kubelet uses, in microseconds.
pub const CPU_PERIOD: u64 = 100_000;

/// The smallest CFS quota the kubelet sets (1 ms per period), in microseconds.
pub const MIN_CPU_QUOTA: i64 = 1_000;

/// The fewest CPU shares the kubelet gives (its `MinShares`).
pub const MIN_CPU_SHARES: u64 = 2;

/// `linux.resources`: the device allowlist of runc's default spec (deny everything; runc adds
/// the standard devices itself), CPU and memory from `resources`, and `pids_limit` when it is
/// positive (the kubelet's `podPidsLimit` uses -1 for none).
pub fn linux_resources(r: &Resources, pids_limit: i64) -> Result<LinuxResources, SpecError> {
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false).set_access(Some("rwm".to_owned()));
    let mut out = LinuxResources::default();
    out.set_devices(Some(vec![deny_all]));
    out.set_cpu(cpu(r)?);
    out.set_memory(memory(r)?);
    if pids_limit > 0 {
        let mut pids = LinuxPids::default();
        pids.set_limit(pids_limit);
        out.set_pids(Some(pids));
    }
    Ok(out)
}

/// CPU as the kubelet sets it (`milliCPUToQuota`, `milliCPUToShares`): the quota is the limit
/// in millicores × period / 1000, at least [`MIN_CPU_QUOTA`]; shares are the request (else the
/// limit, which Kubernetes defaults the request to) × 1024 per core, at least
/// [`MIN_CPU_SHARES`]. No request and no limit leaves both unset rather than the kubelet's
/// best-effort 2 shares: kantai's instances sit beside the node agent's own cgroup, not in a
/// QoS tier of their own, and 2 shares would starve them against it.
fn cpu(r: &Resources) -> Result<Option<LinuxCpu>, SpecError> {
    let limit = millis(r.limits.get("cpu"), "resources.limits.cpu")?;
    let request = millis(r.requests.get("cpu"), "resources.requests.cpu")?.or(limit);
    if limit.is_none() && request.is_none() {
        return Ok(None);
    }
    let mut c = LinuxCpu::default();
    if let Some(m) = limit {
        let quota = m.saturating_mul(CPU_PERIOD as i64) / 1000;
        c.set_quota(Some(quota.max(MIN_CPU_QUOTA)))
            .set_period(Some(CPU_PERIOD));
    }
    if let Some(m) = request {
        let shares = u64::try_from(m.saturating_mul(1024) / 1000).unwrap_or(0);
        c.set_shares(Some(shares.max(MIN_CPU_SHARES)));
    }
    Ok(Some(c))
}

/// Memory: the limit in bytes, and the same figure as memory+swap so the container cannot
/// swap beyond its limit (the kubelet does this whenever swap is not enabled for the pod).
fn memory(r: &Resources) -> Result<Option<LinuxMemory>, SpecError> {
    let Some(bytes) = whole(r.limits.get("memory"), 1.0, "resources.limits.memory")? else {
        return Ok(None);
    };
    let mut m = LinuxMemory::default();
    m.set_limit(Some(bytes)).set_swap(Some(bytes));
    Ok(Some(m))
}

fn millis(q: Option<&Quantity>, field: &'static str) -> Result<Option<i64>, SpecError> {
    whole(q, 1000.0, field)
}

/// `q` × `scale`, rounded up as Kubernetes' `Quantity.Value` and `MilliValue` round. Zero is
/// no limit, as it is to the kubelet; a negative or unrepresentable figure is refused.
fn whole(q: Option<&Quantity>, scale: f64, field: &'static str) -> Result<Option<i64>, SpecError> {
    let Some(q) = q else { return Ok(None) };
    let exact = q.value() * scale;
    // The quantity is held as a float, so `700m` × 1000 is 700.0000000000001: a figure within
    // float error of a whole number is that number, and only a real fraction rounds up.
    let nearest = exact.round();
    let v = if (exact - nearest).abs() <= exact.abs() * 1e-12 {
        nearest
    } else {
        exact.ceil()
    };
    // i64::MAX as f64 rounds up to 2^63, so the bound is exclusive.
    if !v.is_finite() || v < 0.0 || v >= i64::MAX as f64 {
        return Err(SpecError::BadLimit {
            image: String::new(),
            field,
            value: q.as_str().to_owned(),
        });
    }
    // The range check above keeps the cast exact.
    #[allow(clippy::cast_possible_truncation)]
    let v = v as i64;
    Ok((v > 0).then_some(v))
}
