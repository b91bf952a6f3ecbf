//! An image built by umoci and pushed by skopeo, as users build them.

mod common;

use std::process::Command;

use common::*;
use kantai_images::{PullPolicy, Store};

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_built_by_umoci_and_pushed_by_skopeo_pulls() {
    let reg = RealRegistry::start();
    let work = TempDir::new("umoci");
    let layout = work.path().join("oci");
    let bundle = work.path().join("bundle");
    let image = format!("{}:hello", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::write(rootfs.join("bin/hello"), b"#!/bin/sh\necho hello\n").unwrap();
    std::os::unix::fs::symlink("/bin/busybox", rootfs.join("bin/sh")).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/hello",
        "--config.env",
        "GREETING=hi",
    ]));
    let dest = format!("docker://{}/fn/hello:v1", reg.host());
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{image}"),
        &dest,
    ]));

    let dir = TempDir::new("store");
    let s = Store::open(dir.path(), registry_for(&[reg.host()], None), 1 << 30).unwrap();
    let img = s
        .pull(
            &format!("{}/fn/hello:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap();
    let hello = img
        .layers
        .iter()
        .find(|l| l.join("bin/hello").exists())
        .expect("a layer has bin/hello");
    assert_eq!(
        std::fs::read(hello.join("bin/hello")).unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    let config: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    assert_eq!(config["config"]["Cmd"][0], "/bin/hello");
    assert!(
        config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hi")
    );
    assert!(
        img.reference
            .starts_with(&format!("{}/fn/hello@sha256:", reg.host())),
        "{}",
        img.reference
    );
}
