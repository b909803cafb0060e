//! The plugin's configuration: the `key=value` arguments after the plugin's path in
//! `plugstack.conf`, parsed strictly. An unknown key, a repeated key or a bad value is an error
//! naming the key, so an admin's typo stops the plugin from loading instead of being ignored.
//! Values are never echoed in errors (a URL may carry credentials).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the job gets a Docker daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerMode {
    /// No Docker daemon is started.
    Off,
    /// Every runner job gets its own rootless dockerd.
    Rootless,
    /// Only jobs submitted with `--gha-docker` get a rootless dockerd.
    OnRequest,
}

impl DockerMode {
    /// The value handed to the job script in `GHA_DOCKER`.
    pub fn as_str(self) -> &'static str {
        match self {
            DockerMode::Off => "off",
            DockerMode::Rootless => "rootless",
            DockerMode::OnRequest => "on-request",
        }
    }
}

/// The program that starts the runner inside an unpacked image (`container_runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerRuntime {
    /// `apptainer exec` (the usual runtime of HPC sites with CVMFS; not installable here).
    Apptainer,
    /// Rootless `podman run --rootfs` (Debian's and RHEL's packages).
    Podman,
}

impl ContainerRuntime {
    /// The value handed to the job script in `GHA_CONTAINER_RUNTIME` (also the program's name).
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerRuntime::Apptainer => "apptainer",
            ContainerRuntime::Podman => "podman",
        }
    }
}

/// Parsed plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directory under which each job's `gha-<jobid>` work dir is created.
    pub workdir_base: PathBuf,
    /// Where the actions runner (`run.sh`, `bin/`) is installed on the host.
    pub runner_root: PathBuf,
    /// Root that images must resolve inside (e.g. `/cvmfs/unpacked.cern.ch`).
    pub image_root: Option<PathBuf>,
    /// Image used when the job names none.
    pub default_image: Option<String>,
    /// What starts the runner when a job has an image. Default Apptainer: what sites serving
    /// images from CVMFS run, and what this key's absence meant before it existed.
    pub container_runtime: ContainerRuntime,
    pub docker: DockerMode,
    /// A runner that has not started a job after this long is stopped.
    pub idle_timeout: Duration,
    /// Bound on waiting for the rootless dockerd to answer.
    pub docker_timeout: Duration,
    /// Bound on the image existence check (an autofs mount can hang).
    pub image_check_timeout: Duration,
    /// Grace between SIGINT, SIGTERM and SIGKILL when stopping an idle runner.
    pub stop_grace: Duration,
    /// Where the dispatcher listens (handed to the job as `GHA_DISPATCHER_URL`; tickets are
    /// redeemed there, so a ticket job needs it).
    pub dispatcher_url: Option<String>,
    /// The `gha-redeem` helper that trades a ticket for a JIT config.
    pub redeem_helper: PathBuf,
    /// The local munged's socket, for the credential `gha-redeem` presents and decodes.
    pub munge_socket: PathBuf,
    /// Bound on the whole redemption (munge, the dispatcher's answer, unmunge).
    pub redeem_timeout: Duration,
    /// The uid the dispatcher runs as: only a MUNGE credential made by it is taken as the
    /// dispatcher's answer to a redemption.
    pub dispatcher_uid: u32,
    /// Runner jobs of a uid below this (and of root, always) are refused; `None`: `UID_MIN`
    /// from `/etc/login.defs` ([`Config::min_uid`]).
    pub min_uid: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workdir_base: PathBuf::from("/tmp"),
            runner_root: PathBuf::from("/opt/actions-runner"),
            image_root: None,
            default_image: None,
            container_runtime: ContainerRuntime::Apptainer,
            docker: DockerMode::Off,
            idle_timeout: Duration::from_secs(120),
            docker_timeout: Duration::from_secs(60),
            image_check_timeout: Duration::from_secs(10),
            stop_grace: Duration::from_secs(10),
            dispatcher_url: None,
            redeem_helper: PathBuf::from("/usr/libexec/spank-gha/gha-redeem"),
            munge_socket: PathBuf::from("/run/munge/munge.socket.2"),
            redeem_timeout: Duration::from_secs(30),
            dispatcher_uid: 0,
            min_uid: None,
        }
    }
}

