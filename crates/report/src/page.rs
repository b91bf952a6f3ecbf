//! A report page: sections of text, tables and charts, written as one self-contained HTML
//! file (charts inline) or as Markdown (charts as SVG files beside it).

use std::fmt::Write as _;

use crate::{Chart, escape};

/// A table: a header row and rows of cells (numbers are right-aligned).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Column names.
    pub headers: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn numeric(cell: &str) -> bool {
        let c = cell
            .trim_end_matches(['%', '×', 's'])
            .trim_end_matches(" m");
        !c.is_empty()
            && c.replace([',', '.', '-', '+', ' '], "")
                .chars()
                .all(|x| x.is_ascii_digit())
    }

    /// The table as HTML.
    pub fn html(&self) -> String {
        let mut s = String::from("<table><thead><tr>");
        for h in &self.headers {
            let _ = write!(s, "<th>{}</th>", escape(h));
        }
        s.push_str("</tr></thead><tbody>");
        for r in &self.rows {
            s.push_str("<tr>");
            for c in r {
                let class = if Table::numeric(c) {
                    " class=\"n\""
                } else {
                    ""
                };
                let _ = write!(s, "<td{class}>{}</td>", escape(c));
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>\n");
        s
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let cell = |c: &str| c.replace('|', "\\|");
        let mut s = format!(
            "| {} |\n|{}\n",
            self.headers
                .iter()
                .map(|h| cell(h))
                .collect::<Vec<_>>()
                .join(" | "),
            self.headers
                .iter()
                .map(|h| {
                    if self.rows.iter().all(|r| {
                        r.get(self.headers.iter().position(|x| x == h).unwrap_or(0))
                            .is_none_or(|c| Table::numeric(c))
                    }) {
                        "---:|"
                    } else {
                        "---|"
                    }
                })
                .collect::<String>()
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} |",
                r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
            );
        }
        s
    }
}

/// One part of a page.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// A heading.
    Heading(String),
    /// A paragraph of text.
    Text(String),
    /// A table.
    Table(Table),
    /// A chart, with the file name it gets beside a Markdown report.
    Chart(String, Chart),
}

/// A report page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The title.
    pub title: String,
    /// Its parts, in order.
    pub blocks: Vec<Block>,
}

const STYLE: &str = "body{font-family:Helvetica,Arial,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{padding:.3em .7em;border-bottom:1px solid #e4e4e4;text-align:left}\
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1em 0}";

impl Page {
    /// Adds a block.
    pub fn push(&mut self, b: Block) -> &mut Page {
        self.blocks.push(b);
        self
    }

    /// One self-contained HTML file: styles and charts inline.
    pub fn html(&self) -> String {
        let mut s = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>\n",
            t = escape(&self.title)
        );
        for b in &self.blocks {
            match b {
                Block::Heading(h) => {
                    let _ = writeln!(s, "<h2>{}</h2>", escape(h));
                }
                Block::Text(t) => {
                    let _ = writeln!(s, "<p>{}</p>", escape(t));
                }
                Block::Table(t) => s.push_str(&t.html()),
                Block::Chart(_, c) => {
                    let _ = writeln!(s, "<figure>{}</figure>", c.svg());
                }
            }
        }
        s.push_str("</body></html>\n");
        s
    }

    /// Markdown, and the SVG files it refers to (name, content).
    pub fn markdown(&self) -> (String, Vec<(String, String)>) {
        let mut s = format!("# {}\n\n", self.title);
        let mut files = Vec::new();
        for b in &self.blocks {
            match b {
                Block::Heading(h) => {
                    let _ = writeln!(s, "## {h}\n");
                }
                Block::Text(t) => {
                    let _ = writeln!(s, "{t}\n");
                }
                Block::Table(t) => {
                    s.push_str(&t.markdown());
                    s.push('\n');
                }
                Block::Chart(name, c) => {
                    let _ = writeln!(s, "![{}]({name})\n", c.title);
                    files.push((name.clone(), c.svg()));
                }
            }
        }
        (s, files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scale, Series};

    fn page() -> Page {
        let mut p = Page {
            title: "Run <1>".into(),
            blocks: Vec::new(),
        };
        p.push(Block::Heading("Latency".into()))
            .push(Block::Text("Requests from node3 & node1.".into()))
            .push(Block::Table(Table {
                headers: vec!["policy".into(), "p50 (ms)".into()],
                rows: vec![
                    vec!["knative".into(), "55.0".into()],
                    vec!["a|b".into(), "4.8".into()],
                ],
            }))
            .push(Block::Chart(
                "cdf.svg".into(),
                Chart {
                    title: "CDF".into(),
                    x_label: "latency (ms)".into(),
                    y_label: "share".into(),
                    x_scale: Scale::Linear,
                    y_range: None,
                    series: vec![Series {
                        label: "knative".into(),
                        points: vec![(1.0, 0.1), (2.0, 1.0)],
                        step: false,
                        style: None,
                    }],
                },
            ));
        p
    }

    #[test]
    fn html_is_one_self_contained_file() {
        let h = page().html();
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.contains("<title>Run &lt;1&gt;</title>"));
        assert!(h.contains("<td class=\"n\">55.0</td>") && h.contains("<td>knative</td>"));
        assert!(h.contains("<figure><svg xmlns="));
        assert!(h.contains("node3 &amp; node1"));
        assert!(
            !h.contains("src=") && !h.contains("href="),
            "nothing external"
        );
    }

    #[test]
    fn markdown_refers_to_its_charts() {
        let (md, files) = page().markdown();
        assert!(md.starts_with("# Run <1>\n"));
        assert!(
            md.contains("| policy | p50 (ms) |\n|---|---:|\n| knative | 55.0 |\n| a\\|b | 4.8 |"),
            "{md}"
        );
        assert!(md.contains("![CDF](cdf.svg)"));
        assert_eq!(files.len(), 1);
        assert!(files[0].1.starts_with("<svg"));
    }
}
