//! Logs quoted in failure messages: the last lines of a daemon's log file.

use std::path::Path;

/// The last `lines` lines of the file at `path`, oldest first (empty when it cannot be read:
/// this only ever adds to a message about something else).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn keeps_the_last_lines_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&path, 10), "a\nb\nc");
        assert_eq!(tail(&dir.path().join("missing"), 3), "");
    }
}
