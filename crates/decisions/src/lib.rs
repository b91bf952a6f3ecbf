//! The decision log's writer: every placement and load-balancing decision, with the inputs
//! it was made from and the choice (the control plane also logs the load reports its scaler
//! received and each tick's decision, so scaling can be replayed), one JSON object per line.
//! A run can be explained from it, and placement decisions replayed (`kantai decisions
//! replay FILE`) through the same policy code. Writing never blocks a decision: records go
//! through a bounded channel to a writer thread, and what does not fit is counted and
//! reported at the end. The simulator writes the same records synchronously (its output must
//! be byte-identical run to run). The record types are plain data in `kantai-records`
//! (re-exported here), so the pure driver core can build them without this writer.

pub mod time;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

pub use kantai_records::*;

/// Records waiting for the writer; beyond, new records are dropped (and counted).
pub const BUFFER: usize = 65_536;

/// A writer of decisions to a file, JSON lines.
pub struct DecisionLog {
    tx: SyncSender<Decision>,
    dropped: Arc<AtomicU64>,
    path: PathBuf,
    lb: bool,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog")
            .field("path", &self.path)
            .field("load_balancing", &self.lb)
            .finish()
    }
}

impl DecisionLog {
    /// Appends to `path` (created if missing). `load_balancing` also records every
    /// load-balancing decision (one per request: heavy under load).
    pub fn open(path: &Path, load_balancing: bool) -> std::io::Result<DecisionLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = sync_channel::<Decision>(BUFFER);
        let dropped = Arc::new(AtomicU64::new(0));
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                let write = |d: &Decision, out: &mut std::io::BufWriter<std::fs::File>| {
                    serde_json::to_writer(&mut *out, d).is_ok() && out.write_all(b"\n").is_ok()
                };
                while let Ok(d) = rx.recv() {
                    if !write(&d, &mut out) {
                        return;
                    }
                    // Whatever is already queued goes in the same flush, so that a reader
                    // sees whole lines soon without a write call per record.
                    while let Ok(d) = rx.try_recv() {
                        if !write(&d, &mut out) {
                            return;
                        }
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(DecisionLog {
            tx,
            dropped,
            path: path.to_owned(),
            lb: load_balancing,
        })
    }

    /// Whether load-balancing decisions are recorded too.
    pub fn load_balancing(&self) -> bool {
        self.lb
    }

    /// Records a decision, or counts it as dropped when the writer is behind.
    pub fn record(&self, d: Decision) {
        match self.tx.try_send(d) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("d.jsonl");
        let log = DecisionLog::open(&path, true).expect("open");
        let lb = Decision::LoadBalance(Box::new(LoadBalanceRecord {
            time: "2026-11-26T00:00:00Z".into(),
            t: 1.5,
            node: "node3".into(),
            namespace: "default".into(),
            revision: "hello-00001".into(),
            policy: "faast".into(),
            method: "GET".into(),
            path: "/".into(),
            candidates: vec![("hello-node3-abcde".into(), "node3".into(), 0, 0)],
            rtt_ms: vec![Some(50.0), Some(50.0), Some(0.0)],
            serving_ms: vec![None, None, Some(4.0)],
            nodes: vec!["node1".into(), "node2".into(), "node3".into()],
            choice: Some("hello-node3-abcde".into()),
        }));
        log.record(lb.clone());
        drop(log);
        // The writer thread ends once the sender is gone; wait for the line.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let text = loop {
            let t = std::fs::read_to_string(&path).expect("read");
            if t.ends_with('\n') || std::time::Instant::now() > deadline {
                break t;
            }
            std::thread::yield_now();
        };
        assert_eq!(read(&text).expect("parse"), vec![lb]);
        assert!(
            read("{\"kind\":\"nonsense\"}")
                .unwrap_err()
                .starts_with("line 1:")
        );
    }
}
