//! The gateway's routing table: request hosts to revisions, split by percent.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use rand::RngExt;

use crate::revision::RevisionState;

/// A route as the gateway needs it: the resolved traffic of a Knative Route.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    /// Namespace.
    pub namespace: String,
    /// Route (service) name.
    pub name: String,
    /// `(revision, percent, tag)` in route order.
    pub traffic: Vec<(String, u32, Option<String>)>,
    /// Why the route has no traffic yet, if it has none (its only revision cannot start):
    /// its hosts answer 503 with it instead of 404.
    pub unavailable: Option<String>,
}

/// Where one host leads.
pub struct HostRoute {
    /// Namespace and service, for messages.
    pub service: String,
    /// Revisions with their cumulative percentage (the last one ends at 100).
    pub split: Vec<(u32, Arc<RevisionState>)>,
    /// Why there is nothing to split between (`split` empty).
    pub unavailable: Option<Arc<str>>,
}

impl HostRoute {
    /// Picks a revision by percentage.
    pub fn pick<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Option<&Arc<RevisionState>> {
        match self.split.as_slice() {
            [] => None,
            [(_, only)] => Some(only),
            split => {
                let total = split.last().map_or(0, |(c, _)| *c).max(1);
                let x = rng.random_range(0..total);
                split.iter().find(|(c, _)| x < *c).map(|(_, r)| r)
            }
        }
    }
}

/// Hosts to routes.
#[derive(Default)]
pub struct Routes {
    /// By lowercase host without port.
    pub hosts: HashMap<String, HostRoute>,
}

impl Routes {
    /// Builds the table: every route is reachable as `NAME.NS.DOMAIN`, `NAME.NS.svc.cluster.local`,
    /// `NAME.NS.svc` and `NAME.NS`; each tag as `TAG-NAME.NS.DOMAIN` (and cluster-local).
    pub fn build(
        routes: &[RouteSpec],
        domain: &str,
        state: &mut dyn FnMut(&str, &str) -> Arc<RevisionState>,
    ) -> Routes {
        let mut hosts = HashMap::new();
        for r in routes {
            let mut split = Vec::new();
            let mut cumulative = 0;
            for (rev, pct, _) in &r.traffic {
                if *pct > 0 {
                    cumulative += pct;
                    split.push((cumulative, state(&r.namespace, rev)));
                }
            }
            let service = format!("{}/{}", r.namespace, r.name);
            let unavailable = r.unavailable.as_deref().map(Arc::<str>::from);
            if !split.is_empty() || unavailable.is_some() {
                for host in host_names(&r.name, &r.namespace, domain) {
                    hosts.insert(
                        host,
                        HostRoute {
                            service: service.clone(),
                            split: split.clone(),
                            unavailable: unavailable.clone(),
                        },
                    );
                }
            }
            for (rev, _, tag) in &r.traffic {
                let Some(tag) = tag else { continue };
                let st = state(&r.namespace, rev);
                for host in host_names(&format!("{tag}-{}", r.name), &r.namespace, domain) {
                    hosts.insert(
                        host,
                        HostRoute {
                            service: service.clone(),
                            split: vec![(100, st.clone())],
                            unavailable: None,
                        },
                    );
                }
            }
        }
        Routes { hosts }
    }
}

fn host_names(name: &str, ns: &str, domain: &str) -> Vec<String> {
    let mut v = vec![
        format!("{name}.{ns}.{domain}"),
        format!("{name}.{ns}.svc.cluster.local"),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}"),
    ];
    v.dedup();
    v
}

/// The host a request is for: the `Host` header (or the URI's authority), lowercased,
/// without port; borrowed from the request when it is already in that form, as clients
/// almost always send it.
pub fn request_host<B>(req: &http::Request<B>) -> Option<Cow<'_, str>> {
    let raw = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let host = match raw.strip_prefix('[') {
        // An IPv6 literal: `[::1]:80`.
        Some(rest) => rest.find(']').map_or(raw, |i| &raw[..i + 2]),
        None => raw.split(':').next().unwrap_or(raw),
    };
    let host = host.trim_end_matches('.');
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn hosts_and_splits() {
        let mut states: HashMap<String, Arc<RevisionState>> = HashMap::new();
        let routes = Routes::build(
            &[RouteSpec {
                namespace: "default".into(),
                name: "hello".into(),
                traffic: vec![
                    ("hello-00002".into(), 90, None),
                    ("hello-00001".into(), 10, Some("old".into())),
                ],
                unavailable: None,
            }],
            "example.com",
            &mut |ns, rev| {
                states
                    .entry(rev.to_owned())
                    .or_insert_with(|| {
                        Arc::new(RevisionState::new(
                            (ns.into(), rev.into()),
                            1,
                            Default::default(),
                            Default::default(),
                            Default::default(),
                        ))
                    })
                    .clone()
            },
        );
        for h in [
            "hello.default.example.com",
            "hello.default.svc.cluster.local",
            "hello.default",
            "old-hello.default.example.com",
        ] {
            assert!(routes.hosts.contains_key(h), "{h}");
        }
        let main = &routes.hosts["hello.default.example.com"];
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let n = 10_000;
        let old = (0..n)
            .filter(|_| main.pick(&mut rng).map(|r| r.key.1.as_str()) == Some("hello-00001"))
            .count();
        assert!(
            (800..1200).contains(&old),
            "{old} of {n} to the 10 % revision"
        );
        let tagged = &routes.hosts["old-hello.default.example.com"];
        assert_eq!(
            tagged.pick(&mut rng).map(|r| r.key.1.as_str()),
            Some("hello-00001")
        );
    }

    #[test]
    fn host_parsing() {
        let req = |h: &str| {
            http::Request::builder()
                .header("host", h)
                .body(())
                .expect("req")
        };
        assert_eq!(
            request_host(&req("Hello.Default.svc.cluster.local:8080")).as_deref(),
            Some("hello.default.svc.cluster.local")
        );
        assert_eq!(
            request_host(&req("hello.default.")).as_deref(),
            Some("hello.default")
        );
        assert_eq!(request_host(&req("[::1]:80")).as_deref(), Some("[::1]"));
    }

    #[test]
    fn a_host_already_in_form_is_borrowed() {
        let req = http::Request::builder()
            .header("host", "hello.default.svc.cluster.local")
            .body(())
            .expect("req");
        assert!(matches!(request_host(&req), Some(Cow::Borrowed(_))));
    }
}
