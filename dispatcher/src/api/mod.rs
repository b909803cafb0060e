//! The HTTP side: the state the handlers share, the router, and the endpoints that are the
//! API's own (`/healthz`, `/metrics`, `/status`, `/repositories/{username}`) and the web console's (`/console/`).
//!
//! Each handler module (here, `intake`, `redeem`) declares the sub-state it needs; `state`
//! derives them from [`AppState`] with `FromRef`, so no handler module names the whole state.

pub mod auth;
pub mod console;
pub mod repositories;
mod router;
pub mod serve;
mod state;
pub mod status;

pub use router::router;
pub use state::AppState;
