//! The `[server]` section: where the dispatcher listens (the file paths it names are read
//! by `secrets`).

use std::net::SocketAddr;

use super::issues::Issues;
use super::raw::RawServer;

/// Validates `[server]`: the listen address, `None` when it is not one.
pub(super) fn validate(raw: &RawServer, issues: &mut Issues<'_>) -> Option<SocketAddr> {
    match raw.listen.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(e) => {
            issues.at(
                "server.listen",
                raw.listen.span(),
                format!("not a socket address: {e}"),
            );
            None
        }
    }
}
