//! Reports of runs (simulated now, live and compared next): line charts as SVG, tables as
//! HTML and Markdown, and a self-contained HTML page holding both. Text in, text out: the
//! caller writes the files.

mod chart;
mod page;

pub use chart::{Chart, Scale, Series};
pub use page::{Block, Page, Table};

/// Escapes text for XML and HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
