//! Who is calling: `Authorization: Bearer <admin token>` or `Authorization: MUNGE
//! <credential>` (its uid's login name; root's counts as an admin's). Errors are JSON
//! `{"error": ..}`.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use subtle::ConstantTimeEq;

use crate::clients::{munge, users};
use crate::config::Config;

/// An API error: the status and a message for the caller (never a secret).
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer, MUNGE"),
            );
        }
        response
    }
}

pub fn err(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

pub enum Caller {
    /// Holds the admin token.
    Admin,
    /// Root's MUNGE credential: an admin of the cluster (its login name).
    Root(String),
    UnixUser(String),
}

impl Caller {
    /// The admin token, or root's credential.
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin | Caller::Root(_))
    }
}

/// Who sent the request: the admin (the admin token), or the Unix user whose MUNGE
/// credential it carries.
pub async fn authenticate(
    config: &Config,
    admin_token: Option<&String>,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <admin token> or Authorization: MUNGE <credential>",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| err(StatusCode::UNAUTHORIZED, "unreadable Authorization header"))?;
    let (kind, credential) = value.split_once(' ').unwrap_or((value, ""));
    if kind.eq_ignore_ascii_case("bearer") {
        let Some(token) = admin_token else {
            return Err(err(
                StatusCode::FORBIDDEN,
                "no admin token is configured (server.admin_token_file)",
            ));
        };
        if bool::from(credential.trim().as_bytes().ct_eq(token.as_bytes())) {
            return Ok(Caller::Admin);
        }
        return Err(err(StatusCode::FORBIDDEN, "wrong admin token"));
    }
    if kind.eq_ignore_ascii_case("munge") {
        let uid = munge::decode_uid(config.munge_socket.as_deref(), credential)
            .await
            .map_err(|e| match e {
                munge::MungeError::Malformed | munge::MungeError::Refused(_) => {
                    err(StatusCode::FORBIDDEN, e.to_string())
                }
                munge::MungeError::Busy => err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                other => {
                    tracing::error!(error = %other, "cannot check a MUNGE credential");
                    err(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot check MUNGE credentials right now",
                    )
                }
            })?;
        let name = users::unix_user_name(uid)
            .ok()
            .flatten()
            .ok_or_else(|| err(StatusCode::FORBIDDEN, format!("uid {uid} has no user name")))?;
        return Ok(if uid == 0 {
            Caller::Root(name)
        } else {
            Caller::UnixUser(name)
        });
    }
    Err(err(
        StatusCode::UNAUTHORIZED,
        "unknown Authorization scheme (use Bearer or MUNGE)",
    ))
}
