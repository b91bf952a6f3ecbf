//! Policy parameters, read from a revision's `kantai.dev/*` annotations, with the errors a
//! validating webhook reports (key and message).

use std::collections::BTreeMap;
use std::time::Duration;

/// Annotation choosing the placement policy.
pub const PLACEMENT: &str = "kantai.dev/placement";
/// Annotation choosing the load balancer.
pub const LOAD_BALANCER: &str = "kantai.dev/load-balancer";
/// Annotation choosing the queue discipline.
pub const QUEUE: &str = "kantai.dev/queue";
/// Annotation choosing the keep-alive policy.
pub const KEEP_ALIVE: &str = "kantai.dev/keep-alive";
/// `fixed` keep-alive's window after the last request (default `10m`).
pub const KEEP_ALIVE_WINDOW: &str = "kantai.dev/keep-alive-window";
/// `hybrid-histogram`'s bin width (default `1m`).
pub const KEEP_ALIVE_BIN: &str = "kantai.dev/keep-alive-bin";
/// `hybrid-histogram`'s range of idle times (default `4h`).
pub const KEEP_ALIVE_RANGE: &str = "kantai.dev/keep-alive-range";
/// `pinned` placement's per-node counts: `node1=0,node2=0,node3=1`.
pub const PINNED: &str = "kantai.dev/pinned";
/// `consistent-hash`'s key: `path` (default), `source`, or `header:NAME`.
pub const HASH_KEY: &str = "kantai.dev/hash-key";
/// `priority`'s path rules: `/admin*=high,/batch*=low` (first match wins).
pub const PRIORITY_RULES: &str = "kantai.dev/priority-rules";
/// `edf`'s deadline for requests without a `kantai-deadline` header (default `1s`).
pub const DEFAULT_DEADLINE: &str = "kantai.dev/default-deadline";

/// Request header giving a request's priority class: `high`, `normal`, `low` or 0–9.
pub const PRIORITY_HEADER: &str = "kantai-priority";
/// Request header giving a request's deadline, relative to its arrival: `150ms`, `2s`.
pub const DEADLINE_HEADER: &str = "kantai-deadline";

/// Every `kantai.dev/*` annotation kantai reads.
pub const KEYS: &[&str] = &[
    PLACEMENT,
    LOAD_BALANCER,
    QUEUE,
    KEEP_ALIVE,
    PINNED,
    HASH_KEY,
    PRIORITY_RULES,
    DEFAULT_DEADLINE,
    KEEP_ALIVE_WINDOW,
    KEEP_ALIVE_BIN,
    KEEP_ALIVE_RANGE,
];

/// Where `consistent-hash` takes its key from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HashKey {
    /// The request path.
    #[default]
    Path,
    /// The client's address.
    Source,
    /// A header (lower-case name); requests without it fall back to the path.
    Header(String),
}

/// The parameters of a revision's policies.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Fixed per-node counts for `pinned`, in the order written.
    pub pinned: Vec<(String, u32)>,
    /// The key of `consistent-hash`.
    pub hash_key: HashKey,
    /// Path rules of `priority`: pattern (`*` at the end matches any rest) and class.
    pub priority_rules: Vec<(String, u8)>,
    /// The deadline of `edf` for requests that do not give one.
    pub default_deadline: Duration,
    /// How long `fixed` keeps an instance after the last request.
    pub keep_alive_window: Duration,
    /// The bin width of `hybrid-histogram`'s idle times.
    pub keep_alive_bin: Duration,
    /// The range of `hybrid-histogram`'s idle times.
    pub keep_alive_range: Duration,
}

/// `fixed` keep-alive's default window: AWS Lambda's and OpenWhisk's 10 minutes.
pub const DEFAULT_KEEP_ALIVE_WINDOW: Duration = Duration::from_secs(600);
/// `hybrid-histogram`'s default bin width, the paper's minute.
pub const DEFAULT_KEEP_ALIVE_BIN: Duration = Duration::from_secs(60);
/// `hybrid-histogram`'s default range, the paper's four hours.
pub const DEFAULT_KEEP_ALIVE_RANGE: Duration = Duration::from_secs(4 * 3600);

impl Default for Params {
    fn default() -> Self {
        Params {
            pinned: Vec::new(),
            hash_key: HashKey::Path,
            priority_rules: Vec::new(),
            default_deadline: Duration::from_secs(1),
            keep_alive_window: DEFAULT_KEEP_ALIVE_WINDOW,
            keep_alive_bin: DEFAULT_KEEP_ALIVE_BIN,
            keep_alive_range: DEFAULT_KEEP_ALIVE_RANGE,
        }
    }
}

/// A parameter that could not be read: the annotation and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// The annotation key.
    pub key: &'static str,
    /// What is wrong, and what is allowed.
    pub message: String,
}

