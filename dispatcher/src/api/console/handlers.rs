//! The console's request handlers besides the event stream: who am I, log in with the admin
//! token, log out, a login link for a MUNGE-proven Unix user, opening that link, and the
//! mapping edit (admin session, Origin and CSRF token; the checks are the REST API's).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::guard::{self, check_write, same_origin, session_cookie};
use super::sessions::{Role, Session, LINK_SECS};
use super::ConsoleState;
use crate::api::auth::{authenticate, err, ApiError, Caller};
use crate::api::repositories;
use crate::model::now_secs;

/// What the page learns about its session (never the session id: that is HttpOnly).
fn describe(session: &Session) -> serde_json::Value {
    let (role, user) = match &session.role {
        Role::Admin => ("admin", None),
        Role::Viewer(user) => ("viewer", Some(user.clone())),
    };
    serde_json::json!({
        "role": role,
        "user": user,
        "csrf_token": session.csrf,
        "expires_at": session.expires_at,
    })
}

/// A response that sets the cookie of a new session and describes it.
fn opened(id: &str, session: &Session) -> Response {
    let max_age = session.expires_at - now_secs();
    let mut response = Json(describe(session)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(id, max_age));
    response
}

/// `GET /console/api/session`.
pub async fn whoami(
    State(app): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, session) = guard::session(&app.sessions, &headers)?;
    Ok(Json(describe(&session)))
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /console/api/login` `{"token": ..}`: the admin token opens an admin session.
pub async fn login(
    State(app): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    same_origin(&headers)?;
    let Some(expected) = app.admin_token.as_deref() else {
        return Err(err(
            StatusCode::FORBIDDEN,
            "no admin token is configured (server.admin_token_file)",
        ));
    };
    let login: Login = serde_json::from_slice(&body)
        .map_err(|_| err(StatusCode::BAD_REQUEST, "expected {\"token\": \"...\"}"))?;
    if !bool::from(login.token.trim().as_bytes().ct_eq(expected.as_bytes())) {
        tracing::warn!("console login with a wrong admin token");
        return Err(err(StatusCode::FORBIDDEN, "wrong admin token"));
    }
    let (id, session) = app.sessions.open(Role::Admin);
    tracing::info!("console admin session opened");
    Ok(opened(&id, &session))
}

/// `POST /console/api/logout`.
pub async fn logout(
    State(app): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (id, session) = guard::session(&app.sessions, &headers)?;
    check_write(&headers, &session)?;
    app.sessions.close(&id);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, guard::cleared_cookie());
    Ok(response)
}

/// `POST /console/api/links` with `Authorization: MUNGE <credential>`: a one-use link to the
/// caller's read-only view, `{"path": "/console/link/<code>", "expires_in_secs": ..}`.
pub async fn issue_link(
    State(app): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = match authenticate(&app.config, None, &headers).await? {
        Caller::UnixUser(name) | Caller::Root(name) => name,
        Caller::Admin => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "log in with the admin token instead",
            ))
        }
    };
    let code = app.sessions.issue_link(&user);
    tracing::info!(%user, "console login link issued");
    Ok(Json(serde_json::json!({
        "path": format!("/console/link/{code}"),
        "user": user,
        "expires_in_secs": LINK_SECS,
    })))
}

/// `GET /console/link/{code}`: open the link once, set the viewer session's cookie, go to the
/// console.
pub async fn open_link(
    State(app): State<ConsoleState>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let Some((id, session)) = app.sessions.redeem_link(&code) else {
        return Err(err(
            StatusCode::FORBIDDEN,
            "this login link is unknown, used or expired; ask for a new one",
        ));
    };
    let max_age = session.expires_at - now_secs();
    let mut response = Redirect::to("/console/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id, max_age));
    Ok(response)
}

/// `POST /console/api/repositories/{username}`: replace a user's list, as
/// `POST /repositories/{username}` does, for an admin session with this origin's CSRF token.
pub async fn replace_mapping(
    State(app): State<ConsoleState>,
    Path(username): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vec<repositories::MappedRepository>>, ApiError> {
    let (_, session) = guard::session(&app.sessions, &headers)?;
    check_write(&headers, &session)?;
    if !session.role.may_edit() {
        return Err(err(
            StatusCode::FORBIDDEN,
            "changing a mapping needs the admin token; this session is read-only",
        ));
    }
    Ok(Json(
        repositories::replace(&app.repositories, &username, &body).await?,
    ))
}
