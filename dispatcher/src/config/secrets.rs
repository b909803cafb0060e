//! The secret files the config names (webhook secret, GitHub key or token, admin token):
//! read once at start. Errors name the key and the file, never the content; `Debug` never
//! shows a secret.

use std::fmt;
use std::path::Path;

use super::{AuthConfig, Config, ConfigError, ConfigIssue};

/// Secrets read from the files the config names. `Debug` never shows them.
#[derive(Clone)]
pub struct Secrets {
    pub webhook_secret: Vec<u8>,
    pub github: GithubSecret,
    pub admin_token: Option<String>,
}

#[derive(Clone)]
pub enum GithubSecret {
    AppKeyPem(Vec<u8>),
    Token(String),
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Config {
    /// Read the secret files. Errors name the file and key, never the content.
    pub fn load_secrets(&self) -> Result<Secrets, ConfigError> {
        let mut list = Vec::new();
        let mut read = |key: &str, path: &Path| -> Option<Vec<u8>> {
            match std::fs::read(path) {
                Ok(bytes) if bytes.iter().all(|b| b.is_ascii_whitespace()) => {
                    list.push(ConfigIssue {
                        key: key.into(),
                        line: None,
                        message: format!("{} is empty", path.display()),
                    });
                    None
                }
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    list.push(ConfigIssue {
                        key: key.into(),
                        line: None,
                        message: format!("cannot read {}: {e}", path.display()),
                    });
                    None
                }
            }
        };
        let webhook = read("server.webhook_secret_file", &self.webhook_secret_file);
        let admin_token = self.admin_token_file.as_ref().and_then(|path| {
            read("server.admin_token_file", path)
                .map(|b| String::from_utf8_lossy(trim_ascii(&b)).into_owned())
        });
        let github = match &self.github.auth {
            AuthConfig::App {
                private_key_file, ..
            } => read("github.private_key_file", private_key_file).map(GithubSecret::AppKeyPem),
            AuthConfig::Token { token_file } => read("github.token_file", token_file)
                .map(|b| GithubSecret::Token(String::from_utf8_lossy(&b).trim().to_string())),
        };
        if let GithubSecret::AppKeyPem(pem) = github
            .as_ref()
            .unwrap_or(&GithubSecret::Token(String::new()))
        {
            if jsonwebtoken::EncodingKey::from_rsa_pem(pem).is_err() {
                list.push(ConfigIssue {
                    key: "github.private_key_file".into(),
                    line: None,
                    message: "not an RSA private key in PEM format".into(),
                });
            }
        }
        match (webhook, github) {
            (Some(webhook), Some(github)) if list.is_empty() => Ok(Secrets {
                webhook_secret: trim_ascii(&webhook).to_vec(),
                github,
                admin_token,
            }),
            _ => Err(ConfigError::Invalid { issues: list }),
        }
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}
