//! Volumes and Secret/ConfigMap values with real process instances (`/bin/sh` scripts),
//! which get their private mount namespaces from the runtime's launcher exactly as under a
//! node agent. Needs root (mounts); without it, only the refusal is checked. Every wait is on a condition, bounded.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kantai_model::serving::resolve::{ResolvedConfig, VolumeFile};
use kantai_model::serving::{
    Container, EmptyDirVolume, EnvVar, EnvVarSource, ExecAction, KeySelector, Probe, SecretVolume,
    Volume, VolumeMount,
};
use kantai_model::units::Quantity;
use kantai_runtime::{Instance, InstanceSpec, Runtime, RuntimeConfig, State};
use tokio::sync::watch;

fn sh(script: &str) -> Container {
    Container {
        image: "test/sh".into(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: vec!["true".into()],
            }),
            ..Probe::default()
        }),
        ..Container::default()
    }
}

fn mount(name: &str, path: &Path, read_only: bool, sub_path: Option<&str>) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.display().to_string(),
        read_only: Some(read_only),
        sub_path: sub_path.map(str::to_owned),
        ..VolumeMount::default()
    }
}

fn secret_volume(name: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolume {
            secret_name: "db".into(),
            ..SecretVolume::default()
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str, medium: Option<&str>, limit: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolume {
            medium: medium.map(str::to_owned),
            size_limit: limit.map(|l| Quantity::parse(l).expect("quantity")),
        }),
        ..Volume::default()
    }
}

fn files(volume: &str, list: &[(&str, &str)]) -> BTreeMap<String, Vec<VolumeFile>> {
    let v = list
        .iter()
        .map(|(p, d)| VolumeFile {
            path: (*p).into(),
            data: d.as_bytes().to_vec(),
            mode: 0o644,
        })
        .collect();
    BTreeMap::from([(volume.to_owned(), v)])
}

struct Env {
    _state: tempfile::TempDir,
    state: PathBuf,
    rt: Runtime,
    /// A directory on the node that does not exist yet: mount paths go below it.
    mounts: PathBuf,
}

static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

async fn env() -> Env {
    let state = tempfile::tempdir().expect("state dir");
    let mut cfg = RuntimeConfig::default();
    cfg.images.insert(
        0,
        kantai_runtime::ImageCommand {
            image: "test/*".into(),
            command: Vec::new(),
            args: Vec::new(),
        },
    );
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let rt = Runtime::open(cfg, None, &format!("test-volumes-{n}"), state.path()).await;
    let mounts = std::env::temp_dir().join(format!("kantai-volumes-{}-{n}", std::process::id()));
    Env {
        state: state.path().to_path_buf(),
        _state: state,
        rt,
        mounts,
    }
}

fn spec(name: &str, c: Container, volumes: Vec<Volume>, config: ResolvedConfig) -> InstanceSpec {
    InstanceSpec {
        name: name.into(),
        namespace: "default".into(),
        service: "svc".into(),
        configuration: "svc".into(),
        revision: "svc-00001".into(),
        node: "node1".into(),
        container: c,
        image: None,
        security: Default::default(),
        grace: Duration::from_secs(2),
        volumes,
        config: Arc::new(config),
        pod: Default::default(),
    }
}

