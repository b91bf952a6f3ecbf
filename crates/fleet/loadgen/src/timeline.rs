//! The fleet's account of a run: its metrics endpoints scraped at a fixed interval, the
//! samples of chosen metrics kept with the time they were read.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::prom::{self, Sample};

/// One sample, when and where it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Seconds since the timeline started.
    pub t: f64,
    /// Which endpoint (the caller's name for it).
    pub source: String,
    /// The sample.
    pub sample: Sample,
}

/// A metrics endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Its name in the timeline (`control`, a node's name).
    pub name: String,
    /// `http://host:port/path`.
    pub url: String,
    /// A bearer token, if the endpoint asks for one.
    pub token: Option<String>,
}

/// A running scraper; [`Timeline::finish`] stops it and hands over what it read.
pub struct Timeline {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(Vec<Point>, Vec<String>)>,
}

/// Starts scraping `endpoints` every `every`, keeping the samples whose name is in
/// `metrics`. An endpoint that does not answer is noted, not fatal: a node may be slow for a
/// moment.
pub fn start(endpoints: Vec<Endpoint>, metrics: &[&str], every: Duration) -> Timeline {
    let keep: Vec<String> = metrics.iter().map(|m| (*m).to_owned()).collect();
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let start = Instant::now();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut points = Vec::new();
        let mut problems = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            let t = start.elapsed().as_secs_f64();
            for Endpoint { name, url, token } in &endpoints {
                match get(
                    &client,
                    url,
                    token.as_deref(),
                    every.max(Duration::from_secs(1)),
                )
                .await
                {
                    Ok(text) => match prom::parse(&text) {
                        Ok(samples) => points.extend(
                            samples
                                .into_iter()
                                .filter(|s| keep.contains(&s.name))
                                .map(|sample| Point {
                                    t,
                                    source: name.clone(),
                                    sample,
                                }),
                        ),
                        Err(e) => problems.push(format!("{t:.0} s: {name}: {e}")),
                    },
                    Err(e) => problems.push(format!("{t:.0} s: {name}: {e}")),
                }
            }
        }
        (points, problems)
    });
    Timeline { stop, task }
}

async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    token: Option<&str>,
    limit: Duration,
) -> Result<String, String> {
    let mut req = http::Request::get(url);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("bad URL {url}: {e}"))?;
    let fetch = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        String::from_utf8(body.to_bytes().to_vec()).map_err(|e| e.to_string())
    };
    tokio::time::timeout(limit, fetch)
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
}

impl Timeline {
    /// Stops scraping; the points read and the problems met (unanswered scrapes).
    pub async fn finish(self) -> (Vec<Point>, Vec<String>) {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// `timeline.csv`: a row per point, labels as `key=value` joined by `;`.
pub fn csv(points: &[Point]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("t,source,metric,labels,value\n");
    for p in points {
        let labels: Vec<String> = p
            .sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            s,
            "{:.3},{},{},{},{}",
            p.t,
            p.source,
            p.sample.name,
            labels.join(";"),
            p.sample.value
        );
    }
    s
}
