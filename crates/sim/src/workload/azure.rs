//! The Azure Functions 2019 public trace (`Azure/AzurePublicDataset`,
//! `AzureFunctionsDataset2019.md`): the user supplies the files.
//!
//! - `invocations_per_function_md.anon.dNN.csv`: `HashOwner,HashApp,HashFunction,Trigger,1,…,1440`,
//!   invocations of each function in each minute of the day;
//! - `function_durations_percentiles.anon.dNN.csv`: `HashOwner,HashApp,HashFunction,Average,
//!   Count,Minimum,Maximum,percentile_Average_0,…_1,…_25,…_50,…_75,…_99,…_100` in ms.
//!
//! A minute's invocations are spread uniformly over the minute (DSLab's `BucketUniform`).
//! A function's service time is log-normal with the trace's median and the spread of its
//! quartiles (σ = ln(p75/p25) / 1.349); without a durations row, the trace's published
//! shape (see `synthetic`).

use std::collections::HashMap;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::SmallRng;

use crate::dist::Dist;

/// One function of the trace, with its per-minute counts.
#[derive(Clone, Debug)]
pub struct TraceFunction {
    /// `HashFunction`.
    pub hash: String,
    /// `Trigger`.
    pub trigger: String,
    /// Invocations per minute from the first minute replayed.
    pub minutes: Vec<u32>,
}

/// Reads the invocations file: at most `max` functions, minutes from `first` for `count`
/// minutes. Every problem names its line.
pub fn read_invocations(
    text: &str,
    file: &str,
    max: Option<u32>,
    first: u32,
    count: u32,
) -> Result<Vec<TraceFunction>, String> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err(format!("{file}: empty file"));
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    if cols.len() < 5 || cols[..4] != ["HashOwner", "HashApp", "HashFunction", "Trigger"] {
        return Err(format!(
            "{file}:1: not an Azure 2019 invocations file (its header starts with \
             HashOwner,HashApp,HashFunction,Trigger,1,2,…)"
        ));
    }
    let minutes_in_file = cols.len() - 4;
    if first as usize >= minutes_in_file {
        return Err(format!(
            "{file}: first-minute {first} is past the file's {minutes_in_file} minutes"
        ));
    }
    let last = (first as usize + count as usize).min(minutes_in_file);
    let mut out = Vec::new();
    for (i, line) in lines {
        if max.is_some_and(|m| out.len() >= m as usize) {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let c: Vec<&str> = line.split(',').collect();
        if c.len() != cols.len() {
            return Err(format!(
                "{file}:{}: {} columns; the header has {}",
                i + 1,
                c.len(),
                cols.len()
            ));
        }
        let mut minutes = Vec::with_capacity(last - first as usize);
        for (m, v) in c[4 + first as usize..4 + last].iter().enumerate() {
            minutes.push(v.trim().parse::<u32>().map_err(|_| {
                format!(
                    "{file}:{}: minute {} has {v:?}, not a count",
                    i + 1,
                    first as usize + m + 1
                )
            })?);
        }
        out.push(TraceFunction {
            hash: c[2].trim().to_owned(),
            trigger: c[3].trim().to_owned(),
            minutes,
        });
    }
    Ok(out)
}

/// Reads the durations file into a service-time distribution per `HashFunction`.
pub fn read_durations(text: &str, file: &str) -> Result<HashMap<String, Dist>, String> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err(format!("{file}: empty file"));
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("{file}:1: no {name} column (not an Azure 2019 durations file)"))
    };
    let (hash, avg, p25, p50, p75) = (
        col("HashFunction")?,
        col("Average")?,
        col("percentile_Average_25")?,
        col("percentile_Average_50")?,
        col("percentile_Average_75")?,
    );
    let mut out = HashMap::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let c: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |k: usize| -> Result<f64, String> {
            c.get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    format!(
                        "{file}:{}: column {} is not a number of ms ≥ 0",
                        i + 1,
                        cols[k]
                    )
                })
        };
        let (a, q1, q2, q3) = (num(avg)?, num(p25)?, num(p50)?, num(p75)?);
        let dist = if q1 > 0.0 && q3 >= q1 && q2 > 0.0 {
            Dist::LogNormal {
                mu: (q2 / 1e3).ln(),
                sigma: (q3 / q1).ln() / 1.349,
            }
        } else {
            Dist::Constant(Duration::from_secs_f64(a.max(0.0) / 1e3))
        };
        out.insert(c[hash].to_owned(), dist);
    }
    Ok(out)
}

/// The arrival times (ns) of a function's minutes, uniform within each minute, sorted.
pub fn spread(minutes: &[u32], rng: &mut SmallRng) -> Vec<u64> {
    const MINUTE: u64 = 60_000_000_000;
    let mut out = Vec::with_capacity(minutes.iter().map(|m| *m as usize).sum());
    for (m, &n) in minutes.iter().enumerate() {
        let base = m as u64 * MINUTE;
        let start = out.len();
        for _ in 0..n {
            out.push(base + rng.random_range(0..MINUTE));
        }
        out[start..].sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const INV: &str = "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n\
                       o1,a1,f1,http,2,0,1\n\
                       o1,a1,f2,timer,1,1,1\n";
    const DUR: &str = "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,\
                       percentile_Average_0,percentile_Average_1,percentile_Average_25,\
                       percentile_Average_50,percentile_Average_75,percentile_Average_99,\
                       percentile_Average_100\n\
                       o1,a1,f1,120,3,10,300,10,10,50,100,200,300,300\n";

    #[test]
    fn invocations_and_durations_are_read() {
        let f = read_invocations(INV, "inv.csv", None, 1, 5).expect("valid");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].minutes, vec![0, 1]);
        assert_eq!(f[1].trigger, "timer");
        let d = read_durations(DUR, "dur.csv").expect("valid");
        match d["f1"] {
            Dist::LogNormal { mu, sigma } => {
                assert!((mu - 0.1f64.ln()).abs() < 1e-9);
                assert!((sigma - 4f64.ln() / 1.349).abs() < 1e-9);
            }
            ref other => panic!("{other:?}"),
        }
        let times = spread(&[2, 0, 1], &mut SmallRng::seed_from_u64(1));
        assert_eq!(times.len(), 3);
        assert!(times[1] < 60_000_000_000 && times[2] >= 120_000_000_000);
    }

    #[test]
    fn malformed_files_name_the_line() {
        let e = read_invocations("a,b\n", "inv.csv", None, 0, 1).expect_err("header");
        assert!(e.contains("inv.csv:1"), "{e}");
        let e = read_invocations(
            "HashOwner,HashApp,HashFunction,Trigger,1\no,a,f,http,x\n",
            "inv.csv",
            None,
            0,
            1,
        )
        .expect_err("count");
        assert!(e.contains("inv.csv:2: minute 1"), "{e}");
        let e = read_durations("HashFunction,Average\n", "dur.csv").expect_err("columns");
        assert!(e.contains("percentile_Average_25"), "{e}");
    }
}
