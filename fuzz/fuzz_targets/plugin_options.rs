//! The plugin's job option values (`--gha-runner`, `--gha-image`) as a user types them on
//! sbatch: any bytes. Never a panic, and a refusal of a `--gha-runner` value (it may be a JIT
//! config: a secret) is one of the fixed messages: nothing of the value but its length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spank_gha::args::{
    is_option_env_var, option_env_name, validate_image_name, validate_runner_value,
    RunnerValueError,
};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(refusal) = validate_runner_value(value) {
        let fixed = [
            RunnerValueError::Empty,
            RunnerValueError::TooLong { len: value.len() },
            RunnerValueError::ControlCharacters,
            RunnerValueError::NotBase64,
            RunnerValueError::BadTicket,
        ]
        .map(|e| e.to_string());
        assert!(
            fixed.contains(&refusal.to_string()),
            "a refusal made of the value"
        );
    }
    let _ = validate_image_name(value);
    let name = option_env_name(value);
    assert!(name.is_ascii(), "an environment name that is not ASCII");
    assert!(
        is_option_env_var(&name),
        "the option's own variable is not recognised"
    );
});
