//! The data-driven test harness of the kantai crates: a directory of case files, each run
//! through the test's check; every file runs even when an earlier one fails, and the test
//! then fails once, naming every failing file with what differed. Expectations kept in files
//! of their own (`.expected`, golden files) are compared with [`expect_file`], which shows a
//! line diff, and rewritten instead when `UPDATE_EXPECT=1` is set (review the diff after).
//!
//! Dev-only: test code reads the files here so that the pure crates' tests need not. Also
//! [`nginx::Nginx`], the yardstick proxy the fleet benchmark and the warm-path harness share,
//! and [`guests`], plug-ins built from Python as a researcher builds them.

pub mod guests;
pub mod nginx;

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The environment variable that turns expectation checks into rewrites.
pub const UPDATE_EXPECT: &str = "UPDATE_EXPECT";

/// One case file of a data directory.
#[derive(Debug, Clone)]
pub struct Case {
    /// The file's path.
    pub path: PathBuf,
    /// The file's name, as failures name it.
    pub name: String,
    /// The file's text.
    pub text: String,
}

impl Case {
    /// The file beside this one with another extension (`x.yaml` → `x.expected`).
    pub fn sibling(&self, extension: &str) -> PathBuf {
        self.path.with_extension(extension)
    }
}

/// A directory of case files: the files with the given extensions, sorted by name.
#[derive(Debug, Clone)]
pub struct DataDir {
    dir: PathBuf,
    extensions: Vec<String>,
    only: bool,
    at_least: usize,
}

impl DataDir {
    /// The files of `dir` ending in one of `extensions` (without the dot); other files are
    /// left alone (expectations, configs beside the cases).
    pub fn new(dir: impl Into<PathBuf>, extensions: &[&str]) -> DataDir {
        DataDir {
            dir: dir.into(),
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
            only: false,
            at_least: 1,
        }
    }

    /// Any other file in the directory fails the test: every file there is a case.
    pub fn only(mut self) -> DataDir {
        self.only = true;
        self
    }

    /// Fewer than `n` case files fail the test (the default is one).
    pub fn at_least(mut self, n: usize) -> DataDir {
        self.at_least = n;
        self
    }

    /// The case files, read. Panics when the directory is missing, holds too few cases, or
    /// (with [`DataDir::only`]) a file that is not a case.
    pub fn cases(&self) -> Vec<Case> {
        let dir = &self.dir;
        let mut cases = Vec::new();
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .to_owned();
            let is_case = path.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| self.extensions.iter().any(|x| x == e));
            if !is_case {
                assert!(
                    !self.only,
                    "{}: {name} is not a case file (.{})",
                    dir.display(),
                    self.extensions.join(", .")
                );
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            cases.push(Case { path, name, text });
        }
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        assert!(
            cases.len() >= self.at_least,
            "{}: {} case files, at least {} expected",
            dir.display(),
            cases.len(),
            self.at_least
        );
        cases
    }

    /// Runs `check` on every case file, then fails once naming every file whose check gave
    /// an error or panicked, with what it said. Returns how many files ran.
    pub fn check(&self, mut check: impl FnMut(&Case) -> Result<(), String>) -> usize {
        let cases = self.cases();
        let mut report = String::new();
        let mut failed = 0;
        for case in &cases {
            let outcome = catch_unwind(AssertUnwindSafe(|| check(case)))
                .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_text(&*panic))));
            if let Err(why) = outcome {
                failed += 1;
                let _ = writeln!(report, "\n{}:", case.name);
                for line in why.lines() {
                    let _ = writeln!(report, "  {line}");
                }
            }
        }
        assert!(
            report.is_empty(),
            "{}: {failed} of {} case files failed:{report}",
            self.dir.display(),
            cases.len()
        );
        cases.len()
    }
}

/// The message a panic carried.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Whether this run rewrites expectations (`UPDATE_EXPECT` set) instead of checking them.
pub fn updating() -> bool {
    std::env::var_os(UPDATE_EXPECT).is_some()
}

/// Compares `got` with the expectation file at `path`; with `UPDATE_EXPECT=1`, writes `got`
/// there instead. The error shows the line diff (`-` expected, `+` got).
pub fn expect_file(path: &Path, got: &str) -> Result<(), String> {
    if updating() {
        return std::fs::write(path, got).map_err(|e| format!("{}: {e}", path.display()));
    }
    let want = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e}; run with {UPDATE_EXPECT}=1 to write it",
            path.display()
        )
    })?;
    if want == got {
        return Ok(());
    }
    Err(format!(
        "{} differs (- expected, + got; {UPDATE_EXPECT}=1 rewrites it):\n{}",
        path.display(),
        diff(&want, got)
    ))
}

/// A line diff of `want` and `got`: the lines only one of them has, marked `-` and `+`, in
/// order, with the common lines between them as context (` `).
pub fn diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    // The longest common subsequence, table from the ends.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        }
    }
    if want.ends_with('\n') != got.ends_with('\n') {
        let _ = writeln!(out, "(the files differ in their final newline)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_marks_the_lines_only_one_side_has() {
        assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "  a\n+ x\n- b\n  c\n");
    }

    #[test]
    fn every_failing_file_is_reported() {
        let dir = std::env::temp_dir().join(format!("kantai-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (n, t) in [("a.case", "ok"), ("b.case", "bad"), ("c.case", "boom")] {
            std::fs::write(dir.join(n), t).expect("write");
        }
        let data = DataDir::new(&dir, &["case"]);
        let report = catch_unwind(AssertUnwindSafe(|| {
            data.check(|c| match c.text.as_str() {
                "ok" => Ok(()),
                "bad" => Err("was bad".to_owned()),
                _ => panic!("went boom"),
            })
        }))
        .map(|_| String::new())
        .unwrap_or_else(|p| panic_text(&*p));
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(report.contains("2 of 3 case files failed"), "{report}");
        assert!(report.contains("b.case:\n  was bad"), "{report}");
        assert!(
            report.contains("c.case:\n  panicked: went boom"),
            "{report}"
        );
    }
}

/// An in-memory sink that a test hands out as a `Box<dyn Write>` (a decision log, say) and
/// reads back afterwards: clones share one buffer.
#[derive(Debug, Clone, Default)]
pub struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
