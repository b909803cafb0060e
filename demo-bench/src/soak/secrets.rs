//! Looking for secrets where none may be: every JIT config the simulator issued (and the
//! runner token inside it) and every ticket the soak harvested, searched in files and in
//! samples. The search slides a window of each secret's first bytes over the text (one hash
//! look-up per position), so thousands of secrets cost one pass per text. Only where a secret
//! was found is reported, never the secret.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Bytes of a secret looked up at every position (shorter secrets are looked up whole).
const PROBE: usize = 24;
/// Secrets shorter than this are too common to search for (and are not what is hunted).
const MIN_SECRET: usize = 16;

/// Secrets (and their kinds) by their first bytes.
type ByPrefix = HashMap<Vec<u8>, Vec<(String, &'static str)>>;

/// The secrets, indexed by probe length and prefix.
#[derive(Debug, Default)]
pub struct Secrets {
    by_probe: BTreeMap<usize, ByPrefix>,
    pub count: usize,
}

impl Secrets {
    /// Adds a secret of `kind` (`jit config`, `runner token`, `ticket`).
    pub fn add(&mut self, secret: &str, kind: &'static str) {
        if secret.len() < MIN_SECRET {
            return;
        }
        let probe = secret.len().min(PROBE);
        self.by_probe
            .entry(probe)
            .or_default()
            .entry(secret.as_bytes()[..probe].to_vec())
            .or_default()
            .push((secret.to_owned(), kind));
        self.count += 1;
    }

    /// The kinds of the secrets found in `text`, one entry per occurrence.
    pub fn found_in(&self, text: &[u8]) -> Vec<&'static str> {
        let mut found = Vec::new();
        for (&probe, table) in &self.by_probe {
            if text.len() < probe {
                continue;
            }
            for at in 0..=text.len() - probe {
                let Some(candidates) = table.get(&text[at..at + probe]) else {
                    continue;
                };
                for (secret, kind) in candidates {
                    if text[at..].starts_with(secret.as_bytes()) {
                        found.push(*kind);
                    }
                }
            }
        }
        found
    }

    /// Searches `path`; a finding is `"<path>: <kind>"`.
    pub fn search_file(&self, path: &Path, findings: &mut Vec<String>) {
        if let Ok(bytes) = std::fs::read(path) {
            for kind in self.found_in(&bytes) {
                findings.push(format!("{}: {kind}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_secret_wherever_it_is_and_nothing_else() {
        let mut secrets = Secrets::default();
        let config = "eyJ".to_string() + &"Q".repeat(100);
        let ticket = "T".repeat(43);
        secrets.add(&config, "jit config");
        secrets.add(&ticket, "ticket");
        secrets.add("short", "ticket");
        assert_eq!(secrets.count, 2);
        let text = format!("log line {config} and later ticket:{ticket}\n");
        let mut found = secrets.found_in(text.as_bytes());
        found.sort();
        assert_eq!(found, vec!["jit config", "ticket"]);
        assert!(secrets.found_in(b"eyJQQQQ nothing here").is_empty());
        assert!(secrets.found_in(&config.as_bytes()[..50]).is_empty());
    }
}
