//! Line charts as standalone SVG: labelled axes with units, "nice" ticks (1, 2, 5 × 10ⁿ, or
//! powers of ten on a log axis), light grid lines, a legend, colours from the Okabe–Ito
//! palette (distinguishable with the common colour-vision deficiencies) and a dash pattern
//! per series as a second cue.

use std::fmt::Write as _;

use crate::escape;

/// How an axis maps values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Linear.
    Linear,
    /// Base-10 logarithmic (values ≤ 0 are left out).
    Log,
}

/// One line.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
    /// Drawn as steps (a value holds until the next point), as for counts over time.
    pub step: bool,
    /// Colour and dash pattern (indices into the palettes) instead of the series' position:
    /// a pair of series of one thing (live and simulated) share a colour.
    pub style: Option<(usize, usize)>,
}

/// A chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label, with its unit.
    pub x_label: String,
    /// Y axis label, with its unit.
    pub y_label: String,
    /// X scale.
    pub x_scale: Scale,
    /// Y range to show (`None`: from the data, starting at 0 on a linear axis).
    pub y_range: Option<(f64, f64)>,
    /// The lines.
    pub series: Vec<Series>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 64.0;
/// Okabe–Ito.
const COLOURS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];

/// Ticks for [lo, hi] at 1, 2 or 5 × 10ⁿ, about `n` of them.
pub(crate) fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // Multiples of the step, each computed afresh (no accumulated rounding).
    let first = (lo / step - 1e-9).ceil() as i64;
    (first..)
        .map(|k| k as f64 * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        .take(50)
        .collect()
}

/// A tick's text: no more digits than the step needs.
fn label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

