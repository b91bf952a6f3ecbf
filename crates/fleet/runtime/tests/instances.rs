//! The runtime with real processes (`/bin/sh` scripts as functions). Every wait is on a
//! condition, bounded by a timeout.

use std::time::Duration;

use kantai_model::serving::{Container, EnvVar, ExecAction, Probe};
use kantai_model::units::Quantity;
use kantai_runtime::{InstanceSpec, Runtime, RuntimeConfig, StartError, State};
use tokio::sync::watch;

fn sh(script: &str) -> Container {
    Container {
        image: "test/sh".into(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        // The scripts do not listen on a port: readiness is "the command `true` succeeds".
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: vec!["true".into()],
            }),
            ..Probe::default()
        }),
        ..Container::default()
    }
}

fn spec(name: &str, container: Container, grace: Duration) -> InstanceSpec {
    InstanceSpec {
        name: name.into(),
        namespace: "default".into(),
        service: "svc".into(),
        configuration: "svc".into(),
        revision: "svc-00001".into(),
        node: "node1".into(),
        container,
        image: None,
        security: Default::default(),
        grace,
        volumes: Vec::new(),
        config: Default::default(),
        pod: Default::default(),
    }
}

async fn wait(rx: &mut watch::Receiver<State>, what: &str, f: impl Fn(&State) -> bool) -> State {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| f(s)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .map(|s| s.clone())
        .unwrap_or_else(|_| panic!("instance gone while waiting for {what}"))
}

async fn wait_logs(i: &kantai_runtime::Instance, needle: &str) -> String {
    for _ in 0..500 {
        let logs = i.logs(None);
        if logs.contains(needle) {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{needle:?} never appeared in the logs: {}", i.logs(None));
}

/// The fleet config's runtime section with the scripts' image run as processes.
fn config() -> RuntimeConfig {
    let mut c = RuntimeConfig::default();
    c.images.insert(
        0,
        kantai_runtime::ImageCommand {
            image: "test/*".into(),
            command: Vec::new(),
            args: Vec::new(),
        },
    );
    c
}

fn runtime() -> Runtime {
    Runtime::new(config(), None, "test-runtime")
}

#[tokio::test]
async fn an_instance_gets_knatives_environment_and_its_logs_are_kept() {
    let mut c = sh(
        "echo PORT=$PORT K_SERVICE=$K_SERVICE K_REVISION=$K_REVISION PODNAME=$PODNAME NODENAME=$NODENAME GREETING=$GREETING HOME=${HOME:-unset}; exec sleep 30",
    );
    c.env.push(EnvVar {
        name: "GREETING".into(),
        value: Some("Konnichiwa".into()),
        value_from: None,
    });
    let inst = runtime()
        .start(spec("svc-node1-abcde", c, Duration::from_secs(5)))
        .expect("starts");
    let mut rx = inst.state();
    let st = wait(&mut rx, "ready", |s| s.ready).await;
    let port = st.port.expect("a port");
    let logs = wait_logs(&inst, "PORT=").await;
    assert!(logs.contains(&format!("PORT={port} ")), "{logs}");
    assert!(
        logs.contains("K_SERVICE=svc K_REVISION=svc-00001 PODNAME=svc-node1-abcde NODENAME=node1"),
        "{logs}"
    );
    assert!(logs.contains("GREETING=Konnichiwa"), "{logs}");
    // The environment is clean: nothing of kantai's own leaks in.
    assert!(logs.contains("HOME=unset"), "{logs}");
    let t = std::time::Instant::now();
    inst.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "SIGTERM should stop sleep at once"
    );
}

#[tokio::test]
async fn commands_and_arguments_never_go_through_a_shell() {
    let marker = std::env::temp_dir().join(format!("kantai-no-shell-{}", std::process::id()));
    let arg = format!("$PORT; touch {}", marker.display());
    let c = Container {
        command: vec!["/bin/echo".into(), arg.clone()],
        ..sh("")
    };
    let inst = runtime()
        .start(spec("echo-node1-abcde", c, Duration::from_secs(1)))
        .expect("starts");
    // The argument arrives as written: no variable expanded, no second command run.
    let logs = wait_logs(&inst, "$PORT;").await;
    assert!(logs.contains(&arg), "{logs}");
    inst.stop().await;
    assert!(!marker.exists(), "a shell ran the argument");
}

#[tokio::test]
async fn a_crashing_instance_is_restarted_with_backoff() {
    let inst = runtime()
        .start(spec("crash", sh("echo up; exit 3"), Duration::from_secs(1)))
        .expect("starts");
    let mut rx = inst.state();
    let st = wait(&mut rx, "two restarts", |s| s.restarts >= 2).await;
    assert_eq!(st.last_exit_code, Some(3));
    assert!(
        st.message
            .as_deref()
            .unwrap_or("")
            .contains("exited with code 3"),
        "{st:?}"
    );
    inst.stop().await;
}

#[tokio::test]
async fn an_instance_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let inst = runtime()
        .start(spec(
            "stubborn",
            sh("trap '' TERM; echo armed; while true; do sleep 0.05; done"),
            Duration::from_millis(300),
        ))
        .expect("starts");
    let mut rx = inst.state();
    wait(&mut rx, "ready", |s| s.ready).await;
    wait_logs(&inst, "armed").await;
    let t = std::time::Instant::now();
    inst.stop().await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "killed before the grace period: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "not killed after the grace period: {took:?}"
    );
}

