//! The warm path in one process, for a profiler: a hello instance on its own thread, a
//! closed-loop client on another, and (with `gateway`) a node's data plane between them on
//! a runtime like the node agent's. Instruction counts under callgrind are repeatable on a
//! noisy shared machine, where wall-clock benchmarks are not:
//!
//! ```text
//! cargo build --profile bench -p kantai-dataplane --example warm_path
//! valgrind --tool=callgrind target/release/examples/warm_path direct 20000
//! valgrind --tool=callgrind target/release/examples/warm_path gateway 20000
//! ```
//!
//! The gateway's cost per request is the difference of the two totals over the request
//! count (`scripts/profile-warm` runs both and prints it). Without valgrind it prints the
//! wall-clock rate, a rough check only. Loopback only; every loop is bounded by the count.

// A profiling harness is a driver: it measures wall time and owns its threads.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kantai_dataplane::{DataPlane, Limits, Listeners, RevisionConfig, RouteSpec};
use tokio::net::TcpListener;

const HOST: &str = "hello.default.svc.cluster.local";
/// Concurrent client connections, as the fleet benchmark's saturation run.
const CONNECTIONS: usize = 32;
/// Connections the instance accepted: the gateway's should be about as many as the client's.
static INSTANCE_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "gateway".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    assert!(
        ["gateway", "direct", "nginx"].contains(&mode.as_str()),
        "usage: warm_path gateway|direct|nginx [REQUESTS]; got mode {mode:?}"
    );
    let instance = spawn_instance();
    let mut nginx = None;
    let target = match mode.as_str() {
        "gateway" => spawn_gateway(instance),
        "nginx" => {
            let n = kantai_testkit::nginx::Nginx::start(instance)
                .expect("nginx is not installed (apt-get install nginx-light), or did not listen");
            let addr = n.addr;
            nginx = Some(n);
            addr
        }
        _ => instance,
    };
    // The proxy's own CPU time: the data plane's threads, or nginx's workers.
    let proxy_cpu = || match &nginx {
        Some(n) => workers_cpu(n.pid()),
        None => threads_cpu("kantai-dp-"),
    };
    let cpu_before = proxy_cpu();
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client's runtime");
    let start = Instant::now();
    let done = client.block_on(load(target, count));
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(done, count, "every request answered 200");
    let cpu = proxy_cpu() - cpu_before;
    println!(
        "{mode}: {count} requests over {CONNECTIONS} connections in {secs:.2} s ({:.0} req/s); \
         the instance accepted {} connections; the proxy's CPU per request: {:.2} µs user, \
         {:.2} µs system",
        count as f64 / secs,
        INSTANCE_CONNECTIONS.load(Ordering::Relaxed),
        cpu.user_s * 1e6 / count as f64,
        cpu.system_s * 1e6 / count as f64,
    );
}

/// CPU time, from `/proc` (clock ticks, 10 ms apart: a run of a second or more is needed).
#[derive(Clone, Copy, Default)]
struct Cpu {
    user_s: f64,
    system_s: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            user_s: self.user_s - o.user_s,
            system_s: self.system_s - o.system_s,
        }
    }
}

/// User and system time in a `/proc/.../stat` line (fields 14 and 15, after the command).
fn stat_cpu(stat: &str) -> Cpu {
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    Cpu {
        user_s: tick(11),
        system_s: tick(12),
    }
}

/// The CPU time of this process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> Cpu {
    let threads = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten();
    sum_cpu(
        threads.map(|t| t.path()).filter(|t| {
            std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.starts_with(prefix))
        }),
    )
}

/// The CPU time of nginx's workers (the children of its master, `master`).
fn workers_cpu(master: u32) -> Cpu {
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .unwrap_or_default();
    sum_cpu(
        children
            .split_whitespace()
            .map(|pid| std::path::PathBuf::from(format!("/proc/{pid}"))),
    )
}

/// The CPU time of the processes or threads at these `/proc` paths, together.
fn sum_cpu(paths: impl Iterator<Item = std::path::PathBuf>) -> Cpu {
    paths.fold(Cpu::default(), |sum, p| {
        let c = stat_cpu(&std::fs::read_to_string(p.join("stat")).unwrap_or_default());
        Cpu {
            user_s: sum.user_s + c.user_s,
            system_s: sum.system_s + c.system_s,
        }
    })
}

/// The hello function as `kantai fn hello` serves it: a current-thread runtime on its own
/// thread, a fixed greeting.
fn spawn_instance() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the instance");
    let addr = listener.local_addr().expect("instance address");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the instance's runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                INSTANCE_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut r =
                            http::Response::new(Full::new(Bytes::from_static(b"Hello World\n")));
                        r.headers_mut()
                            .insert("app", http::HeaderValue::from_static("shuka"));
                        Ok::<_, Infallible>(r)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    addr
}

/// A node's data plane routing `HOST` to the instance at `instance`, on a runtime built as
/// the node agent builds its own.
fn spawn_gateway(instance: SocketAddr) -> SocketAddr {
    let gateway = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the gateway");
    let data = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the data port");
    let addr = gateway.local_addr().expect("gateway address");
    for l in [&gateway, &data] {
        l.set_nonblocking(true).expect("nonblocking");
    }
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("the data plane's runtime");
        rt.block_on(async move {
            let (dp, _pokes) = DataPlane::new("node1", Limits::default(), 7);
            dp.set_net(vec!["node1".to_owned()], &HashMap::new());
            let key = ("default".to_owned(), "hello-00001".to_owned());
            dp.set_routes(
                "svc.cluster.local",
                vec![RouteSpec {
                    namespace: key.0.clone(),
                    name: "hello".to_owned(),
                    traffic: vec![(key.1.clone(), 100, None)],
                    unavailable: None,
                }],
            );
            dp.set_revisions(HashMap::from([(key.clone(), RevisionConfig::default())]));
            dp.add_local("hello-node1-a", &key.0, &key.1, instance.port(), 0);
            dp.set_local_ready("hello-node1-a", true);
            let listeners = Listeners {
                gateway: TcpListener::from_std(gateway).expect("gateway listener"),
                data: TcpListener::from_std(data).expect("data listener"),
            };
            kantai_dataplane::serve(dp, listeners, std::future::pending()).await;
        });
    });
    addr
}

/// `count` GETs of `/` over `CONNECTIONS` keep-alive connections, each closed-loop; the
/// number answered 200.
async fn load(target: SocketAddr, count: usize) -> usize {
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for c in 0..CONNECTIONS {
        let share = count / CONNECTIONS + usize::from(c < count % CONNECTIONS);
        tasks.push(tokio::spawn(async move {
            let stream = connect(target).await;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut ok = 0;
            for _ in 0..share {
                sender.ready().await.expect("connection ready");
                let req = http::Request::get("/")
                    .header(http::header::HOST, HOST)
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let resp = sender.send_request(req).await.expect("response");
                let good = resp.status().is_success();
                if resp.into_body().collect().await.is_ok() && good {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.expect("client task");
    }
    done
}

/// A connection to `target`, retried while the listener's thread starts (bounded).
async fn connect(target: SocketAddr) -> tokio::net::TcpStream {
    for _ in 0..500 {
        if let Ok(s) = tokio::net::TcpStream::connect(target).await {
            let _ = s.set_nodelay(true);
            return s;
        }
        tokio::task::yield_now().await;
    }
    panic!("nothing listens on {target}");
}
