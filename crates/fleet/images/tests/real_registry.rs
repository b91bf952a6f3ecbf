//! Pulls from Debian's docker-registry (the CNCF distribution server) on loopback.

mod common;

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};

use common::*;
use kantai_images::{ImageError, PullPolicy, Store};

fn store(reg: &RealRegistry, dir: &TempDir, limit: u64) -> Store {
    Store::open(dir.path(), registry_for(&[reg.host()], None), limit).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_and_opaque_directories_become_overlayfs_form() {
    let reg = RealRegistry::start();
    let base = Blob::gz(&[
        E::Dir("etc/"),
        E::File("etc/a", b"a"),
        E::File("etc/b", b"b"),
        E::Dir("opt/x/"),
        E::File("opt/x/old", b"old"),
    ]);
    let top = Blob::gz(&[
        E::File("etc/.wh.a", b""),
        E::File("opt/x/.wh..wh..opq", b""),
        E::File("opt/x/new", b"new"),
    ]);
    push_image(
        &reg.host(),
        "ns/wh",
        "v1",
        &[base, top],
        &config_json("/bin/sh", &host_arch()),
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let img = store(&reg, &dir, 1 << 30)
        .pull(
            &format!("{}/ns/wh:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap();
    let upper = &img.layers[1];
    let wh = std::fs::symlink_metadata(upper.join("etc/a")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "etc/a is not a 0/0 character device"
    );
    assert!(!upper.join("etc/.wh.a").exists());
    assert_eq!(
        xattr::get(upper.join("opt/x"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!upper.join("opt/x/.wh..wh..opq").exists());
    assert_eq!(std::fs::read(upper.join("opt/x/new")).unwrap(), b"new");
    assert_eq!(
        std::fs::read(img.layers[0].join("opt/x/old")).unwrap(),
        b"old"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_modes_and_absolute_symlinks_are_kept() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: ownership needs root");
        return;
    }
    let reg = RealRegistry::start();
    let layer = Blob::gz(&[
        E::Dir("bin/"),
        E::Owned("bin/tool", b"#!x", 0o4750, 1234, 5678),
        E::Symlink("bin/sh", "/bin/busybox"),
    ]);
    push_image(
        &reg.host(),
        "ns/own",
        "v1",
        &[layer],
        &config_json("/bin/sh", &host_arch()),
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let img = store(&reg, &dir, 1 << 30)
        .pull(
            &format!("{}/ns/own:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap();
    let m = std::fs::symlink_metadata(img.layers[0].join("bin/tool")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (1234, 5678, 0o4750)
    );
    assert_eq!(
        std::fs::read_link(img.layers[0].join("bin/sh"))
            .unwrap()
            .to_str(),
        Some("/bin/busybox")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_and_uncompressed_layers_unpack() {
    let reg = RealRegistry::start();
    let z = Blob {
        media_type: OCI_ZSTD,
        data: zstd(&tar(&[E::File("z.txt", b"zstd layer")])),
    };
    let plain = Blob {
        media_type: OCI_TAR,
        data: tar(&[E::File("p.txt", b"plain layer")]),
    };
    push_image(
        &reg.host(),
        "ns/comp",
        "v1",
        &[z, plain],
        &config_json("/x", &host_arch()),
        None,
    )
    .await;
    let dir = TempDir::new("store");
    let img = store(&reg, &dir, 1 << 30)
        .pull(
            &format!("{}/ns/comp:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(img.layers[0].join("z.txt")).unwrap(),
        b"zstd layer"
    );
    assert_eq!(
        std::fs::read(img.layers[1].join("p.txt")).unwrap(),
        b"plain layer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_schema_2_images_pull_and_pin_to_their_digest() {
    let reg = RealRegistry::start();
    let layer = Blob {
        media_type: DOCKER_GZIP,
        data: gzip(&tar(&[E::File("hello", b"docker")])),
    };
    let config = config_json("/hello", &host_arch());
    let pushed = push_image(
        &reg.host(),
        "ns/docker",
        "v1",
        &[layer],
        &config,
        Some(DOCKER_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let img = store(&reg, &dir, 1 << 30)
        .pull(
            &format!("{}/ns/docker:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap();
    assert_eq!(img.digest, pushed.digest);
    assert_eq!(
        img.reference,
        format!("{}/ns/docker@{}", reg.host(), pushed.digest)
    );
    assert_eq!(img.config, config);
    assert_eq!(
        std::fs::read(img.layers[0].join("hello")).unwrap(),
        b"docker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_yields_the_nodes_platform_and_resolves_to_the_index_digest() {
    let reg = RealRegistry::start();
    let host = reg.host();
    let mut entries = Vec::new();
    let mut pushed = Vec::new();
    for arch in ["s390x", &host_arch()] {
        let l = Blob::gz(&[E::File("arch", arch.as_bytes())]);
        pushed.push((
            push_image(
                &host,
                "ns/multi",
                arch,
                &[l],
                &config_json("/x", arch),
                Some(DOCKER_MANIFEST),
            )
            .await,
            arch.to_owned(),
        ));
    }
    for (p, arch) in &pushed {
        entries.push((p.manifest.as_slice(), DOCKER_MANIFEST, arch.as_str()));
    }
    let index = push_index(&host, "ns/multi", "latest", DOCKER_LIST, &entries).await;
    let registry = registry_for(std::slice::from_ref(&host), None);
    assert_eq!(
        registry.resolve(&format!("{host}/ns/multi")).await.unwrap(),
        index
    );
    let dir = TempDir::new("store");
    let img = Store::open(dir.path(), registry, 1 << 30)
        .unwrap()
        .pull(
            &format!("{host}/ns/multi"),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(img.layers[0].join("arch")).unwrap(),
        host_arch().as_bytes()
    );
    assert_eq!(img.digest, pushed[1].0.digest);
    assert_eq!(img.resolved_digest, index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_without_the_nodes_platform_lists_the_ones_it_has() {
    let reg = RealRegistry::start();
    let host = reg.host();
    let mut ms = Vec::new();
    for arch in ["s390x", "riscv64"] {
        let l = Blob::gz(&[E::File("arch", arch.as_bytes())]);
        ms.push((
            push_image(
                &host,
                "ns/foreign",
                arch,
                &[l],
                &config_json("/x", arch),
                Some(OCI_MANIFEST),
            )
            .await,
            arch,
        ));
    }
    let entries: Vec<_> = ms
        .iter()
        .map(|(p, a)| (p.manifest.as_slice(), OCI_MANIFEST, *a))
        .collect();
    push_index(&host, "ns/foreign", "v1", OCI_INDEX, &entries).await;
    let dir = TempDir::new("store");
    let err = store(&reg, &dir, 1 << 30)
        .pull(
            &format!("{host}/ns/foreign:v1"),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NoPlatform { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("linux/s390x, linux/riscv64") && msg.contains(&host),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_is_not_found_and_names_the_registry() {
    let reg = RealRegistry::start();
    let dir = TempDir::new("store");
    let err = store(&reg, &dir, 1 << 30)
        .pull(
            &format!("{}/ns/none:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert_eq!(err.reason(), "ErrImagePull");
    assert!(err.to_string().contains(&reg.host()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_escaping_its_directory_is_refused_and_leaves_nothing() {
    let reg = RealRegistry::start();
    let evil = Blob::gz(&[E::File("ok", b"1"), E::Raw("a/../../escaped", b"gotcha")]);
    push_image(
        &reg.host(),
        "ns/evil",
        "v1",
        &[evil],
        &config_json("/x", &host_arch()),
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let err = store(&reg, &dir, 1 << 30)
        .pull(
            &format!("{}/ns/evil:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::BadLayer { .. }), "{err}");
    assert!(
        err.to_string().contains("leaves the layer directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("layers"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".state")
            })
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_shared_by_two_images_is_stored_once() {
    let reg = RealRegistry::start();
    let base = Blob::gz(&[E::File("base", &[7u8; 10_000])]);
    let a = Blob::gz(&[E::File("a", b"a")]);
    let b = Blob::gz(&[E::File("b", b"b")]);
    let cfg = config_json("/x", &host_arch());
    push_image(
        &reg.host(),
        "ns/a",
        "v1",
        &[base.clone(), a],
        &cfg,
        Some(OCI_MANIFEST),
    )
    .await;
    push_image(
        &reg.host(),
        "ns/b",
        "v1",
        &[base, b],
        &cfg,
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let s = store(&reg, &dir, 1 << 30);
    let ia = s
        .pull(
            &format!("{}/ns/a:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap();
    let after_a = s.usage();
    let ib = s
        .pull(
            &format!("{}/ns/b:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap();
    assert_eq!(ia.layers[0], ib.layers[0]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("layers"))
            .unwrap()
            .count(),
        3
    );
    assert!(
        s.usage() - after_a < 10_000,
        "the shared layer was counted twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_recently_used_unleased_layers_are_evicted_and_their_images_forgotten() {
    let reg = RealRegistry::start();
    let cfg = config_json("/x", &host_arch());
    for name in ["one", "two", "three"] {
        let l = Blob::gz(&[E::File(name, &[name.len() as u8; 40_000])]);
        push_image(
            &reg.host(),
            &format!("ns/{name}"),
            "v1",
            &[l],
            &cfg,
            Some(OCI_MANIFEST),
        )
        .await;
    }
    let dir = TempDir::new("store");
    // Room for two 40 kB layers, not three.
    let s = store(&reg, &dir, 100_000);
    let r = |n: &str| format!("{}/ns/{n}:v1", reg.host());
    let one = s
        .pull(&r("one"), PullPolicy::IfNotPresent, &progress())
        .await
        .unwrap();
    drop(
        s.pull(&r("two"), PullPolicy::IfNotPresent, &progress())
            .await
            .unwrap(),
    );
    // `one` is leased: `two`, though used later, is the one to go.
    drop(
        s.pull(&r("three"), PullPolicy::IfNotPresent, &progress())
            .await
            .unwrap(),
    );
    assert!(s.usage() <= 100_000, "usage {} over the limit", s.usage());
    assert!(one.layers[0].join("one").exists());
    let err = s
        .pull(&r("two"), PullPolicy::Never, &progress())
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NeverPull { .. }), "{err}");
    assert!(
        s.pull(&r("three"), PullPolicy::Never, &progress())
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_not_present_does_not_contact_the_registry_once_stored() {
    let reg = RealRegistry::start();
    let l = Blob::gz(&[E::File("f", b"x")]);
    let pushed = push_image(
        &reg.host(),
        "ns/inp",
        "v1",
        &[l],
        &config_json("/x", &host_arch()),
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let s = store(&reg, &dir, 1 << 30);
    let tag = format!("{}/ns/inp:v1", reg.host());
    let first = s
        .pull(&tag, PullPolicy::IfNotPresent, &progress())
        .await
        .unwrap();
    drop(reg);
    let again = s
        .pull(&tag, PullPolicy::IfNotPresent, &progress())
        .await
        .unwrap();
    assert_eq!(again.digest, first.digest);
    let by_digest = s
        .pull(&first.reference, PullPolicy::IfNotPresent, &progress())
        .await
        .unwrap();
    assert_eq!(by_digest.digest, pushed.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_fails_with_err_image_never_pull_when_absent() {
    let reg = RealRegistry::start();
    let dir = TempDir::new("store");
    let err = store(&reg, &dir, 1 << 30)
        .pull(
            &format!("{}/ns/x:v1", reg.host()),
            PullPolicy::Never,
            &progress(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ErrImageNeverPull");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_keeps_what_it_meant_until_pulled_with_always() {
    let reg = RealRegistry::start();
    let cfg = config_json("/x", &host_arch());
    let v1 = push_image(
        &reg.host(),
        "ns/mv",
        "t",
        &[Blob::gz(&[E::File("v", b"1")])],
        &cfg,
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let s = store(&reg, &dir, 1 << 30);
    let tag = format!("{}/ns/mv:t", reg.host());
    let old = s
        .pull(&tag, PullPolicy::IfNotPresent, &progress())
        .await
        .unwrap();
    let v2 = push_image(
        &reg.host(),
        "ns/mv",
        "t",
        &[Blob::gz(&[E::File("v", b"2")])],
        &cfg,
        Some(OCI_MANIFEST),
    )
    .await;
    assert_eq!(
        s.pull(&tag, PullPolicy::IfNotPresent, &progress())
            .await
            .unwrap()
            .digest,
        v1.digest
    );
    let new = s.pull(&tag, PullPolicy::Always, &progress()).await.unwrap();
    assert_eq!(new.digest, v2.digest);
    assert_eq!(std::fs::read(new.layers[0].join("v")).unwrap(), b"2");
    let pinned = s
        .pull(&old.reference, PullPolicy::Never, &progress())
        .await
        .unwrap();
    assert_eq!(std::fs::read(pinned.layers[0].join("v")).unwrap(), b"1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_all_layers_and_bytes() {
    let reg = RealRegistry::start();
    let layers = [
        Blob::gz(&[E::File("a", &[1u8; 5000])]),
        Blob::gz(&[E::File("b", &[2u8; 5000])]),
    ];
    let total: u64 = layers.iter().map(|l| l.data.len() as u64).sum();
    push_image(
        &reg.host(),
        "ns/prog",
        "v1",
        &layers,
        &config_json("/x", &host_arch()),
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let tx = progress();
    let rx = tx.subscribe();
    store(&reg, &dir, 1 << 30)
        .pull(
            &format!("{}/ns/prog:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &tx,
        )
        .await
        .unwrap();
    let p = rx.borrow().clone();
    assert_eq!(
        (p.layers_done, p.layers_total, p.bytes_done, p.bytes_total),
        (2, 2, total, total)
    );
    assert!(
        p.to_string()
            .starts_with("pulling 2/2 layers, 0.0 of 0.0 MB"),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_keeps_its_images_and_drops_leftovers() {
    let reg = RealRegistry::start();
    push_image(
        &reg.host(),
        "ns/keep",
        "v1",
        &[Blob::gz(&[E::File("k", b"k")])],
        &config_json("/x", &host_arch()),
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let tag = format!("{}/ns/keep:v1", reg.host());
    {
        let s = store(&reg, &dir, 1 << 30);
        drop(
            s.pull(&tag, PullPolicy::IfNotPresent, &progress())
                .await
                .unwrap(),
        );
        assert!(matches!(
            store_again(&reg, &dir),
            Err(ImageError::StoreInUse { .. })
        ));
    }
    std::fs::create_dir_all(dir.path().join("tmp/7.layer/usr")).unwrap();
    std::fs::write(dir.path().join("tmp/8.blob"), b"partial").unwrap();
    std::fs::create_dir_all(dir.path().join("layers/sha256-0000")).unwrap();
    let s = store(&reg, &dir, 1 << 30);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".state")
            })
            .count(),
        0
    );
    assert!(!dir.path().join("layers/sha256-0000").exists());
    let img = s.pull(&tag, PullPolicy::Never, &progress()).await.unwrap();
    assert_eq!(std::fs::read(img.layers[0].join("k")).unwrap(), b"k");
}

fn store_again(reg: &RealRegistry, dir: &TempDir) -> Result<Store, ImageError> {
    Store::open(dir.path(), registry_for(&[reg.host()], None), 1 << 30)
}

/// Unmounts the tmpfs on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_as_such_and_leaves_no_partial_layer() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let reg = RealRegistry::start();
    // Incompressible, so the 3 MB do not fit a 2 MB disk whatever the compression.
    let mut noise = vec![0u8; 3 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let big = Blob {
        media_type: OCI_TAR,
        data: tar(&[
            E::File("noise", &noise[..1 << 20]),
            E::File("noise2", &noise[1 << 20..]),
        ]),
    };
    push_image(
        &reg.host(),
        "ns/big",
        "v1",
        &[Blob::gz(&[E::File("small", b"s")]), big],
        &config_json("/x", &host_arch()),
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("tmpfs");
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs failed");
    let _mount = Mount(dir.path().to_owned());
    let s = store(&reg, &dir, 1 << 30);
    let err = s
        .pull(
            &format!("{}/ns/big:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::DiskFull { .. }), "{err}");
    assert!(
        err.to_string().contains("no space left")
            && err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leftovers
            .iter()
            .all(|n| n.to_string_lossy().ends_with(".state")),
        "{leftovers:?}"
    );
    let layers = std::fs::read_dir(dir.path().join("layers"))
        .unwrap()
        .count();
    assert!(
        layers <= 1,
        "only the small layer may be stored, found {layers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_unpacking_beyond_the_store_limit_is_refused() {
    let reg = RealRegistry::start();
    // 2 MB of zeros gzip to a few kB: the compressed size passes, the unpacked one must not.
    let bomb = Blob::gz(&[E::File("zeros", &vec![0u8; 2 << 20])]);
    assert!(bomb.data.len() < 100_000);
    push_image(
        &reg.host(),
        "ns/bomb",
        "v1",
        &[bomb],
        &config_json("/x", &host_arch()),
        Some(OCI_MANIFEST),
    )
    .await;
    let dir = TempDir::new("store");
    let err = store(&reg, &dir, 1 << 20)
        .pull(
            &format!("{}/ns/bomb:v1", reg.host()),
            PullPolicy::IfNotPresent,
            &progress(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Limit { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("layers"))
            .unwrap()
            .count(),
        0
    );
}
