//! HTTP requests as the policies see them ([`RequestInfo`]), borrowed for a decision made at
//! once and owned for a request that waits.

use http::{HeaderMap, Method};
use kantai_policy::RequestInfo;

/// A borrowed view of an HTTP request's head.
pub struct HttpRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path.
    pub path: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The client.
    pub source: Option<std::net::IpAddr>,
}

impl<'a> HttpRequest<'a> {
    /// The view of a request.
    pub fn of<B>(req: &'a http::Request<B>, source: Option<std::net::IpAddr>) -> HttpRequest<'a> {
        HttpRequest {
            method: req.method(),
            path: req.uri().path(),
            headers: req.headers(),
            source,
        }
    }

    /// The view of a request's head.
    pub fn of_parts(
        head: &'a http::request::Parts,
        source: Option<std::net::IpAddr>,
    ) -> HttpRequest<'a> {
        HttpRequest {
            method: &head.method,
            path: head.uri.path(),
            headers: &head.headers,
            source,
        }
    }

    /// An owned copy, for a request that waits in a queue.
    pub fn to_owned(&self) -> OwnedRequest {
        OwnedRequest {
            method: self.method.clone(),
            path: self.path.to_owned(),
            headers: self.headers.clone(),
            source: self.source,
        }
    }
}

impl RequestInfo for HttpRequest<'_> {
    fn method(&self) -> &str {
        self.method.as_str()
    }
    fn path(&self) -> &str {
        self.path
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn source(&self) -> Option<std::net::IpAddr> {
        self.source
    }
}

/// The head of a request that waits (method, path, headers, client).
#[derive(Clone, Debug, Default)]
pub struct OwnedRequest {
    method: Method,
    path: String,
    headers: HeaderMap,
    source: Option<std::net::IpAddr>,
}

impl RequestInfo for OwnedRequest {
    fn method(&self) -> &str {
        self.method.as_str()
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn source(&self) -> Option<std::net::IpAddr> {
        self.source
    }
}

/// The `Content-Length` of a message, when it states one.
pub fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The headers a proxy must not forward whatever `Connection` says (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "keep-alive",
    "proxy-connection",
];

/// The trimmed elements of every `name` header's comma-separated list (RFC 9110 §5.6.1),
/// values that are not text skipped.
pub fn list_elements<'a>(
    h: &'a HeaderMap,
    name: http::header::HeaderName,
) -> impl Iterator<Item = &'a str> + 'a {
    h.get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether a `name` header's list holds `token` (case-insensitively, as tokens compare).
pub fn lists(h: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    list_elements(h, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// Removes the headers a proxy must not forward (RFC 9110 §7.6.1), plus those `Connection`
/// names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    use http::header::{self, HeaderName};
    // Most requests carry none: one pass over their few headers instead of a lookup per
    // name (header names are stored lowercase).
    if !h.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    let named: Vec<HeaderName> = list_elements(h, header::CONNECTION)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn end_to_end_headers_are_kept() {
        let mut h = headers(&[("accept", "*/*"), ("user-agent", "t"), ("x-k", "v")]);
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }
}