impl Params {
    /// Reads the parameters from annotations; every malformed one is reported, and its
    /// default is used.
    pub fn parse(annotations: &BTreeMap<String, String>) -> (Params, Vec<ParamError>) {
        let mut p = Params::default();
        let mut errors = Vec::new();
        if let Some(v) = annotations.get(PINNED) {
            match parse_pinned(v) {
                Ok(x) => p.pinned = x,
                Err(m) => errors.push(ParamError {
                    key: PINNED,
                    message: m,
                }),
            }
        }
        if let Some(v) = annotations.get(HASH_KEY) {
            let v = v.trim();
            p.hash_key = match v {
                "path" => HashKey::Path,
                "source" => HashKey::Source,
                _ => match v.strip_prefix("header:") {
                    Some(h) if is_header_name(h) => HashKey::Header(h.to_ascii_lowercase()),
                    _ => {
                        errors.push(ParamError {
                            key: HASH_KEY,
                            message: "must be `path`, `source` or `header:NAME`".into(),
                        });
                        HashKey::Path
                    }
                },
            };
        }
        if let Some(v) = annotations.get(PRIORITY_RULES) {
            match parse_rules(v) {
                Ok(x) => p.priority_rules = x,
                Err(m) => errors.push(ParamError {
                    key: PRIORITY_RULES,
                    message: m,
                }),
            }
        }
        for (key, field) in [
            (DEFAULT_DEADLINE, &mut p.default_deadline),
            (KEEP_ALIVE_WINDOW, &mut p.keep_alive_window),
            (KEEP_ALIVE_BIN, &mut p.keep_alive_bin),
            (KEEP_ALIVE_RANGE, &mut p.keep_alive_range),
        ] {
            if let Some(v) = annotations.get(key) {
                match parse_duration(v) {
                    Some(d) if !d.is_zero() => *field = d,
                    _ => errors.push(ParamError {
                        key,
                        message: "must be a positive duration such as 500ms, 2s or 10m".into(),
                    }),
                }
            }
        }
        if p.keep_alive_bin > p.keep_alive_range {
            errors.push(ParamError {
                key: KEEP_ALIVE_BIN,
                message: format!(
                    "the bin ({:?}) is wider than the range ({:?}, {KEEP_ALIVE_RANGE})",
                    p.keep_alive_bin, p.keep_alive_range
                ),
            });
            p.keep_alive_bin = DEFAULT_KEEP_ALIVE_BIN.min(p.keep_alive_range);
        }
        (p, errors)
    }

    /// The annotations that give these parameters (those that differ from the defaults):
    /// `Params::parse(&p.to_annotations())` gives `p` back.
    pub fn to_annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if !self.pinned.is_empty() {
            let v: Vec<String> = self
                .pinned
                .iter()
                .map(|(n, c)| format!("{n}={c}"))
                .collect();
            out.insert(PINNED.to_owned(), v.join(","));
        }
        match &self.hash_key {
            HashKey::Path => {}
            HashKey::Source => {
                out.insert(HASH_KEY.to_owned(), "source".to_owned());
            }
            HashKey::Header(h) => {
                out.insert(HASH_KEY.to_owned(), format!("header:{h}"));
            }
        }
        if !self.priority_rules.is_empty() {
            let v: Vec<String> = self
                .priority_rules
                .iter()
                .map(|(p, c)| format!("{p}={c}"))
                .collect();
            out.insert(PRIORITY_RULES.to_owned(), v.join(","));
        }
        let d = Params::default();
        for (key, mine, default) in [
            (DEFAULT_DEADLINE, self.default_deadline, d.default_deadline),
            (
                KEEP_ALIVE_WINDOW,
                self.keep_alive_window,
                d.keep_alive_window,
            ),
            (KEEP_ALIVE_BIN, self.keep_alive_bin, d.keep_alive_bin),
            (KEEP_ALIVE_RANGE, self.keep_alive_range, d.keep_alive_range),
        ] {
            if mine != default {
                out.insert(key.to_owned(), format!("{}us", mine.as_micros()));
            }
        }
        out
    }

    /// The class of a request under the path rules (`None`: no rule matches).
    pub fn rule_class(&self, path: &str) -> Option<u8> {
        rule_class(&self.priority_rules, path)
    }
}

/// The class the first matching rule gives `path` (`*` at a pattern's end matches any rest).
pub fn rule_class(rules: &[(String, u8)], path: &str) -> Option<u8> {
    rules
        .iter()
        .find(|(pat, _)| match pat.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == pat,
        })
        .map(|(_, c)| *c)
}

fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
}

