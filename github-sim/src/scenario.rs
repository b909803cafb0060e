//! Scenario files: a JSON document that sets up orgs, repos, apps, installations, PATs, the
//! webhook, faults, and workflows to enqueue (optionally after a delay).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::error::SimError;
use crate::faults::Faults;
use crate::model::*;
use crate::shared::Shared;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    pub orgs: Vec<String>,
    /// `owner/name`.
    pub repos: Vec<String>,
    pub apps: Vec<ScenarioApp>,
    pub installations: Vec<InstallationSpec>,
    pub pats: Vec<ScenarioPat>,
    pub webhook: Option<ScenarioWebhook>,
    pub faults: Option<Faults>,
    pub workflows: Vec<WorkflowSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioApp {
    pub id: u64,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub public_key_pem: Option<String>,
    #[serde(default)]
    pub public_key_pem_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioPat {
    pub token: String,
    pub scopes: Vec<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioWebhook {
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

impl std::fmt::Debug for ScenarioWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScenarioWebhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Expands `count: N` jobs into N jobs named `<name>-1..N` (their `needs` are kept).
pub fn expand_counts(mut spec: WorkflowSpec) -> WorkflowSpec {
    let mut jobs = Vec::new();
    for j in spec.jobs.drain(..) {
        match j.count {
            Some(n) => {
                for i in 1..=n {
                    jobs.push(JobSpec {
                        name: format!("{}-{i}", j.name),
                        count: None,
                        ..j.clone()
                    });
                }
            }
            None => jobs.push(j),
        }
    }
    spec.jobs = jobs;
    spec
}

pub fn load(path: &Path) -> Result<Scenario, SimError> {
    let err = |message: String| SimError::Scenario {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

fn read_relative(base: Option<&Path>, file: &Path) -> Result<String, SimError> {
    let p = match base {
        Some(b) if file.is_relative() => b.join(file),
        _ => file.to_path_buf(),
    };
    std::fs::read_to_string(&p).map_err(|e| SimError::Scenario {
        path: p.display().to_string(),
        message: e.to_string(),
    })
}

/// Applies a scenario; workflows without a delay are enqueued now (their runs are returned),
/// delayed ones from a background task.
pub fn apply(
    shared: &Arc<Shared>,
    sc: Scenario,
    base: Option<&Path>,
) -> Result<Vec<RunCreated>, SimError> {
    let mut apps = Vec::new();
    for a in &sc.apps {
        let pem = match (&a.public_key_pem, &a.public_key_pem_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => read_relative(base, f)?,
            (None, None) => crate::test_keys::APP_PUBLIC_KEY_PEM.to_string(),
        };
        apps.push(AppSpec {
            id: a.id,
            slug: a.slug.clone().unwrap_or_else(|| "spank-gha".into()),
            public_key_pem: pem,
        });
    }
    let webhook = match &sc.webhook {
        Some(h) => {
            let secret = match (&h.secret, &h.secret_file) {
                (Some(s), _) => s.clone(),
                (None, Some(f)) => read_relative(base, f)?.trim_end().to_string(),
                (None, None) => String::new(),
            };
            Some(WebhookTarget {
                url: h.url.clone(),
                secret,
            })
        }
        None => None,
    };
    shared.mutate(|w| -> Result<(), SimError> {
        for o in &sc.orgs {
            w.add_org(o);
        }
        for r in &sc.repos {
            let (owner, name) = r
                .split_once('/')
                .ok_or_else(|| SimError::UnknownRepo(r.clone()))?;
            w.add_repo(owner, name);
        }
        for a in &apps {
            w.add_app(a)?;
        }
        for i in &sc.installations {
            w.add_installation(i)?;
        }
        for p in &sc.pats {
            w.pats.insert(p.token.clone(), p.scopes.clone());
        }
        if let Some(h) = webhook {
            w.webhook = Some(h);
        }
        if let Some(f) = &sc.faults {
            w.faults = f.clone();
        }
        Ok(())
    })?;
    let mut runs = Vec::new();
    for wf in sc.workflows {
        let wf = expand_counts(wf);
        if wf.delay_ms == 0 {
            runs.push(shared.mutate(|w| w.enqueue_workflow(&wf))?);
        } else {
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(wf.delay_ms)).await;
                if let Err(e) = shared.mutate(|w| w.enqueue_workflow(&wf)) {
                    tracing::error!("scenario workflow {:?}: {e}", wf.name);
                }
            });
        }
    }
    Ok(runs)
}
