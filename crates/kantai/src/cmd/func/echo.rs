//! `kantai fn echo`: the function the protocol tests and benchmarks run, over HTTP/1.1 and
//! h2c on one port (told apart by HTTP/2's preface):
//!
//! - `GET /version`: the HTTP version the request arrived in (`HTTP/1.1`, `HTTP/2.0`);
//! - `POST /upload`: reads the body as it streams and answers how many bytes it had;
//! - `GET /stream?n=N&pause_ms=P&delay_ms=D`: after `D` ms, `N` lines `chunk I` with `P` ms
//!   between them; `GET /sse?n=N&pause_ms=P`: the same as server-sent events (`data: I`);
//! - `GET /ws`: a WebSocket that echoes every text and binary message;
//! - gRPC `kantai.test.Echo`: `Say` (unary) answers the request's message, `Count` (server
//!   streaming) answers it `count` times, `pause_ms` apart, each with its index. Messages
//!   are `EchoRequest {string message = 1; uint32 count = 2; uint32 pause_ms = 3}` and
//!   `EchoReply {string message = 1; uint32 index = 2}`, encoded here by hand.

use std::convert::Infallible;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::channel::{Channel, Sender};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

type EchoBody = UnsyncBoxBody<Bytes, Infallible>;

/// The most chunks, replies or milliseconds of pause a request may ask for: every stream
/// ends.
const MAX_COUNT: u64 = 10_000;
const MAX_PAUSE_MS: u64 = 60_000;

/// The gRPC service's path prefix.
const SERVICE: &str = "/kantai.test.Echo/";

/// Serves one connection, HTTP/1.1 (with upgrades) or HTTP/2.
pub async fn connection(stream: TcpStream) {
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service_fn(serve))
        .await;
}

async fn serve(req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = Query::of(req.uri().query().unwrap_or(""));
    Ok(match path.as_str() {
        "/version" => text(StatusCode::OK, format!("{:?}\n", req.version())),
        "/upload" => {
            let mut body = req.into_body();
            let mut bytes = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => bytes += f.data_ref().map_or(0, Bytes::len),
                    Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("{e}\n"))),
                }
            }
            text(StatusCode::OK, format!("{bytes}\n"))
        }
        "/stream" | "/sse" => {
            let sse = path == "/sse";
            tokio::time::sleep(query.ms("delay_ms")).await;
            let (n, pause) = (query.count("n", 3), query.ms("pause_ms"));
            let (mut tx, body) = Channel::<Bytes, Infallible>::new(1);
            tokio::spawn(async move {
                for i in 0..n {
                    if i > 0 {
                        tokio::time::sleep(pause).await;
                    }
                    let chunk = if sse {
                        format!("data: {i}\n\n")
                    } else {
                        format!("chunk {i}\n")
                    };
                    if tx.send_data(Bytes::from(chunk)).await.is_err() {
                        return;
                    }
                }
            });
            let kind = if sse {
                "text/event-stream"
            } else {
                "text/plain; charset=utf-8"
            };
            let mut r = Response::new(body.boxed_unsync());
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        "/ws" => websocket(req),
        p if p.starts_with(SERVICE) => grpc(req).await,
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    })
}

fn text(status: StatusCode, body: String) -> Response<EchoBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The numbers of a query string.
struct Query(Vec<(String, u64)>);

