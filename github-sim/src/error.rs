//! Errors of the simulator's library API.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("binding the simulator to {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("unknown repository {0}")]
    UnknownRepo(String),
    #[error("unknown app {0}")]
    UnknownApp(u64),
    #[error("unknown account {0}")]
    UnknownAccount(String),
    #[error("unknown workflow run {0}")]
    UnknownRun(u64),
    #[error("unknown job {0}")]
    UnknownJob(u64),
    #[error("job {0} is not waiting for approval")]
    NotWaiting(u64),
    #[error("unknown delivery {0}")]
    UnknownDelivery(u64),
    #[error("a runner named {0:?} already exists")]
    DuplicateRunner(String),
    #[error("invalid workflow: {0}")]
    InvalidWorkflow(String),
    #[error("invalid App public key: {0}")]
    BadPublicKey(String),
    #[error("invalid App manifest: {0}")]
    BadManifest(String),
    #[error("scenario {path}: {message}")]
    Scenario { path: String, message: String },
    #[error("TLS: {0}")]
    Tls(String),
}

/// A GitHub error answer: `{message, documentation_url}` (422 adds `errors`), plus headers.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<serde_json::Value>,
    pub headers: Vec<(String, String)>,
}

pub const DOCS: &str = "https://docs.github.com/rest";

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: None,
            headers: Vec::new(),
        }
    }
    pub fn not_found() -> Self {
        Self::new(404, "Not Found")
    }
    pub fn bad_credentials() -> Self {
        Self::new(401, "Bad credentials")
    }
    pub fn forbidden_integration() -> Self {
        Self::new(403, "Resource not accessible by integration")
    }
    pub fn validation(message: impl Into<String>, errors: serde_json::Value) -> Self {
        Self {
            errors: Some(errors),
            ..Self::new(422, message)
        }
    }
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    pub fn body(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"message": self.message, "documentation_url": DOCS, "status": self.status.to_string()});
        if let Some(e) = &self.errors {
            v["errors"] = e.clone();
        }
        v
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                axum::http::HeaderValue::from_str(v),
            ) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}
