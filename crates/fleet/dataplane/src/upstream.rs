//! Kept-alive HTTP/1 connections to one local instance, each driven by the task of the
//! request using it: the request's task writes the request, reads the response head and,
//! through the response body, the rest. A general client runs every connection as a task
//! of its own, so that each request crossed tasks (and, on a multi-threaded runtime,
//! threads) twice; here nothing does.
//!
//! A connection goes back to its pool only once its response ended whole: one whose
//! response was cut short, that the instance closed, or that was upgraded (a request with
//! `Upgrade` gets a connection of its own, run as a task as hyper's upgrades need, and never
//! pooled) is never reused.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::{Body, BoxError, Guarded};

/// Idle connections kept per instance and pool shard.
const MAX_IDLE: usize = 128;
/// An idle connection older than this is closed rather than reused, so that a burst's
/// connections (each with its buffers) do not stay for good.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection to an instance may take; loopback answers at once or refuses.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pool shards: each thread takes its idle connections from its own, so that a thread
/// running its own runtime reuses connections registered with that runtime.
const SHARDS: usize = 8;

/// Where the instance's `Host` moves the client's.
const X_FORWARDED_HOST: header::HeaderName = header::HeaderName::from_static("x-forwarded-host");

/// Why a request got no response.
#[derive(Debug)]
pub enum UpstreamError {
    /// The request never left: no connection could be made. Here it is again.
    Unsent(Box<Request<Body>>, String),
    /// The request was (or may have been) sent, and the connection failed before the
    /// response head (or the request's body failed, over its limit for one).
    Failed(hyper::Error),
}

/// The connections to one instance.
pub struct Upstream {
    pool: Arc<Pool>,
}

struct Pool {
    addr: SocketAddr,
    /// The `Host` the instance sees: the address it listens on.
    host: HeaderValue,
    shards: [Mutex<VecDeque<Idle>>; SHARDS],
}

struct Idle {
    conn: Conn,
    since: Instant,
}

struct Conn {
    sender: SendRequest<Body>,
    /// `None` once the connection ended.
    conn: Option<Connection<TokioIo<TcpStream>, Body>>,
}

impl Conn {
    /// Drives the connection once; whether it is still open.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(c) = &mut self.conn
            && Pin::new(c).poll(cx).is_ready()
        {
            self.conn = None;
        }
        self.conn.is_some()
    }
}

/// This thread's pool shard.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl Upstream {
    /// The connections to the instance listening on 127.0.0.1:`port`.
    pub fn new(port: u16) -> Upstream {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let host = HeaderValue::from_str(&addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
        Upstream {
            pool: Arc::new(Pool {
                addr,
                host,
                shards: std::array::from_fn(|_| Mutex::new(VecDeque::new())),
            }),
        }
    }

    /// Sends `req` (its URI and `Host` made the instance's, the client's `Host` kept as
    /// `X-Forwarded-Host`) and returns the response head; its body drives the connection
    /// and holds `guard` until it ends (one body rather than one wrapping another).
    pub async fn send<G>(
        &self,
        mut req: Request<Body>,
        guard: G,
    ) -> Result<Response<Body>, UpstreamError>
    where
        G: Send + Unpin + 'static,
    {
        target(&mut req, &self.pool.host);
        if req.headers().contains_key(header::UPGRADE) {
            return Box::pin(self.send_upgrade(req, guard)).await;
        }
        loop {
            let (mut conn, reused) = match self.pool.checkout() {
                Some(c) => (c, true),
                // Boxed: a new connection is the rare case, and its handshake's state would
                // otherwise make every request's future larger (moved several times each).
                None => match Box::pin(self.pool.connect()).await {
                    Ok(c) => (c, false),
                    Err(why) => return Err(UpstreamError::Unsent(Box::new(req), why)),
                },
            };
            let sent = {
                let mut exchange = pin!(conn.sender.try_send_request(req));
                poll_fn(|cx| {
                    // The connection first: it writes the request and reads the answer.
                    let open = conn.drive(cx);
                    match exchange.as_mut().poll(cx) {
                        Poll::Pending if !open => {
                            // Ended without answering: dropping the connection fails the
                            // exchange, with the request when it was never written.
                            conn.conn = None;
                            exchange.as_mut().poll(cx)
                        }
                        p => p,
                    }
                })
                .await
            };
            match sent {
                Ok(resp) => return Ok(self.pool.clone().response(resp, conn, guard)),
                Err(mut e) => match e.take_message() {
                    // A kept connection the instance had closed: another one, or a new one.
                    Some(back) if reused => req = back,
                    Some(back) => {
                        return Err(UpstreamError::Unsent(
                            Box::new(back),
                            e.into_error().to_string(),
                        ));
                    }
                    None => return Err(UpstreamError::Failed(e.into_error())),
                },
            }
        }
    }

    /// A request asking for an upgrade, on a connection of its own run as a task (hyper
    /// hands the upgraded connection over from there), never pooled.
    async fn send_upgrade<G>(
        &self,
        req: Request<Body>,
        guard: G,
    ) -> Result<Response<Body>, UpstreamError>
    where
        G: Send + Unpin + 'static,
    {
        let Conn { mut sender, conn } = match self.pool.connect().await {
            Ok(c) => c,
            Err(why) => return Err(UpstreamError::Unsent(Box::new(req), why)),
        };
        if let Some(c) = conn {
            tokio::spawn(c.with_upgrades());
        }
        match sender.send_request(req).await {
            Ok(resp) => Ok(resp.map(|b| Guarded::new(b, guard, None, None).boxed_unsync())),
            Err(e) => Err(UpstreamError::Failed(e)),
        }
    }

    /// Closes the connections idle longer than [`IDLE_TIMEOUT`]; the pool does so itself
    /// only when it is used, so the node calls this on every report.
    pub(crate) fn close_idle(&self) {
        self.close_idle_at(Instant::now());
    }

    fn close_idle_at(&self, now: Instant) {
        for shard in &self.pool.shards {
            expire(&mut shard.lock(), now);
        }
    }

    /// Idle connections kept now (all shards).
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.pool.shards.iter().map(|s| s.lock().len()).sum()
    }
}

