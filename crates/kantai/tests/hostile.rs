//! Hostile input at a node's gateway, sent as raw bytes: request-smuggling shapes, obsolete
//! line folding, oversized headers, a client that never finishes its headers, a Host that
//! matches no service. Each is answered (or the connection closed) promptly, never
//! forwarded, and the gateway goes on serving.

use crate::common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{SharedFleet, TestFleet, TestNode, hello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `raw` on a fresh connection and reads until the peer closes or `limit` passes:
/// what came back, and whether the peer closed.
async fn exchange(gw: std::net::SocketAddr, raw: &[u8], limit: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(gw).await.expect("connect");
    // A peer that answers early and closes (413) may refuse the rest: read what it said.
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// One node serving `hello` (one instance kept), its gateway's header-read timeout 1 s: the
/// fleet the hostile-input tests share, each with connections of its own.
fn hostile_fleet() -> &'static SharedFleet {
    static FLEET: OnceLock<SharedFleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        SharedFleet::start(|| async {
            let f =
                TestFleet::one_node_bound_to_this_thread("dataplane:\n  header-read-timeout: 1s\n")
                    .await;
            f.deploy(&hello(
                "hello",
                &[("autoscaling.knative.dev/min-scale", "1")],
                "",
            ))
            .await;
            f
        })
    })
}

const HOST: &str = "hello.default.svc.cluster.local";
const LIMIT: Duration = Duration::from_secs(5);

/// Content-Length and Transfer-Encoding together: the classic smuggling shape. As RFC 9112
/// §6.3 allows, the chunked framing wins (Content-Length is dropped) and the connection is
/// closed after the answer, so the bytes after the body are never read as a second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smuggling_shaped_request_gets_one_answer_and_its_connection_closed() {
    let gw = hostile_fleet().fleet.gateway("node1");
    let smuggle = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    );
    let (text, closed) = exchange(gw, smuggle.as_bytes(), LIMIT).await;
    assert_eq!(statuses(&text), [200], "one answer, not two: {text}");
    assert!(
        closed,
        "the connection stayed open after a smuggling attempt"
    );
    assert!(!text.contains("smuggled"), "{text}");
}

/// Obsolete line folding (a header continued on the next line): 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obsolete_line_folding_gets_400() {
    let gw = hostile_fleet().fleet.gateway("node1");
    let folded = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-A: one\r\n two\r\n\r\n");
    let (text, _) = exchange(gw, folded.as_bytes(), LIMIT).await;
    assert_eq!(statuses(&text), [400], "{text}");
}

/// Oversized headers, one huge or very many: refused (431 or 400), never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_connection_closed() {
    let gw = hostile_fleet().fleet.gateway("node1");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let (text, closed) = exchange(gw, huge.as_bytes(), LIMIT).await;
    let s = statuses(&text);
    assert!(
        closed && (s.is_empty() || s == [431] || s == [400]),
        "{s:?} closed={closed}"
    );
    let mut many = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (text, closed) = exchange(gw, many.as_bytes(), LIMIT).await;
    let s = statuses(&text);
    assert!(
        closed && (s.is_empty() || s == [431] || s == [400]),
        "{s:?} closed={closed}"
    );
}

