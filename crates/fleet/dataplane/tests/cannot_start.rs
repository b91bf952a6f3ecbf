//! A revision that cannot start, through a real gateway on loopback: the requests held for
//! it and new ones get a 503 that says why, counted like the gateway's other answers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kantai_dataplane::{DataPlane, Limits, Listeners, RouteSpec};
use tokio::net::TcpListener;

const WHY: &str =
    "image 127.0.0.1:5055/fn/nope:v1: not found in registry 127.0.0.1:5055 (manifest unknown)";

/// A data plane serving on loopback, routing `hello.default.example.com` to `hello-00001`
/// (which has no instance), and the gateway's address.
async fn gateway() -> (
    DataPlane,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let (dp, _pokes) = DataPlane::new("node1", Limits::default(), 1);
    dp.set_routes(
        "example.com",
        vec![RouteSpec {
            namespace: "default".into(),
            name: "hello".into(),
            traffic: vec![("hello-00001".into(), 100, None)],
            unavailable: None,
        }],
    );
    let gw = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let data = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = gw.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(kantai_dataplane::serve(
        dp.clone(),
        Listeners { gateway: gw, data },
        async {
            let _ = stopped.await;
        },
    ));
    (dp, addr, stop)
}

/// GETs `/` of the service: status, and body.
async fn get(addr: std::net::SocketAddr) -> (u16, String) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = http::Request::get(format!("http://{addr}/"))
        .header(http::header::HOST, "hello.default.example.com")
        .body(Empty::new())
        .expect("request");
    let resp = client.request(req).await.expect("the gateway answers");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Waits until `cond` holds (at most 10 s).
async fn until(cond: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition within 10 s");
}

fn expected() -> String {
    format!("kantai: revision hello-00001 cannot start: {WHY}\n")
}

#[tokio::test]
async fn a_held_request_gets_503_with_the_reason_when_the_revision_cannot_start() {
    let (dp, addr, _stop) = gateway().await;
    let held = tokio::spawn(get(addr));
    let state = dp.revision("default", "hello-00001");
    until(|| state.held() == 1).await;
    dp.set_revision_failure("default", "hello-00001", Some(WHY.into()));
    let answered = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("answered at once, not at the request's timeout")
        .expect("task");
    assert_eq!(answered, (503, expected()));
}

#[tokio::test]
async fn a_new_request_for_a_revision_that_cannot_start_gets_503_at_once() {
    let (dp, addr, _stop) = gateway().await;
    dp.set_revision_failure("default", "hello-00001", Some(WHY.into()));
    let answered = tokio::time::timeout(Duration::from_secs(5), get(addr))
        .await
        .expect("answered at once");
    assert_eq!(answered, (503, expected()));
}

#[tokio::test]
async fn a_503_for_a_revision_that_cannot_start_is_counted_as_a_503() {
    let (dp, addr, _stop) = gateway().await;
    dp.set_revision_failure("default", "hello-00001", Some(WHY.into()));
    get(addr).await;
    get(addr).await;
    let text = dp.metrics_text();
    let line = text
        .lines()
        .find(|l| l.starts_with("kantai_requests_total{") && l.contains("code=\"503\""))
        .unwrap_or_else(|| panic!("no 503 counted:\n{text}"));
    assert!(line.contains("revision=\"hello-00001\""), "{line}");
    assert!(line.ends_with(" 2"), "{line}");
}
