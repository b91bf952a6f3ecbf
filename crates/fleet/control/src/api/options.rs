//! What each verb takes in its query (typed, decoded by [`super::query`]) and, for a
//! DELETE, in its body; `?dryRun=` and `DeleteOptions` checked as Kubernetes' handlers
//! check them, before anything else happens.

use axum::extract::Request;
use kantai_api::{Status, StatusCause};
use serde::Deserialize;
use serde_json::Value;

use super::body::read_body;
use super::query;
use super::respond::{ApiFailure, fail};
use super::table::Include;

/// A get's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GetOptions {
    /// What a Table's row carries besides its cells.
    pub include_object: Option<Include>,
}

/// A list's or a watch's options (Kubernetes' `ListOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListOptions {
    /// Watch instead of list.
    pub watch: bool,
    /// `app=x,tier in (a,b)`.
    pub label_selector: Option<String>,
    /// `metadata.name=x`.
    pub field_selector: Option<String>,
    /// A watch starts after this version (a number the store gave; anything else is
    /// "from now").
    pub resource_version: Option<String>,
    /// Checked only: kantai lists from its newest version.
    pub resource_version_match: Option<ResourceVersionMatch>,
    /// Checked only: kantai answers whole lists.
    pub limit: Option<u64>,
    /// A watch ends after this long.
    pub timeout_seconds: Option<u64>,
    /// A watch sends bookmarks.
    pub allow_watch_bookmarks: bool,
    /// What a Table's row carries besides its cells.
    pub include_object: Option<Include>,
}

/// `?resourceVersionMatch=`.
#[derive(Debug, Deserialize)]
pub enum ResourceVersionMatch {
    /// The list is at least as new as the version given.
    NotOlderThan,
    /// The list is exactly at the version given.
    Exact,
}

/// `?fieldValidation=`: kantai refuses unknown fields whatever it says.
#[derive(Debug, Deserialize)]
pub enum FieldValidation {
    /// Drop unknown fields.
    Ignore,
    /// Drop them with a warning.
    Warn,
    /// Refuse them.
    Strict,
}

/// A create's, replace's or `/status` replace's options (`CreateOptions`, `UpdateOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WriteOptions {
    /// `All` (possibly repeated) for a dry run.
    pub dry_run: Vec<String>,
    /// Who is writing.
    pub field_manager: Option<String>,
    /// Checked only.
    pub field_validation: Option<FieldValidation>,
}

/// A patch's options (`PatchOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PatchOptions {
    /// `All` (possibly repeated) for a dry run.
    pub dry_run: Vec<String>,
    /// Who is writing (required for server-side apply).
    pub field_manager: Option<String>,
    /// Server-side apply takes over fields other managers own.
    pub force: bool,
    /// Checked only.
    pub field_validation: Option<FieldValidation>,
}

/// A log's options (`PodLogOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LogOptions {
    /// Only the last lines.
    pub tail_lines: Option<u64>,
    /// Keep streaming.
    pub follow: bool,
}

/// The query half of a DELETE's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DeleteQuery {
    dry_run: Vec<String>,
    propagation_policy: Vec<String>,
    /// Checked only: kantai deletes at once.
    grace_period_seconds: Option<u64>,
}

/// Which options a request carries (they are named in errors, as Kubernetes names them).
#[derive(Clone, Copy, Debug)]
pub enum Options {
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Options {
    fn kind(self) -> &'static str {
        match self {
            Options::Create => "CreateOptions",
            Options::Update => "UpdateOptions",
            Options::Patch => "PatchOptions",
            Options::Delete => "DeleteOptions",
        }
    }
}

/// `?dryRun=All` (possibly repeated) makes a write a dry run; any other value is refused with
/// 422 naming it, as Kubernetes does, rather than taken for a dry run or a real write.
pub fn dry_run(values: &[String], options: Options) -> Result<bool, ApiFailure> {
    let causes: Vec<StatusCause> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.as_str() != "All")
        .map(|(i, v)| StatusCause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: {v:?}: supported values: \"All\""),
            field: format!("dryRun[{i}]"),
        })
        .collect();
    if causes.is_empty() {
        Ok(!values.is_empty())
    } else {
        Err(invalid(options, causes))
    }
}

