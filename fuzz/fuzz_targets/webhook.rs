//! A `POST /webhook` as anyone on the network may send it: the `X-Hub-Signature-256` header
//! (the input's first line) and the body (the rest). The signature check and the payload
//! parser never panic, and a body signed with the right secret always verifies.
#![no_main]

use gha_dispatcher::intake::parse_workflow_job;
use gha_dispatcher::intake::signature::{sign, verify};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"It's a Secret to Everybody";

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (header, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    if let Ok(header) = std::str::from_utf8(header) {
        let _ = verify(SECRET, body, Some(header));
    }
    assert!(verify(SECRET, body, Some(&sign(SECRET, body))));
    assert!(!verify(SECRET, body, None));
    let _ = parse_workflow_job(body);
});
