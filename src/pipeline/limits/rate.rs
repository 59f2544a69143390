//! The arithmetic of a limit, with no clock and no store: the rate grammar,
//! GCRA (the generic cell rate algorithm) and UTC calendar periods. The
//! local store and the Redis script both apply exactly these rules.
//!
//! Times are microseconds since the Unix epoch.

use std::fmt;

/// Microseconds in a second.
pub const SECOND_US: u64 = 1_000_000;
const DAY_SECS: u64 = 86_400;
/// The most requests a rate or quota may name: far beyond any real limit,
/// and small enough that no sum overflows or loses precision in Redis's Lua numbers.
pub const MAX_COUNT: u64 = 1_000_000_000;

/// `N/unit [burst B]`: N requests per second, minute or hour, of which B may
/// come at once (default N: a full window's worth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per window.
    pub count: u64,
    /// The window, in seconds (1, 60 or 3600).
    pub window_secs: u64,
    /// Requests that may come at once, at most.
    pub burst: u64,
}

impl Rate {
    /// Reads `100/min`, `10/s burst 20`, `5000/hour`: units `s`, `sec`,
    /// `second`, `m`, `min`, `minute`, `h`, `hr`, `hour` (any case, optional
    /// plural `s`); N and B from 1 to 10^9.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let expected =
            "expected `N/s`, `N/min` or `N/hour`, optionally followed by `burst B` (e.g. `100/min`, `10/s burst 20`)";
        let mut words = text.split_whitespace();
        let (Some(rate), burst_word, burst, None) = (words.next(), words.next(), words.next(), words.next()) else {
            return Err(format!("`{}` is not a rate: {expected}", shown(text)));
        };
        let Some((count, unit)) = rate.split_once('/') else {
            return Err(format!("`{}` is not a rate: {expected}", shown(text)));
        };
        let count = parse_count(count)
            .ok_or_else(|| format!("`{}`: the count must be 1 to {MAX_COUNT}; {expected}", shown(text)))?;
        let window_secs = match unit.to_ascii_lowercase().trim_end_matches('s') {
            "" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hr" | "hour" => 3600,
            _ => return Err(format!("`{}`: unknown unit `{}`; {expected}", shown(text), shown(unit))),
        };
        let burst = match (burst_word, burst) {
            (None, None) => count,
            (Some(word), Some(b)) if word.eq_ignore_ascii_case("burst") => parse_count(b)
                .ok_or_else(|| format!("`{}`: the burst must be 1 to {MAX_COUNT}; {expected}", shown(text)))?,
            _ => return Err(format!("`{}` is not a rate: {expected}", shown(text))),
        };
        Ok(Rate { count, window_secs, burst })
    }

    /// Microseconds between two requests at the steady rate (at least 1).
    pub fn interval_us(&self) -> u64 {
        (self.window_secs * SECOND_US / self.count).max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.window_secs {
            1 => "s",
            60 => "min",
            _ => "hour",
        };
        write!(f, "{}/{unit}", self.count)?;
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

fn parse_count(text: &str) -> Option<u64> {
    // Digits only: `u64::from_str` takes a `+`.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 10 {
        return None;
    }
    text.parse().ok().filter(|n| (1..=MAX_COUNT).contains(n))
}

/// Text from a config or key file, fit for an error message.
fn shown(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(60).collect()
}

/// A UTC calendar period a quota counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// From 00:00:00 UTC to the next midnight.
    Day,
    /// From the first of the month, 00:00:00 UTC, to the first of the next.
    Month,
}

impl Period {
    /// `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    /// The period `now_us` falls in: its number (days, or months, since
    /// 1970-01) and its start and end, in microseconds.
    pub fn at(self, now_us: u64) -> PeriodSpan {
        let day = now_us / SECOND_US / DAY_SECS;
        match self {
            Period::Day => {
                PeriodSpan { id: day, start_us: day * DAY_SECS * SECOND_US, end_us: (day + 1) * DAY_SECS * SECOND_US }
            }
            Period::Month => {
                let (year, month, _) = civil_from_days(day);
                let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                PeriodSpan {
                    id: year * 12 + (month - 1),
                    start_us: days_from_civil(year, month, 1) * DAY_SECS * SECOND_US,
                    end_us: days_from_civil(next_year, next_month, 1) * DAY_SECS * SECOND_US,
                }
            }
        }
    }
}

/// One day or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodSpan {
    /// Days (or months) since 1970-01-01 (1970-01).
    pub id: u64,
    /// When it began.
    pub start_us: u64,
    /// When the next one begins.
    pub end_us: u64,
}

/// Year, month (1-12) and day (1-31) of `days` since 1970-01-01 (Howard
/// Hinnant's algorithm, for days on or after the epoch).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date on or after it.
pub fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-01-31T00:00:00Z` for a time in microseconds.
pub fn utc_timestamp(us: u64) -> String {
    let secs = us / SECOND_US;
    let (y, m, d) = civil_from_days(secs / DAY_SECS);
    let rest = secs % DAY_SECS;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

/// What one charge against one limit came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeResult {
    /// Whether the limit had room for the charge.
    pub allowed: bool,
    /// Units left after the charge (when allowed) or now (when not).
    pub remaining: u64,
    /// Microseconds until the limit is whole again (a rate: full; a quota: the period ends).
    pub reset_us: u64,
    /// Microseconds until the refused charge would fit; 0 when allowed.
    pub retry_us: u64,
}

/// GCRA: `tat` is the theoretical arrival time stored for the bucket
/// (`None`: never seen, or expired). Returns the result and the new TAT to
/// store when allowed. `cost` is at most `burst` (checked at load).
pub fn gcra(tat: Option<u64>, now: u64, interval: u64, burst: u64, cost: u64) -> (ChargeResult, u64) {
    let tolerance = interval.saturating_mul(burst);
    let base = tat.unwrap_or(now).max(now);
    let new_tat = base.saturating_add(interval.saturating_mul(cost));
    let allow_at = new_tat.saturating_sub(tolerance);
    if now < allow_at {
        let available = (now + tolerance).saturating_sub(base) / interval;
        let result =
            ChargeResult { allowed: false, remaining: available, reset_us: base - now, retry_us: allow_at - now };
        return (result, base);
    }
    let remaining = (now + tolerance).saturating_sub(new_tat) / interval;
    (ChargeResult { allowed: true, remaining, reset_us: new_tat - now, retry_us: 0 }, new_tat)
}

/// A calendar quota: `used` so far in the period ending at `end_us`.
/// Returns the result and the new count when allowed.
pub fn quota(used: u64, limit: u64, cost: u64, now: u64, end_us: u64) -> (ChargeResult, u64) {
    let reset_us = end_us.saturating_sub(now);
    if used.saturating_add(cost) > limit {
        let result =
            ChargeResult { allowed: false, remaining: limit.saturating_sub(used), reset_us, retry_us: reset_us };
        return (result, used);
    }
    let after = used + cost;
    (ChargeResult { allowed: true, remaining: limit - after, reset_us, retry_us: 0 }, after)
}