#[tokio::test]
async fn an_image_needing_a_container_is_refused_by_a_process_only_runtime_with_a_hint() {
    let c = Container {
        image: "nginx:latest".into(),
        ..Container::default()
    };
    let err = runtime()
        .start(spec("x", c, Duration::from_secs(1)))
        .err()
        .expect("refused");
    assert!(matches!(err, StartError::NoRuntime(_)), "{err:?}");
    assert!(err.to_string().contains("runtime.images"), "{err}");
}

#[tokio::test]
async fn a_process_image_without_any_command_is_refused_with_a_hint() {
    let c = Container {
        image: "test/nothing".into(),
        ..Container::default()
    };
    let err = runtime()
        .start(spec("x", c, Duration::from_secs(1)))
        .err()
        .expect("refused");
    assert_eq!(err, StartError::NoCommand("test/nothing".into()));
    assert!(err.to_string().contains("runtime.images"));
}

#[tokio::test]
async fn limits_are_applied_through_cgroups_where_the_host_allows() {
    let rt = Runtime::new(config(), None, "test-limits");
    let Some(cg) = rt.cgroups().cloned() else {
        eprintln!(
            "SKIPPED: this host does not let kantai create cgroups; limits are not enforced here"
        );
        return;
    };
    let mut c = sh("exec sleep 30");
    c.resources
        .limits
        .insert("cpu".into(), Quantity::parse("500m").expect("q"));
    c.resources
        .limits
        .insert("memory".into(), Quantity::parse("64Mi").expect("q"));
    let inst = rt
        .start(spec("limited", c, Duration::from_secs(1)))
        .expect("starts");
    let mut rx = inst.state();
    wait(&mut rx, "ready", |s| s.ready).await;
    let l = cg.read_limits("default.limited");
    assert_eq!(l.cpu, Some(0.5));
    assert_eq!(l.memory, Some(64 * 1024 * 1024));
    inst.stop().await;
}

/// An exec probe checking that `file` exists, every second, given up on after `failures`.
fn file_probe(file: &std::path::Path, failures: i64) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: vec!["test".into(), "-f".into(), file.display().to_string()],
        }),
        period_seconds: Some(1),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

#[tokio::test]
async fn an_instance_failing_its_liveness_probe_is_restarted() {
    let file = std::env::temp_dir().join(format!("kantai-live-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    // Healthy at first, then the file goes away: the liveness probe fails and the process,
    // still running, is restarted (it recreates the file each start).
    let script = format!(
        "touch {f}; sleep 0.3; rm -f {f}; exec sleep 30",
        f = file.display()
    );
    let mut c = sh(&script);
    c.liveness_probe = Some(file_probe(&file, 1));
    let inst = runtime()
        .start(spec("live", c, Duration::from_secs(1)))
        .expect("starts");
    let mut rx = inst.state();
    let st = wait(&mut rx, "a restart", |s| s.restarts >= 1).await;
    assert!(
        st.message
            .as_deref()
            .is_some_and(|m| m.contains("liveness probe")),
        "{st:?}"
    );
    inst.stop().await;
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn an_instance_that_never_passes_its_startup_probe_is_never_ready_and_is_restarted() {
    let file = std::env::temp_dir().join(format!("kantai-startup-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut c = sh("exec sleep 30");
    // Readiness alone would pass at once (`true`): the startup probe holds it back.
    c.startup_probe = Some(file_probe(&file, 2));
    let inst = runtime()
        .start(spec("startup", c, Duration::from_secs(1)))
        .expect("starts");
    let mut rx = inst.state();
    let st = wait(&mut rx, "a restart", |s| s.restarts >= 1 || s.ready).await;
    assert!(!st.ready, "ready before its startup probe passed: {st:?}");
    assert!(
        st.message
            .as_deref()
            .is_some_and(|m| m.contains("startup probe")),
        "{st:?}"
    );
    inst.stop().await;
}

#[tokio::test]
async fn a_program_that_does_not_exist_fails_at_once() {
    let c = Container {
        command: vec!["/no/such/program".into()],
        ..sh("")
    };
    let inst = runtime()
        .start(spec("missing", c, Duration::from_secs(1)))
        .expect("starts");
    let mut rx = inst.state();
    let st = wait(&mut rx, "the failure", |s| s.failed).await;
    assert!(
        st.message
            .as_deref()
            .is_some_and(|m| m.contains("/no/such/program")),
        "{st:?}"
    );
    assert_eq!(st.reason.as_deref(), Some("StartError"));
    inst.stop().await;
}

#[tokio::test]
async fn an_image_needing_an_oci_runtime_that_is_not_installed_fails_at_once_saying_what_to_install()
 {
    let state = tempfile::tempdir().expect("state dir");
    let mut cfg = config();
    cfg.oci.runtime = Some("/no/such/runc".into());
    let rt = Runtime::open(cfg, None, "test-no-oci", state.path()).await;
    assert!(rt.oci_runtime().is_err());
    let c = Container {
        image: "example.com/fn/app:v1".into(),
        ..Container::default()
    };
    let inst = rt
        .start(spec("noruntime", c, Duration::from_secs(1)))
        .expect("starts, failed");
    let mut rx = inst.state();
    let st = wait(&mut rx, "the failure", |s| s.failed).await;
    assert_eq!(st.reason.as_deref(), Some("RuntimeUnavailable"), "{st:?}");
    let message = st.message.unwrap_or_default();
    // As root the runtime is named with what to install; otherwise root is what is missing.
    assert!(
        message.contains("apt-get install runc") || message.contains("as root"),
        "{message}"
    );
    assert!(message.contains("example.com/fn/app:v1"), "{message}");
    inst.stop().await;
}
