//! A systemd service unit read the way systemd runs it, for a machine whose PID 1 is not
//! systemd: the `ExecStartPre=`/`ExecStart=` command lines, `Environment=`, `User=`/`Group=`
//! and `UMask=`. [`ServiceUnit::command`] builds the process systemd would start: a clean
//! environment holding only systemd's default `PATH` and the unit's variables, the unit's
//! umask, the unit's user (root when it names none).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// systemd's default `PATH` for services.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `[Service]` settings that decide what runs and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceUnit {
    pub exec_start_pre: Vec<Vec<String>>,
    pub exec_start: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: Option<String>,
}

impl ServiceUnit {
    pub fn read(path: &Path) -> Result<ServiceUnit> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        ServiceUnit::parse(&text)
    }

    /// Parses the `[Service]` section. Command lines are split on whitespace: a unit whose
    /// commands quote arguments or use systemd's `$VAR` or `-`/`@` prefixes is refused rather
    /// than run differently from systemd.
    pub fn parse(text: &str) -> Result<ServiceUnit> {
        let mut unit = ServiceUnit::default();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                bail!("not key=value: {line}");
            };
            if section == "[Service]" {
                unit.set(key.trim(), value.trim())?;
            }
        }
        if unit.exec_start.is_empty() {
            bail!("the unit has no ExecStart=");
        }
        Ok(unit)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "ExecStartPre" => self.exec_start_pre.push(command_line(value)?),
            "ExecStart" => self.exec_start = command_line(value)?,
            "Environment" => {
                for assignment in value.split_whitespace() {
                    let (name, val) = assignment
                        .split_once('=')
                        .with_context(|| format!("Environment={value}"))?;
                    self.environment.insert(name.into(), val.into());
                }
            }
            "User" => self.user = Some(value.into()),
            "Group" => self.group = Some(value.into()),
            "UMask" => self.umask = Some(value.into()),
            _ => {}
        }
        Ok(())
    }

    /// The process systemd would start for `argv`, with `overrides` applied to the unit's
    /// environment (what the machine's site config would differ in, e.g. `SLURM_CONF`).
    pub fn command(&self, argv: &[String], overrides: &[(&str, &str)]) -> Command {
        let mut environment = self.environment.clone();
        for (name, value) in overrides {
            environment.insert(name.to_string(), value.to_string());
        }
        let umask = self.umask.clone().unwrap_or_else(|| "0022".into());
        let mut command = Command::new("/bin/sh");
        command
            .env_clear()
            .env("PATH", SYSTEMD_PATH)
            .envs(&environment);
        // `exec` keeps the unit's own command line as the process's; only the umask is set first.
        command.args(["-c", "umask \"$0\" && exec \"$@\"", &umask]);
        if let Some(user) = &self.user {
            let group = self.group.clone().unwrap_or_else(|| user.clone());
            command.args([
                "setpriv",
                "--reuid",
                user,
                "--regid",
                &group,
                "--init-groups",
            ]);
        }
        command.args(argv);
        command
    }
}

fn command_line(value: &str) -> Result<Vec<String>> {
    if value.contains(['"', '\'', '$']) || value.starts_with(['-', '@', '+', '!', ':']) {
        bail!("command line {value:?} needs systemd's own parsing");
    }
    Ok(value.split_whitespace().map(String::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "[Unit]\nDescription=x\nExecStart=/not/this\n\n[Service]\n\
        ExecStartPre=/usr/bin/d check-config --config /etc/d.toml\n\
        ExecStart=/usr/bin/d serve --config /etc/d.toml\n\
        Environment=A=1\nEnvironment=B=2 C=3\nUMask=0077\n# User=nobody\n";

    #[test]
    fn reads_what_systemd_would_run() {
        let unit = ServiceUnit::parse(UNIT).unwrap();
        assert_eq!(
            unit.exec_start,
            ["/usr/bin/d", "serve", "--config", "/etc/d.toml"]
        );
        assert_eq!(unit.exec_start_pre[0][1], "check-config");
        assert_eq!(unit.environment.len(), 3);
        assert_eq!(unit.umask.as_deref(), Some("0077"));
        assert_eq!(unit.user, None);
    }

    #[test]
    fn runs_it_with_a_clean_environment_and_the_umask() {
        let mut unit = ServiceUnit::parse(UNIT).unwrap();
        unit.exec_start = vec![
            "/bin/sh".into(),
            "-c".into(),
            "umask; echo $A$B$C$HOME".into(),
        ];
        let out = unit
            .command(&unit.exec_start, &[("C", "9")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0077\n129\n");
    }

    #[test]
    fn refuses_what_it_would_run_differently() {
        assert!(ServiceUnit::parse("[Service]\nExecStart=-/bin/x\n").is_err());
        assert!(ServiceUnit::parse("[Service]\nExecStart=/bin/x \"a b\"\n").is_err());
        assert!(ServiceUnit::parse("[Service]\nType=exec\n").is_err());
    }
}
