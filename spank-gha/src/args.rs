//! The job options users pass to `sbatch`/`srun` (`--gha-runner`, `--gha-image`,
//! `--gha-docker`): the option table ([`Opt`], registered with Slurm by `spank.rs`), the
//! values Slurm's option callback saw in this process, the checks on those values, and the
//! variables through which Slurm carries them to the job. Errors describe what is wrong without
//! ever repeating the value: a runner's JIT config is a credential.

use std::cell::RefCell;
use std::ffi::CStr;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use redeem_contract::{is_valid_ticket, MAX_TICKET, TICKET_CHARSET, TICKET_PREFIX};

/// One of the plugin's options; its discriminant is the `val` Slurm hands back to the option
/// callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    /// `--gha-runner=<jitconfig|ticket:...>`
    Runner = 0,
    /// `--gha-image=<registry/image:tag>`
    Image = 1,
    /// `--gha-docker` (flag: ask for a rootless dockerd where the admin set
    /// `docker=on-request`)
    Docker = 2,
}

impl Opt {
    /// Every option, in registration order (the order of the discriminants).
    pub const ALL: [Opt; 3] = [Opt::Runner, Opt::Image, Opt::Docker];

    /// The option as Slurm registers it (`--<name>`).
    pub const fn c_name(self) -> &'static CStr {
        match self {
            Opt::Runner => c"gha-runner",
            Opt::Image => c"gha-image",
            Opt::Docker => c"gha-docker",
        }
    }

    /// The option's name, without the dashes.
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or_default()
    }

    /// What `--help` shows as the argument; `None` for a flag.
    pub const fn arginfo(self) -> Option<&'static CStr> {
        match self {
            Opt::Runner => Some(c"jitconfig"),
            Opt::Image => Some(c"image"),
            Opt::Docker => None,
        }
    }

    /// The `--help` text.
    pub const fn usage(self) -> &'static CStr {
        match self {
            Opt::Runner => c"Run this job as a GitHub Actions runner host: the runner's base64 JIT config, or ticket:<reference>",
            Opt::Image => c"Runner image under the cluster's image root (registry/image:tag)",
            Opt::Docker => c"Start a rootless Docker daemon for the runner (where the cluster offers it on request)",
        }
    }

    /// The `val` registered with the option.
    pub const fn val(self) -> i32 {
        self as i32
    }

    /// The option registered with `val`.
    pub fn from_val(val: i32) -> Option<Opt> {
        Opt::ALL.into_iter().find(|opt| opt.val() == val)
    }

    /// The variable through which Slurm carries the option's value to the remote side.
    pub fn env_name(self) -> String {
        option_env_name(self.name())
    }
}

thread_local! {
    /// Values the option callback received (sbatch/srun validate them in init_post_opt).
    /// Written whole, so a panic cannot leave it half-updated.
    static SEEN: RefCell<[Option<String>; 3]> = const { RefCell::new([None, None, None]) };
}

/// Records the value Slurm's option callback received for `opt` (empty for a flag).
pub fn record_seen(opt: Opt, value: String) {
    SEEN.with(|seen| {
        if let Some(slot) = seen.borrow_mut().get_mut(opt as usize) {
            *slot = Some(value);
        }
    });
}

/// The value recorded for `opt` in this process, if the option was given.
pub fn seen(opt: Opt) -> Option<String> {
    SEEN.with(|seen| seen.borrow().get(opt as usize).cloned().flatten())
}

/// Largest `--gha-runner` value accepted.
pub const MAX_RUNNER_VALUE: usize = 64 * 1024;
/// Largest `--gha-image` value accepted.
pub const MAX_IMAGE_NAME: usize = 512;

/// What `--gha-runner` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerValueKind {
    /// A base64 JIT config as GitHub's `generate-jitconfig` returns it.
    JitConfig,
    /// `ticket:<opaque>`: the config is fetched later (late binding).
    Ticket,
}