/// The lowest uid of an ordinary account when `/etc/login.defs` says nothing.
pub const DEFAULT_MIN_UID: u32 = 1000;

impl Config {
    /// The lowest uid allowed to run a runner job: `min_uid`, else `UID_MIN` from
    /// `/etc/login.defs`, else [`DEFAULT_MIN_UID`].
    pub fn min_uid(&self) -> u32 {
        self.min_uid.unwrap_or_else(|| {
            std::fs::read_to_string("/etc/login.defs")
                .ok()
                .and_then(|text| uid_min_from_login_defs(&text))
                .unwrap_or(DEFAULT_MIN_UID)
        })
    }
}

/// The `UID_MIN` setting of a login.defs text.
pub fn uid_min_from_login_defs(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("UID_MIN"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("plugstack.conf argument #{index} is not of the form key=value")]
    NotKeyValue { index: usize },
    #[error("unknown plugstack.conf key '{key}' (known keys: {})", KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("plugstack.conf key '{key}' is given more than once")]
    Repeated { key: String },
    #[error("bad value for plugstack.conf key '{key}': {reason}")]
    BadValue { key: &'static str, reason: String },
}

/// Every key the plugin accepts.
pub const KEYS: &[&str] = &[
    "workdir_base",
    "runner_root",
    "image_root",
    "default_image",
    "container_runtime",
    "docker",
    "idle_timeout",
    "docker_timeout",
    "image_check_timeout",
    "stop_grace",
    "dispatcher_url",
    "redeem_helper",
    "munge_socket",
    "redeem_timeout",
    "dispatcher_uid",
    "min_uid",
];

impl Config {
    /// Parses the plugin's arguments from `plugstack.conf`.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for (index, arg) in args.iter().enumerate() {
            let arg = arg.as_ref();
            let (key, value) = arg
                .split_once('=')
                .ok_or(ConfigError::NotKeyValue { index: index + 1 })?;
            let key: &'static str = KEYS
                .iter()
                .copied()
                .find(|known| *known == key)
                .ok_or_else(|| ConfigError::UnknownKey {
                    key: printable(key),
                })?;
            if seen.contains(&key) {
                return Err(ConfigError::Repeated { key: key.into() });
            }
            seen.push(key);
            config.set(key, value)?;
        }
        if config.default_image.is_some() && config.image_root.is_none() {
            return Err(ConfigError::BadValue {
                key: "default_image",
                reason: "needs image_root to be set as well".into(),
            });
        }
        Ok(config)
    }

    fn set(&mut self, key: &'static str, value: &str) -> Result<(), ConfigError> {
        let bad = |reason: &str| ConfigError::BadValue {
            key,
            reason: reason.into(),
        };
        match key {
            "workdir_base" => self.workdir_base = absolute_path(value).map_err(bad)?,
            "runner_root" => self.runner_root = absolute_path(value).map_err(bad)?,
            "image_root" => self.image_root = Some(absolute_path(value).map_err(bad)?),
            "default_image" => {
                crate::args::validate_image_name(value).map_err(|e| ConfigError::BadValue {
                    key,
                    reason: e.to_string(),
                })?;
                self.default_image = Some(value.to_owned());
            }
            "container_runtime" => {
                self.container_runtime = match value {
                    "apptainer" => ContainerRuntime::Apptainer,
                    "podman" => ContainerRuntime::Podman,
                    _ => return Err(bad("expected apptainer or podman")),
                }
            }
            "docker" => {
                self.docker = match value {
                    "off" => DockerMode::Off,
                    "rootless" => DockerMode::Rootless,
                    "on-request" => DockerMode::OnRequest,
                    _ => return Err(bad("expected rootless, on-request or off")),
                }
            }
            "idle_timeout" => self.idle_timeout = seconds(key, value, 7 * 24 * 3600)?,
            "docker_timeout" => self.docker_timeout = seconds(key, value, 3600)?,
            "image_check_timeout" => self.image_check_timeout = seconds(key, value, 600)?,
            "stop_grace" => self.stop_grace = seconds(key, value, 600)?,
            "dispatcher_url" => {
                let rest = value
                    .strip_prefix("http://")
                    .or_else(|| value.strip_prefix("https://"))
                    .ok_or_else(|| bad("expected an http:// or https:// URL"))?;
                if rest.is_empty() || value.chars().any(|c| c.is_control() || c == ' ') {
                    return Err(bad("expected an http:// or https:// URL with a host"));
                }
                self.dispatcher_url = Some(value.to_owned());
            }
            // Both run as root: a relative path would depend on slurmstepd's working dir.
            "redeem_helper" => self.redeem_helper = absolute_path(value).map_err(bad)?,
            "munge_socket" => self.munge_socket = absolute_path(value).map_err(bad)?,
            "redeem_timeout" => self.redeem_timeout = seconds(key, value, 300)?,
            "dispatcher_uid" => {
                self.dispatcher_uid = value.parse().map_err(|_| bad("expected a numeric uid"))?
            }
            "min_uid" => match value.parse::<u32>() {
                Ok(n) if n >= 1 => self.min_uid = Some(n),
                _ => {
                    return Err(bad(
                        "expected a numeric uid of at least 1 (root never runs runners)",
                    ))
                }
            },
            _ => unreachable!("every entry of KEYS has a branch"),
        }
        Ok(())
    }
}

