//! A runner scale set session message as the Actions service sends it: any bytes. Never a
//! panic; a message that parses keeps every job message it carried of a known type, and a
//! refusal says what was wrong.
#![no_main]

use gha_dispatcher::clients::actions::parse_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_message(text) {
        Ok(message) => assert!(message.jobs.len() <= text.len()),
        Err(why) => assert!(!why.is_empty()),
    }
});
