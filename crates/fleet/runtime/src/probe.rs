//! Readiness probes: TCP connect, HTTP GET or a command, against an instance on loopback.

use std::time::Duration;

use kantai_model::serving::Probe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to check, resolved against the instance's port.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// A TCP connection succeeds.
    Tcp {
        /// Port on 127.0.0.1.
        port: u16,
    },
    /// An HTTP GET answers 2xx or 3xx.
    Http {
        /// Port on 127.0.0.1.
        port: u16,
        /// Request path.
        path: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// A command exits 0 (run directly, never through a shell).
    Exec {
        /// Program and arguments.
        command: Vec<String>,
    },
}

/// A resolved probe with its timing.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadinessProbe {
    /// The check.
    pub check: Check,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Period of checks once ready (Knative's default 0 means a fast check every second).
    pub period: Duration,
    /// Consecutive failures that make a ready instance unready.
    pub failure_threshold: u32,
    /// Consecutive successes that make an instance ready.
    pub success_threshold: u32,
    /// Wait before the first check.
    pub initial_delay: Duration,
}

impl ReadinessProbe {
    /// Resolves a container's probe (defaulted by the model: a TCP check) for an instance
    /// listening on `port`. A probe port of 0, absent, or the container's declared port means
    /// the instance's real port, since kantai assigns each instance its own `PORT`. An exec
    /// probe's command runs after `exec_prefix` (the OCI runtime's `exec` for a container,
    /// so the command runs inside it).
    pub fn resolve(probe: Option<&Probe>, port: u16, exec_prefix: &[String]) -> ReadinessProbe {
        let default = Probe::default();
        let p = probe.unwrap_or(&default);
        let secs = |v: Option<i64>, d: u64| Duration::from_secs(v.map_or(d, |v| v.max(0) as u64));
        let check = if let Some(h) = &p.http_get {
            Check::Http {
                port,
                path: h
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".to_owned()),
                headers: h
                    .http_headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(e) = &p.exec {
            Check::Exec {
                command: if e.command.is_empty() {
                    Vec::new()
                } else {
                    exec_prefix.iter().chain(&e.command).cloned().collect()
                },
            }
        } else {
            // tcpSocket, gRPC (checked as a connection) and the default.
            Check::Tcp { port }
        };
        let timeout = match (p.timeout_seconds, &check) {
            (Some(t), _) if t > 0 => Duration::from_secs(t as u64),
            // A command (`runc exec` into a container, say) takes a while to start:
            // Kubernetes' default second.
            (_, Check::Exec { .. }) => Duration::from_secs(1),
            // Knative's aggressive probing uses short attempts.
            _ => Duration::from_millis(500),
        };
        ReadinessProbe {
            check,
            timeout,
            period: match p.period_seconds {
                Some(s) if s > 0 => Duration::from_secs(s as u64),
                _ => Duration::from_secs(1),
            },
            failure_threshold: p.failure_threshold.map_or(3, |f| f.max(1) as u32),
            success_threshold: p.success_threshold.map_or(1, |s| s.max(1) as u32),
            initial_delay: secs(p.initial_delay_seconds, 0),
        }
    }

    /// Whether an attempt is cheap enough to repeat every millisecond (not a process spawn).
    pub fn is_cheap(&self) -> bool {
        !matches!(self.check, Check::Exec { .. })
    }

    /// One probe within its timeout.
    pub async fn check(&self) -> bool {
        tokio::time::timeout(self.timeout, self.attempt())
            .await
            .unwrap_or(false)
    }

    async fn attempt(&self) -> bool {
        match &self.check {
            Check::Tcp { port } => TcpStream::connect(("127.0.0.1", *port)).await.is_ok(),
            Check::Http {
                port,
                path,
                headers,
            } => http_get(*port, path, headers).await,
            Check::Exec { command } => {
                let Some((prog, args)) = command.split_first() else {
                    return false;
                };
                tokio::process::Command::new(prog)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await
                    .is_ok_and(|s| s.success())
            }
        }
    }
}

/// A minimal HTTP/1.1 GET: status 200–399 is success.
async fn http_get(port: u16, path: &str, headers: &[(String, String)]) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kantai-probe\r\n\
         K-Network-Probe: queue\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    line.starts_with("HTTP/1.")
        && line
            .get(9..12)
            .and_then(|c| c.parse::<u16>().ok())
            .is_some_and(|c| (200..400).contains(&c))
}

/// The fast probes of starting instances a node makes per second at most, all together: a
/// failed loopback connect costs a few microseconds, and a burst of starts should not spend
/// the CPU its instances need to start.
pub const PROBE_BUDGET: f64 = 20_000.0;

/// The shortest time between two beats of the pacer: how late a starting instance's
/// readiness is noticed at most, when few start at once.
pub const MIN_BEAT: Duration = Duration::from_micros(200);

/// The time between two beats of the pacer with `waiting` instances probed on each: the
/// shortest beat, or longer so that `waiting` probes per beat keep within the budget.
pub fn beat_gap(waiting: usize) -> Duration {
    MIN_BEAT.max(Duration::from_secs_f64(waiting as f64 / PROBE_BUDGET))
}

/// Paces the fast readiness probes of a node's starting instances: each beat wakes every
/// instance waiting for one, at once, and beats come [`beat_gap`] apart. Its own thread keeps
/// the beat (a sleep there is exact to tens of microseconds; the async timer's resolution is
/// a millisecond, which was the floor of a cold start's readiness), and sleeps while no
/// instance is starting.
pub(crate) struct Pacer {
    beat: tokio::sync::Notify,
    waiting: parking_lot::Mutex<usize>,
    wake: parking_lot::Condvar,
    thread: std::sync::Once,
}

/// An instance's place among the starting ones; given back when dropped.
pub(crate) struct Paced<'a>(&'a std::sync::Arc<Pacer>);