/// An absolute path without control characters or `..` (a file or a directory).
fn absolute_path(value: &str) -> Result<PathBuf, &'static str> {
    let path = Path::new(value);
    if !path.is_absolute() {
        return Err("expected an absolute path");
    }
    if value.chars().any(char::is_control) {
        return Err("the path contains control characters");
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err("the path must not contain '..'");
    }
    Ok(path.to_path_buf())
}

fn seconds(key: &'static str, value: &str, max: u64) -> Result<Duration, ConfigError> {
    match value.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(ConfigError::BadValue {
            key,
            reason: format!("expected whole seconds from 1 to {max}"),
        }),
    }
}

/// A key as the admin typed it, made safe to print (unknown keys are not secret, but may hold
/// control characters that would mangle a log line).
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_no_arguments() {
        let config = Config::parse::<&str>(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.workdir_base, Path::new("/tmp"));
        assert_eq!(config.idle_timeout, Duration::from_secs(120));
        assert_eq!(config.docker, DockerMode::Off);
        assert_eq!(config.container_runtime, ContainerRuntime::Apptainer);
        assert_eq!(
            config.redeem_helper,
            Path::new("/usr/libexec/spank-gha/gha-redeem")
        );
        assert_eq!(config.munge_socket, Path::new("/run/munge/munge.socket.2"));
        assert_eq!(config.redeem_timeout, Duration::from_secs(30));
    }

    #[test]
    fn parses_every_key() {
        let config = Config::parse(&[
            "workdir_base=/scratch",
            "runner_root=/opt/runner",
            "image_root=/cvmfs/unpacked.cern.ch",
            "default_image=registry.example/runner:1",
            "container_runtime=podman",
            "docker=rootless",
            "idle_timeout=30",
            "docker_timeout=20",
            "image_check_timeout=5",
            "stop_grace=3",
            "dispatcher_url=http://127.0.0.1:8080",
            "redeem_helper=/opt/gha/gha-redeem",
            "munge_socket=/var/run/munge/other.socket",
            "redeem_timeout=300",
            "dispatcher_uid=995",
            "min_uid=500",
        ])
        .unwrap();
        assert_eq!(config.dispatcher_uid, 995);
        assert_eq!(config.min_uid(), 500);
        assert_eq!(config.workdir_base, Path::new("/scratch"));
        assert_eq!(config.runner_root, Path::new("/opt/runner"));
        assert_eq!(
            config.image_root.as_deref(),
            Some(Path::new("/cvmfs/unpacked.cern.ch"))
        );
        assert_eq!(
            config.default_image.as_deref(),
            Some("registry.example/runner:1")
        );
        assert_eq!(config.container_runtime, ContainerRuntime::Podman);
        assert_eq!(config.docker, DockerMode::Rootless);
        assert_eq!(config.idle_timeout, Duration::from_secs(30));
        assert_eq!(config.docker_timeout, Duration::from_secs(20));
        assert_eq!(config.image_check_timeout, Duration::from_secs(5));
        assert_eq!(config.stop_grace, Duration::from_secs(3));
        assert_eq!(
            config.dispatcher_url.as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(config.redeem_helper, Path::new("/opt/gha/gha-redeem"));
        assert_eq!(
            config.munge_socket,
            Path::new("/var/run/munge/other.socket")
        );
        assert_eq!(config.redeem_timeout, Duration::from_secs(300));
        assert_eq!(
            Config::parse(&["docker=on-request"]).unwrap().docker,
            DockerMode::OnRequest
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse(&["workdir_bsae=/tmp"]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownKey {
                key: "workdir_bsae".into()
            }
        );
        assert!(err.to_string().contains("workdir_bsae"));
    }

    #[test]
    fn bad_values_name_the_key_and_not_the_value() {
        for (arg, key) in [
            ("workdir_base=relative", "workdir_base"),
            ("workdir_base=/tmp/../etc", "workdir_base"),
            ("runner_root=", "runner_root"),
            ("docker=yes", "docker"),
            ("container_runtime=singularity", "container_runtime"),
            ("container_runtime=Podman", "container_runtime"),
            ("container_runtime=", "container_runtime"),
            ("idle_timeout=0", "idle_timeout"),
            ("idle_timeout=12s", "idle_timeout"),
            ("idle_timeout=-5", "idle_timeout"),
            ("stop_grace=99999", "stop_grace"),
            ("dispatcher_url=ftp://secret-host", "dispatcher_url"),
            ("dispatcher_url=https:// secret", "dispatcher_url"),
            ("default_image=../etc", "default_image"),
            ("redeem_helper=gha-redeem", "redeem_helper"),
            ("redeem_helper=/usr/../tmp/gha-redeem", "redeem_helper"),
            ("munge_socket=munge.socket.2", "munge_socket"),
            ("munge_socket=", "munge_socket"),
            ("redeem_timeout=0", "redeem_timeout"),
            ("redeem_timeout=301", "redeem_timeout"),
            ("redeem_timeout=1.5", "redeem_timeout"),
            ("dispatcher_uid=root", "dispatcher_uid"),
            ("min_uid=0", "min_uid"),
            ("min_uid=-1", "min_uid"),
        ] {
            let err = Config::parse(&["image_root=/cvmfs", arg]).unwrap_err();
            match &err {
                ConfigError::BadValue { key: k, .. } => assert_eq!(*k, key, "{arg}"),
                other => panic!("{arg}: unexpected {other:?}"),
            }
            let message = err.to_string();
            assert!(message.contains(key), "{message}");
            let value = arg.split_once('=').unwrap().1;
            // Short numbers may appear in the stated range; image names are not secret.
            if value.len() > 3 && key != "default_image" {
                assert!(!message.contains(value), "{message} echoes {value}");
            }
        }
    }

    #[test]
    fn malformed_and_repeated_arguments_are_refused() {
        assert_eq!(
            Config::parse(&["docker=off", "rootless"]).unwrap_err(),
            ConfigError::NotKeyValue { index: 2 }
        );
        assert_eq!(
            Config::parse(&["docker=off", "docker=rootless"]).unwrap_err(),
            ConfigError::Repeated {
                key: "docker".into()
            }
        );
    }

    #[test]
    fn min_uid_defaults_to_login_defs() {
        let text = "# comment\nUID_MAX 60000\nUID_MIN\t\t 1200\n";
        assert_eq!(uid_min_from_login_defs(text), Some(1200));
        assert_eq!(uid_min_from_login_defs("#UID_MIN 5\nUID_MINX 7\n"), None);
        assert_eq!(Config::default().dispatcher_uid, 0);
        assert!(Config::default().min_uid() >= 1);
    }

    #[test]
    fn default_image_needs_image_root() {
        let err = Config::parse(&["default_image=reg/img:1"]).unwrap_err();
        assert!(err.to_string().contains("image_root"), "{err}");
    }
}
