//! An HTTP client of the control-plane API, used by the CLI and the node agents.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::resources::Resource;
use crate::wire::{ConfigEvent, Status, WatchEvent};

/// Largest response body the client reads (a list of every object of a big fleet fits).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Longest watch event line accepted.
pub const MAX_WATCH_LINE: usize = 8 * 1024 * 1024;
/// Longest config event line accepted: a revision may mount several Secrets and ConfigMaps
/// of 1 MiB each, base64-encoded.
pub const MAX_CONFIG_LINE: usize = 64 * 1024 * 1024;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No connection.
    #[error(
        "cannot reach the kantai control plane at {url}: {detail} (is `kantai up` or `kantai control` running?)"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// The API answered with an error `Status`.
    #[error("{}", .0.message)]
    Status(Box<Status>),
    /// The answer was not what the API sends.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was unexpected.
        detail: String,
    },
    /// No answer in time.
    #[error("no answer from {url} within {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        after: Duration,
    },
}

impl ApiError {
    /// The HTTP status of an API error.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status(s) => Some(s.code),
            _ => None,
        }
    }

    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether the object already exists or changed meanwhile.
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
}

/// Delays applied before a request leaves and after its response arrives (emulated links).
pub type DelayFn = Arc<dyn Fn() -> Duration + Send + Sync>;

/// A client of one control plane.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    delay: Option<DelayFn>,
    timeout: Duration,
    token: Option<String>,
}

