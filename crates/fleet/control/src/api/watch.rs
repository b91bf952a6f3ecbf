//! `GET` on a collection with `?watch=true`: Kubernetes' watch, as newline-delimited JSON
//! events, with bookmarks when asked for and an end at `timeoutSeconds`.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use kantai_model::meta::JsonMeta;
use serde_json::{Value, json};

use super::list::selector;
use super::options::ListOptions;
use super::path::Target;
use super::respond::{ApiFailure, store_failure};
use super::{table, views};
use crate::Shared;
use crate::store::Event;

fn watch_line(type_: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// How often a watch that allows bookmarks gets one while nothing it selects changes.
const BOOKMARK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// A watch stream's state between events.
struct WatchState {
    pending: VecDeque<Bytes>,
    rx: tokio::sync::broadcast::Receiver<Event>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The newest store version seen (for bookmarks).
    last_rv: u64,
    next_bookmark: tokio::time::Instant,
    /// The watch timed out: send what is pending, then end.
    ended: bool,
}

/// Answers a watch: what the selectors match now (or since `resourceVersion`), then every
/// change as it is stored, one JSON line each.
pub fn watch(
    s: &Arc<Shared>,
    req: &Request,
    t: &Target,
    opts: &ListOptions,
) -> Result<Response, ApiFailure> {
    let (r, ns) = (t.resource, t.namespace.as_deref());
    let sel = selector(opts)?;
    let since = opts
        .resource_version
        .as_deref()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0);
    // A view (pods, nodes) watches what it is computed from.
    let backing = views::backing(&r).unwrap_or(r);
    let (snapshot, past, rx, start_rv) = s
        .store
        .watch(&backing, ns, since)
        .map_err(|e| store_failure(e, &r))?;
    let ns_filter = if r.namespaced {
        ns.map(str::to_owned)
    } else {
        None
    };
    let as_table =
        table::asked(req.headers(), opts.include_object).map(|include| (include, s.node_order()));
    let timeout = opts.timeout_seconds.map(std::time::Duration::from_secs);
    let plural = backing.plural;
    let bookmarks = opts.allow_watch_bookmarks;
    // Bookmarks carry the newest version seen: the store's at the snapshot, then each event's.
    let bookmark = move |rv: u64| {
        watch_line(
            "BOOKMARK",
            &json!({
                "kind": r.kind,
                "apiVersion": r.api_version(),
                "metadata": {"resourceVersion": rv.to_string()},
            }),
        )
    };
    let shared = s.clone();
    let mut first = true;
    // Each event as a line: the object as the client sees it (a view, or a one-row Table),
    // or nothing if the selector does not match.
    // Objects the client was told match the selector: one that stops matching is DELETED
    // for it, one that starts is ADDED, as Kubernetes' filtered watches do.
    let mut shown: HashSet<(String, String)> = HashSet::new();
    let mut render = move |type_: &str, stored: &Value| -> Option<Bytes> {
        let obj = if backing == r {
            stored.clone()
        } else {
            views::view(&shared, &r, stored)
        };
        let key = (
            obj.namespace().unwrap_or("").to_owned(),
            obj.name().to_owned(),
        );
        let was = shown.contains(&key);
        let type_ = match (type_, sel.matches(&obj), was) {
            // Without a selector everything matches: events go as they are.
            (t, _, _) if sel.is_empty() => t,
            ("DELETED", _, true) => {
                shown.remove(&key);
                "DELETED"
            }
            ("DELETED", _, false) => return None,
            (_, true, false) => {
                shown.insert(key);
                "ADDED"
            }
            (t, true, true) => t,
            (_, false, true) => {
                shown.remove(&key);
                "DELETED"
            }
            (_, false, false) => return None,
        };
        let obj = match &as_table {
            Some((include, order)) => {
                let t = table::watch_object(&r, &obj, *include, order, first);
                first = false;
                t
            }
            None => obj,
        };
        Some(watch_line(type_, &obj))
    };
    let matches = move |e: &Event| {
        e.resource == plural && ns_filter.as_ref().is_none_or(|n| *n == e.namespace)
    };
    let mut pending: VecDeque<Bytes> = snapshot.iter().filter_map(|o| render("ADDED", o)).collect();
    pending.extend(
        past.iter()
            .filter(|e| matches(e))
            .filter_map(|e| render(e.type_.as_str(), &e.object)),
    );
    let stopping = s.stopping.clone();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let state = WatchState {
        pending,
        rx,
        stopping,
        last_rv: start_rv,
        next_bookmark: tokio::time::Instant::now() + BOOKMARK_EVERY,
        ended: false,
    };
    let stream = futures_util::stream::unfold(
        (state, matches, render),
        move |(mut st, matches, mut render)| async move {
            loop {
                if let Some(b) = st.pending.pop_front() {
                    return Some((Ok::<Bytes, Infallible>(b), (st, matches, render)));
                }
                if st.ended {
                    return None;
                }
                let expire = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                let mark = async {
                    if bookmarks {
                        tokio::time::sleep_until(st.next_bookmark).await
                    } else {
                        std::future::pending().await
                    }
                };
                tokio::select! {
                    e = st.rx.recv() => match e {
                        Ok(e) => {
                            st.last_rv = st.last_rv.max(e.rv);
                            if matches(&e)
                                && let Some(line) = render(e.type_.as_str(), &e.object)
                            {
                                st.pending.push_back(line);
                            }
                        }
                        // A watcher too slow to keep up is ended; it lists and watches again.
                        Err(_) => return None,
                    },
                    _ = st.stopping.wait_for(|s| *s) => return None,
                    // A bookmark: the client may resume from here without a list.
                    _ = mark => {
                        st.pending.push_back(bookmark(st.last_rv));
                        st.next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
                    }
                    // `timeoutSeconds`: the watch ends cleanly (after a last bookmark, when
                    // asked for), as kubectl and informers expect.
                    _ = expire => {
                        if bookmarks {
                            st.pending.push_back(bookmark(st.last_rv));
                        }
                        st.ended = true;
                    }
                }
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
