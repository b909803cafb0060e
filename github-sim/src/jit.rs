//! The JIT runner configuration in the real format: base64 of a JSON map from file name
//! (`.runner`, `.credentials`, `.credentials_rsaparams`) to the base64 of that file's content.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `.runner` file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunnerFile {
    pub agent_id: u64,
    pub agent_name: String,
    pub pool_id: u64,
    pub pool_name: String,
    /// Base of the simulator's runner protocol (`<sim>/_runner`).
    pub server_url: String,
    pub git_hub_url: String,
    pub work_folder: String,
    pub use_v2_flow: bool,
    #[serde(default)]
    pub disable_update: bool,
    #[serde(default)]
    pub ephemeral: bool,
}

/// The `.credentials` file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CredentialsFile {
    pub scheme: String,
    pub data: BTreeMap<String, String>,
}

/// A decoded JIT config. Its `Debug` never prints the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct JitConfig {
    pub runner: RunnerFile,
    pub credentials: CredentialsFile,
    pub rsa_params: serde_json::Value,
}

impl std::fmt::Debug for JitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitConfig")
            .field("runner", &self.runner)
            .finish_non_exhaustive()
    }
}

impl JitConfig {
    /// The runner's secret for the simulator's runner protocol.
    pub fn token(&self) -> Option<&str> {
        self.credentials.data.get("token").map(String::as_str)
    }
}

/// Why a JIT config was refused; the texts are what the real runner (.NET) prints.
#[derive(Debug, Error)]
pub enum JitError {
    #[error("The input is not a valid Base-64 string as it contains a non-base 64 character, more than two padding characters, or an illegal character among the padding characters.")]
    Base64,
    #[error("Unexpected character encountered while parsing value: {0}")]
    Json(String),
    #[error("Could not find file '{0}'.")]
    MissingFile(&'static str),
}

pub fn encode(cfg: &JitConfig) -> String {
    let file = |v: &dyn erased::Json| STANDARD.encode(v.to_json());
    let map: BTreeMap<&str, String> = [
        (".runner", file(&cfg.runner)),
        (".credentials", file(&cfg.credentials)),
        (".credentials_rsaparams", file(&cfg.rsa_params)),
    ]
    .into_iter()
    .collect();
    STANDARD.encode(serde_json::to_vec(&map).unwrap_or_default())
}

mod erased {
    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Vec<u8> {
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}

pub fn decode(encoded: &str) -> Result<JitConfig, JitError> {
    let outer = STANDARD
        .decode(encoded.trim())
        .map_err(|_| JitError::Base64)?;
    let map: BTreeMap<String, String> =
        serde_json::from_slice(&outer).map_err(|e| JitError::Json(e.to_string()))?;
    let file = |name: &'static str| -> Result<Vec<u8>, JitError> {
        let v = map.get(name).ok_or(JitError::MissingFile(name))?;
        STANDARD.decode(v).map_err(|_| JitError::Base64)
    };
    let runner =
        serde_json::from_slice(&file(".runner")?).map_err(|e| JitError::Json(e.to_string()))?;
    let credentials = serde_json::from_slice(&file(".credentials")?)
        .map_err(|e| JitError::Json(e.to_string()))?;
    let rsa_params = serde_json::from_slice(&file(".credentials_rsaparams")?)
        .map_err(|e| JitError::Json(e.to_string()))?;
    Ok(JitConfig {
        runner,
        credentials,
        rsa_params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_input() {
        let cfg = JitConfig {
            runner: RunnerFile {
                agent_id: 7,
                agent_name: "r1".into(),
                pool_id: 1,
                pool_name: "Default".into(),
                server_url: "http://127.0.0.1:1/_runner".into(),
                git_hub_url: "http://127.0.0.1:1/acme".into(),
                work_folder: "_work".into(),
                use_v2_flow: false,
                disable_update: true,
                ephemeral: true,
            },
            credentials: CredentialsFile {
                scheme: "OAuthAccessToken".into(),
                data: [("token".to_string(), "secret".to_string())].into(),
            },
            rsa_params: serde_json::json!({"d": "x"}),
        };
        let enc = encode(&cfg);
        assert_eq!(decode(&enc).unwrap(), cfg);
        assert!(!format!("{cfg:?}").contains("secret"));
        assert!(matches!(decode("!!!"), Err(JitError::Base64)));
        assert!(matches!(
            decode(&STANDARD.encode("{}")),
            Err(JitError::MissingFile(".runner"))
        ));
    }
}
