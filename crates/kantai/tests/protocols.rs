//! Every protocol Knative carries, end to end, with real clients: gRPC (tonic) unary and
//! server-streaming calls over h2c, HTTP/2 by prior knowledge, WebSockets
//! (tokio-tungstenite), server-sent events and streamed responses (`curl -N`), streamed
//! uploads and their limit, and the three timeouts. Each request enters node2, whose gateway
//! has no instance of the revision (`pack` puts it on node1), so it crosses the link to
//! node1's data port; and each service starts at zero (initial scale 0), so its first
//! request is held and released across a cold start. The tests share one two-node fleet,
//! each on a service of its own, so that every cold start is its own.

use crate::common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{SharedFleet, TestFleet, TestNode, wait_for};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// node2 4 ms from node1: requests pay the emulated link.
const NODES: [TestNode; 2] = [
    TestNode {
        name: "node1",
        rtt_to_first_ms: 0,
    },
    TestNode {
        name: "node2",
        rtt_to_first_ms: 4,
    },
];

/// Serving headers on (to see the node and the cold start), a 1 MiB body limit, and
/// initial-scale 0 allowed.
const CONFIG: &str = "dataplane:\n  serving-headers: true\n  max-request-body-bytes: 1048576\nautoscaler:\n  allow-zero-initial-scale: true\n";

/// The body limit of [`CONFIG`].
const LIMIT: usize = 1 << 20;

fn fleet() -> &'static SharedFleet {
    static FLEET: OnceLock<SharedFleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        SharedFleet::start(|| TestFleet::nodes_bound_to_this_thread(&NODES, CONFIG))
    })
}

/// A Service running `kantai fn echo` at zero, placed by `pack` (on node1), its port named
/// `h2c` or not, with more spec lines.
fn echo(name: &str, h2c: bool, spec_extra: &str) -> String {
    let port = if h2c { "h2c" } else { "http1" };
    format!(
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  template:
    metadata:
      annotations:
        kantai.dev/placement: pack
        autoscaling.knative.dev/initial-scale: \"0\"
    spec:
{spec_extra}      containers:
        - image: kantai/echo
          ports: [{{name: {port}, containerPort: 8080}}]
"
    )
}

/// The host a service is reached under.
fn host(service: &str) -> String {
    format!("{service}.default.svc.cluster.local")
}

/// A response header as text.
fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

mod grpc {
    //! The messages of `kantai.test.Echo`, as `kantai fn echo` encodes them by hand.