fn invalid(options: Options, causes: Vec<StatusCause>) -> ApiFailure {
    let summary = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect::<Vec<_>>()
        .join(", ");
    let mut st = Status::failure(
        422,
        "Invalid",
        format!("{}.meta.k8s.io \"\" is invalid: {summary}", options.kind()),
    )
    .with_details("meta.k8s.io", options.kind(), "");
    if let Some(d) = &mut st.details {
        d.causes = causes;
    }
    ApiFailure(Box::new(st))
}

/// A DELETE's options: from its body (where kubectl and client libraries put them) and its
/// query, checked as Kubernetes checks them.
#[derive(Debug, Default)]
pub struct DeleteOptions {
    /// Store nothing.
    pub dry_run: bool,
    /// Delete only the object with this uid.
    pub uid: Option<String>,
    /// Delete only this version of the object.
    pub resource_version: Option<String>,
}

/// Propagation policies Kubernetes knows; kantai deletes what an object owns at once, which
/// is what each of them ends in without finalizers.
const PROPAGATION: &[&str] = &["Orphan", "Background", "Foreground"];

/// Reads and checks a DELETE's options.
pub async fn delete_options(req: Request) -> Result<DeleteOptions, ApiFailure> {
    let DeleteQuery {
        dry_run: mut dry,
        propagation_policy: mut propagation,
        ..
    } = query::decode(req.uri())?;
    let mut causes = Vec::new();
    let body = read_body(req).await?;
    let mut out = DeleteOptions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            fail(
                400,
                "BadRequest",
                format!("the DeleteOptions in the request body are not valid JSON: {e}"),
            )
        })?;
        let Value::Object(o) = v else {
            return Err(fail(
                400,
                "BadRequest",
                "the request body of a DELETE must be a DeleteOptions object",
            ));
        };
        for (k, v) in &o {
            match (k.as_str(), v) {
                ("apiVersion" | "kind", Value::String(_)) | (_, Value::Null) => {}
                ("dryRun", Value::Array(a)) => {
                    for (i, x) in a.iter().enumerate() {
                        match x.as_str() {
                            Some(s) => dry.push(s.to_owned()),
                            None => causes.push(wrong_type(&format!("dryRun[{i}]"), "a string")),
                        }
                    }
                }
                ("propagationPolicy", Value::String(p)) => propagation.push(p.clone()),
                ("gracePeriodSeconds", Value::Number(n)) if n.as_i64().is_some_and(|g| g >= 0) => {}
                ("orphanDependents", Value::Bool(_)) => {}
                ("preconditions", Value::Object(p)) => {
                    for (pk, pv) in p {
                        match (pk.as_str(), pv) {
                            ("uid", Value::String(u)) => out.uid = Some(u.clone()),
                            ("resourceVersion", Value::String(r)) => {
                                out.resource_version = Some(r.clone());
                            }
                            (_, Value::Null) => {}
                            ("uid" | "resourceVersion", _) => {
                                causes.push(wrong_type(&format!("preconditions.{pk}"), "a string"))
                            }
                            _ => causes.push(unknown(&format!("preconditions.{pk}"))),
                        }
                    }
                }
                (
                    "dryRun" | "propagationPolicy" | "gracePeriodSeconds" | "orphanDependents"
                    | "preconditions" | "apiVersion" | "kind",
                    _,
                ) => causes.push(wrong_type(k, expected(k))),
                _ => causes.push(unknown(k)),
            }
        }
    }
    for p in propagation {
        if !PROPAGATION.contains(&p.as_str()) {
            causes.push(StatusCause {
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: {p:?}: supported values: \"Orphan\", \"Background\", \"Foreground\""
                ),
                field: "propagationPolicy".into(),
            });
        }
    }
    match dry_run(&dry, Options::Delete) {
        Ok(d) => out.dry_run = d,
        Err(ApiFailure(st)) => causes.extend(st.details.map(|d| d.causes).unwrap_or_default()),
    }
    if causes.is_empty() {
        Ok(out)
    } else {
        Err(invalid(Options::Delete, causes))
    }
}

