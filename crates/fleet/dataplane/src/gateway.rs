//! The gateway: a client's request is routed by its Host to a revision (split by percent),
//! checked against the body limit, and handed to the activator role.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use parking_lot::{Mutex, RwLock};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::activator::Activator;
use crate::body::Body;
use crate::rejection::Rejection;
use crate::request::content_length;
use crate::revision::RevKey;
use crate::revisions::Revisions;
use crate::routes::{RouteSpec, Routes, request_host};

/// Limits of the data plane.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: u64,
    /// Longest time a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Requests held per revision before 503 (Knative's activator: 10,000).
    pub hold_limit: u32,
    /// Whether responses name the instance and node that served them and say when the
    /// request waited for a cold start ([`SERVED_BY_HEADER`](crate::activator::SERVED_BY_HEADER),
    /// [`SERVED_ON_HEADER`](crate::activator::SERVED_ON_HEADER),
    /// [`COLD_START_HEADER`](crate::activator::COLD_START_HEADER)). Off by default: clients need not
    /// learn the fleet's layout.
    pub serving_headers: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 100 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            hold_limit: kantai_driver::DEFAULT_HOLD_LIMIT,
            serving_headers: false,
        }
    }
}

/// The gateway of this node: its routing table, and the activator it hands requests to.
pub struct Gateway {
    routes: ArcSwap<Routes>,
    specs: Mutex<Vec<RouteSpec>>,
    domain: RwLock<String>,
    rng: Mutex<SmallRng>,
    max_body_bytes: u64,
    /// The activator role.
    pub(crate) activator: Activator,
}

impl Gateway {
    /// A gateway without routes, handing requests to `activator`.
    pub fn new(limits: &Limits, seed: u64, activator: Activator) -> Gateway {
        Gateway {
            routes: ArcSwap::from_pointee(Routes::default()),
            specs: Mutex::new(Vec::new()),
            domain: RwLock::new("svc.cluster.local".to_owned()),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            max_body_bytes: limits.max_body_bytes,
            activator,
        }
    }

    /// Serves a client's request.
    pub async fn serve(&self, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
        match self.route(&req) {
            Ok(rev) => self.activator.serve(&rev, req, client).await,
            Err(r) => r.into_response(),
        }
    }

    /// The revision a request goes to.
    fn route(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Arc<crate::revision::RevisionState>, Rejection> {
        let host = request_host(req).ok_or(Rejection::NoHost)?;
        let table = self.routes.load();
        let Some(route) = table.hosts.get(&*host) else {
            return Err(Rejection::NoRoute {
                host: host.into_owned(),
                domain: self.domain.read().clone(),
            });
        };
        if content_length(req.headers()).is_some_and(|l| l > self.max_body_bytes) {
            return Err(Rejection::TooLarge(self.max_body_bytes));
        }
        let picked = route.pick(&mut *self.rng.lock()).cloned();
        picked.ok_or_else(|| Rejection::NoRevision {
            service: route.service.clone(),
            why: route.unavailable.clone(),
        })
    }

    /// Sets the external domain and the routes.
    pub fn set_routes(&self, domain: &str, routes: Vec<RouteSpec>, revisions: &Revisions) {
        *self.domain.write() = domain.to_owned();
        *self.specs.lock() = routes;
        self.rebuild(revisions);
    }

    /// The revisions some route sends traffic to.
    pub fn routed(&self) -> HashSet<RevKey> {
        self.specs
            .lock()
            .iter()
            .flat_map(|r| {
                r.traffic
                    .iter()
                    .map(|(rev, _, _)| (r.namespace.clone(), rev.clone()))
            })
            .collect()
    }

    /// Rebuilds the table (the revisions' states may have changed).
    pub fn rebuild(&self, revisions: &Revisions) {
        let specs = self.specs.lock().clone();
        let domain = self.domain.read().clone();
        let table = Routes::build(&specs, &domain, &mut |ns, rev| revisions.state(ns, rev));
        self.routes.store(Arc::new(table));
    }
}