/// A client that never finishes its headers is cut off after header-read-timeout (1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off_after_the_header_read_timeout() {
    let gw = hostile_fleet().fleet.gateway("node1");
    let t = Instant::now();
    let (_, closed) = exchange(
        gw,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ").as_bytes(),
        LIMIT,
    )
    .await;
    assert!(closed, "a slow client held its connection for {LIMIT:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

/// A Host that matches no service is answered here, never forwarded anywhere: a listener
/// named by that Host sees no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_matching_no_service_gets_404_and_is_never_connected_to() {
    let gw = hostile_fleet().fleet.gateway("node1");
    let bait = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bait_addr = bait.local_addr().expect("addr");
    let (text, _) = exchange(
        gw,
        format!("GET / HTTP/1.1\r\nHost: {bait_addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        LIMIT,
    )
    .await;
    assert_eq!(statuses(&text), [404], "{text}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bait.accept())
            .await
            .is_err(),
        "the gateway connected to the address in the Host header"
    );
}

/// The data port (where nodes forward requests to each other's instances) serves only the
/// fleet's nodes: without the peer token, or with a wrong one, 403 and no instance reached,
/// probes included; with it, the instance answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_port_serves_only_requests_with_the_peer_token() {
    hostile_fleet()
        .run(|f| async move {
            let node: serde_json::Value = f
                .client
                .get(kantai_api::resources::NODES, "", "node1")
                .await
                .expect("node");
            let data = node["spec"]["data"]
                .as_str()
                .expect("data address")
                .to_owned();
            let instance = f.instances().await[0]["metadata"]["name"]
                .as_str()
                .expect("instance")
                .to_owned();
            for token in [None, Some("not-the-token")] {
                let mut headers = vec![("kantai-instance", instance.as_str())];
                if let Some(t) = token {
                    headers.push(("kantai-peer-token", t));
                }
                let (status, body) = f
                    .send("GET", &format!("http://{data}/"), &headers, "")
                    .await;
                assert_eq!(status, 403, "{body}");
                assert!(body.contains("clients use the gateway"), "{body}");
                let (status, _) = f
                    .send("GET", &format!("http://{data}/kantai/ping"), &headers, "")
                    .await;
                assert_eq!(status, 403, "a probe without the peer token");
            }
            let peer_token = std::fs::read_to_string(f.state.path().join("data/peer-token"))
                .expect("peer token");
            let (status, body) = f
                .send(
                    "GET",
                    &format!("http://{data}/"),
                    &[
                        ("kantai-instance", &instance),
                        ("kantai-peer-token", peer_token.trim()),
                    ],
                    "",
                )
                .await;
            assert_eq!(status, 200, "with the peer token: {body}");
        })
        .await;
}

/// A node's admin port (metrics, logs, link changes) wants the API token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_wants_the_api_token() {
    hostile_fleet()
        .run(|f| async move {
            let admin = format!("http://{}/metrics", f.admin("node1"));
            assert_eq!(f.send("GET", &admin, &[], "").await.0, 401);
            let auth = format!("Bearer {}", f.token);
            assert_eq!(
                f.send("GET", &admin, &[("authorization", &auth)], "")
                    .await
                    .0,
                200
            );
        })
        .await;
}

/// After hostile input on other connections, the gateway serves as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_keeps_serving_after_hostile_input() {
    let shared = hostile_fleet();
    let gw = shared.fleet.gateway("node1");
    let folded = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-A: one\r\n two\r\n\r\n");
    let (text, _) = exchange(gw, folded.as_bytes(), LIMIT).await;
    assert_eq!(statuses(&text), [400], "{text}");
    let ok = shared
        .run(|f| async move { f.call("node1", "hello", "/").await })
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