impl Pacer {
    /// A pacer; its thread starts with the first instance that joins.
    pub(crate) fn new() -> std::sync::Arc<Pacer> {
        std::sync::Arc::new(Pacer {
            beat: tokio::sync::Notify::new(),
            waiting: parking_lot::Mutex::new(0),
            wake: parking_lot::Condvar::new(),
            thread: std::sync::Once::new(),
        })
    }

    /// Counts an instance among those probed on each beat until the guard is dropped.
    pub(crate) fn join(self: &std::sync::Arc<Self>) -> Paced<'_> {
        self.thread.call_once(|| {
            let me = std::sync::Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("kantai-probe-pacer".into())
                .spawn(move || Pacer::run(&me));
            if let Err(e) = spawned {
                tracing::warn!("cannot start the readiness pacer thread: {e}");
            }
        });
        *self.waiting.lock() += 1;
        self.wake.notify_one();
        Paced(self)
    }

    /// Waits for the next beat.
    pub(crate) async fn beat(&self) {
        self.beat.notified().await;
    }

    fn run(me: &std::sync::Weak<Pacer>) {
        loop {
            let Some(p) = me.upgrade() else { return };
            let waiting = {
                let mut w = p.waiting.lock();
                // Wakes now and then to notice a pacer no one holds any more.
                if *w == 0 {
                    p.wake.wait_for(&mut w, Duration::from_secs(10));
                }
                *w
            };
            if waiting == 0 {
                continue;
            }
            drop(p);
            std::thread::sleep(beat_gap(waiting));
            if let Some(p) = me.upgrade() {
                p.beat.notify_waiters();
            }
        }
    }
}

impl Drop for Paced<'_> {
    fn drop(&mut self) {
        let mut w = self.0.waiting.lock();
        *w = w.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_come_at_the_shortest_gap_until_the_budget_stretches_them() {
        assert_eq!(beat_gap(0), MIN_BEAT);
        assert_eq!(beat_gap(1), MIN_BEAT);
        // 4 probes per beat at 20,000 a second: exactly the shortest gap.
        assert_eq!(beat_gap(4), MIN_BEAT);
        assert_eq!(beat_gap(100), Duration::from_millis(5));
    }

    #[tokio::test]
    async fn a_joined_instance_hears_beats_well_under_a_millisecond_apart() {
        let pacer = Pacer::new();
        let _paced = pacer.join();
        let start = std::time::Instant::now();
        for _ in 0..100 {
            pacer.beat().await;
        }
        // 100 beats at 200 µs: 20 ms; the async timer's floor would make it 100 ms or more.
        assert!(
            start.elapsed() < Duration::from_millis(90),
            "{:?}",
            start.elapsed()
        );
    }
}