/// Why a `--gha-runner` value was refused. Never contains the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunnerValueError {
    #[error("--gha-runner: the value is empty")]
    Empty,
    #[error("--gha-runner: the value is {len} bytes, more than the {MAX_RUNNER_VALUE} allowed")]
    TooLong { len: usize },
    #[error("--gha-runner: the value contains control characters or spaces")]
    ControlCharacters,
    #[error(
        "--gha-runner: the value is neither a base64 runner JIT config nor ticket:<reference>"
    )]
    NotBase64,
    #[error("--gha-runner: the ticket reference must be 1 to {MAX_TICKET} characters from {TICKET_CHARSET}")]
    BadTicket,
}

/// Checks a `--gha-runner` value's syntax.
pub fn validate_runner_value(value: &str) -> Result<RunnerValueKind, RunnerValueError> {
    if value.is_empty() {
        return Err(RunnerValueError::Empty);
    }
    if value.len() > MAX_RUNNER_VALUE {
        return Err(RunnerValueError::TooLong { len: value.len() });
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(RunnerValueError::ControlCharacters);
    }
    if let Some(ticket) = value.strip_prefix(TICKET_PREFIX) {
        if !is_valid_ticket(ticket) {
            return Err(RunnerValueError::BadTicket);
        }
        return Ok(RunnerValueKind::Ticket);
    }
    // GitHub pads its base64; a value pasted without the padding is still accepted.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    match LENIENT.decode(value) {
        Ok(decoded) if !decoded.is_empty() => Ok(RunnerValueKind::JitConfig),
        _ => Err(RunnerValueError::NotBase64),
    }
}

/// Why an image name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageNameError {
    #[error("image name is empty")]
    Empty,
    #[error("image name is longer than {MAX_IMAGE_NAME} bytes")]
    TooLong,
    #[error("image name '{0}' must be relative to the image root (registry/image:tag)")]
    Absolute(String),
    #[error("image name '{0}' has an empty, '.' or '..' path component")]
    BadComponent(String),
    #[error("image name contains control characters or spaces")]
    ControlCharacters,
}

/// Checks a `--gha-image` (or `default_image`) name: a relative path of plain components, as
/// in a CVMFS `unpacked.cern.ch` layout (`registry.example/group/image:tag`).
pub fn validate_image_name(name: &str) -> Result<(), ImageNameError> {
    if name.is_empty() {
        return Err(ImageNameError::Empty);
    }
    if name.len() > MAX_IMAGE_NAME {
        return Err(ImageNameError::TooLong);
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ImageNameError::ControlCharacters);
    }
    if name.starts_with('/') {
        return Err(ImageNameError::Absolute(name.into()));
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(ImageNameError::BadComponent(name.into()));
    }
    Ok(())
}

/// Name of the variable through which Slurm carries an option's value to the remote side
/// (`_SLURM_SPANK_OPTION_<plugin>_<option>`, non-alphanumerics turned into `_`).
pub fn option_env_name(option: &str) -> String {
    let sanitize = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    format!(
        "_SLURM_SPANK_OPTION_{}_{}",
        sanitize(crate::PLUGIN_NAME),
        sanitize(option)
    )
}

