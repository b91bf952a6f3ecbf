//! Every answer the data plane gives instead of an instance's: why a request was not served,
//! and the one place that turns the reason into an HTTP response.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use kantai_api::auth::PEER_TOKEN_HEADER;

use crate::body::Body;
use crate::data_port::{INSTANCE_HEADER, NOT_SERVING_HEADER};
use crate::instance::QUEUE_DEPTH_FACTOR;

/// Why a request got the data plane's answer rather than an instance's.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// 400: the request names no host.
    NoHost,
    /// 404: no service answers to the host.
    NoRoute {
        /// The request's host.
        host: String,
        /// The external domain services are reached under.
        domain: String,
    },
    /// 413: the body is larger than the limit (in bytes).
    TooLarge(u64),
    /// 503: the service has no revision to serve (and why, when known).
    NoRevision {
        /// Namespace and service.
        service: String,
        /// Why its route has no traffic.
        why: Option<Arc<str>>,
    },
    /// 503 with `Retry-After`: `limit` requests already wait for the revision.
    HoldQueueFull {
        /// The revision.
        revision: String,
        /// The hold limit.
        limit: u32,
    },
    /// 504: no response within `after` (the setting named `setting`).
    TimedOut {
        /// The timeout that passed.
        after: Duration,
        /// The revision's setting that set it.
        setting: &'static str,
    },
    /// 503: the revision was removed while the request waited for it.
    Removed(String),
    /// 503: the revision cannot start, and why.
    CannotStart {
        /// The revision.
        revision: String,
        /// What stops it.
        why: Arc<str>,
    },
    /// 502: no instance could be reached in `attempts` attempts.
    Unreachable {
        /// The revision.
        revision: String,
        /// Attempts made.
        attempts: u32,
        /// Why the last one failed.
        last: String,
    },
    /// 502: an instance or its node failed to answer (the message says which).
    BadGateway(String),
    /// 400: the request's path cannot be forwarded.
    InvalidPath,
    /// 503 with `Retry-After`: the instance's queue (10 × containerConcurrency) is full.
    InstanceQueueFull {
        /// The instance.
        instance: String,
        /// Its containerConcurrency.
        cc: u32,
    },
    /// 403: a request on the data port without the fleet's peer token.
    NotFromPeer {
        /// This node.
        node: String,
    },
    /// 400: a request on the data port without the instance header.
    NoInstance,
    /// 503 marked [`NOT_SERVING_HEADER`]: the instance does not serve on this node, so the
    /// request never reached it and the sender may offer it to another.
    NotServing {
        /// The instance.
        instance: String,
        /// This node.
        node: String,
    },
}

impl Rejection {
    /// The HTTP response that says why.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let retry = matches!(
            self,
            Rejection::HoldQueueFull { .. } | Rejection::InstanceQueueFull { .. }
        );
        let not_serving = matches!(self, Rejection::NotServing { .. });
        let mut r = text(status, self.message());
        if retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if not_serving {
            r.headers_mut()
                .insert(NOT_SERVING_HEADER, HeaderValue::from_static("1"));
        }
        r
    }

    /// The response's status.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NoHost | Rejection::InvalidPath | Rejection::NoInstance => {
                StatusCode::BAD_REQUEST
            }
            Rejection::NoRoute { .. } => StatusCode::NOT_FOUND,
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::NoRevision { .. }
            | Rejection::HoldQueueFull { .. }
            | Rejection::Removed(_)
            | Rejection::CannotStart { .. }
            | Rejection::InstanceQueueFull { .. }
            | Rejection::NotServing { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            Rejection::Unreachable { .. } | Rejection::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Rejection::NotFromPeer { .. } => StatusCode::FORBIDDEN,
        }
    }

    fn message(self) -> String {
        match self {
            Rejection::NoHost => "kantai: the request has no Host header".to_owned(),
            Rejection::NoRoute { host, domain } => format!(
                "kantai: no service answers to host {host:?} (services are reached as NAME.NAMESPACE.{domain})"
            ),
            Rejection::TooLarge(limit) => {
                format!("kantai: the request body is larger than the limit of {limit} bytes")
            }
            Rejection::NoRevision { service, why } => match why {
                Some(why) => format!("kantai: {service} has no revision to serve: {why}"),
                None => format!("kantai: {service} has no revision to serve"),
            },
            Rejection::HoldQueueFull { revision, limit } => {
                format!("kantai: {limit} requests already wait for {revision}; try again later")
            }
            Rejection::TimedOut { after, setting } => format!(
                "kantai: request timed out: no response within {}s ({setting})",
                after.as_secs_f64()
            ),
            Rejection::Removed(revision) => {
                format!("kantai: revision {revision} was removed while the request waited for it")
            }
            Rejection::CannotStart { revision, why } => {
                format!("kantai: revision {revision} cannot start: {why}")
            }
            Rejection::Unreachable {
                revision,
                attempts,
                last,
            } => format!(
                "kantai: no instance of {revision} could be reached after {attempts} attempts; the last: {last}"
            ),
            Rejection::BadGateway(why) => why,
            Rejection::InvalidPath => "kantai: invalid request path".to_owned(),
            Rejection::InstanceQueueFull { instance, cc } => format!(
                "kantai: instance {instance} has {} requests queued (10 × containerConcurrency); try again later",
                cc * QUEUE_DEPTH_FACTOR
            ),
            Rejection::NotFromPeer { node } => format!(
                "kantai: the data port of node {node} serves the fleet's nodes only (no valid {PEER_TOKEN_HEADER} header); clients use the gateway"
            ),
            Rejection::NoInstance => {
                format!("kantai: the data port needs a {INSTANCE_HEADER} header")
            }
            Rejection::NotServing { instance, node } => {
                format!("kantai: instance {instance} is not serving on node {node}")
            }
        }
    }
}

