//! The way to other nodes: an HTTP/1.1 client and an HTTP/2 one (the HTTP/2 one's pool also
//! serves this node's h2c instances; HTTP/1.1 instances have connections of their own, in
//! `upstream.rs`), the emulated links, and the fleet's peer token that every data port
//! requires.

use std::sync::OnceLock;
use std::time::Duration;

use http::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kantai_api::auth::{PEER_TOKEN_HEADER, tokens_match};

use crate::body::Body;
use crate::netem::Netem;
use crate::protocol::Wire;

/// The HTTP client the data plane sends to other nodes with.
pub type HttpClient = Client<HttpConnector, Body>;

/// The link from this node to the others.
pub struct Link {
    /// This node.
    pub node: String,
    /// The HTTP/1.1 client (cloning it shares its pool).
    pub client: HttpClient,
    /// The HTTP/2 client, by prior knowledge (one connection per peer or instance carries
    /// every stream).
    pub h2: HttpClient,
    /// The link emulation towards other nodes.
    pub netem: Netem,
    /// The token this node presents to other nodes' data ports and requires on its own.
    token: OnceLock<HeaderValue>,
}

impl Link {
    /// The link of `node`, with its emulation seeded by `seed`.
    pub fn new(node: &str, seed: u64) -> Link {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        // Without a timer the pool never evicts idle connections (hyper-util checks their age
        // only when one is checked out), so connections opened in a burst, each with its read
        // buffer, stayed for good: the soak saw node agents grow by 100 KiB a minute.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector.clone());
        let h2 = Client::builder(TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http2_only(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Link {
            node: node.to_owned(),
            client,
            h2,
            netem: Netem::new(seed),
            token: OnceLock::new(),
        }
    }

    /// The client that speaks `wire`.
    pub fn client(&self, wire: Wire) -> &HttpClient {
        match wire {
            Wire::Http1 => &self.client,
            Wire::Http2 => &self.h2,
        }
    }

    /// Sets the fleet's peer token (once, before serving).
    pub fn set_token(&self, token: &str) -> Result<(), http::header::InvalidHeaderValue> {
        let mut v = HeaderValue::from_str(token)?;
        v.set_sensitive(true);
        let _ = self.token.set(v);
        Ok(())
    }

    /// Puts this node's token on a request to another node's data port; without one, takes
    /// off whatever the client sent under its name.
    pub fn sign(&self, h: &mut http::HeaderMap) {
        match self.token.get() {
            Some(t) => {
                h.insert(PEER_TOKEN_HEADER, t.clone());
            }
            None => {
                h.remove(PEER_TOKEN_HEADER);
            }
        }
    }

    /// Whether a request to the data port carries this fleet's peer token (any request does
    /// when none is set).
    pub fn is_from_peer(&self, headers: &http::HeaderMap) -> bool {
        let Some(want) = self.token.get() else {
            return true;
        };
        headers
            .get(PEER_TOKEN_HEADER)
            .is_some_and(|got| tokens_match(got.as_bytes(), want.as_bytes()))
    }
}
