//! Plug-in guests the tests build: Python modules made components by componentize-py
//! (PyPI), as a researcher builds them. `.ci/run` installs it and names it in
//! `KANTAI_COMPONENTIZE_PY`; elsewhere it is looked up on `PATH`, and a test without it is
//! skipped, saying so, unless `KANTAI_REQUIRE_COMPONENTIZE_PY=1` (as in CI) makes that a
//! failure.

use std::path::Path;
use std::process::Command;

/// The Python module `module` of the directory `dir` (a `.py` file there), made a
/// component of `world` of the WIT package in `wit`, with its WASI imports stubbed out (a
/// plug-in has no files, network or clock). Built once per content: the
/// component is kept in the system's temporary directory under a hash of the WIT and the
/// source. `Ok(None)`: componentize-py is not installed and not required.
pub fn python(
    wit: &Path,
    world: &str,
    dir: &Path,
    module: &str,
) -> Result<Option<Vec<u8>>, String> {
    let tool = std::env::var("KANTAI_COMPONENTIZE_PY").unwrap_or_else(|_| "componentize-py".into());
    let version = Command::new(&tool).arg("--version").output();
    if !matches!(&version, Ok(o) if o.status.success()) {
        if std::env::var("KANTAI_REQUIRE_COMPONENTIZE_PY").is_ok_and(|v| v == "1") {
            return Err(format!(
                "{tool} cannot run ({version:?}), and KANTAI_REQUIRE_COMPONENTIZE_PY=1: install it with `pip install componentize-py`"
            ));
        }
        eprintln!("skipped: {tool} is not installed (pip install componentize-py)");
        return Ok(None);
    }
    let source = dir.join(format!("{module}.py"));
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for path in [wit.join("policy.wit"), source.clone()] {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    let cache = std::env::temp_dir().join("kantai-guests");
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let out = cache.join(format!("{module}-{world}-{hash:016x}.wasm"));
    if let Ok(bytes) = std::fs::read(&out) {
        return Ok(Some(bytes));
    }
    // Built under a name of this process's own, then moved: tests run at once may build it
    // side by side, and none reads a half-written file.
    let partial = cache.join(format!(
        "{module}-{hash:016x}.{}.partial",
        std::process::id()
    ));
    let run = Command::new(&tool)
        .arg("-d")
        .arg(wit)
        // No WASI: the sandbox gives a plug-in nothing but kantai's host interface.
        .args(["-w", world, "componentize", "--stub-wasi", "-p"])
        .arg(dir)
        .arg(module)
        .arg("-o")
        .arg(&partial)
        .output()
        .map_err(|e| format!("{tool}: {e}"))?;
    if !run.status.success() {
        return Err(format!(
            "{tool} could not build {}: {}{}",
            source.display(),
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    std::fs::rename(&partial, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::read(&out)
        .map(Some)
        .map_err(|e| format!("{}: {e}", out.display()))
}
