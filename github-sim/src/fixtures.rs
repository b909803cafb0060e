//! Where the pinned npm fixtures (`@octokit/openapi`, `@octokit/openapi-webhooks`,
//! `@octokit/webhooks-examples`) live, fetching them with `fixtures/fetch.sh` when missing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
pub struct FixturePaths {
    pub root: PathBuf,
    /// `@octokit/openapi` `generated/api.github.com.json` (OpenAPI 3.0).
    pub openapi_json: PathBuf,
    /// `@octokit/openapi-webhooks` `generated/api.github.com.json` (OpenAPI 3.1).
    pub webhooks_schema_json: PathBuf,
    /// `@octokit/webhooks-examples` `api.github.com/index.json`.
    pub webhooks_examples_json: PathBuf,
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<repo>/tests/fixtures/npm` unless `GITHUB_SIM_FIXTURES_DIR` says otherwise.
pub fn root() -> PathBuf {
    std::env::var_os("GITHUB_SIM_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("../tests/fixtures/npm"))
}

fn paths(root: PathBuf) -> FixturePaths {
    FixturePaths {
        openapi_json: root.join("openapi/package/generated/api.github.com.json"),
        webhooks_schema_json: root.join("openapi-webhooks/package/generated/api.github.com.json"),
        webhooks_examples_json: root.join("webhooks-examples/package/api.github.com/index.json"),
        root,
    }
}

/// The fixture paths, running `fixtures/fetch.sh` (npm registry) first if any is missing.
pub fn ensure() -> Result<FixturePaths> {
    let p = paths(root());
    let complete = [
        &p.openapi_json,
        &p.webhooks_schema_json,
        &p.webhooks_examples_json,
    ]
    .iter()
    .all(|f| f.is_file());
    if !complete {
        let script = crate_dir().join("fixtures/fetch.sh");
        let status = Command::new("sh")
            .arg(&script)
            .env("GITHUB_SIM_FIXTURES_DIR", &p.root)
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!(
                "{} failed ({status}); the npm registry must be reachable",
                script.display()
            );
        }
    }
    for f in [
        &p.openapi_json,
        &p.webhooks_schema_json,
        &p.webhooks_examples_json,
    ] {
        if !f.is_file() {
            bail!("fixture {} missing after fetch.sh", f.display());
        }
    }
    Ok(p)
}

/// The `workflow_job` example payloads of `@octokit/webhooks-examples` (8 in the pinned version).
pub fn workflow_job_examples() -> Result<Vec<serde_json::Value>> {
    let p = ensure()?;
    let text = std::fs::read_to_string(&p.webhooks_examples_json)
        .with_context(|| format!("reading {}", p.webhooks_examples_json.display()))?;
    let all: Vec<serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", p.webhooks_examples_json.display()))?;
    let ev = all
        .into_iter()
        .find(|e| e["name"] == "workflow_job")
        .context("no workflow_job entry in the examples")?;
    match ev["examples"].as_array() {
        Some(a) => Ok(a.clone()),
        None => bail!("workflow_job entry has no examples array"),
    }
}
