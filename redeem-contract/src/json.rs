//! The JSON shapes of the exchange: what the node's MUNGE credential carries, what the
//! dispatcher's sealed answer carries, and what a refusal answers.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RefusalCode;

/// The payload of the node's MUNGE credential: `{"ticket":"<ticket>","job_id":<u32>}`.
/// `Debug` never shows the ticket.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemRequest {
    pub ticket: String,
    pub job_id: u32,
}

impl RedeemRequest {
    /// The payload as `munge` signs it.
    pub fn to_json(&self) -> String {
        // A struct of a string and an integer always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a decoded payload: a JSON object (serde alone would also take a struct from an
    /// array such as `["T", 42]`) whose ticket is well formed.
    pub fn parse(payload: &[u8]) -> Option<RedeemRequest> {
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        if !value.is_object() {
            return None;
        }
        let request: RedeemRequest = serde_json::from_value(value).ok()?;
        crate::is_valid_ticket(&request.ticket).then_some(request)
    }
}

impl std::fmt::Debug for RedeemRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedeemRequest")
            .field("ticket", &"<redacted>")
            .field("job_id", &self.job_id)
            .finish()
    }
}

/// The payload of the epilog's end notice: `{"ended_job_id":<u32>}` (a field name no
/// redemption request has, so neither payload passes for the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEndedNotice {
    pub ended_job_id: u32,
}

impl JobEndedNotice {
    /// The payload as `munge` signs it.
    pub fn to_json(&self) -> String {
        // One integer always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a decoded payload: a JSON object of exactly this field.
    pub fn parse(payload: &[u8]) -> Option<JobEndedNotice> {
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        if !value.is_object() {
            return None;
        }
        serde_json::from_value(value).ok()
    }
}

/// sha256 of a ticket's text, lowercase hex: how the sealed answer names the ticket it answers.
pub fn ticket_sha256(ticket: &str) -> String {
    hex::encode(Sha256::digest(ticket.as_bytes()))
}

/// The payload of the dispatcher's 200 answer (a MUNGE credential made by the dispatcher's uid
/// for uid 0): `{"job_id":<u32>,"ticket_sha256":"<hex>","jit_config":"<base64>"}`. The node
/// accepts it only for its own job and ticket. `Debug` never shows the config.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedAnswer {
    pub job_id: u32,
    pub ticket_sha256: String,
    pub jit_config: String,
}

impl SealedAnswer {
    /// The payload as the dispatcher seals it.
    pub fn to_json(&self) -> String {
        // Strings and an integer always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a decoded payload: a JSON object of exactly these three fields.
    pub fn parse(payload: &[u8]) -> Option<SealedAnswer> {
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        if !value.is_object() {
            return None;
        }
        serde_json::from_value(value).ok()
    }

    /// Is this the answer for `job_id` and `ticket`?
    pub fn is_for(&self, job_id: u32, ticket: &str) -> bool {
        self.job_id == job_id && self.ticket_sha256 == ticket_sha256(ticket)
    }
}

impl std::fmt::Debug for SealedAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAnswer")
            .field("job_id", &self.job_id)
            .field("ticket_sha256", &self.ticket_sha256)
            .field("jit_config", &"<redacted>")
            .finish()
    }
}

/// The body of a refusal: `{"error": <code>, "message": <text for the job's user>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalBody {
    pub error: String,
    #[serde(default)]
    pub message: String,
}

impl RefusalBody {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> RefusalBody {
        RefusalBody {
            error: code.as_str().to_owned(),
            message: message.into(),
        }
    }

    /// Parses a refusal answer: a JSON object with a string `error` (and maybe a `message`).
    pub fn parse(body: &[u8]) -> Option<RefusalBody> {
        serde_json::from_slice(body).ok()
    }

    /// The body's code, if it names one of the contract's.
    pub fn code(&self) -> Option<RefusalCode> {
        RefusalCode::parse(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_notices_parse_strictly() {
        let notice = JobEndedNotice { ended_job_id: 42 };
        assert_eq!(
            JobEndedNotice::parse(notice.to_json().as_bytes()),
            Some(notice)
        );
        for bad in [
            &br#"{"ended_job_id":42,"extra":1}"#[..],
            br#"{"ticket":"abc","job_id":42}"#,
            br#"[42]"#,
            br#"{"ended_job_id":-1}"#,
            b"42",
        ] {
            assert_eq!(JobEndedNotice::parse(bad), None);
        }
        let request = RedeemRequest {
            ticket: "abc".into(),
            job_id: 42,
        };
        assert_eq!(JobEndedNotice::parse(request.to_json().as_bytes()), None);
        assert_eq!(RedeemRequest::parse(notice.to_json().as_bytes()), None);
    }

    #[test]
    fn request_round_trips_and_hides_the_ticket() {
        let req = RedeemRequest {
            ticket: "q1w2-e3_r4".into(),
            job_id: 4_294_967_295,
        };
        assert_eq!(
            req.to_json(),
            r#"{"ticket":"q1w2-e3_r4","job_id":4294967295}"#
        );
        assert_eq!(
            RedeemRequest::parse(req.to_json().as_bytes()),
            Some(req.clone())
        );
        assert!(!format!("{req:?}").contains("q1w2"));
    }

    #[test]
    fn request_parsing_is_strict() {
        for bad in [
            r#"{"ticket":"T"}"#,
            r#"{"job_id":1}"#,
            r#"{"ticket":"T","job_id":-1}"#,
            r#"["T",1]"#,
            r#"{"ticket":"has space","job_id":1}"#,
            r#"{"ticket":"","job_id":1}"#,
            "not json",
        ] {
            assert_eq!(RedeemRequest::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn sealed_answer_round_trips_binds_and_hides_the_config() {
        let answer = SealedAnswer {
            job_id: 42,
            ticket_sha256: ticket_sha256("T-1"),
            jit_config: "c2VjcmV0".into(),
        };
        assert_eq!(
            ticket_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let text = answer.to_json();
        assert!(
            text.starts_with(r#"{"job_id":42,"ticket_sha256":""#),
            "{text}"
        );
        assert_eq!(SealedAnswer::parse(text.as_bytes()), Some(answer.clone()));
        assert!(answer.is_for(42, "T-1"));
        assert!(!answer.is_for(43, "T-1"));
        assert!(!answer.is_for(42, "T-2"));
        assert!(!format!("{answer:?}").contains("c2VjcmV0"));
        for bad in [
            "c2VjcmV0",
            r#"{"job_id":42,"jit_config":"x"}"#,
            r#"{"job_id":42,"ticket_sha256":"h","jit_config":"x","extra":1}"#,
            r#"[42,"h","x"]"#,
        ] {
            assert_eq!(SealedAnswer::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn refusal_body_shape() {
        let body = RefusalBody::new(RefusalCode::NotNeeded, "no job waits");
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(text, r#"{"error":"not_needed","message":"no job waits"}"#);
        let back: RefusalBody = serde_json::from_str(r#"{"error":"wrong_job"}"#).unwrap();
        assert_eq!(back.code(), Some(RefusalCode::WrongJob));
        assert_eq!(back.message, "");
        assert_eq!(RefusalBody::parse(text.as_bytes()), Some(body));
        for bad in [
            &b"<html>"[..],
            b"",
            br#"{"message":"m"}"#,
            br#"{"error":1}"#,
        ] {
            assert_eq!(RefusalBody::parse(bad), None);
        }
    }
}
