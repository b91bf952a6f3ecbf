//! Load for a live fleet, and what the fleet said while it ran.
//!
//! [`fire`] sends planned requests open-loop: each at its planned time whether or not the
//! earlier ones have been answered, and each request's latency is counted from its planned
//! time, not from when it was sent. A generator that falls behind (a stalled connection, a
//! busy machine) therefore cannot hide the delay it caused: the correction for coordinated
//! omission. Alongside, it runs closed-loop [`User`]s, who send a request, wait for its
//! answer, think, and send the next (their latency is from the send: a user who waits is the
//! workload, not the generator's fault). Every request becomes a [`Record`], with the
//! instance and node that served it when the fleet names them (`dataplane.serving-headers`).
//!
//! [`timeline`] scrapes Prometheus endpoints at a fixed interval and keeps the samples of
//! chosen metrics: the fleet's own account of instances, desired counts, panic mode, queue
//! depth and round trips over the run.

pub mod prom;
pub mod timeline;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Response header naming the instance that served a request (the data plane's).
pub const SERVED_BY: &str = "kantai-served-by";
/// Response header naming that instance's node.
pub const SERVED_ON: &str = "kantai-served-on";
/// Response header marking a request that waited for a cold start.
pub const COLD_START: &str = "kantai-cold-start";

/// One request to send.
#[derive(Clone, Debug)]
pub struct Shot {
    /// When, from the start of the run.
    pub at: Duration,
    /// The gateway it enters (index into the gateways given to [`fire`]).
    pub origin: u32,
    /// The function (the caller's index, copied into the record).
    pub function: u32,
    /// The `Host` header: the service's host name.
    pub host: Arc<str>,
    /// Method.
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Give up after this long (the client's own limit, beyond the fleet's timeout).
    pub timeout: Duration,
}

/// A closed-loop user: one request out at a time.
pub struct User {
    /// Its gateway (index into the gateways given to [`fire`]).
    pub origin: u32,
    /// The function (the caller's index, copied into the records).
    pub function: u32,
    /// When it sends its first request, from the start of the run.
    pub first: Duration,
    /// It sends nothing at or after this.
    pub end: Duration,
    /// The `Host` header.
    pub host: Arc<str>,
    /// Method.
    pub method: http::Method,
    /// Extra headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Give up on a request after this long.
    pub timeout: Duration,
    /// The next request's path and the think time after its answer.
    pub next: Box<dyn FnMut() -> (String, Duration) + Send>,
}

/// What happened to one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Its planned time, from the start of the run.
    pub at: Duration,
    /// How late it was sent (the generator's own lag).
    pub lag: Duration,
    /// The gateway it entered.
    pub origin: u32,
    /// The function.
    pub function: u32,
    /// The HTTP status; 0 when no response came (connection refused or reset, client
    /// timeout).
    pub status: u16,
    /// From its planned time to the end of the response body.
    pub latency: Duration,
    /// The instance that served it, if the fleet said.
    pub instance: Option<String>,
    /// That instance's node, if the fleet said.
    pub node: Option<String>,
    /// Whether it waited for an instance to start.
    pub cold: bool,
    /// Why no response came, for status 0.
    pub error: Option<String>,
}

/// Limits of a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Requests in flight at most; a shot beyond waits for one to finish (its latency still
    /// counts from its planned time).
    pub max_in_flight: usize,
    /// The longest the run may take; shots not sent by then are recorded as not sent.
    pub deadline: Duration,
}

impl Shot {
    fn request(&self, gw: SocketAddr, path: &str) -> Result<http::Request<Full<Bytes>>, String> {
        let mut req = http::Request::builder()
            .method(self.method.clone())
            .uri(format!("http://{gw}{path}"))
            .header(HOST, &*self.host);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req.body(Full::new(Bytes::new()))
            .map_err(|e| format!("invalid request: {e}"))
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_in_flight: 10_000,
            deadline: Duration::from_secs(3600),
        }
    }
}

/// How far a run is, every second.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered (or failed).
    pub done: u64,
}

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A shot names a gateway that was not given.
    #[error("a request enters gateway {0}, but only {1} gateways were given")]
    NoGateway(u32, usize),
}

