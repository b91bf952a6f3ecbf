//! A bounded buffer of an instance's most recent output lines.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// Most lines kept per instance.
pub const MAX_LINES: usize = 2000;
/// Longest line kept; longer lines are cut and marked.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The recent output of an instance (stdout and stderr interleaved as they arrive).
#[derive(Debug)]
pub struct LogBuffer {
    lines: Mutex<VecDeque<String>>,
    /// How many lines were ever pushed; followers wait on it for new lines.
    pushed: tokio::sync::watch::Sender<u64>,
}

impl Default for LogBuffer {
    fn default() -> LogBuffer {
        LogBuffer {
            lines: Mutex::new(VecDeque::new()),
            pushed: tokio::sync::watch::Sender::new(0),
        }
    }
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
        // Counted under the lock, so `since` sees lines and count agree.
        self.pushed.send_modify(|n| *n += 1);
    }

    /// Lines pushed after the first `seen` ones (those still kept), newline-terminated, and
    /// the count to pass next time.
    pub fn since(&self, seen: u64) -> (String, u64) {
        let lines = self.lines.lock();
        let total = *self.pushed.borrow();
        let first_kept = total - lines.len() as u64;
        let skip = seen.saturating_sub(first_kept) as usize;
        let mut out = String::new();
        for l in lines.iter().skip(skip) {
            out.push_str(l);
            out.push('\n');
        }
        (out, total)
    }

    /// The last `tail` lines (all when `None`) and the count of lines pushed so far, read
    /// together, so a follower continues exactly after them.
    pub fn text_and_count(&self, tail: Option<usize>) -> (String, u64) {
        let lines = self.lines.lock();
        let total = *self.pushed.borrow();
        let skip = tail.map_or(0, |t| lines.len().saturating_sub(t));
        let mut out = String::new();
        for l in lines.iter().skip(skip) {
            out.push_str(l);
            out.push('\n');
        }
        (out, total)
    }

    /// Changes whenever a line is pushed (for `logs -f`).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.pushed.subscribe()
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
    fn followers_get_only_new_lines_even_after_drops() {
        let b = LogBuffer::default();
        b.push("a".into());
        let (text, seen) = b.since(0);
        assert_eq!((text.as_str(), seen), ("a\n", 1));
        b.push("b".into());
        b.push("c".into());
        assert_eq!(b.since(seen), ("b\nc\n".to_owned(), 3));
        for i in 0..MAX_LINES + 10 {
            b.push(format!("x{i}"));
        }
        let (text, _) = b.since(3);
        assert_eq!(
            text.lines().count(),
            MAX_LINES,
            "what was dropped is skipped"
        );
    }

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
