//! GitHub's list conventions: `per_page` (default 30, at most 100) and `page`, and the `Link`
//! header (`next`, `last`, `first`, `prev`) that keeps the list's filters.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::shared::Shared;

#[derive(Deserialize, Default)]
pub(super) struct Paging {
    pub(super) per_page: Option<String>,
    pub(super) page: Option<String>,
    pub(super) name: Option<String>,
    pub(super) status: Option<String>,
    pub(super) filter: Option<String>,
}

impl Paging {
    fn per_page(&self) -> usize {
        self.per_page
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(30)
            .clamp(1, 100)
    }
    fn page(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1)
    }
}

/// Slices `items` to the requested page and builds GitHub's `Link` header.
pub(super) fn paginate<T: Clone>(
    s: &Shared,
    path: &str,
    q: &Paging,
    items: &[T],
) -> (Vec<T>, Option<String>) {
    let per = q.per_page();
    let page = q.page();
    let last = items.len().div_ceil(per).max(1);
    let slice = items
        .iter()
        .skip((page - 1) * per)
        .take(per)
        .cloned()
        .collect();
    let mut extra = String::new();
    for (k, v) in [
        ("name", &q.name),
        ("status", &q.status),
        ("filter", &q.filter),
    ] {
        if let Some(v) = v {
            extra.push_str(&format!("&{k}={v}"));
        }
    }
    let link = |p: usize, rel: &str| {
        format!(
            "<{}{path}?per_page={per}{extra}&page={p}>; rel=\"{rel}\"",
            s.base_url
        )
    };
    let mut parts = Vec::new();
    if page < last {
        parts.push(link(page + 1, "next"));
        parts.push(link(last, "last"));
    }
    if page > 1 {
        parts.push(link(1, "first"));
        parts.push(link((page - 1).min(last), "prev"));
    }
    (
        slice,
        if parts.is_empty() {
            None
        } else {
            Some(parts.join(", "))
        },
    )
}

pub(super) fn json_with_link(status: StatusCode, body: Value, link: Option<String>) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert("link", l);
    }
    r
}
