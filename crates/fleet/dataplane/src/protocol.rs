//! The protocols the data plane carries, and which one each hop speaks.
//!
//! Listeners take HTTP/1.1 (with upgrades) and HTTP/2 by prior knowledge (h2c), told apart
//! by the connection's first bytes. Onwards, every hop picks its own protocol here:
//!
//! - to another node's data port, HTTP/2 for a request that arrived as HTTP/2 (its streams
//!   and trailers, gRPC's status among them, need it), HTTP/1.1 otherwise (upgrades need it);
//! - to an instance, HTTP/2 when its revision's port is named `h2c` (Knative's rule, in
//!   `RevisionSettings::h2c`), HTTP/1.1 otherwise, and HTTP/1.1 for an upgrade in any case.
//!
//! An HTTP/1.1 Upgrade (WebSockets) is forwarded with its `Upgrade` and `Connection` headers
//! put back after the hop-by-hop ones are stripped; on `101 Switching Protocols` the hop that
//! holds the client's connection splices it to the upstream one ([`splice`]), keeping the
//! response's body (and with it every lease and slot of the request) until either side
//! closes, so an open socket counts as one request in flight.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::debug;

use crate::request::lists;

/// The time a chunk of an upgraded connection takes to cross the emulated link, by its size
/// in bytes (the same both ways).
pub type Crossing = Arc<dyn Fn(usize) -> Duration + Send + Sync>;

/// Chunks of an upgraded connection in flight on an emulated link, per direction.
const IN_FLIGHT_CHUNKS: usize = 64;

/// The HTTP a hop speaks to the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 over cleartext, by prior knowledge.
    Http2,
}

/// What the protocol of a request asks of the hops it crosses.
#[derive(Clone, Debug, Default)]
pub struct Carried {
    /// The protocol an HTTP/1.1 Upgrade asks for (`websocket`), to be put back after the
    /// hop-by-hop headers are stripped.
    pub upgrade: Option<HeaderValue>,
    /// Whether the client accepts trailers (`TE: trailers`, which gRPC sends): put back on
    /// every hop (on HTTP/2 it is the one `TE` allowed).
    pub trailers: bool,
}

impl Carried {
    /// What `headers` (a request's, before the hop-by-hop headers are stripped) ask for.
    pub fn of(version: Version, headers: &HeaderMap) -> Carried {
        // Most requests carry neither header: one pass over their few names instead of a
        // lookup for each.
        if !headers
            .keys()
            .any(|k| k == header::TE || k == header::CONNECTION || k == header::UPGRADE)
        {
            return Carried::default();
        }
        Carried {
            upgrade: (version == Version::HTTP_11)
                .then(|| upgrade_of(headers))
                .flatten(),
            trailers: lists(headers, header::TE, "trailers"),
        }
    }

    /// Puts back, after stripping, the headers this hop must forward.
    pub fn restore(&self, headers: &mut HeaderMap) {
        if let Some(up) = &self.upgrade {
            headers.insert(header::UPGRADE, up.clone());
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        if self.trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// The protocol an HTTP/1.1 request asks to upgrade to: its `Upgrade` header, when its
/// `Connection` header names `upgrade`. `h2c` is not one: HTTP/2 is reached by prior
/// knowledge, and an `Upgrade: h2c` is dropped with the other hop-by-hop headers (the request
/// is served as HTTP/1.1, as RFC 9113 allows).
pub fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = lists(headers, header::CONNECTION, "upgrade");
    let up = headers.get(header::UPGRADE)?;
    let h2c = up
        .to_str()
        .is_ok_and(|v| v.split(',').all(|p| p.trim().eq_ignore_ascii_case("h2c")));
    (asks && !h2c).then(|| up.clone())
}

/// The protocol to another node's data port for a request of `version`.
pub fn to_peer(version: Version) -> Wire {
    if version == Version::HTTP_2 {
        Wire::Http2
    } else {
        Wire::Http1
    }
}

/// The protocol to an instance whose revision speaks h2c (or not), for `carried`.
pub fn to_instance(h2c: bool, carried: &Carried) -> Wire {
    if h2c && carried.upgrade.is_none() {
        Wire::Http2
    } else {
        Wire::Http1
    }
}

/// Sets the request's version to what `wire` speaks: the HTTP/1 client refuses HTTP/2
/// requests (an HTTP/1.0 request stays one).
pub fn prepare<B>(req: &mut Request<B>, wire: Wire) {
    match wire {
        Wire::Http1 if req.version() == Version::HTTP_2 => *req.version_mut() = Version::HTTP_11,
        Wire::Http1 => {}
        Wire::Http2 => *req.version_mut() = Version::HTTP_2,
    }
}

/// Takes the client's side of an upgrade out of a request that asks for one, before the
/// request goes on.
pub fn client_side<B>(req: &mut Request<B>, carried: &Carried) -> Option<OnUpgrade> {
    carried
        .upgrade
        .as_ref()
        .map(|_| hyper::upgrade::on(&mut *req))
}

/// Once `resp` switched protocols for a request whose client side is `client`, splices
/// the two connections on a task of their own, keeping `resp`'s body (which holds the
/// request's leases and slots) until both sides are done. Any other response is left alone.
/// With a `crossing`, every chunk waits its crossing of the emulated link, each way.
pub fn splice<B: Send + 'static>(
    client: Option<OnUpgrade>,
    resp: &mut Response<B>,
    empty: B,
    crossing: Option<Crossing>,
) {
    let Some(client) = client else { return };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    let upstream = hyper::upgrade::on(&mut *resp);
    let held = std::mem::replace(resp.body_mut(), empty);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::join!(client, upstream) {
            (Ok(c), Ok(u)) => (c, u),
            (c, u) => {
                debug!(
                    client = ?c.err(),
                    upstream = ?u.err(),
                    "an upgraded connection did not switch"
                );
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        match crossing {
            None => {
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    debug!("an upgraded connection ended: {e}");
                }
            }
            Some(c) => {
                let (client_r, client_w) = tokio::io::split(client);
                let (up_r, up_w) = tokio::io::split(upstream);
                tokio::join!(relay(client_r, up_w, c.clone()), relay(up_r, client_w, c));
            }
        }
        drop(held);
    });
}

