//! The console's request checks: the session cookie (its attributes and reading it back), and
//! for every state-changing request the Origin check and the synchronizer CSRF token.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

use super::sessions::{Session, Sessions};
use crate::api::auth::{err, ApiError};

/// The session cookie's name; it is sent only under `/console`.
pub const COOKIE: &str = "gha_console";
/// The header a state-changing request carries its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// `Set-Cookie` for a new session: not readable by scripts, never sent cross-site nor over
/// plain HTTP to anything but localhost, gone with the session.
pub fn session_cookie(id: &str, max_age_secs: i64) -> HeaderValue {
    let value = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_secs}"
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "gha_console=; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
    )
}

/// The session cookie's value, if the request carries one.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The live session behind the request's cookie: 401 without one (none sent, unknown,
/// expired).
pub fn session(sessions: &Sessions, headers: &HeaderMap) -> Result<(String, Session), ApiError> {
    let id = cookie_value(headers).ok_or_else(|| err(StatusCode::UNAUTHORIZED, "not logged in"))?;
    let session = sessions.get(&id).ok_or_else(|| {
        err(
            StatusCode::UNAUTHORIZED,
            "the session expired; log in again",
        )
    })?;
    Ok((id, session))
}

/// A state-changing request must come from a page of this origin: `Origin` names the host the
/// request was sent to, and `Sec-Fetch-Site` (when the browser sends it) says same-origin.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(err(StatusCode::FORBIDDEN, why.to_string()));
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" {
            return refuse("cross-site request refused");
        }
    }
    let (Some(origin), Some(host)) = (text(header::ORIGIN), text(header::HOST)) else {
        return refuse("a state-changing request needs Origin and Host headers");
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    if !authority.eq_ignore_ascii_case(host) {
        return refuse("cross-origin request refused");
    }
    Ok(())
}

/// Origin, then the session's CSRF token in [`CSRF_HEADER`].
pub fn check_write(headers: &HeaderMap, session: &Session) -> Result<(), ApiError> {
    same_origin(headers)?;
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !session.csrf_matches(sent) {
        return Err(err(StatusCode::FORBIDDEN, "missing or wrong CSRF token"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::console::sessions::Role;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=b; gha_console=xyz; c=d")]);
        assert_eq!(cookie_value(&h).as_deref(), Some("xyz"));
        assert_eq!(
            cookie_value(&headers(&[("cookie", "gha_consolex=1")])),
            None
        );
        let set = session_cookie("abc", 60);
        let set = set.to_str().unwrap();
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=60"] {
            assert!(set.contains(attribute), "{set}");
        }
    }

    #[test]
    fn an_expired_or_unknown_session_is_refused() {
        let sessions = Sessions::default();
        let (id, _) = sessions.open(Role::Admin);
        let with = |id: &str| headers(&[("cookie", &format!("{COOKIE}={id}"))]);
        assert!(session(&sessions, &with(&id)).is_ok());
        assert_eq!(
            session(&sessions, &HeaderMap::new()).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            session(&sessions, &with("beef")).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        sessions.age(super::super::sessions::ADMIN_SESSION_SECS);
        let expired = session(&sessions, &with(&id)).unwrap_err();
        assert_eq!(
            expired.0,
            StatusCode::UNAUTHORIZED,
            "an expired session was accepted"
        );
    }

    #[test]
    fn writes_need_this_origin_and_the_token() {
        let sessions = Sessions::default();
        let (_, s) = sessions.open(Role::Admin);
        let good = [("host", "127.0.0.1:80"), ("origin", "http://127.0.0.1:80")];
        let mut with_token = headers(&good);
        with_token.insert(CSRF_HEADER, HeaderValue::from_str(&s.csrf).unwrap());
        assert!(check_write(&with_token, &s).is_ok());
        assert!(check_write(&headers(&good), &s).is_err(), "no CSRF token");
        let mut evil = headers(&[("host", "127.0.0.1:80"), ("origin", "https://evil.test")]);
        evil.insert(CSRF_HEADER, HeaderValue::from_str(&s.csrf).unwrap());
        assert!(check_write(&evil, &s).is_err(), "cross-origin");
        let mut no_origin = headers(&[("host", "127.0.0.1:80")]);
        no_origin.insert(CSRF_HEADER, HeaderValue::from_str(&s.csrf).unwrap());
        assert!(check_write(&no_origin, &s).is_err(), "no Origin");
        let mut cross_site = with_token.clone();
        cross_site.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(
            check_write(&cross_site, &s).is_err(),
            "Sec-Fetch-Site cross-site"
        );
    }
}
