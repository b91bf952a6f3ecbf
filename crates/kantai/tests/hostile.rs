//! Hostile input at a node's gateway, sent as raw bytes: request-smuggling shapes, obsolete
//! line folding, oversized headers, a client that never finishes its headers, a Host that
//! matches no service. Each is answered (or the connection closed) promptly, never
//! forwarded, and the gateway goes on serving.

mod common;

use std::time::{Duration, Instant};

use common::{TestFleet, TestNode, hello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `raw` on a fresh connection and reads until the peer closes or `limit` passes:
/// what came back, and whether the peer closed.
async fn exchange(gw: std::net::SocketAddr, raw: &[u8], limit: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(gw).await.expect("connect");
    s.write_all(raw).await.expect("write");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_hostile_requests_and_keeps_serving() {
    let f = TestFleet::start(
        &[TestNode {
            name: "node1",
            rtt_to_first_ms: 0,
        }],
        "dataplane:\n  header-read-timeout: 1s\n",
    )
    .await;
    f.deploy(&hello(
        "hello",
        &[("autoscaling.knative.dev/min-scale", "1")],
        "",
    ))
    .await;
    let gw = f.gateway("node1");
    let host = "hello.default.svc.cluster.local";
    let limit = Duration::from_secs(5);

    // Content-Length and Transfer-Encoding together: the classic smuggling shape. As RFC
    // 9112 §6.3 allows, the chunked framing wins (Content-Length is dropped) and the
    // connection is closed after the answer, so the bytes after the body are never read as
    // a second request.
    let smuggle = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n"
    );
    let (text, closed) = exchange(gw, smuggle.as_bytes(), limit).await;
    assert_eq!(statuses(&text), [200], "one answer, not two: {text}");
    assert!(
        closed,
        "the connection stayed open after a smuggling attempt"
    );
    assert!(!text.contains("smuggled"), "{text}");

    // Obsolete line folding (a header continued on the next line): 400.
    let folded = format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-A: one\r\n two\r\n\r\n");
    let (text, _) = exchange(gw, folded.as_bytes(), limit).await;
    assert_eq!(statuses(&text), [400], "{text}");

    // Oversized headers: refused (431 or 400), never a hang.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let (text, closed) = exchange(gw, huge.as_bytes(), limit).await;
    let s = statuses(&text);
    assert!(
        closed && (s.is_empty() || s == [431] || s == [400]),
        "{s:?} closed={closed}"
    );
    let mut many = format!("GET / HTTP/1.1\r\nHost: {host}\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (text, closed) = exchange(gw, many.as_bytes(), limit).await;
    let s = statuses(&text);
    assert!(
        closed && (s.is_empty() || s == [431] || s == [400]),
        "{s:?} closed={closed}"
    );

    // A client that never finishes its headers is cut off after header-read-timeout (1 s).
    let t = Instant::now();
    let (_, closed) = exchange(
        gw,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes(),
        limit,
    )
    .await;
    assert!(closed, "a slow client held its connection for {limit:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    // A Host that matches no service is answered here, never forwarded anywhere: a listener
    // named by that Host sees no connection.
    let bait = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bait_addr = bait.local_addr().expect("addr");
    let (text, _) = exchange(
        gw,
        format!("GET / HTTP/1.1\r\nHost: {bait_addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        limit,
    )
    .await;
    assert_eq!(statuses(&text), [404], "{text}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bait.accept())
            .await
            .is_err(),
        "the gateway connected to the address in the Host header"
    );

    // Through all of it, the gateway serves.
    let ok = f.call("node1", "hello", "/").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    f.stop();
}