fn expected(field: &str) -> &'static str {
    match field {
        "dryRun" => "a list of strings",
        "gracePeriodSeconds" => "a whole number of seconds, 0 or more",
        "orphanDependents" => "true or false",
        "preconditions" => "an object (uid, resourceVersion)",
        _ => "a string",
    }
}

fn wrong_type(field: &str, expected: &str) -> StatusCause {
    StatusCause {
        reason: "FieldValueInvalid".into(),
        message: format!("must be {expected}"),
        field: field.to_owned(),
    }
}

fn unknown(field: &str) -> StatusCause {
    StatusCause {
        reason: "FieldValueInvalid".into(),
        message: "unknown field".into(),
        field: field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_all_is_a_dry_run() {
        assert!(!dry_run(&[], Options::Create).ok().expect("no value"));
        assert!(
            dry_run(&["All".into(), "All".into()], Options::Create)
                .ok()
                .expect("All")
        );
        for bad in ["junk", "false", "", "all"] {
            let Err(ApiFailure(st)) = dry_run(&[bad.into()], Options::Delete) else {
                panic!("{bad:?} accepted");
            };
            assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
            let causes = st.details.expect("details").causes;
            assert_eq!(causes[0].field, "dryRun[0]");
            assert!(causes[0].message.contains(&format!("{bad:?}")));
        }
    }

    fn refusal<T: std::fmt::Debug>(r: Result<T, ApiFailure>) -> String {
        match r {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(ApiFailure(st)) => {
                assert_eq!((st.code, st.reason.as_str()), (400, "BadRequest"));
                st.message
            }
        }
    }

    fn uri(q: &str) -> axum::http::Uri {
        format!("/x?{q}").parse().expect("a URI")
    }

    #[test]
    fn each_verb_checks_its_typed_parameters() {
        let m = refusal(query::decode::<ListOptions>(&uri(
            "watch&timeoutSeconds=soon",
        )));
        assert_eq!(
            m,
            "query parameter timeoutSeconds=\"soon\" is invalid: it must be a whole number, 0 or more"
        );
        let m = refusal(query::decode::<WriteOptions>(&uri(
            "fieldValidation=Lenient",
        )));
        assert_eq!(
            m,
            "query parameter fieldValidation=\"Lenient\" is invalid: it must be one of Ignore, Warn, Strict"
        );
        refusal(query::decode::<ListOptions>(&uri(
            "resourceVersionMatch=Newest",
        )));
        refusal(query::decode::<ListOptions>(&uri("includeObject=All")));
        refusal(query::decode::<LogOptions>(&uri("tailLines=-3")));
        refusal(query::decode::<PatchOptions>(&uri(
            "fieldValidation=strict",
        )));
    }

    #[test]
    fn a_verb_ignores_the_parameters_of_others() {
        let opts = query::decode::<LogOptions>(&uri("limit=x&tailLines=5&follow"))
            .ok()
            .expect("valid");
        assert_eq!((opts.tail_lines, opts.follow), (Some(5), true));
    }

    #[test]
    fn list_options_read_watches_as_kubernetes() {
        let opts = query::decode::<ListOptions>(&uri(
            "watch=1&allowWatchBookmarks=true&timeoutSeconds=30&resourceVersion=12&includeObject=None",
        ))
        .ok()
        .expect("valid");
        assert!(opts.watch && opts.allow_watch_bookmarks);
        assert_eq!(opts.timeout_seconds, Some(30));
        assert_eq!(opts.resource_version.as_deref(), Some("12"));
        assert_eq!(opts.include_object, Some(Include::None));
    }
}
