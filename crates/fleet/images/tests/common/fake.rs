//! A fake registry: serves images from memory, counts requests, and can demand basic or
//! bearer-token auth, corrupt a blob, or hold a blob until two pulls have asked for a manifest.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use parking_lot::Mutex;

use super::{Blob, OCI_CONFIG, OCI_MANIFEST, manifest_json, sha256};

pub const USER: &str = "alice";
pub const PASS: &str = "s3cret";
const TOKEN: &str = "tok-1";

#[derive(Clone, Copy, PartialEq)]
pub enum Auth {
    None,
    Basic,
    Bearer,
}

#[derive(Default)]
struct Content {
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
}

struct St {
    content: Mutex<Content>,
    hits: Mutex<HashMap<String, u32>>,
    corrupt: Mutex<HashSet<String>>,
    gated: Mutex<Option<String>>,
    manifest_gets: tokio::sync::watch::Sender<u32>,
    auth: Auth,
    port: u16,
}

pub struct Fake {
    pub port: u16,
    st: Arc<St>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    pub async fn start(auth: Auth) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = Arc::new(St {
            content: Mutex::default(),
            hits: Mutex::default(),
            corrupt: Mutex::default(),
            gated: Mutex::default(),
            manifest_gets: tokio::sync::watch::channel(0).0,
            auth,
            port,
        });
        let app = axum::Router::new().fallback(handle).with_state(st.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake { port, st, task }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Adds an OCI image as `repo:tag`; returns the manifest digest.
    pub fn add_image(&self, repo: &str, tag: &str, layers: &[Blob], config: &[u8]) -> String {
        let manifest = manifest_json(Some(OCI_MANIFEST), OCI_CONFIG, config, layers);
        let digest = sha256(&manifest);
        let mut c = self.st.content.lock();
        for l in layers {
            c.blobs.insert(l.digest(), l.data.clone());
        }
        c.blobs.insert(sha256(config), config.to_vec());
        c.manifests.insert(
            format!("{repo}:{tag}"),
            (OCI_MANIFEST.into(), manifest.clone()),
        );
        c.manifests
            .insert(format!("{repo}:{digest}"), (OCI_MANIFEST.into(), manifest));
        digest
    }

    /// Requests of `kind` (`GET blob`, `HEAD manifest`, ...) for `what` (a digest or tag).
    pub fn hits(&self, kind: &str, what: &str) -> u32 {
        self.st
            .hits
            .lock()
            .get(&format!("{kind} {what}"))
            .copied()
            .unwrap_or(0)
    }

    pub fn total_blob_gets(&self) -> u32 {
        self.st
            .hits
            .lock()
            .iter()
            .filter(|(k, _)| k.starts_with("GET blob"))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn corrupt(&self, digest: &str) {
        self.st.corrupt.lock().insert(digest.to_owned());
    }

    /// Holds requests for `digest` until two manifest GETs have arrived (or 10 s passed).
    pub fn gate(&self, digest: &str) {
        *self.st.gated.lock() = Some(digest.to_owned());
    }
}

fn basic_ok(h: &HeaderMap) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
    );
    h.get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == want.as_bytes())
}

fn reply(status: StatusCode, headers: &[(&str, String)], body: Vec<u8>) -> Response {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Body::from(body)).unwrap()
}

fn oci_error(status: StatusCode, code: &str, message: &str, extra: &[(&str, String)]) -> Response {
    let body = format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#).into_bytes();
    let mut headers = vec![("Content-Type", "application/json".to_owned())];
    headers.extend_from_slice(extra);
    reply(status, &headers, body)
}

async fn handle(State(st): State<Arc<St>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let h = req.headers().clone();
    if path == "/token" {
        return if basic_ok(&h) {
            reply(
                StatusCode::OK,
                &[("Content-Type", "application/json".into())],
                format!(r#"{{"token":"{TOKEN}"}}"#).into_bytes(),
            )
        } else {
            reply(
                StatusCode::UNAUTHORIZED,
                &[],
                b"invalid username or password".to_vec(),
            )
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return reply(StatusCode::NOT_FOUND, &[], Vec::new());
    };
    match st.auth {
        Auth::None => {}
        Auth::Basic if basic_ok(&h) => {}
        Auth::Basic => {
            return oci_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
                &[("WWW-Authenticate", r#"Basic realm="fake""#.into())],
            );
        }
        Auth::Bearer
            if h.get(header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes()) => {}
        Auth::Bearer => {
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{}/token",service="fake",scope="repository:ns/app:pull""#,
                st.port
            );
            return oci_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
                &[("WWW-Authenticate", challenge)],
            );
        }
    }
    if rest.is_empty() {
        return reply(
            StatusCode::OK,
            &[("Content-Type", "application/json".into())],
            b"{}".to_vec(),
        );
    }
    let head = method == Method::HEAD;
    if let Some((repo, reference)) = rest.split_once("/manifests/") {
        *st.hits
            .lock()
            .entry(format!("{method} manifest {reference}"))
            .or_default() += 1;
        if !head {
            st.manifest_gets.send_modify(|n| *n += 1);
        }
        let found = st
            .content
            .lock()
            .manifests
            .get(&format!("{repo}:{reference}"))
            .cloned();
        return match found {
            Some((ct, body)) => {
                let headers = [
                    ("Content-Type", ct),
                    ("Docker-Content-Digest", sha256(&body)),
                    ("Content-Length", body.len().to_string()),
                ];
                reply(
                    StatusCode::OK,
                    &headers,
                    if head { Vec::new() } else { body },
                )
            }
            None => oci_error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
                &[],
            ),
        };
    }
    if let Some((_repo, digest)) = rest.split_once("/blobs/") {
        *st.hits
            .lock()
            .entry(format!("{method} blob {digest}"))
            .or_default() += 1;
        let gated = st.gated.lock().as_deref() == Some(digest);
        if gated {
            let mut rx = st.manifest_gets.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|n| *n >= 2)).await;
        }
        let found = st.content.lock().blobs.get(digest).cloned();
        return match found {
            Some(mut body) => {
                if st.corrupt.lock().contains(digest)
                    && let Some(b) = body.last_mut()
                {
                    *b ^= 0xff;
                }
                reply(
                    StatusCode::OK,
                    &[("Content-Type", "application/octet-stream".into())],
                    body,
                )
            }
            None => oci_error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
                &[],
            ),
        };
    }
    reply(StatusCode::NOT_FOUND, &[], Vec::new())
}
