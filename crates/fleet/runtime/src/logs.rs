//! A bounded buffer of an instance's most recent output lines.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// Most lines kept per instance.
pub const MAX_LINES: usize = 2000;
/// Longest line kept; longer lines are cut and marked.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The recent output of an instance (stdout and stderr interleaved as they arrive).
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: Mutex<VecDeque<String>>,
}

impl LogBuffer {
    /// Appends a line, dropping the oldest beyond [`MAX_LINES`].
    pub fn push(&self, mut line: String) {
        if line.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" [line cut by kantai]");
        }
        let mut lines = self.lines.lock();
        if lines.len() == MAX_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `tail` lines (all when `None`), newline-terminated.
    pub fn text(&self, tail: Option<usize>) -> String {
        let lines = self.lines.lock();
        let skip = tail.map_or(0, |t| lines.len().saturating_sub(t));
        let mut out = String::new();
        for l in lines.iter().skip(skip) {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recent_lines() {
        let b = LogBuffer::default();
        for i in 0..MAX_LINES + 5 {
            b.push(format!("line {i}"));
        }
        let text = b.text(Some(2));
        assert_eq!(
            text,
            format!("line {}\nline {}\n", MAX_LINES + 3, MAX_LINES + 4)
        );
        assert!(!b.text(None).contains("line 4\n"));
        b.push("é".repeat(MAX_LINE_BYTES));
        assert!(b.text(Some(1)).ends_with("[line cut by kantai]\n"));
    }
}
