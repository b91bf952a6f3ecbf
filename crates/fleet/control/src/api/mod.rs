//! The Kubernetes-style REST API: `/apis/{group}/{version}[/namespaces/{ns}]/{resource}
//! [/{name}[/{subresource}]]`, with create, get, list, watch, replace, patch (merge, JSON,
//! server-side apply) and delete; errors as `Status` objects.
//!
//! A request meets the modules in this order: `auth` (the bearer token), `routing`
//! (fixed paths: health, metrics, `agents`' endpoints; else `discovery`'s documents,
//! else a resource URL), `path` (the URL as resource, namespace, name, subresource),
//! `gate` (the verb, refused with 404 or 405 from the resource's verb table), then one
//! verb: `get`, `list`, `watch`, `create`, `replace`, `patch` (and `apply`),
//! `delete`, `status` or `log`. Each verb decodes its own `options` from the query
//! through `query`, reads its `body`, reads through `objects` (stored objects and the
//! `views`), passes `admission` before the store, and answers through `respond`
//! (`table` when a Table is asked for, `select` for selectors, `managers` for field
//! managers, `protobuf` for kubectl's protobuf bodies).

mod admission;
mod agents;
mod apply;
mod auth;
mod body;
mod create;
mod delete;
mod discovery;
mod gate;
mod get;
mod list;
mod log;
mod managers;
mod objects;
mod options;
mod patch;
mod path;
mod protobuf;
mod query;
mod replace;
mod respond;
mod routing;
mod select;
mod status;
mod table;
mod views;
mod watch;

pub use body::MAX_BODY_BYTES;
/// RFC 7386 JSON merge patch.
pub use json_patch::merge as merge_patch;
pub use respond::ApiFailure;
pub use routing::router;