impl Chart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let pw = WIDTH - LEFT - RIGHT;
        let ph = HEIGHT - TOP - BOTTOM;
        let xs = |x: f64| match self.x_scale {
            Scale::Linear => Some(x),
            Scale::Log => (x > 0.0).then(|| x.log10()),
        };
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter_map(|&(x, y)| Some((xs(x)?, y)))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let (mut x0, mut x1) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 - x0 < 1e-12 {
            x1 = x0 + 1.0;
        }
        match self.x_scale {
            // Whole decades.
            Scale::Log => (x0, x1) = (x0.floor(), x1.ceil()),
            // Time and counts start at 0.
            Scale::Linear if x0 > 0.0 => x0 = 0.0,
            Scale::Linear => {}
        }
        // Room for the dot of a one-point series at the right edge.
        if self.x_scale == Scale::Linear && self.series.iter().any(|s| s.points.len() == 1) {
            x1 += (x1 - x0) * 0.05;
        }
        // Counts get whole-number ticks.
        let integral = !pts.is_empty() && pts.iter().all(|p| p.1.fract() == 0.0);
        let (y0, y1) = self.y_range.unwrap_or_else(|| {
            let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            let lo = pts
                .iter()
                .map(|p| p.1)
                .fold(f64::INFINITY, f64::min)
                .min(0.0);
            if hi.is_finite() && hi > lo {
                (lo, hi * 1.05)
            } else {
                (0.0, 1.0)
            }
        });
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let py = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="13"><rect width="100%" height="100%" fill="#ffffff"/><text x="{}" y="26" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"##,
            WIDTH / 2.0,
            escape(&self.title)
        );
        // Grid and ticks.
        let mut yt = nice_ticks(y0, y1, 6);
        if integral && yt.len() > 1 && yt[1] - yt[0] < 1.0 {
            yt = nice_ticks(y0, y1, (y1 - y0).ceil().max(1.0) as usize);
        }
        let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { 1.0 };
        for v in &yt {
            let y = py(*v);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 8.0,
                y + 4.0,
                label(*v, ystep)
            );
        }
        let xt: Vec<(f64, String)> = match self.x_scale {
            Scale::Linear => {
                let t = nice_ticks(x0, x1, 8);
                let step = if t.len() > 1 { t[1] - t[0] } else { 1.0 };
                t.into_iter().map(|v| (v, label(v, step))).collect()
            }
            Scale::Log => {
                let t = nice_ticks(x0.floor(), x1.ceil(), (x1.ceil() - x0.floor()) as usize);
                t.into_iter()
                    .filter(|e| (e.fract()).abs() < 1e-9 && *e >= x0 - 1e-9 && *e <= x1 + 1e-9)
                    .map(|e| {
                        let v = 10f64.powf(e);
                        (
                            e,
                            if e >= 0.0 {
                                format!("{v:.0}")
                            } else {
                                label(v, v)
                            },
                        )
                    })
                    .collect()
            }
        };
        for (v, text) in &xt {
            let x = px(*v);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 20.0,
                escape(text)
            );
        }
        // Axes and their labels.
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b:.1}" stroke="#333"/><line x1="{LEFT}" y1="{b:.1}" x2="{r:.1}" y2="{b:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
            LEFT + pw / 2.0,
            HEIGHT - 18.0,
            escape(&self.x_label),
            TOP + ph / 2.0,
            escape(&self.y_label),
            b = TOP + ph,
            r = LEFT + pw,
        );
        // Lines, clipped to the plot.
        let _ = write!(
            s,
            r#"<clipPath id="plot"><rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/></clipPath><g clip-path="url(#plot)" fill="none" stroke-width="2">"#
        );
        for (i, ser) in self.series.iter().enumerate() {
            let mut d = String::new();
            let mut prev: Option<(f64, f64)> = None;
            for &(x, y) in &ser.points {
                let (Some(x), true) = (xs(x), y.is_finite()) else {
                    continue;
                };
                let (x, y) = (px(x), py(y));
                match prev {
                    None => {
                        let _ = write!(d, "M{x:.1},{y:.1}");
                    }
                    Some((_, py0)) if ser.step => {
                        let _ = write!(d, "L{x:.1},{py0:.1}L{x:.1},{y:.1}");
                    }
                    Some(_) => {
                        let _ = write!(d, "L{x:.1},{y:.1}");
                    }
                }
                prev = Some((x, y));
            }
            let (colour, dash) = ser.style.unwrap_or((i, i));
            let dash = DASHES[dash % DASHES.len()];
            let colour = COLOURS[colour % COLOURS.len()];
            let _ = write!(
                s,
                r#"<path d="{d}" stroke="{colour}"{}/>"#,
                if dash.is_empty() {
                    String::new()
                } else {
                    format!(r#" stroke-dasharray="{dash}""#)
                }
            );
            // A series of one point (one measurement per policy, say) has no line to show:
            // a dot, filled for a solid series, hollow for a dashed one.
            if let (Some((x, y)), 1) = (prev, ser.points.len()) {
                let fill = if dash.is_empty() { colour } else { "white" };
                let _ = write!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{fill}" stroke="{colour}"/>"#
                );
            }
        }
        s.push_str("</g>");
        // Legend, top left inside the plot, on a white box.
        if !self.series.is_empty() {
            let h = 20.0 * self.series.len() as f64 + 8.0;
            let w = 30.0
                + 7.5
                    * self
                        .series
                        .iter()
                        .map(|s| s.label.chars().count())
                        .max()
                        .unwrap_or(0) as f64;
            // The corner whose box covers the fewest drawn points.
            let drawn: Vec<(f64, f64)> = self
                .series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter_map(|&(x, y)| Some((px(xs(x)?), py(y))))
                .collect();
            let corners = [
                (LEFT + 10.0, TOP + 8.0),
                (LEFT + pw - 10.0 - w, TOP + 8.0),
                (LEFT + pw - 10.0 - w, TOP + ph - 8.0 - h),
                (LEFT + 10.0, TOP + ph - 8.0 - h),
            ];
            let covered = |(x, y): (f64, f64)| {
                drawn
                    .iter()
                    .filter(|p| {
                        p.0 >= x - 4.0 && p.0 <= x + w + 4.0 && p.1 >= y - 4.0 && p.1 <= y + h + 4.0
                    })
                    .count()
            };
            let (lx, ly) = corners
                .iter()
                .copied()
                .min_by_key(|c| covered(*c))
                .unwrap_or(corners[0]);
            let _ = write!(
                s,
                r##"<rect x="{lx}" y="{ly}" width="{w:.1}" height="{h:.1}" fill="#ffffff" fill-opacity="0.9" stroke="#cccccc"/>"##
            );
            for (i, ser) in self.series.iter().enumerate() {
                let y = ly + 16.0 + 20.0 * i as f64;
                let (colour, dash) = ser.style.unwrap_or((i, i));
                let dash = DASHES[dash % DASHES.len()];
                let _ = write!(
                    s,
                    r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                    lx + 6.0,
                    y - 4.0,
                    lx + 24.0,
                    y - 4.0,
                    COLOURS[colour % COLOURS.len()],
                    if dash.is_empty() {
                        String::new()
                    } else {
                        format!(r#" stroke-dasharray="{dash}""#)
                    },
                    lx + 30.0,
                    y,
                    escape(&ser.label)
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers_covering_the_range() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        let t = nice_ticks(0.0, 0.07, 6);
        assert_eq!(t.len(), 4);
        assert!((t[3] - 0.06).abs() < 1e-12, "{t:?}");
        assert_eq!(label(t[3], 0.02), "0.06");
        let t = nice_ticks(3.2, 58.1, 6);
        assert_eq!(t.first(), Some(&10.0));
        assert_eq!(t.last(), Some(&50.0));
        assert_eq!(label(0.02, 0.01), "0.02");
        assert_eq!(label(40.0, 10.0), "40");
    }

    #[test]
    fn a_chart_has_its_title_axes_legend_and_one_path_per_series() {
        let c = Chart {
            title: "Latency <CDF> & more".into(),
            x_label: "latency (ms)".into(),
            y_label: "share of requests".into(),
            x_scale: Scale::Log,
            y_range: Some((0.0, 1.0)),
            series: vec![
                Series {
                    label: "knative".into(),
                    points: vec![(1.0, 0.0), (10.0, 0.5), (100.0, 1.0)],
                    step: false,
                    style: None,
                },
                Series {
                    label: "faast".into(),
                    points: vec![(0.5, 0.0), (0.0, 0.2), (5.0, 1.0)],
                    step: true,
                    style: None,
                },
            ],
        };
        let svg = c.svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert!(svg.contains("Latency &lt;CDF&gt; &amp; more"));
        assert!(svg.contains(">latency (ms)</text>") && svg.contains(">share of requests</text>"));
        assert!(svg.contains(">knative</text>") && svg.contains(">faast</text>"));
        assert_eq!(svg.matches("<path d=\"M").count(), 2);
        // Log axis: decades as ticks; the point at x = 0 is left out.
        for t in [">1</text>", ">10</text>", ">100</text>", ">0.1</text>"] {
            assert!(svg.contains(t), "{t}");
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // Tags balance.
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn a_one_point_series_is_a_dot_and_a_longer_one_is_not() {
        let one = |label: &str, x: f64, y: f64, dash: usize| Series {
            label: label.into(),
            points: vec![(x, y)],
            step: false,
            style: Some((0, dash)),
        };
        let svg = Chart {
            title: "trade-off".into(),
            x_label: "instance-seconds".into(),
            y_label: "cold starts (%)".into(),
            x_scale: Scale::Linear,
            y_range: None,
            series: vec![
                one("solid", 100.0, 20.0, 0),
                one("dashed", 400.0, 5.0, 1),
                Series {
                    label: "a line".into(),
                    points: vec![(0.0, 1.0), (50.0, 2.0)],
                    step: false,
                    style: None,
                },
            ],
        }
        .svg();
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        // Filled when solid, hollow when dashed.
        assert!(svg.contains(&format!("fill=\"{}\"", COLOURS[0])));
        assert!(svg.contains("fill=\"white\""));
        // The rightmost dot is inside the plot, not on its edge.
        let cx: Vec<f64> = svg
            .match_indices("<circle cx=\"")
            .map(|(i, m)| {
                let rest = &svg[i + m.len()..];
                rest[..rest.find('"').expect("quote")].parse().expect("cx")
            })
            .collect();
        assert!(cx.iter().all(|x| *x < WIDTH - RIGHT - 5.0), "{cx:?}");
    }

    #[test]
    fn an_empty_chart_still_draws_its_axes() {
        let svg = Chart {
            title: "nothing".into(),
            x_label: "t (s)".into(),
            y_label: "instances".into(),
            x_scale: Scale::Linear,
            y_range: None,
            series: vec![],
        }
        .svg();
        assert!(svg.contains(">t (s)</text>") && !svg.contains("NaN"));
    }
}
