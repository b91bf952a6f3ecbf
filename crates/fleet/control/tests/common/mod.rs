//! A control plane in-process on loopback for the API tests: the seed's topology, default
//! serving config, a known token, a fresh state directory.

use kantai_control::digests::DigestConfig;
use kantai_control::{ControlConfig, ControlPlane};
use kantai_model::ServingConfig;
use kantai_model::topology::Topology;

/// The bearer token of the test control planes.
pub const TOKEN: &str = "test-token";

/// Starts a control plane keeping its store in `dir`.
#[allow(dead_code)] // Not every test binary starts one without a resolver.
pub async fn control_plane(dir: &std::path::Path) -> ControlPlane {
    control_plane_with(dir, DigestConfig::default()).await
}

/// Starts a control plane keeping its store in `dir`, resolving image tags as `digests` says.
pub async fn control_plane_with(dir: &std::path::Path, digests: DigestConfig) -> ControlPlane {
    ControlPlane::start_with(
        ControlConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            state_dir: dir.to_owned(),
            serving: ServingConfig::default(),
            config_text: String::new(),
            decision_log: None,
            topology: Topology::seed_testbed(),
            token: TOKEN.to_owned(),
            peer_token: "test-peer-token".to_owned(),
            tls: None,
        },
        digests,
    )
    .await
    .expect("start")
}

/// Waits until `f` gives a value, polling every 20 ms; fails the test naming `what` after
/// `limit`. Every wait of these tests is this one.
#[allow(dead_code)] // Not every test binary waits for the control plane's work.
pub async fn wait_for<T, F, Fut>(limit: std::time::Duration, what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
