use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::*;

/// A server on loopback: the first request waits `first_delay`; every answer names an
/// instance and node, and `/cold` answers are marked cold. It serves until the test ends.
async fn server(first_delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicU32::new(0));
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                            tokio::time::sleep(first_delay).await;
                        }
                        let host = req
                            .headers()
                            .get(HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let mut r = http::Response::builder()
                            .header(SERVED_BY, format!("{host}-inst"))
                            .header(SERVED_ON, "node7");
                        if req.uri().path() == "/cold" {
                            r = r.header(COLD_START, "true");
                        }
                        Ok::<_, std::convert::Infallible>(
                            r.body(Full::new(Bytes::from_static(b"ok")))
                                .expect("response"),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn shot(ms: u64, path: &str) -> Shot {
    Shot {
        at: Duration::from_millis(ms),
        origin: 0,
        function: 3,
        host: Arc::from("hello.default.example"),
        method: http::Method::GET,
        path: path.to_owned(),
        headers: Vec::new(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn latency_counts_from_the_planned_time_when_the_generator_falls_behind() {
    let gw = server(Duration::from_millis(300)).await;
    // One request in flight at most: while the first one stalls, the others cannot be sent.
    let opts = Options {
        max_in_flight: 1,
        ..Options::default()
    };
    let shots: Vec<Shot> = (0..5).map(|i| shot(i * 10, "/")).collect();
    let recs = fire(shots, Vec::new(), &[gw], &opts, &mut |_| {})
        .await
        .expect("run");
    assert_eq!(recs.len(), 5);
    assert!(recs.iter().all(|r| r.status == 200), "{recs:?}");
    assert!(recs[0].latency >= Duration::from_millis(300));
    // The second was planned at 10 ms and sent after the first came back (~300 ms): its
    // latency includes the wait, as a user's would.
    assert!(recs[1].lag >= Duration::from_millis(250), "{:?}", recs[1]);
    assert!(
        recs[1].latency >= Duration::from_millis(250),
        "{:?}",
        recs[1]
    );
    assert_eq!(recs[1].at, Duration::from_millis(10));
}

#[tokio::test]
async fn records_name_the_serving_instance_and_node_and_cold_starts() {
    let gw = server(Duration::ZERO).await;
    let recs = fire(
        vec![shot(0, "/"), shot(5, "/cold")],
        Vec::new(),
        &[gw],
        &Options::default(),
        &mut |_| {},
    )
    .await
    .expect("run");
    assert_eq!(
        recs[0].instance.as_deref(),
        Some("hello.default.example-inst")
    );
    assert_eq!(recs[0].node.as_deref(), Some("node7"));
    assert!(!recs[0].cold && recs[1].cold);
    assert_eq!(recs[0].function, 3);
    let csv = csv(&recs, &|f| format!("f{f}"), &|o| format!("n{o}"));
    assert!(
        csv.lines().nth(1).expect("row").contains(",f3,n0,200,"),
        "{csv}"
    );
}

#[tokio::test]
async fn a_gateway_that_does_not_answer_is_recorded_not_fatal() {
    // A port nobody listens on: bind, note it, close.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let recs = fire(
        vec![shot(0, "/")],
        Vec::new(),
        &[addr],
        &Options::default(),
        &mut |_| {},
    )
    .await
    .expect("run");
    assert_eq!(recs[0].status, 0);
    assert!(recs[0].error.is_some());
    let err = fire(
        vec![Shot {
            origin: 2,
            ..shot(0, "/")
        }],
        Vec::new(),
        &[addr],
        &Options::default(),
        &mut |_| {},
    )
    .await
    .expect_err("no such gateway");
    assert!(err.to_string().contains("gateway 2"), "{err}");
}

#[tokio::test]
async fn shots_past_the_deadline_are_recorded_as_not_sent() {
    let gw = server(Duration::ZERO).await;
    let opts = Options {
        deadline: Duration::from_millis(50),
        ..Options::default()
    };
    let recs = fire(
        vec![shot(0, "/"), shot(10_000, "/")],
        Vec::new(),
        &[gw],
        &opts,
        &mut |_| {},
    )
    .await
    .expect("run");
    assert_eq!(recs[0].status, 200);
    assert_eq!(recs[1].status, 0);
    assert!(recs[1].error.as_deref().unwrap_or("").contains("deadline"));
}

#[tokio::test]
async fn closed_loop_users_wait_for_their_answer_then_think() {
    // The first request the server sees takes 300 ms: its user sends nothing meanwhile.
    let gw = server(Duration::from_millis(300)).await;
    let user = |first: u64| User {
        origin: 0,
        function: 1,
        first: Duration::from_millis(first),
        end: Duration::from_millis(600),
        host: Arc::from("hello.default.example"),
        method: http::Method::GET,
        headers: Vec::new(),
        timeout: Duration::from_secs(5),
        next: Box::new(|| ("/".to_owned(), Duration::from_millis(100))),
    };
    let mut heard = Vec::new();
    let recs = fire(
        Vec::new(),
        vec![user(0), user(50)],
        &[gw],
        &Options::default(),
        &mut |p| heard.push(p.sent),
    )
    .await
    .expect("run");
    assert!(
        recs.iter().all(|r| r.status == 200 && r.function == 1),
        "{recs:?}"
    );
    assert!(recs.windows(2).all(|w| w[0].at <= w[1].at));
    // The slow user: 0 ms (300 ms answer), thinks 100 ms, then sends at ~400 and ~500 ms.
    // The other: every ~100 ms from 50 ms until 600 ms, about six requests.
    let slow: Vec<_> = recs
        .iter()
        .filter(|r| r.latency >= Duration::from_millis(250))
        .collect();
    assert_eq!(slow.len(), 1, "{recs:?}");
    assert!(
        recs.len() >= 6 && recs.len() <= 10,
        "{} requests: {recs:?}",
        recs.len()
    );
    // Nothing sent at or after the end.
    assert!(recs.iter().all(|r| r.at < Duration::from_millis(600)));
    assert_eq!(heard.last().copied(), Some(recs.len() as u64));
}

#[test]
fn prometheus_text_is_read_with_its_labels() {
    let text = "# HELP kantai_node_instances Instances\n# TYPE kantai_node_instances gauge\n\
                kantai_node_instances{namespace=\"default\",revision=\"hello-00001\",state=\"ready\"} 2\n\
                kantai_fleet_rtt_seconds{from=\"node1\",to=\"a \\\"b\\\"\"} 0.05\n\
                kantai_requests_total 7\n# EOF\n";
    let s = prom::parse(text).expect("parses");
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].label("state"), Some("ready"));
    assert_eq!(s[0].value, 2.0);
    assert_eq!(s[1].label("to"), Some("a \"b\""));
    assert_eq!(s[2].name, "kantai_requests_total");
    let err = prom::parse("ok 1\nbroken{a=\"x\n").expect_err("bad line");
    assert!(err.starts_with("line 2"), "{err}");
}

#[tokio::test]
async fn the_timeline_keeps_the_chosen_metrics_over_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(AtomicU32::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    // The token is sent: without it, no metrics.
                    let authorized = req
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .is_some_and(|v| v == "Bearer secret");
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let mut r = http::Response::new(Full::new(Bytes::from(format!(
                            "kept{{node=\"a\"}} {n}\nignored 1\n"
                        ))));
                        if !authorized {
                            *r.status_mut() = http::StatusCode::UNAUTHORIZED;
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let t = timeline::start(
        vec![timeline::Endpoint {
            name: "cp".into(),
            url: format!("http://{addr}/metrics"),
            token: Some("secret".into()),
        }],
        &["kept"],
        Duration::from_millis(20),
    );
    // Wait for three scrapes, bounded.
    for _ in 0..200 {
        if served.load(Ordering::SeqCst) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (points, problems) = t.finish().await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(points.len() >= 3, "{points:?}");
    assert!(
        points
            .iter()
            .all(|p| p.sample.name == "kept" && p.source == "cp")
    );
    assert!(
        points
            .windows(2)
            .all(|w| w[0].t <= w[1].t && w[0].sample.value < w[1].sample.value)
    );
    assert!(timeline::csv(&points).contains(",cp,kept,node=a,"));
}