    use tonic::codegen::http::uri::PathAndQuery;
    use tonic::transport::{Channel, Endpoint};
    use tonic_prost::ProstCodec;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoRequest {
        #[prost(string, tag = "1")]
        pub message: String,
        #[prost(uint32, tag = "2")]
        pub count: u32,
        #[prost(uint32, tag = "3")]
        pub pause_ms: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoReply {
        #[prost(string, tag = "1")]
        pub message: String,
        #[prost(uint32, tag = "2")]
        pub index: u32,
    }

    /// A gRPC client of `kantai.test.Echo` through the gateway at `gw`, for `host`.
    pub async fn client(gw: std::net::SocketAddr, host: &str) -> tonic::client::Grpc<Channel> {
        let channel = Endpoint::from_shared(format!("http://{gw}"))
            .expect("endpoint")
            .origin(format!("http://{host}").parse().expect("origin"))
            .connect()
            .await
            .expect("connect to the gateway");
        tonic::client::Grpc::new(channel)
    }

    pub async fn say(
        c: &mut tonic::client::Grpc<Channel>,
        message: &str,
    ) -> Result<tonic::Response<EchoReply>, tonic::Status> {
        c.ready().await.expect("ready");
        c.unary(
            tonic::Request::new(EchoRequest {
                message: message.into(),
                ..Default::default()
            }),
            PathAndQuery::from_static("/kantai.test.Echo/Say"),
            ProstCodec::default(),
        )
        .await
    }

    /// A call of a method the service does not have.
    pub async fn missing(c: &mut tonic::client::Grpc<Channel>) -> tonic::Status {
        c.ready().await.expect("ready");
        c.unary::<_, EchoReply, _>(
            tonic::Request::new(EchoRequest::default()),
            PathAndQuery::from_static("/kantai.test.Echo/Nope"),
            ProstCodec::default(),
        )
        .await
        .expect_err("no such method")
    }

    pub async fn count(
        c: &mut tonic::client::Grpc<Channel>,
        message: &str,
        count: u32,
        pause_ms: u32,
    ) -> Result<tonic::Response<tonic::codec::Streaming<EchoReply>>, tonic::Status> {
        c.ready().await.expect("ready");
        c.server_streaming(
            tonic::Request::new(EchoRequest {
                message: message.into(),
                count,
                pause_ms,
            }),
            PathAndQuery::from_static("/kantai.test.Echo/Count"),
            ProstCodec::default(),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_grpc_call_is_answered_across_the_link_and_a_cold_start() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("grpc-unary", true, "")).await;
            let mut c = grpc::client(f.gateway("node2"), &host("grpc-unary")).await;
            let r = grpc::say(&mut c, "konnichiwa").await.expect("Say");
            let md = r.metadata().clone().into_headers();
            assert_eq!(
                (
                    r.into_inner().message.as_str(),
                    header(&md, "kantai-served-on"),
                    header(&md, "kantai-cold-start"),
                ),
                ("konnichiwa", Some("node1"), Some("true"))
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_streaming_grpc_call_gets_every_message_and_its_ok_status() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("grpc-stream", true, "")).await;
            let mut c = grpc::client(f.gateway("node2"), &host("grpc-stream")).await;
            let mut stream = grpc::count(&mut c, "hi", 5, 20)
                .await
                .expect("Count")
                .into_inner();
            let mut got = Vec::new();
            // The stream ends cleanly only with the status trailer (grpc-status: 0): tonic
            // reports an error for a stream cut without it.
            while let Some(m) = stream.message().await.expect("a message or a clean end") {
                got.push((m.message, m.index));
            }
            let want: Vec<(String, u32)> = (0..5).map(|i| ("hi".to_owned(), i)).collect();
            assert_eq!(got, want);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_error_status_reaches_the_client_with_its_message() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("grpc-status", true, "")).await;
            let mut c = grpc::client(f.gateway("node2"), &host("grpc-status")).await;
            let status = grpc::missing(&mut c).await;
            assert_eq!(
                (status.code(), status.message()),
                (
                    tonic::Code::Unimplemented,
                    "no method Nope in kantai.test.Echo"
                )
            );
        })
        .await;
}

/// `GET /version` over HTTP/2 by prior knowledge through node2's gateway: what the instance
/// saw.
async fn version_over_h2(f: &TestFleet, service: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(f.gateway("node2"))
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .expect("an HTTP/2 handshake with the gateway");
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/version", host(service)))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .expect("an answer within 30 s")
        .expect("response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_by_prior_knowledge_reaches_an_h2c_instance_as_http2() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("h2", true, "")).await;
            assert_eq!(version_over_h2(f, "h2").await, "HTTP/2.0");
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_reaches_an_http1_instance_as_http1() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("h1", false, "")).await;
            assert_eq!(version_over_h2(f, "h1").await, "HTTP/1.1");
        })
        .await;
}

/// A WebSocket to `service`'s `/ws` through node2's gateway, and the 101's headers.
async fn websocket(
    f: &TestFleet,
    service: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    http::HeaderMap,
) {
    let tcp = tokio::net::TcpStream::connect(f.gateway("node2"))
        .await
        .expect("connect");
    let req = format!("ws://{}/ws", host(service))
        .into_client_request()
        .expect("request");
    let (ws, resp) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::client_async(req, tcp),
    )
    .await
    .expect("a handshake within 30 s")
    .expect("the WebSocket handshake");
    (ws, resp.headers().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echoes_across_the_link_after_a_cold_start() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("ws", false, "")).await;
            let (mut ws, headers) = websocket(f, "ws").await;
            let mut echoed = Vec::new();
            for m in [
                Message::text("hello"),
                Message::binary(vec![0u8, 1, 2, 255]),
            ] {
                ws.send(m.clone()).await.expect("send");
                echoed.push(
                    tokio::time::timeout(Duration::from_secs(10), ws.next())
                        .await
                        .expect("an echo within 10 s")
                        .expect("open")
                        .expect("a message")
                        == m,
                );
            }
            ws.close(None).await.expect("close");
            assert_eq!(
                (
                    echoed,
                    header(&headers, "kantai-served-on"),
                    header(&headers, "kantai-cold-start")
                ),
                (vec![true, true], Some("node1"), Some("true"))
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_pays_the_emulated_link_both_ways() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("wslink", false, "")).await;
            let (mut ws, _) = websocket(f, "wslink").await;
            let mut fastest = Duration::MAX;
            for i in 0..5 {
                let sent = Instant::now();
                ws.send(Message::text(format!("m{i}"))).await.expect("send");
                tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .expect("an echo within 10 s")
                    .expect("open")
                    .expect("a message");
                fastest = fastest.min(sent.elapsed());
            }
            ws.close(None).await.expect("close");
            // node2 to node1 is a 4 ms round trip: no echo can come back sooner.
            assert!(
                fastest >= Duration::from_millis(4),
                "an echo came back in {fastest:?}, faster than the link"
            );
        })
        .await;
}

