//! Collecting validation problems, each with its key path and line.

use super::{ConfigError, ConfigIssue};

/// The problems found so far in one file's text.
pub(super) struct Issues<'a> {
    source: &'a str,
    pub(super) list: Vec<ConfigIssue>,
}

impl<'a> Issues<'a> {
    pub(super) fn new(source: &'a str) -> Issues<'a> {
        Issues {
            source,
            list: Vec::new(),
        }
    }

    /// A problem with `key`, on the line where `span` starts (no line for an empty span at
    /// 0: a default or a missing value).
    pub(super) fn at(
        &mut self,
        key: impl Into<String>,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) {
        let line = if span.is_empty() && span.start == 0 {
            None
        } else {
            Some(line_of(self.source, span.start))
        };
        self.list.push(ConfigIssue {
            key: key.into(),
            line,
            message: message.into(),
        });
    }
}

fn line_of(source: &str, offset: usize) -> usize {
    let end = offset.min(source.len());
    source.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The key written on `line` (text before `=`, or a `[table]` header), for parse errors.
fn key_on_line(source: &str, line: usize) -> String {
    let text = source
        .lines()
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .trim();
    match text.split_once('=') {
        Some((key, _)) => key.trim().to_string(),
        None => text.to_string(),
    }
}

/// A TOML syntax or shape error (serde's), as one issue with the key and line it names.
pub(super) fn syntax_error(source: &str, err: &toml::de::Error) -> ConfigError {
    let line = err.span().map(|s| line_of(source, s.start));
    let key = line
        .map(|l| key_on_line(source, l))
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "<document>".into());
    ConfigError::Invalid {
        issues: vec![ConfigIssue {
            key,
            line,
            message: err.message().trim().to_string(),
        }],
    }
}

/// Letters, digits, `-`, `_` and `.`: a pool name, a name prefix, a login.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}