impl Query {
    fn of(q: &str) -> Query {
        Query(
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn count(&self, key: &str, default: u64) -> u64 {
        self.get(key).unwrap_or(default).min(MAX_COUNT)
    }

    fn ms(&self, key: &str) -> Duration {
        Duration::from_millis(self.get(key).unwrap_or(0).min(MAX_PAUSE_MS))
    }
}

/// Accepts a WebSocket (RFC 6455's handshake) and echoes its messages until it closes.
fn websocket(mut req: Request<Incoming>) -> Response<EchoBody> {
    let h = req.headers();
    let upgrade = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).filter(|_| upgrade) else {
        return text(
            StatusCode::BAD_REQUEST,
            "/ws wants a WebSocket upgrade (Upgrade: websocket, Sec-WebSocket-Key)\n".to_owned(),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        // A close is answered by the next read, which then ends the stream.
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.send(msg).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// The request of both gRPC methods.
#[derive(Debug, Default, PartialEq)]
struct EchoRequest {
    message: String,
    count: u64,
    pause_ms: u64,
}

/// `kantai.test.Echo/Say` and `/Count`; any other method is gRPC's UNIMPLEMENTED (12).
async fn grpc(req: Request<Incoming>) -> Response<EchoBody> {
    let method = req.uri().path()[SERVICE.len()..].to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return grpc_status(3, &format!("cannot read the request: {e}")),
    };
    // One message: the 5-byte prefix (compressed flag, big-endian length), then protobuf.
    let msg = match body.get(5..) {
        Some(m) if body[0] == 0 => decode_request(m),
        _ => None,
    };
    let Some(msg) = msg else {
        return grpc_status(3, "the request is not one uncompressed EchoRequest");
    };
    let (n, pause) = match method.as_str() {
        "Say" => (1, Duration::ZERO),
        "Count" => (
            msg.count.min(MAX_COUNT),
            Duration::from_millis(msg.pause_ms.min(MAX_PAUSE_MS)),
        ),
        _ => return grpc_status(12, &format!("no method {method} in kantai.test.Echo")),
    };
    let (tx, body) = Channel::<Bytes, Infallible>::new(1);
    tokio::spawn(replies(tx, msg.message, n, pause));
    let mut r = Response::new(body.boxed_unsync());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    r
}

/// Sends `n` replies `pause` apart, then the OK status as trailers.
async fn replies(mut tx: Sender<Bytes, Infallible>, message: String, n: u64, pause: Duration) {
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        if tx
            .send_data(frame(&encode_reply(&message, i)))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let _ = tx.send_trailers(trailers).await;
}

/// A gRPC answer with no message: a status and its message, in the headers (trailers-only).
fn grpc_status(code: u8, message: &str) -> Response<EchoBody> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert("grpc-message", v);
    }
    r
}

/// A gRPC length-prefixed message.
fn frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
    b.put_slice(msg);
    b.freeze()
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// An `EchoRequest` from protobuf's wire format; unknown fields are skipped.
fn decode_request(b: &[u8]) -> Option<EchoRequest> {
    let mut r = EchoRequest::default();
    let mut at = 0;
    while at < b.len() {
        let key = varint(b, &mut at)?;
        match (key >> 3, key & 7) {
            (field, 0) => {
                let v = varint(b, &mut at)?;
                match field {
                    2 => r.count = v,
                    3 => r.pause_ms = v,
                    _ => {}
                }
            }
            (field, 2) => {
                let len = usize::try_from(varint(b, &mut at)?).ok()?;
                let bytes = b.get(at..at.checked_add(len)?)?;
                at += len;
                if field == 1 {
                    r.message = String::from_utf8(bytes.to_vec()).ok()?;
                }
            }
            (_, 1) => at += 8,
            (_, 5) => at += 4,
            _ => return None,
        }
    }
    (at == b.len()).then_some(r)
}

/// An `EchoReply` in protobuf's wire format.
fn encode_reply(message: &str, index: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 12);
    if !message.is_empty() {
        out.push(1 << 3 | 2);
        put_varint(message.len() as u64, &mut out);
        out.extend_from_slice(message.as_bytes());
    }
    if index != 0 {
        out.push(2 << 3);
        put_varint(index, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_decodes_from_protobufs_wire_format() {
        // message "hi" (field 1), count 300 (field 2, a two-byte varint), pause_ms 5.
        let wire = [0x0a, 2, b'h', b'i', 0x10, 0xac, 0x02, 0x18, 5];
        let want = EchoRequest {
            message: "hi".into(),
            count: 300,
            pause_ms: 5,
        };
        assert_eq!(decode_request(&wire), Some(want));
    }

    #[test]
    fn a_truncated_request_is_refused() {
        assert_eq!(decode_request(&[0x0a, 5, b'h']), None);
    }

    #[test]
    fn a_reply_encodes_its_fields_in_order() {
        assert_eq!(
            encode_reply("hi", 300),
            vec![0x0a, 2, b'h', b'i', 0x10, 0xac, 0x02]
        );
    }
}