/// node2's `kantai_requests_in_flight` for `revision` (0 when not reported).
async fn in_flight(f: &TestFleet, revision: &str) -> Option<f64> {
    let text = f.fetch(&f.admin("node2").to_string(), "/metrics").await?;
    let needle = format!("revision=\"{revision}\"");
    Some(
        text.lines()
            .filter(|l| l.starts_with("kantai_requests_in_flight{") && l.contains(&needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_counts_as_one_request_in_flight_until_it_closes() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("wsflight", false, "")).await;
            let (mut ws, _) = websocket(f, "wsflight").await;
            ws.send(Message::text("ping")).await.expect("send");
            let _ = ws.next().await;
            let open = wait_for(
                Duration::from_secs(10),
                "the open socket counted in flight",
                || async { in_flight(f, "wsflight-00001").await.filter(|n| *n == 1.0) },
            )
            .await;
            ws.close(None).await.expect("close");
            while ws.next().await.is_some() {}
            // The connection itself ends with the client's side.
            drop(ws);
            let closed = wait_for(
                Duration::from_secs(10),
                "the closed socket no longer in flight",
                || async { in_flight(f, "wsflight-00001").await.filter(|n| *n == 0.0) },
            )
            .await;
            assert_eq!((open, closed), (1.0, 0.0));
        })
        .await;
}

/// `curl -N` of `path` on `service` through node2: each line of the body with the time it
/// arrived, since the first.
async fn curl_lines(f: &TestFleet, service: &str, path: &str, h2: bool) -> Vec<(String, Duration)> {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sSN", "--max-time", "30", "-H"])
        .arg(format!("Host: {}", host(service)))
        .arg(format!("http://{}{path}", f.gateway("node2")))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    if h2 {
        cmd.arg("--http2-prior-knowledge");
    }
    let mut child = cmd.spawn().expect("curl (Debian's curl package)");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut out = Vec::new();
    let mut first = None;
    while let Some(line) = lines.next_line().await.expect("curl's output") {
        if line.is_empty() {
            continue;
        }
        let at = *first.get_or_insert_with(Instant::now);
        out.push((line, at.elapsed()));
    }
    let status = child.wait().await.expect("curl");
    assert!(status.success(), "curl failed: {status}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_arrive_as_they_are_sent() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("sse", false, "")).await;
            let events = curl_lines(f, "sse", "/sse?n=4&pause_ms=300", false).await;
            let texts: Vec<&str> = events.iter().map(|(l, _)| l.as_str()).collect();
            assert_eq!(texts, ["data: 0", "data: 1", "data: 2", "data: 3"]);
            // Sent 300 ms apart: a buffering proxy would deliver them together at the end.
            let spread = events[3].1;
            assert!(
                spread >= Duration::from_millis(700),
                "the events arrived within {spread:?} of each other: buffered"
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_over_http2_arrives_chunk_by_chunk() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("stream", true, "")).await;
            let chunks = curl_lines(f, "stream", "/stream?n=3&pause_ms=400", true).await;
            let texts: Vec<&str> = chunks.iter().map(|(l, _)| l.as_str()).collect();
            assert_eq!(texts, ["chunk 0", "chunk 1", "chunk 2"]);
            let spread = chunks[2].1;
            assert!(
                spread >= Duration::from_millis(600),
                "the chunks arrived within {spread:?} of each other: buffered"
            );
        })
        .await;
}

