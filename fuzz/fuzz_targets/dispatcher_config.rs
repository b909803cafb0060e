//! The dispatcher's TOML config file: any text. Never a panic; a refusal names its issues.
#![no_main]

use gha_dispatcher::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(refusal) = Config::parse(text) {
        assert!(!refusal.to_string().is_empty());
    }
});
