//! The two listeners of a node: the gateway's (clients' requests) and the data port's
//! (requests other nodes forward, and latency probes). Each connection is HTTP/2 when it
//! opens with HTTP/2's preface (h2c by prior knowledge), HTTP/1.1 with upgrades otherwise.
//!
//! Connections are served by one single-threaded runtime per core, each connection on one
//! of them for its whole life (the one with the fewest open connections when it arrives): a
//! request's task, its connection to the instance and that connection's sockets then stay on
//! one thread, and waking a task never crosses to another one, which on a work-stealing
//! runtime costs the kernel a futex wake per hop.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::data_port::DataPort;
use crate::gateway::Gateway;

/// The bound sockets of a node's data plane.
pub struct Listeners {
    /// Where clients send requests.
    pub gateway: TcpListener,
    /// Where other nodes forward requests.
    pub data: TcpListener,
}

/// Serves both listeners until `shutdown` completes; connections still open then are closed.
pub async fn serve_both(
    gateway: Arc<Gateway>,
    data_port: Arc<DataPort>,
    header_read_timeout: Duration,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) {
    let workers = Workers::start();
    let gw = tokio::spawn(accept(
        listeners.gateway,
        workers.clone(),
        header_read_timeout,
        move |req, peer| {
            let gateway = gateway.clone();
            async move { gateway.serve(req, peer).await }
        },
    ));
    let data = tokio::spawn(accept(
        listeners.data,
        workers,
        header_read_timeout,
        move |req, peer| {
            let data_port = data_port.clone();
            async move { data_port.serve(req, peer).await }
        },
    ));
    shutdown.await;
    // The accept loops hold the last senders: the workers stop once both are gone.
    gw.abort();
    data.abort();
}

/// A connection to serve, started on the worker's runtime.
type Job = Box<dyn FnOnce() + Send>;

struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    open: Arc<AtomicUsize>,
}

/// The runtimes connections are served on, one thread each.
#[derive(Clone)]
struct Workers(Arc<Vec<Worker>>);

impl Workers {
    /// One worker per core (at least one); a worker whose thread cannot start is done
    /// without.
    fn start() -> Workers {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
            let started = std::thread::Builder::new()
                .name(format!("kantai-dp-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            warn!("data plane worker {i}: cannot start its runtime: {e}");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        while let Some(job) = rx.recv().await {
                            job();
                        }
                    });
                    // Dropping the runtime closes the connections it still served.
                });
            match started {
                Ok(_) => workers.push(Worker {
                    jobs,
                    open: Arc::new(AtomicUsize::new(0)),
                }),
                Err(e) => warn!("data plane worker {i}: cannot start its thread: {e}"),
            }
        }
        Workers(Arc::new(workers))
    }

    /// Runs `job` on the worker with the fewest open connections, or here when there is
    /// none (or it has stopped); it gets the counter to hold while its connection is open.
    fn run(&self, job: impl FnOnce(Open) + Send + 'static) {
        let least = self.0.iter().min_by_key(|w| w.open.load(Ordering::Relaxed));
        let Some(w) = least else {
            return job(Open(None));
        };
        w.open.fetch_add(1, Ordering::Relaxed);
        let open = Open(Some(w.open.clone()));
        let job: Job = Box::new(move || job(open));
        if let Err(mpsc::error::SendError(job)) = w.jobs.send(job) {
            job();
        }
    }
}

/// Counts a connection open on its worker until dropped.
struct Open(Option<Arc<AtomicUsize>>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

async fn accept<F, Fut>(
    listener: TcpListener,
    workers: Workers,
    header_read_timeout: Duration,
    handle: F,
) where
    F: Fn(http::Request<hyper::body::Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<crate::body::Body>> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                debug!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Registered again with the worker's own reactor.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                debug!("cannot hand over a connection from {peer}: {e}");
                continue;
            }
        };
        let handle = handle.clone();
        workers.run(move |open| {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    debug!("cannot serve a connection from {peer}: {e}");
                    return;
                }
            };
            tokio::spawn(async move {
                let _open = open;
                let svc = service_fn(move |req| {
                    // Boxed: hyper keeps a connection's request future in an allocation
                    // of its size made with the connection, and moves it there for every
                    // request; as a pointer, an idle connection holds 8 bytes, not the
                    // whole request's state (about 6 KB), and a request is not copied.
                    let resp = Box::pin(handle(req, peer));
                    async move { Ok::<_, Infallible>(resp.await) }
                });
                // HTTP/2's streams run as tasks of this worker's runtime too.
                let mut conn = auto::Builder::new(TokioExecutor::new());
                conn.http1()
                    // Most answers are small: their head and body go out in one write.
                    .writev(false)
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout);
                conn.http2().timer(TokioTimer::new());
                let _ = conn
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        });
    }
}
