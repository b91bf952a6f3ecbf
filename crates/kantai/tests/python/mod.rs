//! Python tools for the integration tests: the interpreter (`KANTAI_PYTHON`, the venv that
//! `.ci/run` creates with pinned packages; `python3` otherwise), whether it has a package,
//! and running it bounded in time with its output kept.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// The interpreter the tests run.
pub fn interpreter() -> PathBuf {
    std::env::var_os("KANTAI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// The interpreter and the version of `module` in it, if it imports. Where it does not, the
/// test fails when `require_var` is set (as CI sets it) and is skipped, saying why, otherwise.
pub fn with_module(module: &str, require_var: &str) -> Option<(PathBuf, String)> {
    let python = interpreter();
    let probe = std::process::Command::new(&python)
        .args([
            "-c",
            &format!("import importlib.metadata as m, {module}; print(m.version({module:?}))"),
        ])
        .stdin(Stdio::null())
        .output();
    let found = probe.as_ref().ok().filter(|o| o.status.success());
    if let Some(out) = found {
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        eprintln!("using {module} {version} from {}", python.display());
        return Some((python, version));
    }
    let why = match &probe {
        // The traceback's last line says it: `ModuleNotFoundError: No module named ...`.
        Ok(o) => String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_owned(),
        Err(e) => e.to_string(),
    };
    assert!(
        std::env::var_os(require_var).is_none(),
        "{module} is required here ({require_var} is set) but {} cannot import it: {why}",
        python.display()
    );
    eprintln!(
        "skipping: {} cannot import {module} ({why}); set KANTAI_PYTHON to a Python with it \
         (.ci/run makes one: python3 -m venv DIR && DIR/bin/pip install -r \
         crates/kantai/tests/python/requirements.txt)",
        python.display()
    );
    None
}

/// What a bounded run gave.
pub struct Run {
    /// Exited with status 0 within its time.
    pub ok: bool,
    /// Killed at the time limit.
    pub timed_out: bool,
    /// Standard output, then standard error.
    pub output: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs `python args...` in `dir` with `env`, killed after `limit`; the output is kept either way.
pub async fn run(
    python: &Path,
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> Run {
    let mut cmd = tokio::process::Command::new(python);
    cmd.args(args)
        .current_dir(dir)
        // Nothing written beside the scripts in the checkout.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("start python");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b).await;
        b
    });
    let err = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b).await;
        b
    });
    let (ok, timed_out) = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => (status.is_ok_and(|s| s.success()), false),
        Err(_) => {
            let _ = child.kill().await;
            (false, true)
        }
    };
    let mut output = String::from_utf8_lossy(&out.await.unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&err.await.unwrap_or_default()));
    Run {
        ok,
        timed_out,
        output,
        elapsed: start.elapsed(),
    }
}

/// This directory, where the client scripts are.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}
