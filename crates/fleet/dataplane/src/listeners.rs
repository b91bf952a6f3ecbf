//! The two listeners of a node: the gateway's (clients' requests) and the data port's
//! (requests other nodes forward, and latency probes). Each connection is HTTP/2 when it
//! opens with HTTP/2's preface (h2c by prior knowledge), HTTP/1.1 with upgrades otherwise.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::debug;

use crate::data_port::DataPort;
use crate::gateway::Gateway;

/// The bound sockets of a node's data plane.
pub struct Listeners {
    /// Where clients send requests.
    pub gateway: TcpListener,
    /// Where other nodes forward requests.
    pub data: TcpListener,
}

/// Serves both listeners until `shutdown` completes (connections in progress finish).
pub async fn serve_both(
    gateway: Arc<Gateway>,
    data_port: Arc<DataPort>,
    header_read_timeout: Duration,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) {
    let gw = tokio::spawn(accept(
        listeners.gateway,
        header_read_timeout,
        move |req, peer| {
            let gateway = gateway.clone();
            async move { gateway.serve(req, peer).await }
        },
    ));
    let data = tokio::spawn(accept(
        listeners.data,
        header_read_timeout,
        move |req, peer| {
            let data_port = data_port.clone();
            async move { data_port.serve(req, peer).await }
        },
    ));
    shutdown.await;
    gw.abort();
    data.abort();
}

async fn accept<F, Fut>(listener: TcpListener, header_read_timeout: Duration, handle: F)
where
    F: Fn(http::Request<hyper::body::Incoming>, std::net::SocketAddr) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
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
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = handle(req, peer);
                async move { Ok::<_, Infallible>(resp.await) }
            });
            let mut conn = auto::Builder::new(TokioExecutor::new());
            conn.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            conn.http2().timer(TokioTimer::new());
            let _ = conn
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}
