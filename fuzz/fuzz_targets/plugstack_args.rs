//! The plugin's `plugstack.conf` arguments (slurmd hands them over already split on
//! whitespace): any words. Never a panic; an unknown key is refused without echoing control
//! characters into Slurm's log.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spank_gha::config::{uid_min_from_login_defs, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<&str> = text.split_whitespace().collect();
    if let Err(refusal) = Config::parse(&args) {
        let message = refusal.to_string();
        assert!(
            !message.chars().any(|c| c.is_control()),
            "a refusal with control characters: {message:?}"
        );
    }
    let _ = uid_min_from_login_defs(text);
});
