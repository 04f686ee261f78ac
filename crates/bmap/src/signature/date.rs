//! Points in time of OpenPGP keys and signatures, shown as UTC dates in messages.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time: seconds since 1970-01-01 00:00:00 UTC. OpenPGP times are 32-bit;
/// a creation time plus a validity period may go past that, hence 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub u64);

impl Date {
    /// `time` as a date (times before 1970 count as 1970).
    pub fn from_system_time(time: SystemTime) -> Date {
        Date(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    /// This date `secs` seconds later.
    pub(super) fn plus(self, secs: u32) -> Date {
        Date(self.0.saturating_add(u64::from(secs)))
    }
}

impl From<pgp::types::Timestamp> for Date {
    fn from(t: pgp::types::Timestamp) -> Date {
        Date(u64::from(t.as_secs()))
    }
}

impl fmt::Display for Date {
    /// `2024-06-12 20:04:40 UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0 / 86_400;
        let secs = self.0 % 86_400;
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// The Gregorian (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::Date;

    #[test]
    fn dates_show_as_utc_calendar_dates() {
        // Values checked with `date -u -d @N`.
        for (secs, shown) in [
            (0, "1970-01-01 00:00:00 UTC"),
            (951_782_400, "2000-02-29 00:00:00 UTC"),
            (1_718_222_680, "2024-06-12 20:04:40 UTC"),
            (4_294_967_295, "2106-02-07 06:28:15 UTC"),
            (4_107_542_399, "2100-02-28 23:59:59 UTC"),
            (4_107_542_400, "2100-03-01 00:00:00 UTC"),
        ] {
            assert_eq!(Date(secs).to_string(), shown, "{secs}");
        }
    }
}