/// POSTs `chunks` chunks of 64 KiB to `service`'s `/upload` through node2 as a stream with no
/// length (chunked): the status and body.
async fn upload(f: &TestFleet, service: &str, chunks: usize) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(f.gateway("node2"))
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(2);
    tokio::spawn(async move {
        for _ in 0..chunks {
            if tx
                .send_data(Bytes::from(vec![b'k'; 64 << 10]))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let req = http::Request::post("/upload")
        .header("host", host(service))
        .body(body)
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .expect("an answer within 30 s")
        .expect("response");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_reaches_the_instance_whole() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("upload", false, "")).await;
            // 768 KiB, under the limit.
            assert_eq!(
                upload(f, "upload", 12).await,
                (200, (12 * (64 << 10)).to_string())
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_over_the_limit_is_413_naming_the_limit() {
    fleet()
        .run(|f| async move {
            f.deploy(&echo("upload-big", false, "")).await;
            // 2 MiB with no Content-Length: the limit is found mid-stream.
            let (status, body) = upload(f, "upload-big", 32).await;
            assert_eq!(status, 413, "{body}");
            assert!(body.contains(&format!("limit of {LIMIT} bytes")), "{body}");
        })
        .await;
}

/// A GET through node2's gateway, read frame by frame: the status, the text received and
/// whether the body ended in an error.
async fn get_streamed(f: &TestFleet, service: &str, path: &str) -> (u16, String, bool) {
    let tcp = tokio::net::TcpStream::connect(f.gateway("node2"))
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host(service))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .expect("an answer within 30 s")
        .expect("response");
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut text = String::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), body.frame()).await {
            Err(_) => panic!("the body neither went on nor ended within 30 s"),
            Ok(None) => return (status, text, false),
            Ok(Some(Err(_))) => return (status, text, true),
            Ok(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    text.push_str(&String::from_utf8_lossy(d));
                }
            }
        }
    }
}

/// One request, so that the service has an instance: until a response starts, the idle
/// timeout counts from the request, cold start included.
async fn warm(f: &TestFleet, service: &str) {
    let a = f.call("node2", service, "/version").await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// The instance starts answering after 3 s (its cold start comes first).
const LATE: &str = "/stream?n=1&delay_ms=3000";

/// Deploys `name` with `spec`, asks it for a response that starts only after 3 s, and
/// expects the 504 to name `setting`, the timeout that fired.
async fn answers_504_naming(name: &'static str, spec: &'static str, setting: &'static str) {
    fleet()
        .run(move |f| async move {
            f.deploy(&echo(name, false, spec)).await;
            let (status, body, _) = get_streamed(f, name, LATE).await;
            assert_eq!(status, 504, "{body}");
            assert!(body.contains(&format!("({setting})")), "{body}");
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_not_started_within_timeout_seconds_is_504_naming_it() {
    answers_504_naming("t-total", "      timeoutSeconds: 1\n", "timeoutSeconds").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_not_started_within_response_start_timeout_is_504_naming_it() {
    let spec = "      timeoutSeconds: 20\n      responseStartTimeoutSeconds: 1\n";
    answers_504_naming("t-start", spec, "responseStartTimeoutSeconds").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_before_the_first_byte_past_idle_timeout_is_504_naming_it() {
    let spec = "      timeoutSeconds: 20\n      idleTimeoutSeconds: 1\n";
    answers_504_naming("t-idle", spec, "idleTimeoutSeconds").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_silent_past_idle_timeout_is_cut_after_what_it_sent() {
    fleet()
        .run(|f| async move {
            let spec = "      timeoutSeconds: 20\n      idleTimeoutSeconds: 1\n";
            f.deploy(&echo("t-quiet", false, spec)).await;
            warm(f, "t-quiet").await;
            let got = get_streamed(f, "t-quiet", "/stream?n=2&pause_ms=3000").await;
            assert_eq!(got, (200, "chunk 0\n".to_owned(), true));
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_its_idle_timeout_lives_while_it_keeps_sending() {
    fleet()
        .run(|f| async move {
            let spec = "      timeoutSeconds: 20\n      idleTimeoutSeconds: 1\n";
            f.deploy(&echo("t-long", false, spec)).await;
            warm(f, "t-long").await;
            // 2.4 s in all, never 1 s silent.
            let got = get_streamed(f, "t-long", "/stream?n=7&pause_ms=400").await;
            let want: String = (0..7).map(|i| format!("chunk {i}\n")).collect();
            assert_eq!(got, (200, want, false));
        })
        .await;
}