/// Is this environment variable one of the copies of our options that Slurm puts in a job's
/// environment (the plain one, and sbatch's `SLURM_SPANK_`-prefixed copy)?
pub fn is_option_env_var(name: &str) -> bool {
    let prefix = option_env_name("");
    name.starts_with(&prefix)
        || name
            .strip_prefix("SLURM_SPANK_")
            .is_some_and(|rest| rest.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JIT: &str = "eyIucnVubmVyIjoiZXlKaFoyVnVkRWxrSWpveE1uMD0ifQ==";

    #[test]
    fn accepts_jit_configs_and_tickets() {
        assert_eq!(validate_runner_value(JIT), Ok(RunnerValueKind::JitConfig));
        assert_eq!(
            validate_runner_value(JIT.trim_end_matches('=')),
            Ok(RunnerValueKind::JitConfig)
        );
        assert_eq!(
            validate_runner_value("ticket:abc-123_x.y~z"),
            Ok(RunnerValueKind::Ticket)
        );
    }

    #[test]
    fn refuses_malformed_runner_values_without_echoing_them() {
        let long = "A".repeat(MAX_RUNNER_VALUE + 4);
        let cases: Vec<(&str, RunnerValueError)> = vec![
            ("", RunnerValueError::Empty),
            (&long, RunnerValueError::TooLong { len: long.len() }),
            ("c2VjcmV0\u{7}", RunnerValueError::ControlCharacters),
            ("c2Vj cmV0", RunnerValueError::ControlCharacters),
            ("c2VjcmV0\n", RunnerValueError::ControlCharacters),
            ("not*base64!secretvalue", RunnerValueError::NotBase64),
            ("ticket:", RunnerValueError::BadTicket),
            ("ticket:bad;secretvalue", RunnerValueError::BadTicket),
        ];
        for (value, expected) in cases {
            let err = validate_runner_value(value).unwrap_err();
            assert_eq!(err, expected);
            let message = err.to_string();
            assert!(message.starts_with("--gha-runner"), "{message}");
            assert!(!message.contains("secretvalue"), "{message}");
            assert!(!message.contains("c2Vj"), "{message}");
        }
        assert_eq!(
            validate_runner_value(&format!("ticket:{}", "a".repeat(MAX_TICKET + 1))),
            Err(RunnerValueError::BadTicket)
        );
    }

    #[test]
    fn image_names() {
        assert_eq!(
            validate_image_name("registry.example/gha/runner:1.2"),
            Ok(())
        );
        assert!(matches!(
            validate_image_name("/etc"),
            Err(ImageNameError::Absolute(_))
        ));
        for bad in ["../x", "a/../../b", "a//b", "a/./b", "a/", ".."] {
            assert!(
                matches!(
                    validate_image_name(bad),
                    Err(ImageNameError::BadComponent(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(validate_image_name(""), Err(ImageNameError::Empty));
        assert_eq!(
            validate_image_name("a\nb"),
            Err(ImageNameError::ControlCharacters)
        );
        assert_eq!(
            validate_image_name(&"a".repeat(MAX_IMAGE_NAME + 1)),
            Err(ImageNameError::TooLong)
        );
    }

    #[test]
    fn option_table() {
        assert_eq!(
            Opt::ALL.map(Opt::name),
            ["gha-runner", "gha-image", "gha-docker"]
        );
        for opt in Opt::ALL {
            assert_eq!(Opt::from_val(opt.val()), Some(opt));
            assert_eq!(Opt::ALL[opt as usize], opt);
        }
        assert_eq!(Opt::from_val(3), None);
        assert_eq!(Opt::from_val(-1), None);
        assert!(Opt::Docker.arginfo().is_none());
        assert_eq!(seen(Opt::Image), None);
        record_seen(Opt::Image, "reg/img:1".into());
        assert_eq!(seen(Opt::Image).as_deref(), Some("reg/img:1"));
        assert_eq!(seen(Opt::Runner), None);
    }

    #[test]
    fn option_variables() {
        assert_eq!(
            Opt::Runner.env_name(),
            "_SLURM_SPANK_OPTION_spank_gha_gha_runner"
        );
        assert!(is_option_env_var(
            "_SLURM_SPANK_OPTION_spank_gha_gha_runner"
        ));
        assert!(is_option_env_var(
            "SLURM_SPANK__SLURM_SPANK_OPTION_spank_gha_gha_runner"
        ));
        assert!(!is_option_env_var("SLURM_JOB_ID"));
        assert!(!is_option_env_var("_SLURM_SPANK_OPTION_pyxis_image"));
    }
}
