//! What every Actions service call goes through: the injected 5xx faults, and the counters
//! (message-queue polls and acknowledgements apart from the other service calls).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;

use super::exception;
use crate::faults::Faults;
use crate::shared::Shared;

/// What a call is, for the counters.
enum Kind {
    Poll,
    Ack,
    /// `"<METHOD> <route relative to the service URL>"`.
    Service(String),
}

fn kind_of(req: &Request) -> Kind {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(req.uri().path(), |m| m.as_str())
        .trim_start_matches("/_actions/{tenant}/")
        .to_string();
    if route.starts_with("_queue/") {
        if req.method() == axum::http::Method::GET {
            Kind::Poll
        } else {
            Kind::Ack
        }
    } else {
        Kind::Service(format!("{} {route}", req.method()))
    }
}

/// True when an injected server error answers this call.
fn server_error(s: &Shared, kind: &Kind) -> bool {
    let mut w = s.lock();
    let f = &mut w.scale.faults;
    let acquiring = matches!(kind, Kind::Service(route) if route.ends_with("/acquirejobs"));
    let fired = (acquiring && Faults::take(&mut f.acquire_errors))
        || (matches!(kind, Kind::Ack) && Faults::take(&mut f.ack_errors))
        || Faults::take(&mut f.server_errors)
        || (f.server_error_percent > 0
            && rand::rng().random_range(0..100) < f.server_error_percent);
    if fired {
        w.counters.fault_injected("scale set server error");
    }
    fired
}

pub(super) async fn service_layer(
    State(s): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let kind = kind_of(&req);
    let resp = if server_error(&s, &kind) {
        exception(503, "ServiceUnavailableException", "Service Unavailable")
    } else {
        next.run(req).await
    };
    let failed = resp.status().as_u16() >= 400;
    let mut w = s.lock();
    let c = &mut w.counters.scaleset;
    match kind {
        Kind::Poll => c.queue_polls += 1,
        Kind::Ack => c.queue_deletes += 1,
        Kind::Service(key) => {
            let e = c.actions.entry(key).or_default();
            e.calls += 1;
            if failed {
                e.errors += 1;
            }
        }
    }
    resp
}