/// A plain-text response (the message and a newline).
pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(msg.into() + "\n"))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(r: Rejection) -> (u16, String, bool, bool) {
        let resp = r.into_response();
        let h = resp.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        let retry = h.get(header::RETRY_AFTER).is_some_and(|v| v == "1");
        let not_serving = h.contains_key(NOT_SERVING_HEADER);
        let status = resp.status().as_u16();
        let body = body_text(resp);
        (status, body, retry, not_serving)
    }

    fn body_text(resp: Response<Body>) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let bytes = rt
            .block_on(resp.into_body().collect())
            .expect("body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[test]
    fn a_full_hold_queue_is_503_with_retry_after() {
        let r = Rejection::HoldQueueFull {
            revision: "hello-00001".into(),
            limit: 10_000,
        };
        assert_eq!(
            answer(r),
            (
                503,
                "kantai: 10000 requests already wait for hello-00001; try again later\n".into(),
                true,
                false
            )
        );
    }

    #[test]
    fn a_full_instance_queue_names_its_depth_and_says_when_to_retry() {
        let r = Rejection::InstanceQueueFull {
            instance: "hello-node1-abcde".into(),
            cc: 2,
        };
        assert_eq!(
            answer(r),
            (
                503,
                "kantai: instance hello-node1-abcde has 20 requests queued (10 × containerConcurrency); try again later\n".into(),
                true,
                false
            )
        );
    }

    #[test]
    fn an_instance_not_serving_is_marked_for_the_sender() {
        let r = Rejection::NotServing {
            instance: "hello-node2-abcde".into(),
            node: "node2".into(),
        };
        assert_eq!(
            answer(r),
            (
                503,
                "kantai: instance hello-node2-abcde is not serving on node node2\n".into(),
                false,
                true
            )
        );
    }

    #[test]
    fn a_timeout_names_the_setting() {
        let r = Rejection::TimedOut {
            after: Duration::from_millis(1500),
            setting: "responseStartTimeoutSeconds",
        };
        assert_eq!(
            answer(r),
            (
                504,
                "kantai: request timed out: no response within 1.5s (responseStartTimeoutSeconds)\n"
                    .into(),
                false,
                false
            )
        );
    }

    #[test]
    fn each_reason_has_its_status() {
        let cases = [
            (Rejection::NoHost, 400),
            (
                Rejection::NoRoute {
                    host: "x".into(),
                    domain: "example.com".into(),
                },
                404,
            ),
            (Rejection::TooLarge(1), 413),
            (
                Rejection::NoRevision {
                    service: "default/hello".into(),
                    why: None,
                },
                503,
            ),
            (Rejection::Removed("hello-00001".into()), 503),
            (
                Rejection::CannotStart {
                    revision: "hello-00001".into(),
                    why: "no image".into(),
                },
                503,
            ),
            (
                Rejection::Unreachable {
                    revision: "hello-00001".into(),
                    attempts: 3,
                    last: "refused".into(),
                },
                502,
            ),
            (Rejection::BadGateway("kantai: broke".into()), 502),
            (Rejection::InvalidPath, 400),
            (
                Rejection::NotFromPeer {
                    node: "node1".into(),
                },
                403,
            ),
            (Rejection::NoInstance, 400),
        ];
        for (r, status) in cases {
            let what = format!("{r:?}");
            assert_eq!(r.into_response().status().as_u16(), status, "{what}");
        }
    }
}
