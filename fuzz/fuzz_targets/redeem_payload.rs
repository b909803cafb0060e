//! The redemption exchange (redeem-contract's JSON): the node's credential payload the
//! dispatcher parses, and the sealed answer and refusal body the node parses. Never a panic,
//! `Debug` never shows a ticket or a JIT config, and what parses serializes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redeem_contract::{is_valid_ticket, RedeemRequest, RefusalBody, RefusalCode, SealedAnswer};

fuzz_target!(|data: &[u8]| {
    if let Some(request) = RedeemRequest::parse(data) {
        assert!(is_valid_ticket(&request.ticket));
        // Debug shows nothing of the ticket: the same with any other ticket.
        let other = RedeemRequest {
            ticket: "A".repeat(43),
            ..request.clone()
        };
        assert_eq!(format!("{request:?}"), format!("{other:?}"));
        assert_eq!(
            RedeemRequest::parse(request.to_json().as_bytes()),
            Some(request)
        );
    }
    if let Some(answer) = SealedAnswer::parse(data) {
        // Debug shows nothing of the JIT config: the same with any other config.
        let other = SealedAnswer {
            jit_config: "eA==".into(),
            ..answer.clone()
        };
        assert_eq!(format!("{answer:?}"), format!("{other:?}"));
        assert_eq!(
            SealedAnswer::parse(answer.to_json().as_bytes()),
            Some(answer)
        );
    }
    if let Some(refusal) = RefusalBody::parse(data) {
        let _ = refusal.code();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(code) = RefusalCode::parse(text) {
            assert_eq!(RefusalCode::parse(&code.to_string()), Some(code));
        }
    }
});
