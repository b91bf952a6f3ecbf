//! Units found in manifests and configs: Go durations (`60s`, `1m30s`) and Kubernetes resource
//! quantities (`500m`, `640M`, `1Gi`).

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::decode::{Decode, wrong_type};
use crate::error::{FieldError, FieldPath, Findings};
use crate::node::{Node, Value};

/// Parses a Go `time.ParseDuration` string into signed nanoseconds.
///
/// Accepts `0`, and sequences of decimal numbers with units `ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`, optionally signed: `300ms`, `-1.5h`, `2h45m`.
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
    let bad = || format!("{s:?} is not a duration (examples: 60s, 1m30s, 500ms)");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let num: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += num * scale;
    }
    if !total.is_finite() || total > 9.2e18 {
        return Err(format!("{s:?} is too long a duration"));
    }
    let nanos = total.round() as i128;
    Ok(if neg { -nanos } else { nanos })
}

/// Formats a duration the way Go prints it (`1m30s`, `500ms`, `0s`).
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        return match nanos {
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}µs", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let frac = d.subsec_nanos();
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let f = format!("{:09}", frac);
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    }
    out
}

/// A Kubernetes resource quantity: the text as written, and its value in base units
/// (cores for CPU, bytes for memory).
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
}

impl Quantity {
    /// Parses `500m`, `0.5`, `640M`, `1Gi`, `1e3`.
    pub fn parse(text: &str) -> Result<Quantity, String> {
        let bad = || format!("{text:?} is not a quantity (examples: 500m, 1, 640M, 1Gi)");
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        if num.is_empty() || num.starts_with('.') && num.len() == 1 {
            return Err(bad());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        let mult = match suffix {
            "" => 1.0,
            "n" => 1e-9,
            "u" => 1e-6,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "P" => 1e15,
            "E" => 1e18,
            "Ki" => 1024.0,
            "Mi" => 1024.0f64.powi(2),
            "Gi" => 1024.0f64.powi(3),
            "Ti" => 1024.0f64.powi(4),
            "Pi" => 1024.0f64.powi(5),
            "Ei" => 1024.0f64.powi(6),
            s if s.starts_with(['e', 'E']) => {
                let exp: i32 = s[1..].parse().map_err(|_| bad())?;
                if !(-30..=30).contains(&exp) {
                    return Err(bad());
                }
                10f64.powi(exp)
            }
            _ => return Err(bad()),
        };
        let value = n * mult;
        if !value.is_finite() {
            return Err(bad());
        }
        Ok(Quantity {
            text: t.to_owned(),
            value,
        })
    }

    /// The value in base units (cores, bytes).
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl Decode for Quantity {
    fn decode(node: &Node, path: &FieldPath, out: &mut Findings) -> Option<Self> {
        // Kubernetes accepts `cpu: 1` and `cpu: 0.5` as numbers as well as strings.
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            _ => {
                wrong_type(node, path, "quantity", out);
                return None;
            }
        };
        match Quantity::parse(&text) {
            Ok(q) => Some(q),
            Err(e) => {
                out.push(FieldError {
                    pos: node.pos,
                    ..FieldError::error(path.clone(), e)
                });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("60s"), Ok(60_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("-2s"), Ok(-2_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("300ms"), Ok(300_000_000));
        for bad in ["", "60", "s", "1x", "1.2.3s", "--1s", "1 s"] {
            assert!(
                parse_go_duration(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn go_duration_formatting() {
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn quantities() {
        let q = |s: &str| Quantity::parse(s).map(|q| q.value());
        assert_eq!(q("500m"), Ok(0.5));
        assert_eq!(q("640M"), Ok(640e6));
        assert_eq!(q("1Gi"), Ok(1024.0 * 1024.0 * 1024.0));
        assert_eq!(q("2"), Ok(2.0));
        assert_eq!(q("1e3"), Ok(1000.0));
        for bad in ["", "m", "1x", "1.2.3", "Mi", "1e999"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
