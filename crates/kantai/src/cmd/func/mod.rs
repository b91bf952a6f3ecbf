//! `kantai fn hello`: the built-in demo function, behaving like the seed's demo app (shuka):
//! `/` answers `<TARGET> from <PODNAME> in <NODENAME>`, `/nodename` the node, `/sleep/<ms>`
//! after that many milliseconds (fractions allowed). `kantai fn echo` (echo.rs): the
//! protocols' test function. Both listen on `$PORT` (8080 by default), after
//! `$STARTUP_DELAY` (a duration such as `1s`: a container's start, for experiments on cold
//! starts).

mod echo;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// `kantai fn` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// The demo function: `/` greets with `$TARGET`, `$PODNAME` and `$NODENAME`,
    /// `/nodename` names the node, `/sleep/<ms>` answers after that many milliseconds.
    Hello,
    /// The protocols' test function, over HTTP/1.1 and h2c: `/upload` counts a streamed
    /// body, `/stream` and `/sse` send chunks with pauses, `/ws` echoes WebSocket messages,
    /// `/version` names the HTTP version it got, and the gRPC service `kantai.test.Echo`.
    Echo,
}

struct Hello {
    greeting: String,
    node: String,
}

/// Runs the function until the process is stopped.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Hello => hello(),
        Command::Echo => listen(|stream| {
            tokio::spawn(echo::connection(stream));
        }),
    }
}

fn hello() -> anyhow::Result<ExitCode> {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "Hello World".to_owned());
    let pod = std::env::var("PODNAME").unwrap_or_default();
    let node = std::env::var("NODENAME").unwrap_or_default();
    // shuka: "<TARGET> from <PODNAME> in <NODENAME>" when it knows where it runs.
    let greeting = if pod.is_empty() && node.is_empty() {
        format!("{target}\n")
    } else {
        format!("{target} from {pod} in {node}\n")
    };
    let state: &'static Hello = Box::leak(Box::new(Hello { greeting, node }));
    listen(move |stream| {
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(move |r| serve(state, r)))
                .await;
        });
    })
}

/// Listens on `$PORT` after `$STARTUP_DELAY` and hands each connection to `conn` (on the
/// runtime), until SIGTERM.
fn listen(conn: impl Fn(TcpStream) + 'static) -> anyhow::Result<ExitCode> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let delay = match std::env::var("STARTUP_DELAY") {
        Ok(d) if !d.is_empty() => {
            let ns = kantai_model::units::parse_go_duration(&d)
                .ok()
                .filter(|n| *n >= 0)
                .with_context(|| {
                    format!("STARTUP_DELAY={d:?} is not a duration such as 1s or 250ms")
                })?;
            Duration::from_nanos(ns as u64)
        }
        _ => Duration::ZERO,
    };
    // A small runtime: the function is one of many processes on a node.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        // Not listening yet: the readiness probe fails until the "container" has started.
        tokio::time::sleep(delay).await;
        // kantai reaches its instances over loopback; nothing else should.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    conn(stream);
                }
                _ = term.recv() => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}

/// The largest request body hello reads (it answers 413 beyond).
const MAX_BODY: usize = 16 << 20;

async fn serve(
    h: &'static Hello,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // Read to the end, as a well-behaved server does: an unread body makes hyper close the
    // connection after the answer, and the proxy in front finds its pooled connection gone.
    let read = Limited::new(body, MAX_BODY).collect().await;
    let path = parts.uri.path();
    let (status, body) = if read.is_err() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {MAX_BODY} bytes, or was cut off\n"),
        )
    } else if path == "/" {
        (StatusCode::OK, h.greeting.clone())
    } else if path == "/nodename" {
        (StatusCode::OK, format!("{}\n", h.node))
    } else if let Some(ms) = path.strip_prefix("/sleep/") {
        // Fractions are accepted: `kantai experiment` asks for drawn service times such as
        // `/sleep/3.712` (the timer resolves a millisecond, so the sleep may be up to 1 ms longer).
        match ms.parse::<f64>() {
            Ok(v) if (0.0..=3_600_000.0).contains(&v) => {
                tokio::time::sleep(Duration::from_secs_f64(v / 1e3)).await;
                (StatusCode::OK, format!("slept {ms} ms\n"))
            }
            _ => (
                StatusCode::BAD_REQUEST,
                format!("not a number of milliseconds from 0 to 3600000: {ms:?}\n"),
            ),
        }
    } else {
        (StatusCode::NOT_FOUND, "not found\n".to_owned())
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("app", http::HeaderValue::from_static("shuka"));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}