/// One request to the API with the fleet's token; the status and body.
async fn api(f: &TestFleet, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, String) {
    let addr: std::net::SocketAddr = f
        .api
        .trim_start_matches("http://")
        .parse()
        .expect("API address");
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        f.token,
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let (text, _) = exchange(addr, &raw, Duration::from_secs(10)).await;
    let status = statuses(&text).first().copied().unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_hostile_input_with_reasons() {
    let f = TestFleet::one_node().await;
    let services = "/apis/serving.knative.dev/v1/namespaces/default/services";
    let json = "application/json";

    // Not JSON at all.
    let (status, body) = api(&f, "POST", services, json, b"{not json").await;
    assert_eq!(status, 400, "{body}");
    // Nesting far deeper than any manifest: refused, not a crashed parser.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = api(&f, "POST", services, json, deep.as_bytes()).await;
    assert_eq!(status, 400, "{body}");
    // A body declared above the API's limit (3 MiB): 413 before it is read (no byte of it is
    // sent: bytes left unread would make the closing server reset the connection).
    let addr = f.api.trim_start_matches("http://");
    let (text, _) = exchange(
        addr.parse().expect("addr"),
        format!(
            "POST {services} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: {json}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            f.token,
            4 << 20
        )
        .as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&text), [413], "{text}");
    // A name Kubernetes would refuse: 422 with the field named.
    let bad = r#"{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"Bad_Name"},"spec":{"template":{"spec":{"containers":[{"image":"kantai/hello"}]}}}}"#;
    let (status, body) = api(&f, "POST", services, json, bad.as_bytes()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("metadata.name"), "{body}");
    // Without the token: 401, whatever the body.
    let (text, _) = exchange(
        addr.parse().expect("addr"),
        format!("GET {services} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&text), [401], "{text}");

    // Nothing was stored, and the API still answers.
    let (status, body) = api(&f, "GET", services, json, b"").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"items\":[]"), "{body}");
    f.stop();
}

/// A burst at ten times what a revision can serve: everything beyond the hold limit gets
/// 503 with `Retry-After` at once (nothing hangs), the node agent's memory stays bounded,
/// and the fleet serves normally afterwards without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_at_ten_times_capacity_is_shed_and_the_fleet_recovers() {
    let f = std::sync::Arc::new(
        TestFleet::start(
            &[TestNode {
                name: "node1",
                rtt_to_first_ms: 0,
            }],
            "dataplane:\n  hold-limit: 50\n",
        )
        .await,
    );
    // One instance, one request at a time, 100 ms each: 10 requests per second.
    let one = [
        ("autoscaling.knative.dev/min-scale", "1"),
        ("autoscaling.knative.dev/max-scale", "1"),
    ];
    f.deploy(&hello("narrow", &one, "      containerConcurrency: 1\n"))
        .await;
    let state = f.state.path().display().to_string();
    let agents = common::node_agent_pids(&state);
    assert_eq!(agents.len(), 1, "{agents:?}");
    let agent = agents[0];
    let idle = common::rss_kb(agent);

    // 100 requests per second for 3 s, open-loop.
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..300u64 {
        tokio::time::sleep_until(start + Duration::from_millis(i * 10)).await;
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let a = tokio::time::timeout(
                Duration::from_secs(30),
                f.call("node1", "narrow", "/sleep/100"),
            )
            .await
            .expect("a request hung");
            (
                a.status,
                a.headers.get("retry-after").is_some(),
                t.elapsed(),
            )
        }));
    }
    let mut peak = idle;
    let mut answers = Vec::new();
    for t in tasks {
        peak = peak.max(common::rss_kb(agent));
        answers.push(t.await.expect("task"));
    }
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let shed: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert_eq!(
        ok + shed.len(),
        answers.len(),
        "only 200 and 503: {answers:?}"
    );
    // About 3 s × 10/s served while the burst lasts, plus the 50 held; the rest shed at once.
    assert!(
        shed.len() >= 150,
        "{} shed of {}",
        shed.len(),
        answers.len()
    );
    assert!(shed.iter().all(|a| a.1), "a 503 without Retry-After");
    assert!(
        shed.iter().all(|a| a.2 < Duration::from_secs(1)),
        "a 503 took its time"
    );
    println!(
        "node agent RSS: {:.1} MB idle, {:.1} MB at most during a 10x burst",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    assert!(
        peak < idle + 64 * 1024,
        "the agent grew from {idle} KiB to {peak} KiB"
    );
    // Recovered: the same agent (no restart) answers at once.
    let a = f.call("node1", "narrow", "/sleep/1").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.elapsed < Duration::from_millis(500), "{:?}", a.elapsed);
    assert_eq!(common::node_agent_pids(&state), [agent]);
    std::sync::Arc::try_unwrap(f)
        .ok()
        .expect("sole owner")
        .stop();
}
