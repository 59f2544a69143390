//! How values from tokens, key sets and configs appear in messages: escaped,
//! cut short, credentials and queries left out. Imported by every other
//! module and importing none of them.

use url::Url;

/// A value from the token or config, escaped and cut short for messages.
pub(crate) fn quoted(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return format!("{text:?}");
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &text[..end])
}

/// `["a", "b"]`, at most a handful of items, each cut short.
pub(crate) fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    const MAX_ITEMS: usize = 8;
    let mut shown = Vec::new();
    let mut more = 0;
    for (i, item) in items.into_iter().enumerate() {
        if i < MAX_ITEMS {
            shown.push(quoted(item));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        shown.push(format!("… {more} more"));
    }
    format!("[{}]", shown.join(", "))
}

/// RFC 3339 UTC time of a NumericDate, for messages (`2026-11-28T10:00:00Z`).
pub(crate) fn rfc3339(secs: f64) -> String {
    // Years 0001..=9999 only; anything else is shown as the raw number.
    if !(-62_135_596_800.0..=253_402_300_799.0).contains(&secs) {
        return format!("{secs} (seconds since 1970)");
    }
    let secs = secs.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// A URL fit for logs and errors: no userinfo, no query (either may hold a credential).
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if had_query {
        text.push_str("?…");
    }
    text
}
