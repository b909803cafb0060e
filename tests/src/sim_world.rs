//! The one simulator setup the dispatcher tests, the demo and the benchmarks share: the GitHub
//! simulator (in-process) with organization `acme`, its repositories, and the GitHub App
//! `APP_ID` installed on the organization, as the dispatcher expects to find GitHub. The
//! simulator serves HTTPS with a certificate from a CA made once per process ([`test_ca`]),
//! which the dispatcher trusts through `github.ca_file` ([`write_test_ca`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use github_sim::{AppSpec, InstallationSpec, Sim, SimConfig, TestCa, WebhookTarget};

/// The organization every test, demo and bench repository lives in.
pub const ORG: &str = "acme";
/// The GitHub App the dispatcher authenticates as.
pub const APP_ID: u64 = 4242;

/// The simulator with the world the dispatcher expects.
pub struct SimWorld {
    pub sim: Sim,
    pub installation_id: u64,
    /// `acme/<name>` of each repository.
    pub repos: Vec<String>,
    /// A fresh random webhook secret (callers may use their own instead).
    pub webhook_secret: String,
}

impl SimWorld {
    /// Starts the simulator on a free loopback port with `ORG`, its `repos` (names without the
    /// owner) and the App installed on the organization. Webhooks are set later, once the
    /// receiver's address is known.
    pub async fn start(repos: &[&str]) -> Result<SimWorld> {
        SimWorld::start_with(repos, SimConfig::default()).await
    }

    /// [`SimWorld::start`] with the simulator's timings from `config` (its TLS identity is
    /// this module's test CA's, whatever `config` says).
    pub async fn start_with(repos: &[&str], config: SimConfig) -> Result<SimWorld> {
        let identity = test_ca()?
            .issue(&github_sim::tls::LOOPBACK_NAMES)
            .context("issuing the simulator's certificate")?;
        let sim = Sim::start(SimConfig {
            tls: Some(identity),
            ..config
        })
        .await
        .context("starting the GitHub simulator")?;
        sim.add_org(ORG);
        for repo in repos {
            sim.add_repo(ORG, repo);
        }
        sim.add_app(AppSpec {
            id: APP_ID,
            slug: "spank-gha".into(),
            public_key_pem: github_sim::test_keys::APP_PUBLIC_KEY_PEM.into(),
        })
        .context("registering the App with the simulator")?;
        let installation_id = sim
            .add_installation(InstallationSpec {
                app_id: APP_ID,
                account: ORG.into(),
                permissions: None,
            })
            .context("installing the App on the organization")?;
        Ok(SimWorld {
            sim,
            installation_id,
            repos: repos.iter().map(|r| format!("{ORG}/{r}")).collect(),
            webhook_secret: random_hex(24)?,
        })
    }

    /// Another organization `org` with `repos`, the App installed on it too.
    pub fn add_org_with_app(&self, org: &str, repos: &[&str]) -> Result<u64> {
        self.sim.add_org(org);
        for repo in repos {
            self.sim.add_repo(org, repo);
        }
        self.sim
            .add_installation(InstallationSpec {
                app_id: APP_ID,
                account: org.into(),
                permissions: None,
            })
            .with_context(|| format!("installing the App on {org}"))
    }

    /// Sends the App's webhooks to `url`, signed with this world's secret.
    pub fn send_webhooks_to(&self, url: &str) {
        self.sim.set_webhook(WebhookTarget {
            url: url.into(),
            secret: self.webhook_secret.clone(),
        });
    }
}

/// This process's test CA: it signs every simulator's certificate.
pub fn test_ca() -> Result<&'static TestCa> {
    static CA: OnceLock<TestCa> = OnceLock::new();
    if let Some(ca) = CA.get() {
        return Ok(ca);
    }
    let ca = TestCa::new().context("making the test CA")?;
    Ok(CA.get_or_init(|| ca))
}

/// Writes [`test_ca`]'s certificate to `dir/github-ca.pem` (for `github.ca_file`); its path.
pub fn write_test_ca(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("github-ca.pem");
    std::fs::write(&path, test_ca()?.cert_pem())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `bytes` random bytes from the kernel, as hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_asked_length() {
        let a = random_hex(8).unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, random_hex(8).unwrap());
    }
}
