//! The simulated world: everything GitHub would know (orgs, repos, apps, credentials, runners,
//! runs, jobs, the delivery log, counters) held as data in one `World`, and the world's setup.
//! The job lifecycle is in `jobs`, runner registration and assignment in `runners`, the
//! library's read-only views in `views`. A change that GitHub announces by webhook leaves a
//! `JobEvent` behind; `crate::shared` renders and sends it.

mod entities;
mod jobs;
mod runners;
mod scale_jobs;
mod scale_sets;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::DecodingKey;
use rand::distr::{Alphanumeric, SampleString};

pub use entities::*;
pub use runners::lost_communication;
pub use runners::JitRegistration;
pub use scale_sets::{
    JobRequest, NewScaleSet, QueueMessage, RequestState, ScaleSet, ScaleSetError, ScaleSetWorld,
    Session, DEFAULT_GROUP_ID, DEFAULT_GROUP_NAME,
};

use crate::error::SimError;
use crate::faults::Faults;
use crate::model::*;
use crate::time::now_iso;

pub struct World {
    pub base_url: String,
    next_id: u64,
    next_run_number: u64,
    pub orgs: BTreeMap<String, Org>,
    pub repos: BTreeMap<String, Repo>,
    pub apps: BTreeMap<u64, App>,
    pub installations: BTreeMap<u64, Installation>,
    pub tokens: HashMap<String, InstallationToken>,
    pub pats: HashMap<String, Vec<String>>,
    pub registration_tokens: HashMap<String, (Scope, DateTime<Utc>)>,
    pub runners: BTreeMap<u64, Runner>,
    pub runs: BTreeMap<u64, Run>,
    pub jobs: BTreeMap<u64, Job>,
    pub webhook: Option<WebhookTarget>,
    pub faults: Faults,
    pub counters: Counters,
    pub rate: HashMap<String, RateBucket>,
    /// Secondary-limit points spent per credential and endpoint in the last minute.
    pub points: HashMap<String, std::collections::VecDeque<(Instant, u32)>>,
    pub deliveries: Vec<DeliveryRecord>,
    /// Every JIT config handed out, so tests can prove it never leaked anywhere else.
    pub issued_jit_configs: Vec<IssuedJitConfig>,
    /// Runner scale sets, their sessions and job requests.
    pub scale: ScaleSetWorld,
    /// App manifests submitted and not yet converted, by one-time code (`rest::manifests`).
    pub manifest_codes: HashMap<String, PendingManifest>,
    /// Webhook-worthy changes since the last `take_events`.
    events: Vec<JobEvent>,
    /// Job and runner moments in milliseconds, oldest first (`Sim::timeline`).
    pub timeline: Vec<TimelineEvent>,
}

pub fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

pub fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rng(), 36)
    )
}
impl World {
    pub fn new(base_url: String) -> Self {
        let root_url = base_url
            .strip_suffix(crate::config::Enterprise::API_PREFIX)
            .unwrap_or(&base_url)
            .to_string();
        Self {
            scale: ScaleSetWorld::new(root_url),
            base_url,
            next_id: 1000,
            next_run_number: 1,
            orgs: BTreeMap::new(),
            repos: BTreeMap::new(),
            apps: BTreeMap::new(),
            installations: BTreeMap::new(),
            tokens: HashMap::new(),
            pats: HashMap::new(),
            registration_tokens: HashMap::new(),
            runners: BTreeMap::new(),
            runs: BTreeMap::new(),
            jobs: BTreeMap::new(),
            webhook: None,
            faults: Faults::default(),
            counters: Counters::default(),
            rate: HashMap::new(),
            points: HashMap::new(),
            deliveries: Vec::new(),
            issued_jit_configs: Vec::new(),
            manifest_codes: HashMap::new(),
            events: Vec::new(),
            timeline: Vec::new(),
        }
    }

    /// Records a job or runner moment now (milliseconds since the epoch).
    pub fn mark(&mut self, what: TimelineKind, job_id: Option<u64>, runner: Option<&str>) {
        self.timeline.push(TimelineEvent {
            at_ms: Utc::now().timestamp_millis(),
            what,
            job_id,
            runner: runner.map(str::to_owned),
        });
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The job events recorded since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<JobEvent> {
        std::mem::take(&mut self.events)
    }

    // ---- world setup -------------------------------------------------------------------------

    pub fn add_org(&mut self, login: &str) -> u64 {
        if let Some(o) = self.orgs.get(&key(login)) {
            return o.id;
        }
        let id = self.next_id();
        self.orgs.insert(
            key(login),
            Org {
                id,
                login: login.to_string(),
            },
        );
        id
    }

    pub fn add_repo(&mut self, owner: &str, name: &str) -> u64 {
        self.add_org(owner);
        let k = key(&format!("{owner}/{name}"));
        if let Some(r) = self.repos.get(&k) {
            return r.id;
        }
        let id = self.next_id();
        self.repos.insert(
            k,
            Repo {
                id,
                owner: owner.to_string(),
                name: name.to_string(),
            },
        );
        id
    }

    pub fn add_app(&mut self, spec: &AppSpec) -> Result<(), SimError> {
        let key = DecodingKey::from_rsa_pem(spec.public_key_pem.as_bytes())
            .map_err(|e| SimError::BadPublicKey(e.to_string()))?;
        self.apps.insert(
            spec.id,
            App {
                id: spec.id,
                slug: spec.slug.clone(),
                key,
            },
        );
        Ok(())
    }

    pub fn add_installation(&mut self, spec: &InstallationSpec) -> Result<u64, SimError> {
        if !self.apps.contains_key(&spec.app_id) {
            return Err(SimError::UnknownApp(spec.app_id));
        }
        self.add_org(&spec.account);
        let permissions = spec.permissions.clone().unwrap_or_else(|| {
            [
                ("organization_self_hosted_runners", "write"),
                ("administration", "write"),
                ("actions", "read"),
                ("metadata", "read"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        });
        let id = self.next_id();
        self.installations.insert(
            id,
            Installation {
                id,
                app_id: spec.app_id,
                account: spec.account.clone(),
                permissions,
                created_at: now_iso(),
            },
        );
        Ok(id)
    }

    /// The installation of `app_id` on `account`, if any.
    pub fn installation_for(&self, app_id: u64, account: &str) -> Option<&Installation> {
        self.installations
            .values()
            .find(|i| i.app_id == app_id && i.account.eq_ignore_ascii_case(account))
    }

    /// Any installation on `account` (for webhook payloads).
    pub fn any_installation_on(&self, account: &str) -> Option<&Installation> {
        self.installations
            .values()
            .find(|i| i.account.eq_ignore_ascii_case(account))
    }

    pub fn token_expiry(&self, ttl: Duration) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1))
    }
}