impl Pool {
    /// An idle connection that is still open and ready, newest first (the oldest are the
    /// likeliest to have been closed by the instance).
    fn checkout(&self) -> Option<Conn> {
        let mut shard = self.shards[shard()].lock();
        let now = Instant::now();
        while let Some(mut idle) = shard.pop_back() {
            if now.saturating_duration_since(idle.since) > IDLE_TIMEOUT {
                // Every older one is older still.
                shard.clear();
                return None;
            }
            // One that waits for a request is taken as it is: had the instance closed it,
            // the exchange gives the request back for another. Otherwise nobody polled it
            // since its last response: this lets it finish that one, or notice a close.
            if idle.conn.sender.is_ready() {
                return Some(idle.conn);
            }
            let mut cx = Context::from_waker(Waker::noop());
            if idle.conn.drive(&mut cx)
                && matches!(idle.conn.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
            {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Keeps `conn`, whose last response ended whole, for the next request.
    fn release(&self, conn: Conn) {
        if conn.conn.is_none() || conn.sender.is_closed() {
            return;
        }
        let mut shard = self.shards[shard()].lock();
        let now = Instant::now();
        expire(&mut shard, now);
        if shard.len() < MAX_IDLE {
            shard.push_back(Idle { conn, since: now });
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| format!("connecting to {} timed out", self.addr))?
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        let _ = stream.set_nodelay(true);
        // Heads and bodies to an instance are small: one copy into one buffer and one
        // write beat a vectored write of the pieces.
        let (sender, conn) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot speak HTTP/1 to {}: {e}", self.addr))?;
        Ok(Conn {
            sender,
            conn: Some(conn),
        })
    }

    /// The response, its body driving `conn` and handing it back once it ends whole.
    fn response<G>(
        self: Arc<Pool>,
        resp: Response<Incoming>,
        conn: Conn,
        guard: G,
    ) -> Response<Body>
    where
        G: Send + Unpin + 'static,
    {
        let (head, body) = resp.into_parts();
        let conn = if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // Not asked for (upgrades get connections of their own), and no longer HTTP.
            None
        } else if body.is_end_stream() {
            // A response without a body is over already (and its body is never polled).
            self.release(conn);
            None
        } else {
            Some(conn)
        };
        let body = Pooled {
            body,
            conn,
            pool: self,
            _guard: guard,
        };
        Response::from_parts(head, body.boxed_unsync())
    }
}

/// Closes the connections of `shard` idle longer than [`IDLE_TIMEOUT`] (the oldest are at
/// its front).
fn expire(shard: &mut VecDeque<Idle>, now: Instant) {
    while shard
        .front()
        .is_some_and(|i| now.saturating_duration_since(i.since) > IDLE_TIMEOUT)
    {
        shard.pop_front();
    }
}

/// Makes `req` the instance's: origin-form URI (a general client would send what it was
/// given), the instance's address as `Host`, the client's kept as `X-Forwarded-Host` for
/// applications that care (as behind Knative's queue-proxy).
fn target(req: &mut Request<Body>, host: &HeaderValue) {
    if req.uri().authority().is_some() {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
    }
    let h = req.headers_mut();
    if let Some(original) = h.insert(header::HOST, host.clone()) {
        h.insert(X_FORWARDED_HOST, original);
    }
}

/// A response body that drives its connection, returns it to the pool at its end, and holds
/// a guard until then.
struct Pooled<G> {
    body: Incoming,
    /// `None` once returned, or ended.
    conn: Option<Conn>,
    pool: Arc<Pool>,
    _guard: G,
}

impl<G> Pooled<G> {
    fn release(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.release(c);
        }
    }
}

impl<G: Unpin> HttpBody for Pooled<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(c) = &mut this.conn
            && !c.drive(cx)
        {
            // Ended: what it read is in the body's channel; whatever is missing fails it.
            this.conn = None;
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                // A server writing the response stops polling once the body says it ended.
                if this.body.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};
    use std::convert::Infallible;

    /// A server on loopback answering `body` to every request; counts its connections.
    async fn server(body: &'static str) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            body.as_bytes(),
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (port, accepted)
    }

    fn get(upgrade: bool) -> Request<Body> {
        let mut b = Request::get("http://hello.default/p?q=1").header(header::HOST, "hello");
        if upgrade {
            b = b.header(header::UPGRADE, "websocket");
        }
        b.body(
            Empty::new()
                .map_err(|e: Infallible| match e {})
                .boxed_unsync(),
        )
        .expect("request")
    }

    async fn text(resp: Response<Body>) -> String {
        let b = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(b.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn a_connection_whose_response_ended_serves_the_next_request() {
        let (port, accepted) = server("hi").await;
        let up = Upstream::new(port);
        for _ in 0..3 {
            let resp = up.send(get(false), ()).await.expect("answered");
            assert_eq!(text(resp).await, "hi");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_response_dropped_before_its_end_takes_its_connection_with_it() {
        let (port, accepted) = server("hi").await;
        let up = Upstream::new(port);
        drop(up.send(get(false), ()).await.expect("answered"));
        assert_eq!(up.idle(), 0);
        let resp = up.send(get(false), ()).await.expect("answered");
        assert_eq!(text(resp).await, "hi");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_timeout_is_closed() {
        let (port, _) = server("hi").await;
        let up = Upstream::new(port);
        let resp = up.send(get(false), ()).await.expect("answered");
        assert_eq!(text(resp).await, "hi");
        assert_eq!(up.idle(), 1);
        up.close_idle_at(Instant::now() + IDLE_TIMEOUT / 2);
        assert_eq!(up.idle(), 1);
        up.close_idle_at(Instant::now() + IDLE_TIMEOUT + Duration::from_secs(1));
        assert_eq!(up.idle(), 0);
    }

    #[tokio::test]
    async fn an_upgrade_request_gets_a_connection_never_pooled() {
        let (port, accepted) = server("hi").await;
        let up = Upstream::new(port);
        let resp = up.send(get(true), ()).await.expect("answered");
        assert_eq!(text(resp).await, "hi");
        assert_eq!(up.idle(), 0);
        let resp = up.send(get(false), ()).await.expect("answered");
        assert_eq!(text(resp).await, "hi");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_that_finds_no_instance_comes_back_unsent() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let up = Upstream::new(port);
        match up.send(get(false), ()).await {
            Err(UpstreamError::Unsent(req, why)) => {
                assert_eq!(req.uri(), "/p?q=1");
                assert!(why.contains("cannot connect"), "{why}");
            }
            other => panic!("expected the request back, got {other:?}"),
        }
    }

    #[test]
    fn the_instance_sees_its_own_address_as_host_and_the_clients_as_forwarded() {
        let mut req = get(false);
        let host = HeaderValue::from_static("127.0.0.1:8080");
        target(&mut req, &host);
        assert_eq!(req.uri(), "/p?q=1");
        assert_eq!(req.headers()[header::HOST], "127.0.0.1:8080");
        assert_eq!(req.headers()["x-forwarded-host"], "hello");
    }
}
