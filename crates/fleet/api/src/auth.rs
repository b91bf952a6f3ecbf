//! The fleet's credentials as they travel: the API's bearer token and the peer token node
//! agents present to each other.

/// Header carrying the fleet's peer token on every request to a node's data port: nodes
/// forward requests and probe each other with it, and the data port refuses requests
/// without it. It is not the API token: it travels with every forwarded request, and
/// someone who reads it may reach the data ports, not the API.
pub const PEER_TOKEN_HEADER: &str = "kantai-peer-token";

/// Compares two secrets in time independent of where the first difference is, so a token
/// cannot be guessed byte by byte from response times.
pub fn tokens_match(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer(value: &str) -> Option<&str> {
    value.strip_prefix("Bearer ").map(str::trim)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_compare_whole() {
        assert!(super::tokens_match(b"abc", b"abc"));
        assert!(!super::tokens_match(b"abc", b"abd"));
        assert!(!super::tokens_match(b"abc", b"abcd"));
        assert!(!super::tokens_match(b"", b"a"));
        assert_eq!(super::bearer("Bearer  t1 "), Some("t1"));
        assert_eq!(super::bearer("Basic t1"), None);
    }
}