/// Sends `shots` (in time order) open-loop to `gateways` while `users` run closed-loop, and
/// returns a record per request: the shots' in the order they were planned, then the users'
/// by send time. `progress` hears from the run about once a second.
pub async fn fire(
    shots: impl IntoIterator<Item = Shot>,
    users: Vec<User>,
    gateways: &[SocketAddr],
    opts: &Options,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Record>, LoadError> {
    for u in &users {
        if gateways.get(u.origin as usize).is_none() {
            return Err(LoadError::NoGateway(u.origin, gateways.len()));
        }
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // The timer lets the pool evict idle connections (without one it never does).
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let permits = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
    let start = Instant::now();
    let end = start + opts.deadline;
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent_by_users = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let by_users = sent_by_users.clone();
    let report = |sent: u64, progress: &mut dyn FnMut(Progress)| {
        progress(Progress {
            elapsed: start.elapsed(),
            sent: sent + by_users.load(std::sync::atomic::Ordering::Relaxed),
            done: done.load(std::sync::atomic::Ordering::Relaxed),
        });
    };
    let user_tasks: Vec<_> = users
        .into_iter()
        .map(|u| {
            let client = client.clone();
            let gw = gateways[u.origin as usize];
            let (done, sent) = (done.clone(), sent_by_users.clone());
            let end = start + u.end.min(opts.deadline);
            tokio::spawn(run_user(client, gw, u, start, end, done, sent))
        })
        .collect();
    let mut late = Vec::new();
    for shot in shots {
        let Some(&gw) = gateways.get(shot.origin as usize) else {
            // Nothing of this run may go on behind the caller's back.
            user_tasks.iter().for_each(tokio::task::JoinHandle::abort);
            tasks.iter().for_each(tokio::task::JoinHandle::abort);
            return Err(LoadError::NoGateway(shot.origin, gateways.len()));
        };
        let due = start + shot.at;
        if due > end {
            late.push(shot);
            continue;
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(due) => break,
                _ = tick.tick() => report(tasks.len() as u64, progress),
            }
        }
        let permit = loop {
            tokio::select! {
                p = permits.clone().acquire_owned() => break p.ok(),
                _ = tick.tick() => report(tasks.len() as u64, progress),
            }
        };
        let client = client.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let r = exchange(&client, gw, &shot, &shot.path, due).await;
            drop(permit);
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            r
        }));
    }
    let sent = tasks.len() as u64;
    let mut out = Vec::with_capacity(tasks.len() + late.len());
    let mut waiting = tasks.into_iter();
    let mut next = waiting.next();
    while let Some(t) = next.as_mut() {
        tokio::select! {
            r = t => {
                if let Ok(r) = r {
                    out.push(r);
                }
                next = waiting.next();
            }
            _ = tick.tick() => report(sent, progress),
        }
    }
    let mut by_user = Vec::new();
    for t in user_tasks {
        let mut t = t;
        loop {
            tokio::select! {
                r = &mut t => {
                    if let Ok(r) = r {
                        by_user.extend(r);
                    }
                    break;
                }
                _ = tick.tick() => report(sent, progress),
            }
        }
    }
    out.extend(late.into_iter().map(|s| Record {
        at: s.at,
        lag: Duration::ZERO,
        origin: s.origin,
        function: s.function,
        status: 0,
        latency: Duration::ZERO,
        instance: None,
        node: None,
        cold: false,
        error: Some("not sent: the run's deadline passed".into()),
    }));
    by_user.sort_by_key(|r| r.at);
    out.extend(by_user);
    report(sent, progress);
    Ok(out)
}

/// One closed-loop user until `end`.
async fn run_user(
    client: Client<HttpConnector, Full<Bytes>>,
    gw: SocketAddr,
    mut u: User,
    start: Instant,
    end: Instant,
    done: Arc<std::sync::atomic::AtomicU64>,
    sent: Arc<std::sync::atomic::AtomicU64>,
) -> Vec<Record> {
    let mut out = Vec::new();
    let mut next = start + u.first;
    let shot = Shot {
        at: Duration::ZERO,
        origin: u.origin,
        function: u.function,
        host: u.host.clone(),
        method: u.method.clone(),
        path: String::new(),
        headers: std::mem::take(&mut u.headers),
        timeout: u.timeout,
    };
    while next < end {
        tokio::time::sleep_until(next).await;
        let (path, think) = (u.next)();
        let now = Instant::now();
        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut r = exchange(&client, gw, &shot, &path, now).await;
        r.at = now - start;
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        out.push(r);
        next = Instant::now() + think;
    }
    out
}

/// One request and its record; latency from `due`.
async fn exchange(
    client: &Client<HttpConnector, Full<Bytes>>,
    gw: SocketAddr,
    shot: &Shot,
    path: &str,
    due: Instant,
) -> Record {
    let sent = Instant::now();
    let mut rec = Record {
        at: shot.at,
        lag: sent.saturating_duration_since(due),
        origin: shot.origin,
        function: shot.function,
        status: 0,
        latency: Duration::ZERO,
        instance: None,
        node: None,
        cold: false,
        error: None,
    };
    let req = match shot.request(gw, path) {
        Ok(r) => r,
        Err(e) => {
            rec.error = Some(e);
            return rec;
        }
    };
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        body.collect().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(parts)
    };
    match tokio::time::timeout(shot.timeout, exchange).await {
        Ok(Ok(parts)) => {
            let h = |n: &str| {
                parts
                    .headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            rec.status = parts.status.as_u16();
            rec.instance = h(SERVED_BY);
            rec.node = h(SERVED_ON);
            rec.cold = parts.headers.contains_key(COLD_START);
        }
        Ok(Err(e)) => rec.error = Some(e),
        Err(_) => {
            rec.error = Some(format!(
                "no response within {:.1} s",
                shot.timeout.as_secs_f64()
            ));
        }
    }
    rec.latency = due.elapsed();
    rec
}

/// `requests.csv`: a row per record, times in seconds and milliseconds. `function` and
/// `origin` name the indices.
pub fn csv(
    records: &[Record],
    function: &dyn Fn(u32) -> String,
    origin: &dyn Fn(u32) -> String,
) -> String {
    use std::fmt::Write as _;
    let mut s =
        String::from("t,function,origin,status,latency_ms,lag_ms,node,instance,cold,error\n");
    for r in records {
        let _ = writeln!(
            s,
            "{:.6},{},{},{},{:.3},{:.3},{},{},{},{}",
            r.at.as_secs_f64(),
            function(r.function),
            origin(r.origin),
            r.status,
            r.latency.as_secs_f64() * 1e3,
            r.lag.as_secs_f64() * 1e3,
            r.node.as_deref().unwrap_or(""),
            r.instance.as_deref().unwrap_or(""),
            r.cold,
            r.error
                .as_deref()
                .map(|e| format!("\"{}\"", e.replace('"', "'")))
                .unwrap_or_default(),
        );
    }
    s
}

#[cfg(test)]
mod tests;