impl Client {
    /// A client of the API at `base` (`http://127.0.0.1:7400`, or `127.0.0.1:7400`).
    pub fn new(base: &str) -> Result<Client, ApiError> {
        let base = base.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        let uri: Uri = base.parse().map_err(|e| ApiError::Unreachable {
            url: base.clone(),
            detail: format!("not a URL: {e}"),
        })?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(ApiError::Unreachable {
                url: base,
                detail: "expected http://HOST:PORT".into(),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        // The timer lets the pool evict idle connections (without one it never does).
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Client {
            base,
            http,
            delay: None,
            timeout: Duration::from_secs(30),
            token: None,
        })
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Adds an emulated one-way delay on each direction of every request.
    pub fn with_delay(mut self, delay: DelayFn) -> Client {
        self.delay = Some(delay);
        self
    }

    /// Sends a bearer token with every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    async fn pause(&self) {
        if let Some(d) = &self.delay {
            let d = d();
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<hyper::Response<Incoming>, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        req = req.header(header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some((b, ct)) => {
                req = req.header(header::CONTENT_TYPE, ct);
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| ApiError::Protocol {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        self.pause().await;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ApiError::Unreachable {
                url: url.clone(),
                detail: error_chain(&e),
            })?;
        self.pause().await;
        Ok(resp)
    }

    /// Sends a request and reads the whole answer; API errors become [`ApiError::Status`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<Bytes, ApiError> {
        let url = format!("{}{path}", self.base);
        let fut = async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status();
            let bytes = read_limited(resp.into_body(), MAX_RESPONSE_BYTES)
                .await
                .map_err(|detail| ApiError::Protocol {
                    url: url.clone(),
                    detail,
                })?;
            if status.is_success() {
                Ok(bytes)
            } else {
                Err(status_error(status, &bytes))
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ApiError::Timeout {
                url: url.clone(),
                after: self.timeout,
            })?
    }

    /// GET whose answer is streamed (a followed log): the body, once the status is a
    /// success; an error status is read whole into [`ApiError::Status`]. Only the wait for
    /// the answer's head is bounded by the client's timeout.
    pub async fn stream(&self, path: &str) -> Result<Incoming, ApiError> {
        let url = format!("{}{path}", self.base);
        let resp = tokio::time::timeout(self.timeout, self.send(Method::GET, path, None))
            .await
            .map_err(|_| ApiError::Timeout {
                url: url.clone(),
                after: self.timeout,
            })??;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let bytes = read_limited(resp.into_body(), MAX_RESPONSE_BYTES)
            .await
            .map_err(|detail| ApiError::Protocol { url, detail })?;
        Err(status_error(status, &bytes))
    }

    /// GET a JSON document.
    pub async fn get_json(&self, path: &str) -> Result<Value, ApiError> {
        let b = self.call(Method::GET, path, None).await?;
        parse_json(&self.base, path, &b)
    }

    /// Sends JSON with a method and returns the JSON answer.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let ct = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let b = self
            .call(
                method,
                path,
                Some((serde_json::to_vec(body).unwrap_or_default(), ct)),
            )
            .await?;
        if b.is_empty() {
            return Ok(Value::Null);
        }
        parse_json(&self.base, path, &b)
    }

    /// One object.
    pub async fn get(&self, r: Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.get_json(&r.object_path(ns, name)).await
    }

    /// The objects of a resource in a namespace (or all namespaces: `None`).
    pub async fn list(&self, r: Resource, ns: Option<&str>) -> Result<Vec<Value>, ApiError> {
        let v = self.get_json(&r.collection_path(ns)).await?;
        Ok(match v.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        })
    }

    /// Creates an object.
    pub async fn create(&self, r: Resource, ns: &str, obj: &Value) -> Result<Value, ApiError> {
        self.send_json(Method::POST, &r.collection_path(Some(ns)), obj)
            .await
    }

    /// Replaces an object (optimistically, when it carries a resourceVersion).
    pub async fn replace(
        &self,
        r: Resource,
        ns: &str,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ApiError> {
        self.send_json(Method::PUT, &r.object_path(ns, name), obj)
            .await
    }

    /// Replaces an object's status.
    pub async fn replace_status(
        &self,
        r: Resource,
        ns: &str,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ApiError> {
        self.send_json(
            Method::PUT,
            &format!("{}/status", r.object_path(ns, name)),
            obj,
        )
        .await
    }

    /// Applies a JSON merge patch.
    pub async fn merge_patch(
        &self,
        r: Resource,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        self.send_json(Method::PATCH, &r.object_path(ns, name), patch)
            .await
    }

    /// Deletes an object.
    pub async fn delete(&self, r: Resource, ns: &str, name: &str) -> Result<(), ApiError> {
        self.call(Method::DELETE, &r.object_path(ns, name), None)
            .await
            .map(|_| ())
    }

    /// Watches a collection: first an `ADDED` event for every existing object, then every
    /// change. Long-lived: no timeout.
    pub async fn watch(&self, r: Resource, ns: Option<&str>) -> Result<Watch, ApiError> {
        self.watch_path(&format!("{}?watch=true", r.collection_path(ns)))
            .await
    }

    /// Watches the collection at `path` (which carries `watch=true` and, optionally, the
    /// `resourceVersion` to resume from).
    pub async fn watch_path(&self, path: &str) -> Result<Watch, ApiError> {
        let resp = self.send(Method::GET, path, None).await?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = read_limited(resp.into_body(), 1024 * 1024)
                .await
                .unwrap_or_default();
            return Err(status_error(status, &bytes));
        }
        Ok(Watch {
            lines: Lines::new(
                resp.into_body(),
                self.delay.clone(),
                "watch",
                MAX_WATCH_LINE,
            ),
        })
    }
    /// A node's stream of its revisions' Secret and ConfigMap values
    /// ([`crate::wire::CONFIGS_PATH`]). Only the wait for the answer's head is bounded by
    /// the client's timeout.
    pub async fn configs(&self, node: &str) -> Result<ConfigStream, ApiError> {
        let body = self.stream(&crate::wire::configs_path(node)).await?;
        Ok(ConfigStream {
            lines: Lines::new(body, self.delay.clone(), "configs", MAX_CONFIG_LINE),
        })
    }
}

/// Newline-delimited JSON from a streamed body, each line paying the link's delay.
struct Lines {
    body: Incoming,
    buf: Vec<u8>,
    delay: Option<DelayFn>,
    /// What the stream is, for errors (`watch`, `configs`).
    what: &'static str,
    /// The longest line accepted.
    max: usize,
}

impl Lines {
    fn new(body: Incoming, delay: Option<DelayFn>, what: &'static str, max: usize) -> Lines {
        Lines {
            body,
            buf: Vec::new(),
            delay,
            what,
            max,
        }
    }

    fn failed(&self, detail: String) -> ApiError {
        ApiError::Protocol {
            url: self.what.into(),
            detail,
        }
    }

    /// The next non-blank line; `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Result<Vec<u8>, ApiError>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Some(d) = &self.delay {
                    let d = d();
                    if !d.is_zero() {
                        tokio::time::sleep(d).await;
                    }
                }
                return Some(Ok(line));
            }
            if self.buf.len() > self.max {
                let detail = format!("{} event longer than {} bytes", self.what, self.max);
                return Some(Err(self.failed(detail)));
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => return Some(Err(self.failed(e.to_string()))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// A node's config stream: one [`ConfigEvent`] per line.
pub struct ConfigStream {
    lines: Lines,
}

impl ConfigStream {
    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<ConfigEvent, ApiError>> {
        let line = match self.lines.next().await? {
            Ok(line) => line,
            Err(e) => return Some(Err(e)),
        };
        // The serde error would quote the line, values included: only its place.
        Some(serde_json::from_slice(&line).map_err(|e| {
            self.lines.failed(format!(
                "bad config event at line {} column {} ({:?})",
                e.line(),
                e.column(),
                e.classify()
            ))
        }))
    }
}

/// A stream of watch events.
pub struct Watch {
    lines: Lines,
}

impl Watch {
    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, ApiError>> {
        let line = match self.lines.next().await? {
            Ok(line) => line,
            Err(e) => return Some(Err(e)),
        };
        Some(
            serde_json::from_slice(&line)
                .map_err(|e| self.lines.failed(format!("bad watch event: {e}"))),
        )
    }
}

async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(format!("response larger than {limit} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

fn status_error(code: StatusCode, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<Status>(body) {
        Ok(s) if s.kind == "Status" => ApiError::Status(Box::new(s)),
        _ => ApiError::Status(Box::new(Status::failure(
            code.as_u16(),
            code.canonical_reason().unwrap_or("Error"),
            format!(
                "{code}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)]).trim()
            ),
        ))),
    }
}

fn parse_json(base: &str, path: &str, b: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError::Protocol {
        url: format!("{base}{path}"),
        detail: format!("not JSON: {e}"),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
