//! Secrets and ConfigMaps end to end with a real fleet and a process function: kubectl (or
//! the API) creates them, the function reads them from env and from mounted files, a
//! ConfigMap update reaches the file, and a missing Secret fails fast and recovers. The
//! scenarios are `common::config`'s, shared with the container-image variant.

use crate::common;

use common::TestFleet;
use common::config::{self, PROCESS_READER_CONFIG};

/// Where a test's volumes are mounted: mount points are the node's, so each test (and each
/// run) has its own.
fn mounts(test: &str) -> String {
    format!("/srv/kantai-test-{}-{test}", std::process::id())
}

fn one_node() -> [common::TestNode; 1] {
    [common::TestNode {
        name: "node1",
        rtt_to_first_ms: 0,
    }]
}

/// Process functions mount volumes in a private mount namespace, which needs root.
fn root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    eprintln!("skipping: process functions' volume mounts need the node agent to run as root");
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_function_reads_secrets_and_config_maps_from_env_and_files() {
    if !root() {
        return;
    }
    let fleet = TestFleet::start(&one_node(), PROCESS_READER_CONFIG).await;
    config::reads_secrets_and_config_maps(&fleet, &config::process_reader(), &mounts("reader"))
        .await;
    fleet.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_function_missing_its_secret_fails_fast_and_recovers() {
    if !root() {
        return;
    }
    let fleet = TestFleet::start(&one_node(), PROCESS_READER_CONFIG).await;
    config::a_missing_secret_fails_fast_and_recovers(
        &fleet,
        &config::process_reader(),
        &mounts("needy"),
    )
    .await;
    fleet.stop();
}
