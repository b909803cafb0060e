//! Time formatting shared by the simulator and the fake runner (ISO 8601 UTC, as GitHub prints it).

use chrono::{DateTime, SecondsFormat, Utc};

/// `2024-05-01T12:00:00Z`, the format GitHub uses in REST answers and webhooks.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn now_iso() -> String {
    iso(Utc::now())
}

/// The runner's console timestamp (.NET `DateTime.UtcNow:u`): `2024-05-01 12:00:00Z`.
pub fn runner_console_stamp() -> String {
    Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string()
}