fn parse_pinned(v: &str) -> Result<Vec<(String, u32)>, String> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((node, n)) = part.split_once('=') else {
            return Err(format!(
                "invalid entry {part:?}: expected NODE=COUNT, as in node1=0,node3=1"
            ));
        };
        let node = node.trim();
        let n: u32 = n.trim().parse().map_err(|_| {
            format!(
                "invalid count {:?} for node {node:?}: must be a whole number",
                n.trim()
            )
        })?;
        if node.is_empty() {
            return Err(format!("invalid entry {part:?}: the node name is empty"));
        }
        if out.iter().any(|(o, _)| o == node) {
            return Err(format!("node {node:?} is given twice"));
        }
        out.push((node.to_owned(), n));
    }
    if out.is_empty() {
        return Err("no node given: expected NODE=COUNT, as in node1=0,node3=1".into());
    }
    Ok(out)
}

/// Parses a priority class: `high` (7), `normal` (4), `low` (1) or a digit 0–9.
pub fn parse_class(v: &str) -> Option<u8> {
    match v.trim() {
        "high" => Some(7),
        "normal" => Some(4),
        "low" => Some(1),
        d => d.parse::<u8>().ok().filter(|c| *c <= 9),
    }
}

fn parse_rules(v: &str) -> Result<Vec<(String, u8)>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((pat, class)) = part.rsplit_once('=') else {
            return Err(format!(
                "invalid rule {part:?}: expected PATH=CLASS, as in /admin*=high"
            ));
        };
        let pat = pat.trim();
        if !pat.starts_with('/') {
            return Err(format!("invalid rule {part:?}: the path must start with /"));
        }
        let c = parse_class(class).ok_or_else(|| {
            format!(
                "invalid class {:?} in rule {part:?}: must be high, normal, low or 0-9",
                class.trim()
            )
        })?;
        out.push((pat.to_owned(), c));
    }
    Ok(out)
}

/// Parses a short duration: a number and a unit (`ns`, `us`, `ms`, `s`, `m`, `h`).
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && (0.0..=1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anns(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_every_parameter() {
        let (p, e) = Params::parse(&anns(&[
            (PINNED, "node1=0, node3=2"),
            (HASH_KEY, "header:X-User"),
            (PRIORITY_RULES, "/admin*=high,/batch=low,/x=9"),
            (DEFAULT_DEADLINE, "250ms"),
        ]));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(p.pinned, [("node1".into(), 0), ("node3".into(), 2)]);
        assert_eq!(p.hash_key, HashKey::Header("x-user".into()));
        assert_eq!(p.rule_class("/admin/users"), Some(7));
        assert_eq!(p.rule_class("/batch"), Some(1));
        assert_eq!(p.rule_class("/batch/2"), None);
        assert_eq!(p.default_deadline, Duration::from_millis(250));
    }

    #[test]
    fn reports_every_mistake_with_its_key() {
        let (p, e) = Params::parse(&anns(&[
            (PINNED, "node1:3"),
            (HASH_KEY, "cookie"),
            (PRIORITY_RULES, "admin=high"),
            (DEFAULT_DEADLINE, "soon"),
        ]));
        let keys: Vec<&str> = e.iter().map(|e| e.key).collect();
        assert_eq!(keys, [PINNED, HASH_KEY, PRIORITY_RULES, DEFAULT_DEADLINE]);
        assert!(e[0].message.contains("NODE=COUNT"), "{}", e[0].message);
        assert_eq!(p, Params::default());
    }

    #[test]
    fn annotations_give_the_same_parameters_back() {
        let (p, e) = Params::parse(&anns(&[
            (PINNED, "node1=0,node3=2"),
            (HASH_KEY, "header:X-User"),
            (PRIORITY_RULES, "/admin*=high,/batch=low"),
            (DEFAULT_DEADLINE, "250ms"),
            (KEEP_ALIVE_WINDOW, "90s"),
            (KEEP_ALIVE_BIN, "10s"),
            (KEEP_ALIVE_RANGE, "1h"),
        ]));
        assert!(e.is_empty());
        assert_eq!(p.keep_alive_window, Duration::from_secs(90));
        assert_eq!(Params::parse(&p.to_annotations()), (p, Vec::new()));
        assert!(Params::default().to_annotations().is_empty());
    }

    #[test]
    fn a_bin_wider_than_the_range_is_refused() {
        let (p, e) = Params::parse(&anns(&[(KEEP_ALIVE_BIN, "2h"), (KEEP_ALIVE_RANGE, "1h")]));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, KEEP_ALIVE_BIN);
        assert!(
            e[0].message.contains("wider than the range"),
            "{}",
            e[0].message
        );
        assert!(p.keep_alive_bin <= p.keep_alive_range);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_duration("20"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1d"), None);
    }
}
