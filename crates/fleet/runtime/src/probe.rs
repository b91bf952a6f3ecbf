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
