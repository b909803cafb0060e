//! A pool's warm settings: `warm_hours` (when `min_idle` applies) and the Slurm time limit
//! its warm runners are rotated before, parsed strictly.
//!
//! Hours are in UTC, not the daemon's local time: the same config means the same hours on
//! every host, a daylight-saving change never moves or doubles a window, and no time zone
//! database is needed. A site in UTC+1 that wants 08:00-20:00 local writes 07:00-19:00.

use std::fmt;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// When a pool keeps its idle runners: days of the week (Monday = 0) and minutes of the day,
/// `[start, end)`, both in UTC. Parsed from e.g. `"Mon-Fri 08:00-20:00"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmHours {
    days: [bool; 7],
    start_minute: u32,
    end_minute: u32,
}

impl WarmHours {
    /// `"<days> <HH:MM>-<HH:MM>"`: days a comma list of `Mon`..`Sun` or ranges (`Mon-Fri`,
    /// `Fri-Mon` wraps over the weekend), case-insensitive; the end is after the start
    /// (`24:00` ends at midnight). A window over midnight is refused rather than guessed at.
    pub fn parse(text: &str) -> Result<WarmHours, String> {
        let mut parts = text.split_whitespace();
        let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "{text:?}: expected \"<days> <HH:MM>-<HH:MM>\", e.g. \"Mon-Fri 08:00-20:00\" (UTC)"
            ));
        };
        let days = parse_days(days)?;
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| format!("{times:?}: expected <HH:MM>-<HH:MM>"))?;
        let (start_minute, end_minute) = (parse_clock(start)?, parse_clock(end)?);
        if start_minute >= end_minute {
            return Err(format!(
                "{times:?}: the end must be after the start (windows over midnight are not supported; 24:00 is midnight at the end of the day)"
            ));
        }
        Ok(WarmHours {
            days,
            start_minute,
            end_minute,
        })
    }

    /// Whether `unix_secs` (UTC) falls in the window.
    pub fn contains(&self, unix_secs: i64) -> bool {
        let days_since_epoch = unix_secs.div_euclid(86_400);
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let weekday = (days_since_epoch + 3).rem_euclid(7) as usize;
        let minute = (unix_secs.rem_euclid(86_400) / 60) as u32;
        self.days[weekday] && minute >= self.start_minute && minute < self.end_minute
    }
}

impl fmt::Display for WarmHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = DAYS
            .iter()
            .zip(self.days)
            .filter_map(|(d, on)| on.then_some(*d))
            .collect();
        let clock = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        write!(
            f,
            "{} {}-{} UTC",
            days.join(","),
            clock(self.start_minute),
            clock(self.end_minute)
        )
    }
}

fn day_index(name: &str) -> Result<usize, String> {
    let lower = name.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| *d == lower)
        .ok_or_else(|| format!("{name:?} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for item in text.split(',') {
        match item.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day_index(from)?, day_index(to)?);
                let mut day = from;
                loop {
                    days[day] = true;
                    if day == to {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
            None => days[day_index(item)?] = true,
        }
    }
    Ok(days)
}

/// `HH:MM` (two digits each) to minutes of the day; `24:00` is the end of the day.
fn parse_clock(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?}: expected a time HH:MM from 00:00 to 24:00");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A Slurm `--time` value in seconds: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
/// `None` for text Slurm would not take or an unlimited limit, which a warm pool cannot be
/// rotated before. Slurm rounds a limit up to whole minutes; so does this.
pub fn slurm_time_limit_secs(text: &str) -> Option<u64> {
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let (days, rest) = match text.split_once('-') {
        Some((d, rest)) => (Some(number(d)?), rest),
        None => (None, text),
    };
    let fields: Vec<u64> = rest.split(':').map(number).collect::<Option<_>>()?;
    let secs = match (days, fields.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) | (Some(_), [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(_), [h]) => h * 3600,
        (Some(_), [h, m]) => h * 3600 + m * 60,
        _ => return None,
    } + days.unwrap_or(0) * 86_400;
    let rounded_up = secs.div_ceil(60) * 60;
    (rounded_up > 0).then_some(rounded_up)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-01-01 was a Monday.
    const MONDAY_MIDNIGHT: i64 = 1_704_067_200;

    fn at(day: i64, hour: i64, minute: i64) -> i64 {
        MONDAY_MIDNIGHT + day * 86_400 + hour * 3600 + minute * 60
    }

    #[test]
    fn weekday_hours_in_utc() {
        let hours = WarmHours::parse("Mon-Fri 08:00-20:00").unwrap();
        assert!(hours.contains(at(0, 8, 0)));
        assert!(hours.contains(at(4, 19, 59)));
        assert!(!hours.contains(at(0, 7, 59)));
        assert!(
            !hours.contains(at(0, 20, 0)),
            "the end is not in the window"
        );
        assert!(!hours.contains(at(5, 12, 0)), "Saturday");
        assert_eq!(hours.to_string(), "mon,tue,wed,thu,fri 08:00-20:00 UTC");
    }

    #[test]
    fn lists_wrapping_ranges_and_midnight() {
        let hours = WarmHours::parse("sat-Mon,wed 00:00-24:00").unwrap();
        for (day, want) in [
            (0, true),
            (1, false),
            (2, true),
            (3, false),
            (5, true),
            (6, true),
        ] {
            assert_eq!(hours.contains(at(day, 23, 59)), want, "day {day}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        for bad in [
            "",
            "Mon-Fri",
            "Mon-Fri 8:00-20:00",
            "Mon-Fri 08:00-20:00 UTC",
            "Monday 08:00-20:00",
            "Mon-Fri 20:00-08:00",
            "Mon-Fri 08:00-08:00",
            "Mon-Fri 08:00-24:30",
            "Mon-Fri 08:60-09:00",
            "Mon-Fri 08:00",
        ] {
            assert!(WarmHours::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn slurm_time_formats() {
        assert_eq!(slurm_time_limit_secs("1"), Some(60));
        assert_eq!(slurm_time_limit_secs("10:00"), Some(600));
        assert_eq!(slurm_time_limit_secs("0:30"), Some(60), "rounded up");
        assert_eq!(slurm_time_limit_secs("1:00:00"), Some(3600));
        assert_eq!(slurm_time_limit_secs("2-0"), Some(2 * 86_400));
        assert_eq!(slurm_time_limit_secs("1-2:30"), Some(86_400 + 9000));
        assert_eq!(slurm_time_limit_secs("1-0:0:1"), Some(86_400 + 60));
        for bad in [
            "",
            "0",
            "UNLIMITED",
            "infinite",
            "1:2:3:4",
            "-5",
            "1h",
            "1-",
        ] {
            assert_eq!(slurm_time_limit_secs(bad), None, "{bad:?}");
        }
    }
}