async fn wait(rx: &mut watch::Receiver<State>, what: &str, f: impl Fn(&State) -> bool) -> State {
    let r = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| f(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match r {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => panic!("instance gone while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}: {:?}", rx.borrow()),
    }
}

async fn wait_logs(i: &Instance, needle: &str) -> String {
    for _ in 0..1000 {
        let logs = i.logs(None);
        if logs.contains(needle) {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{needle:?} never appeared in the logs: {}", i.logs(None));
}

fn is_tmpfs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// The host directory of an instance's volume.
fn host_dir(e: &Env, instance: &str, volume: &str) -> PathBuf {
    e.state
        .join("volumes")
        .join(format!("default.{instance}"))
        .join(format!("v-{volume}"))
}

async fn a_process_reads_its_secret_file_and_env_and_the_node_sees_neither() {
    let e = env().await;
    let at = e.mounts.join("secret");
    let mut c = sh(&format!(
        "echo FILE=$(cat {p}/password) ENV=$DB_PASSWORD MODE=$(stat -L -c %a {p}/password) FS=$(stat -f -c %T {p}); exec sleep 30",
        p = at.display()
    ));
    c.env.push(EnvVar {
        name: "DB_PASSWORD".into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(KeySelector {
                name: "db".into(),
                key: "password".into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    });
    c.volume_mounts.push(mount("secret", &at, true, None));
    let config = ResolvedConfig {
        env_values: BTreeMap::from([(0, "s3cret-env".to_owned())]),
        volumes: files("secret", &[("password", "s3cret-file")]),
        ..ResolvedConfig::default()
    };
    let inst =
        e.rt.start(spec("reader", c, vec![secret_volume("secret")], config))
            .expect("starts");
    let mut rx = inst.state();
    wait(&mut rx, "ready", |s| s.ready).await;
    let logs = wait_logs(&inst, "FILE=").await;
    assert!(
        logs.contains("FILE=s3cret-file ENV=s3cret-env MODE=644 FS=tmpfs"),
        "{logs}"
    );
    let dir = host_dir(&e, "reader", "secret");
    assert!(is_tmpfs(&dir), "the volume is not a tmpfs on the node");
    // The mount is the instance's own: the node sees the empty directory made for it.
    assert!(at.is_dir(), "the mount point was not made");
    assert_eq!(std::fs::read_dir(&at).expect("mount point").count(), 0);
    inst.stop().await;
    assert!(!dir.exists(), "the volume outlived its instance");
    assert!(!e.mounts.exists(), "the mount points made for it stay");
}

async fn an_update_reaches_the_file_atomically_and_env_stays() {
    let e = env().await;
    let at = e.mounts.join("cfg");
    let mut c = sh(&format!(
        "echo ENV=$GREETING; while true; do echo FILE=$(cat {}/greeting); sleep 0.05; done",
        at.display()
    ));
    c.env.push(EnvVar {
        name: "GREETING".into(),
        value: None,
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(KeySelector {
                name: "app".into(),
                key: "greeting".into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    });
    c.volume_mounts.push(mount("cfg", &at, true, None));
    let config = |v: &str| ResolvedConfig {
        env_values: BTreeMap::from([(0, v.to_owned())]),
        volumes: files("cfg", &[("greeting", v)]),
        ..ResolvedConfig::default()
    };
    let inst =
        e.rt.start(spec(
            "updated",
            c,
            vec![secret_volume("cfg")],
            config("hello"),
        ))
        .expect("starts");
    wait_logs(&inst, "FILE=hello").await;
    let changed = inst
        .update_config(Arc::new(config("konnichiwa")))
        .expect("updated");
    assert_eq!(changed, ["cfg"]);
    let logs = wait_logs(&inst, "FILE=konnichiwa").await;
    assert!(logs.contains("ENV=hello"), "{logs}");
    assert!(!logs.contains("ENV=konnichiwa"), "{logs}");
    // The same values again write nothing.
    let again = inst
        .update_config(Arc::new(config("konnichiwa")))
        .expect("updated");
    assert!(again.is_empty(), "{again:?}");
    inst.stop().await;
}

async fn a_memory_empty_dir_is_a_tmpfs_of_its_size_limit_and_a_disk_one_is_writable() {
    let e = env().await;
    let (mem, disk) = (e.mounts.join("mem"), e.mounts.join("disk"));
    let mut c = sh(&format!(
        "echo MEM=$(stat -f -c '%T %b %S' {m}); echo w > {d}/f && echo WROTE=$(cat {d}/f); exec sleep 30",
        m = mem.display(),
        d = disk.display()
    ));
    c.volume_mounts.push(mount("mem", &mem, false, None));
    c.volume_mounts.push(mount("disk", &disk, false, None));
    let inst =
        e.rt.start(spec(
            "scratch",
            c,
            vec![
                empty_dir("mem", Some("Memory"), Some("8Mi")),
                empty_dir("disk", None, None),
            ],
            ResolvedConfig::default(),
        ))
        .expect("starts");
    let logs = wait_logs(&inst, "WROTE=").await;
    let line = logs
        .lines()
        .find(|l| l.starts_with("MEM="))
        .unwrap_or_else(|| panic!("{logs}"));
    let parts: Vec<&str> = line["MEM=".len()..].split(' ').collect();
    assert_eq!(parts[0], "tmpfs", "{line}");
    let size: u64 =
        parts[1].parse::<u64>().expect("blocks") * parts[2].parse::<u64>().expect("size");
    assert_eq!(size, 8 * 1024 * 1024, "{line}");
    assert!(logs.contains("WROTE=w"), "{logs}");
    let on_disk = host_dir(&e, "scratch", "disk");
    assert!(!is_tmpfs(&on_disk), "a disk emptyDir is a tmpfs");
    inst.stop().await;
    assert!(!on_disk.exists(), "the emptyDir outlived its instance");
}

async fn a_sub_path_binds_one_file_and_read_only_refuses_writes() {
    let e = env().await;
    let (file, ro) = (e.mounts.join("conf/app.yaml"), e.mounts.join("ro"));
    let mut c = sh(&format!(
        "echo SUB=$(cat {f}) LS=$(ls {d} | wc -l); touch {r}/x 2>/dev/null && echo RO=wrote || echo RO=refused; exec sleep 30",
        f = file.display(),
        d = file.parent().expect("parent").display(),
        r = ro.display()
    ));
    c.volume_mounts
        .push(mount("cfg", &file, true, Some("app.yaml")));
    c.volume_mounts.push(mount("scratch", &ro, true, None));
    let config = ResolvedConfig {
        volumes: files("cfg", &[("app.yaml", "a: 1"), ("other.yaml", "b: 2")]),
        ..ResolvedConfig::default()
    };
    let inst =
        e.rt.start(spec(
            "subpath",
            c,
            vec![secret_volume("cfg"), empty_dir("scratch", None, None)],
            config,
        ))
        .expect("starts");
    let logs = wait_logs(&inst, "RO=").await;
    assert!(logs.contains("SUB=a: 1 LS=1"), "{logs}");
    assert!(logs.contains("RO=refused"), "{logs}");
    inst.stop().await;
    assert!(!e.mounts.exists(), "the mount points made for it stay");
}

async fn a_sub_path_cannot_leave_its_volume_through_a_symlink() {
    let e = env().await;
    let at = e.mounts.join("leak");
    let mut c = sh(&format!(
        "echo SEES=$(cat {} 2>&1 | head -c 40); exec sleep 30",
        at.display()
    ));
    c.volume_mounts
        .push(mount("scratch", &at, false, Some("link")));
    let s = spec(
        "escape",
        c,
        vec![empty_dir("scratch", None, None)],
        ResolvedConfig::default(),
    );
    // What a function could have left in its emptyDir before a restart.
    let dir = host_dir(&e, "escape", "scratch");
    std::fs::create_dir_all(&dir).expect("volume dir");
    std::os::unix::fs::symlink("/etc/shadow", dir.join("link")).expect("link");
    let inst = e.rt.start(s).expect("starts");
    let mut rx = inst.state();
    let st = wait(&mut rx, "the refusal", |s| s.failed || s.ready).await;
    // Resolved inside the volume, the link names its own /etc/shadow, which is not there.
    assert!(
        !st.ready,
        "started with a subPath through a link out of its volume"
    );
    let message = st.message.unwrap_or_default();
    assert!(
        message.contains("subPath link") && message.contains("no such file"),
        "{message}"
    );
    inst.stop().await;
}

async fn missing_values_fail_with_create_container_config_error_until_they_come() {
    let e = env().await;
    let at = e.mounts.join("secret");
    let mut c = sh(&format!(
        "echo FILE=$(cat {}/password); exec sleep 30",
        at.display()
    ));
    c.volume_mounts.push(mount("secret", &at, true, None));
    let config = ResolvedConfig {
        missing: vec!["secret \"db\" not found".into()],
        ..ResolvedConfig::default()
    };
    let inst =
        e.rt.start(spec("missing", c, vec![secret_volume("secret")], config))
            .expect("starts");
    let mut rx = inst.state();
    let st = wait(&mut rx, "the failure", |s| s.failed).await;
    assert_eq!(
        st.reason.as_deref(),
        Some("CreateContainerConfigError"),
        "{st:?}"
    );
    assert_eq!(
        st.message.as_deref(),
        Some("secret \"db\" not found"),
        "{st:?}"
    );
    assert!(
        !host_dir(&e, "missing", "secret").exists(),
        "files before the values"
    );
    inst.update_config(Arc::new(ResolvedConfig {
        volumes: files("secret", &[("password", "arrived")]),
        ..ResolvedConfig::default()
    }))
    .expect("update");
    wait(&mut rx, "ready", |s| s.ready && !s.failed).await;
    wait_logs(&inst, "FILE=arrived").await;
    inst.stop().await;
}

async fn an_empty_dir_over_its_size_limit_is_evicted() {
    let e = env().await;
    let at = e.mounts.join("scratch");
    let mut c = sh(&format!(
        "head -c 3000000 /dev/zero > {}/big; echo WROTE; exec sleep 30",
        at.display()
    ));
    c.volume_mounts.push(mount("scratch", &at, false, None));
    let inst =
        e.rt.start(spec(
            "evicted",
            c,
            vec![empty_dir("scratch", None, Some("1Mi"))],
            ResolvedConfig::default(),
        ))
        .expect("starts");
    let mut rx = inst.state();
    let st = wait(&mut rx, "the eviction", |s| {
        s.reason.as_deref() == Some("Evicted")
    })
    .await;
    assert_eq!(
        st.message.as_deref(),
        Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\"."),
        "{st:?}"
    );
    assert!(st.failed, "{st:?}");
    inst.stop().await;
}

async fn what_a_killed_agent_left_is_removed_when_the_runtime_opens_again() {
    let e = env().await;
    let left = e.state.join("volumes/default.ghost/v-secret");
    std::fs::create_dir_all(&left).expect("dir");
    nix::mount::mount(
        Some("tmpfs"),
        &left,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("tmpfs");
    std::fs::write(left.join("password"), "x").expect("file");
    let made = e.mounts.join("made");
    std::fs::create_dir_all(&made).expect("mount point");
    std::fs::write(
        e.state.join("volumes/default.ghost/mountpoints"),
        format!("{}\n{}\n", e.mounts.display(), made.display()),
    )
    .expect("record");
    let _again = Runtime::open(
        RuntimeConfig::default(),
        None,
        "test-volumes-again",
        &e.state,
    )
    .await;
    assert!(!is_tmpfs(&left), "the tmpfs is still mounted");
    assert!(
        !e.state.join("volumes/default.ghost").exists(),
        "the directory stays"
    );
    assert!(!e.mounts.exists(), "the mount points stay");
}

async fn without_root_volume_mounts_of_processes_are_refused() {
    let e = env().await;
    let mut c = sh("exec sleep 30");
    c.volume_mounts
        .push(mount("scratch", Path::new("/x"), false, None));
    let inst =
        e.rt.start(spec(
            "noroot",
            c,
            vec![empty_dir("scratch", None, None)],
            ResolvedConfig::default(),
        ))
        .expect("starts");
    let mut rx = inst.state();
    let st = wait(&mut rx, "the failure", |s| s.failed).await;
    assert_eq!(
        st.message.as_deref(),
        Some("volume mounts of process functions need the node agent to run as root"),
        "{st:?}"
    );
    inst.stop().await;
}

type Test = (
    &'static str,
    fn() -> Pin<Box<dyn Future<Output = ()> + Send>>,
);

macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        &[$((stringify!($f), || Box::pin($f()) as Pin<Box<dyn Future<Output = ()> + Send>>)),*]
    };
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let root = nix::unistd::Uid::effective().is_root();
    let all: &[Test] = if root {
        tests![
            a_process_reads_its_secret_file_and_env_and_the_node_sees_neither,
            an_update_reaches_the_file_atomically_and_env_stays,
            a_memory_empty_dir_is_a_tmpfs_of_its_size_limit_and_a_disk_one_is_writable,
            a_sub_path_binds_one_file_and_read_only_refuses_writes,
            a_sub_path_cannot_leave_its_volume_through_a_symlink,
            missing_values_fail_with_create_container_config_error_until_they_come,
            an_empty_dir_over_its_size_limit_is_evicted,
            what_a_killed_agent_left_is_removed_when_the_runtime_opens_again,
        ]
    } else {
        eprintln!("SKIPPED: mounts need root; only the refusal is checked");
        tests![without_root_volume_mounts_of_processes_are_refused]
    };
    // `cargo test` passes a name filter and flags; a plain word filters by name.
    let filter: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let mut failed = Vec::new();
    for (name, f) in all {
        if !filter.is_empty() && !filter.iter().any(|p| name.contains(p.as_str())) {
            continue;
        }
        let r = rt.block_on(async { tokio::spawn(f()).await });
        match r {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED: {e}");
                failed.push(*name);
            }
        }
    }
    if failed.is_empty() {
        println!("test result: ok");
        ExitCode::SUCCESS
    } else {
        println!("test result: FAILED: {failed:?}");
        ExitCode::FAILURE
    }
}
