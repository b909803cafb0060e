//! The runner scale sets we listen on (listener intake), shared by the stages that need
//! them: the listener records each set's id, session state and latest statistics; scaling
//! reads the jobs waiting in each set; redemption mints JIT configs and cleanup removes
//! registrations through the scope's Actions service client.
//!
//! Statistics live in memory only, and only from the current process's session: after a
//! restart a set creates no runner until its new session has told us what it holds (the
//! old numbers may describe jobs long finished).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::clients::actions::{ActionsClient, Statistics};

/// Where a set's message session stands, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// Finding or creating the scale set, opening the session.
    Starting,
    /// An earlier session (a crashed process's) is still active: retrying until it expires.
    WaitingForOldSession { attempts: u32, retry_in_secs: u64 },
    /// Long-polling for messages.
    Listening,
    /// The last attempt failed; retrying.
    Failing { error: String, retry_in_secs: u64 },
}

/// One scale set's jobs not yet on a runner, as scaling counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSetWaiting {
    pub pool: String,
    /// The registration scope's key (`org:..`, `repo:..`).
    pub scope: String,
    pub scale_set_id: u64,
    /// Assigned to the set and not running: the spare runners it needs.
    pub waiting: usize,
}

/// What `/status` shows of one set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleSetStatus {
    pub pool: String,
    pub scope: String,
    pub scale_set_id: Option<u64>,
    pub session: SessionState,
    pub statistics: Option<Statistics>,
}

#[derive(Debug, Clone)]
struct Entry {
    scale_set_id: Option<u64>,
    session: SessionState,
    statistics: Option<Statistics>,
}

/// Every listener target's scale sets and the scopes' Actions service clients.
#[derive(Clone, Default)]
pub struct ScaleSets {
    clients: Arc<HashMap<String, Arc<ActionsClient>>>,
    entries: Arc<Mutex<BTreeMap<(String, String), Entry>>>,
}

impl ScaleSets {
    /// `clients`: one per listener target, keyed by the scope's key.
    pub fn new(clients: HashMap<String, Arc<ActionsClient>>) -> ScaleSets {
        ScaleSets {
            clients: Arc::new(clients),
            entries: Arc::default(),
        }
    }

    /// The Actions service client of the scope `scope_key`, if it is a listener target.
    pub fn client(&self, scope_key: &str) -> Option<Arc<ActionsClient>> {
        self.clients.get(scope_key).cloned()
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<(String, String), Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, pool: &str, scope: &str, f: impl FnOnce(&mut Entry)) {
        let mut entries = self.entries();
        let entry = entries
            .entry((pool.to_string(), scope.to_string()))
            .or_insert(Entry {
                scale_set_id: None,
                session: SessionState::Starting,
                statistics: None,
            });
        f(entry);
    }

    pub fn set_scale_set_id(&self, pool: &str, scope: &str, id: u64) {
        self.update(pool, scope, |e| e.scale_set_id = Some(id));
    }

    pub fn set_session(&self, pool: &str, scope: &str, session: SessionState) {
        self.update(pool, scope, |e| e.session = session);
    }

    /// Statistics from the current session (`None`: the session is gone, nothing known).
    pub fn set_statistics(&self, pool: &str, scope: &str, statistics: Option<Statistics>) {
        self.update(pool, scope, |e| e.statistics = statistics);
    }

    /// Each set with statistics from its current session: its jobs waiting for a runner.
    pub fn waiting(&self) -> Vec<ScaleSetWaiting> {
        self.entries()
            .iter()
            .filter_map(|((pool, scope), e)| {
                let stats = e.statistics?;
                Some(ScaleSetWaiting {
                    pool: pool.clone(),
                    scope: scope.clone(),
                    scale_set_id: e.scale_set_id?,
                    waiting: stats
                        .total_assigned_jobs
                        .saturating_sub(stats.total_running_jobs)
                        as usize,
                })
            })
            .collect()
    }

    pub fn status(&self) -> Vec<ScaleSetStatus> {
        self.entries()
            .iter()
            .map(|((pool, scope), e)| ScaleSetStatus {
                pool: pool.clone(),
                scope: scope.clone(),
                scale_set_id: e.scale_set_id,
                session: e.session.clone(),
                statistics: e.statistics,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sets_with_current_statistics_wait_and_running_jobs_are_not_waiting() {
        let sets = ScaleSets::default();
        sets.set_scale_set_id("cpu", "org:acme", 7);
        assert!(sets.waiting().is_empty(), "no statistics yet: no demand");
        let stats = Statistics {
            total_assigned_jobs: 5,
            total_running_jobs: 2,
            ..Statistics::default()
        };
        sets.set_statistics("cpu", "org:acme", Some(stats));
        assert_eq!(
            sets.waiting(),
            vec![ScaleSetWaiting {
                pool: "cpu".into(),
                scope: "org:acme".into(),
                scale_set_id: 7,
                waiting: 3
            }]
        );
        sets.set_statistics("cpu", "org:acme", None);
        assert!(sets.waiting().is_empty(), "session lost: no demand");
    }
}
