//! The log's timestamps: the text tracing-subscriber's `SystemTime` writes
//! (RFC 3339, UTC, microseconds: `2026-12-01T18:41:25.193550Z`), with the
//! date and the time of day worked out once a second instead of for every
//! line. `serve` writes a line per decision, and formatting the date field by
//! field was a quarter of that line's cost (BENCHMARKS.md, #14).

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// `YYYY-MM-DDTHH:MM:SS.`, the part of a timestamp that changes once a second.
type SecondText = [u8; 20];

/// The first second of the year 10000, which four digits cannot write.
const YEAR_10000: u64 = 253_402_300_800;

pub struct LogClock;

impl FormatTime for LogClock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        // Before 1970 or from the year 10000 on: tracing's own clock writes those.
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(now) if now.as_secs() < YEAR_10000 => {
                let text = timestamp(now.as_secs(), now.subsec_micros());
                // Only ASCII digits and separators are ever written.
                w.write_str(std::str::from_utf8(&text).unwrap_or_default())
            }
            _ => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

thread_local! {
    /// The last second a line was written in on this thread, and its text.
    static LAST_SECOND: Cell<Option<(u64, SecondText)>> = const { Cell::new(None) };
}

/// The whole timestamp: 27 bytes of ASCII.
fn timestamp(secs: u64, micros: u32) -> [u8; 27] {
    let mut text = [0u8; 27];
    let second = LAST_SECOND.with(|last| match last.get() {
        Some((s, text)) if s == secs => text,
        _ => {
            let text = second_text(secs);
            last.set(Some((secs, text)));
            text
        }
    });
    text[..20].copy_from_slice(&second);
    put_digits(&mut text[20..26], micros);
    text[26] = b'Z';
    text
}

fn second_text(secs: u64) -> SecondText {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = (secs % 86_400) as u32;
    let mut text = *b"0000-00-00T00:00:00.";
    put_digits(&mut text[0..4], year as u32);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], of_day / 3600);
    put_digits(&mut text[14..16], of_day % 3600 / 60);
    put_digits(&mut text[17..19], of_day % 60);
    text
}

/// `value`'s last `digits.len()` decimal digits, zero-padded.
fn put_digits(digits: &mut [u8], mut value: u32) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        // Days since the epoch from Python's datetime.
        let known = [
            (0, (1970, 1, 1)),
            (10_956, (1999, 12, 31)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (19_782, (2024, 2, 29)),
            (20_788, (2026, 12, 1)),
            (47_540, (2100, 2, 28)),
            (47_541, (2100, 3, 1)),
            (2_932_896, (9999, 12, 31)),
        ];
        for (days, date) in known {
            assert_eq!(civil_from_days(days), date, "{days}");
        }
    }

    #[test]
    fn timestamps_read_as_tracing_writes_them() {
        let timestamp = |secs, micros| String::from_utf8(timestamp(secs, micros).to_vec()).unwrap();
        assert_eq!(timestamp(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(timestamp(1_796_150_485, 193_550), "2026-12-01T18:41:25.193550Z");
        assert_eq!(timestamp(1_796_150_485, 7), "2026-12-01T18:41:25.000007Z", "same second, remembered text");
        assert_eq!(timestamp(YEAR_10000 - 1, 999_999), "9999-12-31T23:59:59.999999Z");
        // Against tracing-subscriber's own clock, to the second (retried across a second boundary).
        let render = |clock: &dyn FormatTime| {
            let mut text = String::new();
            clock.format_time(&mut Writer::new(&mut text)).unwrap();
            text
        };
        let same_second = (0..5).any(|_| {
            let (ours, theirs) = (render(&LogClock), render(&tracing_subscriber::fmt::time::SystemTime));
            assert_eq!((ours.len(), theirs.len()), (27, 27), "{ours} {theirs}");
            ours[..20] == theirs[..20]
        });
        assert!(same_second);
    }
}
