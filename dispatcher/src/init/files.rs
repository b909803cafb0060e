//! What `init` writes: secret files (0600, created so that no moment exists in which another
//! user could read them), fresh random secrets, and the starting config text.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::manifest::Owner;

/// Writes `contents` to `path` with mode 0600. An existing file is replaced only with `replace`.
pub fn write_private(path: &Path, contents: &str, replace: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).with_context(|| {
        if path.exists() && !replace {
            format!("{} exists (give --force to replace it)", path.display())
        } else {
            format!("cannot write {}", path.display())
        }
    })?;
    // The mode given at creation does not change an existing file's mode.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a fresh random secret to `path` unless a non-empty one is there already.
pub fn ensure_secret(path: &Path) -> anyhow::Result<bool> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        return Ok(false);
    }
    write_private(path, &format!("{}\n", random_hex(32)?), true)?;
    Ok(true)
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(buf))
}

/// What the starting config says.
pub struct ConfigValues {
    pub listen: String,
    pub dir: PathBuf,
    pub api_url: String,
    pub ca_file: Option<PathBuf>,
    pub app_id: u64,
    pub owner: Owner,
    pub repositories: Vec<String>,
    pub runner_user: String,
    pub job_script: PathBuf,
    pub labels: Vec<String>,
    pub max_runners: u32,
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn quoted_path(path: &Path) -> String {
    quoted(&path.to_string_lossy())
}

fn quoted_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    format!("[{}]", items.join(", "))
}

/// The config text: every secret by file, one pool, the rest at the dispatcher's defaults
/// (see /usr/share/doc/gha-dispatcher/dispatcher.example.toml for every key).
pub fn config_text(v: &ConfigValues) -> String {
    let targets = match &v.owner {
        Owner::Org(org) => format!(
            "[{{ org = {}, repositories = {} }}]",
            quoted(org),
            quoted_list(&v.repositories)
        ),
        Owner::User(_) => {
            let repos: Vec<String> = v
                .repositories
                .iter()
                .map(|r| format!("{{ repo = {} }}", quoted(r)))
                .collect();
            format!("[{}]", repos.join(", "))
        }
    };
    let ca = v
        .ca_file
        .as_ref()
        .map(|c| format!("ca_file = {}\n", quoted_path(c)))
        .unwrap_or_default();
    let file = |name: &str| quoted_path(&v.dir.join(name));
    format!(
        "# Written by `gha-dispatcher init`. Check it with: gha-dispatcher check-config\n\
         # Every key: /usr/share/doc/gha-dispatcher/dispatcher.example.toml\n\n\
         [server]\nlisten = {listen}\nwebhook_secret_file = {webhook}\nadmin_token_file = {admin}\n\n\
         [github]\napi_url = {api}\n{ca}app_id = {app_id}\nprivate_key_file = {key}\n\
         targets = {targets}\n\n\
         [slurm]\njob_script = {script}\nuser = {user}\ngroup = {user}\n\n\
         [[pools]]\nname = \"default\"\nlabels = {labels}\nmax_runners = {max}\n",
        listen = quoted(&v.listen),
        webhook = file("webhook-secret"),
        admin = file("admin-token"),
        api = quoted(&v.api_url),
        app_id = v.app_id,
        key = file("app-private-key.pem"),
        script = quoted_path(&v.job_script),
        user = quoted(&v.runner_user),
        labels = quoted_list(&v.labels),
        max = v.max_runners,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secrets_are_0600_and_kept_unless_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        assert!(ensure_secret(&path).unwrap());
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(first.trim().len(), 64);
        assert!(!ensure_secret(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(write_private(&path, "x", false).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "x", true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
