//! Label and field selectors (`?labelSelector=`, `?fieldSelector=`), as kubectl's `-l`,
//! `--field-selector`, `wait`, `delete` and `describe` send them.

use serde_json::Value;

/// One requirement of a selector.
#[derive(Debug, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector: every requirement must hold.
#[derive(Debug, Default, PartialEq)]
pub struct Selector {
    labels: Vec<Req>,
    fields: Vec<Req>,
}

/// Splits at commas outside parentheses (`env in (a,b),tier=edge`).
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn set_req(term: &str, op: &str) -> Option<(String, Vec<String>)> {
    let (k, rest) = term.split_once(op)?;
    let rest = rest.trim();
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    Some((
        k.trim().to_owned(),
        inner.split(',').map(|v| v.trim().to_owned()).collect(),
    ))
}

fn parse_label(term: &str) -> Result<Req, String> {
    if let Some((k, vs)) = set_req(term, " notin ") {
        return Ok(Req::NotIn(k, vs));
    }
    if let Some((k, vs)) = set_req(term, " in ") {
        return Ok(Req::In(k, vs));
    }
    parse_eq(term, true)
}

fn parse_eq(term: &str, allow_exists: bool) -> Result<Req, String> {
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Req::NotEq(k.trim().to_owned(), v.trim().to_owned()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Req::Eq(k.trim().to_owned(), v.trim().to_owned()));
    }
    let bad = |t: &str| t.is_empty() || t.contains([' ', '(', ')', '!', '=']);
    match term.strip_prefix('!') {
        Some(k) if allow_exists && !bad(k.trim()) => Ok(Req::NotExists(k.trim().to_owned())),
        None if allow_exists && !bad(term) => Ok(Req::Exists(term.to_owned())),
        _ => Err(format!("unable to parse requirement: {term:?}")),
    }
}

impl Selector {
    /// Parses the query's selectors; an error names the requirement it could not read.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, String> {
        let mut s = Selector::default();
        if let Some(l) = labels {
            for t in split_top(l) {
                s.labels.push(parse_label(t)?);
            }
        }
        if let Some(f) = fields {
            for t in split_top(f) {
                let r = parse_eq(t, false)?;
                if let Req::Eq(k, _) | Req::NotEq(k, _) = &r
                    && !supported_field(k)
                {
                    return Err(format!(
                        "field label not supported: {k} (kantai selects on metadata.name, metadata.namespace, spec.* and status.* scalars, and involvedObject.* of events)"
                    ));
                }
                s.fields.push(r);
            }
        }
        Ok(s)
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether an object satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        let field = |k: &str| -> Option<String> {
            let mut v = obj;
            for part in k.split('.') {
                v = v.get(part)?;
            }
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        self.labels.iter().all(|r| match r {
            Req::Eq(k, v) => label(k) == Some(v.as_str()),
            Req::NotEq(k, v) => label(k) != Some(v.as_str()),
            Req::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Req::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Req::Exists(k) => label(k).is_some(),
            Req::NotExists(k) => label(k).is_none(),
        }) && self.fields.iter().all(|r| match r {
            // A missing field reads as the empty string, as Kubernetes' field sets do.
            Req::Eq(k, v) => field(k).unwrap_or_default() == *v,
            Req::NotEq(k, v) => field(k).unwrap_or_default() != *v,
            _ => false,
        })
    }
}

fn supported_field(k: &str) -> bool {
    matches!(k, "metadata.name" | "metadata.namespace")
        || k.starts_with("spec.")
        || k.starts_with("status.")
        || k.starts_with("involvedObject.")
        || matches!(k, "reason" | "type" | "source")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "hello", "namespace": "default",
                            "labels": {"app": "hello", "tier": "edge"}},
               "spec": {"nodeName": "node3"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selectors_follow_kubernetes() {
        let m = |l: &str| Selector::parse(Some(l), None).expect(l).matches(&obj());
        assert!(m("app=hello"));
        assert!(m("app==hello,tier=edge"));
        assert!(!m("app=other"));
        assert!(m("app!=other"));
        assert!(m("tier in (cloud, edge)"));
        assert!(!m("tier notin (cloud,edge)"));
        assert!(m("app"));
        assert!(m("!missing"));
        assert!(!m("!app"));
        assert!(m("missing!=x"));
        assert!(Selector::parse(Some("a b"), None).is_err());
    }

    #[test]
    fn field_selectors_read_paths() {
        let m = |f: &str| Selector::parse(None, Some(f)).expect(f).matches(&obj());
        assert!(m("metadata.name=hello"));
        assert!(!m("metadata.name=other"));
        assert!(m("spec.nodeName=node3,status.phase!=Failed"));
        assert!(m("involvedObject.uid="));
        let err = Selector::parse(None, Some("foo=bar")).expect_err("unsupported");
        assert!(err.contains("foo"), "{err}");
    }
}