/// Copies `from` to `to`, each chunk written once its crossing has passed, in order; the
/// chunks behind it are read meanwhile (a link carries many at once). Ends, shutting `to`
/// down, when `from` ends or `to` fails.
async fn relay(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    crossing: Crossing,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Bytes)>(IN_FLIGHT_CHUNKS);
    let read = async move {
        let mut buf = vec![0u8; 16 << 10];
        let mut last = Instant::now();
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            // A later chunk never overtakes an earlier one, whatever the jitter.
            last = last.max(Instant::now() + crossing(n));
            if tx
                .send((last, Bytes::copy_from_slice(&buf[..n])))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn a_websocket_upgrade_is_carried() {
        let h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        let c = Carried::of(Version::HTTP_11, &h);
        assert_eq!(
            c.upgrade.as_ref().map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
    }

    #[test]
    fn a_request_without_te_connection_or_upgrade_carries_nothing() {
        let h = headers(&[("accept", "*/*"), ("user-agent", "t")]);
        let c = Carried::of(Version::HTTP_11, &h);
        assert!(c.upgrade.is_none() && !c.trailers);
    }

    #[test]
    fn trailers_are_carried() {
        let h = headers(&[("te", "trailers")]);
        assert!(Carried::of(Version::HTTP_2, &h).trailers);
    }

    #[test]
    fn an_upgrade_header_without_connection_upgrade_is_not_one() {
        let h = headers(&[("upgrade", "websocket")]);
        assert!(Carried::of(Version::HTTP_11, &h).upgrade.is_none());
    }

    #[test]
    fn an_h2c_upgrade_is_not_carried() {
        let h = headers(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(Carried::of(Version::HTTP_11, &h).upgrade.is_none());
    }

    #[test]
    fn an_http2_request_never_upgrades() {
        let h = headers(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert!(Carried::of(Version::HTTP_2, &h).upgrade.is_none());
    }

    #[test]
    fn restore_puts_back_what_stripping_took() {
        let h = headers(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
        ]);
        let c = Carried::of(Version::HTTP_11, &h);
        let mut stripped = HeaderMap::new();
        c.restore(&mut stripped);
        assert_eq!(stripped["upgrade"], "websocket");
        assert_eq!(stripped["connection"], "upgrade");
        assert_eq!(stripped["te"], "trailers");
    }

    #[test]
    fn instances_get_h2_only_when_their_port_says_h2c() {
        let plain = Carried::default();
        let ws = Carried {
            upgrade: Some(HeaderValue::from_static("websocket")),
            trailers: false,
        };
        assert_eq!(to_instance(true, &plain), Wire::Http2);
        assert_eq!(to_instance(false, &plain), Wire::Http1);
        assert_eq!(to_instance(true, &ws), Wire::Http1);
    }

    #[test]
    fn an_http2_request_goes_to_an_http1_hop_as_http11_and_http10_stays() {
        let mut req = Request::new(());
        *req.version_mut() = Version::HTTP_2;
        prepare(&mut req, Wire::Http1);
        assert_eq!(req.version(), Version::HTTP_11);
        *req.version_mut() = Version::HTTP_10;
        prepare(&mut req, Wire::Http1);
        assert_eq!(req.version(), Version::HTTP_10);
    }

    #[test]
    fn peers_get_the_clients_http_version() {
        assert_eq!(to_peer(Version::HTTP_2), Wire::Http2);
        assert_eq!(to_peer(Version::HTTP_11), Wire::Http1);
        assert_eq!(to_peer(Version::HTTP_10), Wire::Http1);
    }
}
