//! What a load balancer or a queue discipline may know about a request, without owning it.

use std::net::IpAddr;

use crate::hash::stable_hash;

/// A request as policies see it. Drivers implement it over their own request type (the live
/// fleet over an HTTP request, the simulator over its events), so nothing is copied.
pub trait RequestInfo {
    /// The HTTP method.
    fn method(&self) -> &str;
    /// The path (without the query).
    fn path(&self) -> &str;
    /// A header's value, if present and text (names are case-insensitive).
    fn header(&self, name: &str) -> Option<&str>;
    /// The client's address, if known.
    fn source(&self) -> Option<IpAddr> {
        None
    }
}

/// A request with a method and a path only: for tests and examples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimpleRequest {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl SimpleRequest {
    /// A GET of `path`.
    pub fn get(path: &str) -> SimpleRequest {
        SimpleRequest {
            method: "GET".into(),
            path: path.into(),
            headers: Vec::new(),
        }
    }

    /// The same request with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> SimpleRequest {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }
}

impl RequestInfo for SimpleRequest {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The kind of work a request asks for (method and path), as a number: what shortest-job-
/// first learns durations by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey(pub u64);

impl RequestKey {
    /// The key of a request.
    pub fn of(req: &dyn RequestInfo) -> RequestKey {
        let mut h = stable_hash(req.method().as_bytes());
        h ^= stable_hash(req.path().as_bytes()).rotate_left(1);
        RequestKey(h)
    }
}
