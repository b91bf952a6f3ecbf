//! Distributions of durations (service times, cold starts), as written in a scenario:
//! `5ms` (constant), `{exponential: {mean: 5ms}}`, `{lognormal: {median: 5ms, sigma: 0.5}}`
//! (or `mean:` instead of `median:`), `{uniform: {min: 1ms, max: 9ms}}`.

use std::time::Duration;

use rand::{Rng, RngExt};
use rand_distr::{Distribution, Exp, LogNormal};
use serde::Deserialize;

use crate::scenario::{Dur, parse_duration};

/// A distribution of durations.
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    /// Always the same.
    Constant(Duration),
    /// Exponential with this mean.
    Exponential(Duration),
    /// Log-normal: `ln(x / 1 s)` is normal with mean `mu` and deviation `sigma`.
    LogNormal {
        /// μ in ln seconds.
        mu: f64,
        /// σ in ln seconds.
        sigma: f64,
    },
    /// Uniform between two durations.
    Uniform(Duration, Duration),
}

impl Dist {
    /// A log-normal with this mean and σ.
    pub fn lognormal_mean(mean: Duration, sigma: f64) -> Dist {
        Dist::LogNormal {
            mu: mean.as_secs_f64().max(1e-9).ln() - sigma * sigma / 2.0,
            sigma,
        }
    }

    /// The mean.
    pub fn mean(&self) -> Duration {
        match *self {
            Dist::Constant(d) | Dist::Exponential(d) => d,
            Dist::LogNormal { mu, sigma } => secs((mu + sigma * sigma / 2.0).exp()),
            Dist::Uniform(a, b) => (a + b) / 2,
        }
    }

    /// One draw, in nanoseconds.
    pub fn sample_ns(&self, rng: &mut impl Rng) -> u64 {
        let s = match *self {
            Dist::Constant(d) => return d.as_nanos() as u64,
            Dist::Exponential(m) => match Exp::new(1.0 / m.as_secs_f64().max(1e-12)) {
                Ok(e) => e.sample(rng),
                Err(_) => 0.0,
            },
            Dist::LogNormal { mu, sigma } => match LogNormal::new(mu, sigma) {
                Ok(l) => l.sample(rng),
                Err(_) => mu.exp(),
            },
            Dist::Uniform(a, b) => {
                let (a, b) = (a.as_nanos() as u64, b.as_nanos() as u64);
                return if b > a { rng.random_range(a..=b) } else { a };
            }
        };
        // Beyond a day, a duration means nothing to a request; it also keeps the sum in u64.
        (s.clamp(0.0, 86_400.0) * 1e9) as u64
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 1e9))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Text(String),
    Tagged(Tagged),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum Tagged {
    Constant(Dur),
    Exponential {
        mean: Dur,
    },
    Lognormal {
        #[serde(default)]
        median: Option<Dur>,
        #[serde(default)]
        mean: Option<Dur>,
        sigma: f64,
    },
    Uniform {
        min: Dur,
        max: Dur,
    },
}

impl<'de> Deserialize<'de> for Dist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = Written::deserialize(d).map_err(|_| {
            D::Error::custom(
                "a distribution is a duration (5ms) or one of {exponential: {mean}}, \
                 {lognormal: {median or mean, sigma}}, {uniform: {min, max}}, {constant: 5ms}",
            )
        })?;
        Ok(match w {
            Written::Text(s) => Dist::Constant(parse_duration(&s).map_err(D::Error::custom)?),
            Written::Tagged(Tagged::Constant(d)) => Dist::Constant(d.0),
            Written::Tagged(Tagged::Exponential { mean }) => Dist::Exponential(mean.0),
            Written::Tagged(Tagged::Lognormal {
                median,
                mean,
                sigma,
            }) => {
                if !(sigma.is_finite() && sigma >= 0.0) {
                    return Err(D::Error::custom(format!(
                        "lognormal sigma {sigma} must be a number ≥ 0"
                    )));
                }
                match (median, mean) {
                    (Some(m), None) => Dist::LogNormal {
                        mu: m.0.as_secs_f64().max(1e-9).ln(),
                        sigma,
                    },
                    (None, Some(m)) => Dist::lognormal_mean(m.0, sigma),
                    _ => {
                        return Err(D::Error::custom(
                            "lognormal takes exactly one of median and mean",
                        ));
                    }
                }
            }
            Written::Tagged(Tagged::Uniform { min, max }) => {
                if min > max {
                    return Err(D::Error::custom("uniform min is above max"));
                }
                Dist::Uniform(min.0, max.0)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn parse(y: &str) -> Dist {
        serde_saphyr::from_str(y).expect(y)
    }

    #[test]
    fn written_forms_parse_and_sample_around_their_mean() {
        let mut rng = SmallRng::seed_from_u64(7);
        for (y, mean_ms) in [
            ("5ms", 5.0),
            ("{exponential: {mean: 5ms}}", 5.0),
            ("{lognormal: {mean: 5ms, sigma: 0.5}}", 5.0),
            (
                "{lognormal: {median: 5ms, sigma: 0.5}}",
                5.0 * (0.125f64).exp(),
            ),
            ("{uniform: {min: 1ms, max: 9ms}}", 5.0),
        ] {
            let d = parse(y);
            assert!((d.mean().as_secs_f64() * 1e3 - mean_ms).abs() < 1e-6, "{y}");
            let n = 20_000;
            let avg = (0..n).map(|_| d.sample_ns(&mut rng) as f64).sum::<f64>() / n as f64 / 1e6;
            assert!((avg - mean_ms).abs() < mean_ms * 0.05, "{y}: {avg}");
        }
    }

    #[test]
    fn bad_distributions_say_what_is_allowed() {
        for y in [
            "{lognormal: {sigma: 1}}",
            "{normal: {mean: 1s}}",
            "{uniform: {min: 2s, max: 1s}}",
            "fast",
        ] {
            assert!(serde_saphyr::from_str::<Dist>(y).is_err(), "{y}");
        }
    }
}
