//! The one path canonicalizer: the form of a request path that `open_paths`,
//! `route_policy`, audit lines and `tokengate explain` all see.
//!
//! Back ends disagree about what a path means. A servlet container strips
//! `;params` from every segment and resolves `..` after that (`/public/..;/admin`
//! is `/admin` to Tomcat, `/public/..;/admin` to axum); some frameworks decode
//! twice (`%252e%252e`); some ignore a trailing dot or space (`/exact.`,
//! `/exact%20`). A gate that matches one reading while the back end routes
//! another is a way past it. So this module accepts a path only when every
//! reading agrees, and refuses it otherwise ([`PathError`], answered 400):
//!
//! - `;` anywhere (raw or `%3B`), backslashes (raw or `%5C`) and encoded
//!   slashes (`%2F`) are refused;
//! - `.` and `..` segments are refused, raw or encoded (browsers resolve them
//!   before sending, so only hand-made requests carry them);
//! - every `%` must start a valid escape, the decoded bytes must be UTF-8
//!   without control characters, and the decoded text must not hold another
//!   escape (`%2561` would decode twice to `a`);
//! - a segment may not start or end with whitespace, nor end with a dot.
//!
//! - look-alikes of `.`, `/` and `\` (fullwidth and similar forms that NFKC
//!   or Windows "best fit" mapping turn into them) and invisible format
//!   characters (zero-width, bidi controls) are refused.
//!
//! What remains is decoded once and repeated slashes are merged; a trailing
//! slash is kept (`/admin/` is not `/admin` to every router), and matching
//! code decides what it means. A literal `%` in the result is written `%25`,
//! so the canonical form is canonical again ([`canonical_path`] is idempotent).
//!
//! This module imports nothing from the rest of the crate.

use std::fmt;

/// Why a path has no single meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// It does not start with `/`.
    NotAbsolute,
    /// A `;` path parameter (raw or `%3B`): servlet back ends strip it, others do not.
    PathParameter,
    /// A `.` or `..` segment, raw or percent-encoded.
    DotSegment,
    /// A backslash, or an encoded `/` or `\`.
    EncodedSeparator,
    /// A `%` that does not start a two-digit hex escape.
    BadPercentEncoding,
    /// The decoded path holds another escape: a back end decoding twice would see something else.
    DoubleEncoding,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// A control character, raw or decoded (`%00`, `%0A`, ...).
    ControlCharacter,
    /// A segment with leading or trailing whitespace, or a trailing dot, which some back ends ignore.
    AmbiguousSegmentEdge,
    /// A character that Unicode normalization or "best fit" mapping turns into
    /// `.`, `/` or `\` (fullwidth `．`, `／`), or an invisible format character.
    Confusable,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the path does not start with /",
            PathError::PathParameter => "the path has a `;` parameter, which back ends read differently",
            PathError::DotSegment => "the path has a `.` or `..` segment",
            PathError::EncodedSeparator => "the path has a backslash, an encoded / \\ ? or #",
            PathError::BadPercentEncoding => "the path has a % that is not a two-digit hex escape",
            PathError::DoubleEncoding => "the path is percent-encoded twice",
            PathError::NotUtf8 => "the path's percent-encoding is not UTF-8",
            PathError::ControlCharacter => "the path has control characters",
            PathError::AmbiguousSegmentEdge => "a path segment starts or ends with whitespace, or ends with a dot",
            PathError::Confusable => "the path has a look-alike of . / \\ or an invisible format character",
        })
    }
}

impl std::error::Error for PathError {}

/// The canonical form of `raw` (a path without its query), or why it has none.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut out = String::with_capacity(raw.len());
    for segment in raw.split('/').filter(|s| !s.is_empty()) {
        let decoded = decode_segment(segment)?;
        out.push('/');
        for c in decoded.chars() {
            if c == '%' {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
    }
    if out.is_empty() || raw.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

/// Whether `path` is already canonical: what matching code may assume of its input.
pub fn is_canonical(path: &str) -> bool {
    canonical_path(path).is_ok_and(|c| c == path)
}

fn decode_segment(segment: &str) -> Result<String, PathError> {
    if segment == "." || segment == ".." {
        return Err(PathError::DotSegment);
    }
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadPercentEncoding)?;
                let value = hex_value(hex[0]).zip(hex_value(hex[1])).ok_or(PathError::BadPercentEncoding)?;
                i += 3;
                let b = value.0 * 16 + value.1;
                if b == b'/' {
                    return Err(PathError::EncodedSeparator);
                }
                b
            }
            b => {
                i += 1;
                b
            }
        };
        match b {
            b';' => return Err(PathError::PathParameter),
            b'\\' => return Err(PathError::EncodedSeparator),
            // A decoded `?` or `#` would start a query or fragment for whatever decodes and re-parses.
            b'?' | b'#' => return Err(PathError::EncodedSeparator),
            _ => decoded.push(b),
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    if decoded.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    if decoded.chars().any(is_confusable) {
        return Err(PathError::Confusable);
    }
    // A combining mark on an ASCII letter (`files` + U+0301) is `files` to a
    // back end that decomposes and strips accents.
    let marks_ascii = |(a, b): (char, char)| a.is_ascii() && unicode_normalization::char::is_combining_mark(b);
    if decoded.chars().zip(decoded.chars().skip(1)).any(marks_ascii) {
        return Err(PathError::Confusable);
    }
    if decoded == "." || decoded == ".." {
        return Err(PathError::DotSegment);
    }
    if has_escape(decoded.as_bytes()) {
        return Err(PathError::DoubleEncoding);
    }
    let edge = |c: Option<char>| c.is_some_and(char::is_whitespace);
    if edge(decoded.chars().next()) || edge(decoded.chars().last()) || decoded.ends_with('.') {
        return Err(PathError::AmbiguousSegmentEdge);
    }
    Ok(decoded)
}

/// A non-ASCII character that some back end reads as ASCII, or that hides:
/// its NFKC form holds ASCII (fullwidth `ａ`, `．`, `／`, ligature `ﬁ`,
/// superscript `¹`; Python and Windows "best fit" normalize so), its case
/// mapping does (`ı`, `İ`, `ſ`, Kelvin `K`: Java's `equalsIgnoreCase`, .NET),
/// it is a slash or dot look-alike NFKC keeps, or it is invisible (default
/// ignorable: zero-width, bidi controls, variation selectors, tags).
fn is_confusable(c: char) -> bool {
    use unicode_normalization::UnicodeNormalization;
    if c.is_ascii() {
        return false;
    }
    std::iter::once(c).nfkc().any(|d| d.is_ascii())
        || c.to_lowercase().any(|l| l.is_ascii())
        || c.to_uppercase().any(|u| u.is_ascii())
        || LOOKALIKES.contains(&c)
        || tokengate_api::is_invisible_or_bidi(c)
}

/// Dots, slashes and backslashes NFKC keeps as they are: dot leaders, slash
/// and backslash look-alikes, ideographic full stops, and `¥` / `₩`, which are
/// `\` in Windows "best fit" Japanese and Korean code pages.
const LOOKALIKES: &[char] = &[
    '\u{2024}', '\u{2025}', '\u{2026}', '\u{2215}', '\u{2216}', '\u{2044}', '\u{29F5}', '\u{29F8}', '\u{29F9}',
    '\u{3002}', '\u{FF61}', '\u{00A5}', '\u{20A9}',
];

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| w[0] == b'%' && hex_value(w[1]).is_some() && hex_value(w[2]).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_paths_are_kept() {
        assert_eq!(canonical_path("/").unwrap(), "/");
        assert_eq!(canonical_path("/v1/models").unwrap(), "/v1/models");
        assert_eq!(canonical_path("//v1//models").unwrap(), "/v1/models");
        assert_eq!(canonical_path("//v1//models//").unwrap(), "/v1/models/", "a trailing slash is kept");
        assert_eq!(canonical_path("//").unwrap(), "/");
        assert_eq!(canonical_path("/files/my%20doc.txt").unwrap(), "/files/my doc.txt");
        assert_eq!(canonical_path("/caf%C3%A9").unwrap(), "/café");
        assert_eq!(canonical_path("/%E6%97%A5%E6%9C%AC").unwrap(), "/日本", "ordinary non-ASCII text is fine");
        assert_eq!(canonical_path("/100%25").unwrap(), "/100%25");
        assert_eq!(canonical_path("/a%2eb").unwrap(), "/a.b");
    }

    #[test]
    fn the_reviewed_tricks_are_refused() {
        for (path, why) in [
            ("/public/..;/admin/users", PathError::PathParameter),
            ("/;/admin", PathError::PathParameter),
            ("/.;/admin", PathError::PathParameter),
            ("/x/..;/admin", PathError::PathParameter),
            ("/exact;jsessionid=1", PathError::PathParameter),
            ("/exact%3bx", PathError::PathParameter),
            ("/public/%252e%252e/admin", PathError::DoubleEncoding),
            ("/public/%2e%2e/admin", PathError::DotSegment),
            ("/public/../admin", PathError::DotSegment),
            ("/public/./admin", PathError::DotSegment),
            ("/public%2fadmin", PathError::EncodedSeparator),
            ("/public%5cadmin", PathError::EncodedSeparator),
            ("/public\\admin", PathError::EncodedSeparator),
            ("/exact.", PathError::AmbiguousSegmentEdge),
            ("/exact%20", PathError::AmbiguousSegmentEdge),
            ("/%20exact", PathError::AmbiguousSegmentEdge),
            ("/exact%09", PathError::ControlCharacter),
            ("/a%00b", PathError::ControlCharacter),
            ("/a%zz", PathError::BadPercentEncoding),
            ("/a%4", PathError::BadPercentEncoding),
            ("/a%ff", PathError::NotUtf8),
            ("/public/%EF%BC%8E%EF%BC%8E/admin", PathError::Confusable),
            ("/public%EF%BC%8Fadmin", PathError::Confusable),
            ("/a/..%E2%80%8B/admin", PathError::Confusable),
            ("/v1/file%C5%BF/abc", PathError::Confusable),
            ("/v1/%EF%AC%81les/abc", PathError::Confusable),
            ("/v1/%EF%BD%86iles/abc", PathError::Confusable),
            ("/%C4%B1nternal/x", PathError::Confusable),
            ("/%C4%B0nternal/x", PathError::Confusable),
            ("/%E2%85%B0nternal/x", PathError::Confusable),
            ("/v%C2%B9/x", PathError::Confusable),
            ("/v%EF%BC%91/x", PathError::Confusable),
            ("/v1%E1%A0%8E", PathError::Confusable),
            ("/v1%F3%A0%80%81", PathError::Confusable),
            ("/public/..%C2%A5admin", PathError::Confusable),
            ("/v1/files%CC%81", PathError::Confusable),
            ("/v1%3F", PathError::EncodedSeparator),
            ("/v1%23", PathError::EncodedSeparator),
            ("admin", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ] {
            assert_eq!(canonical_path(path), Err(why), "{path}");
        }
    }

    /// Decodes every escape once, leniently (a bad escape stays as it is).
    fn decode_once(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let (Some(h), Some(l)) = (hex_value(b[i + 1]), hex_value(b[i + 2])) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// RFC 3986 dot removal over segments, merging empty ones.
    fn resolve(segments: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in segments {
            match s.as_str() {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                _ => out.push(s),
            }
        }
        out
    }

    /// A servlet container: strip `;params` per segment, decode, resolve dots.
    fn servlet(raw: &str) -> Vec<String> {
        resolve(raw.split('/').map(|s| decode_once(s.split(';').next().unwrap_or(""))))
    }

    /// A proxy that decodes (an encoded `/` becomes a separator) and resolves dots, `;` literal.
    fn decoding_proxy(raw: &str) -> Vec<String> {
        resolve(decode_once(raw).split('/').map(str::to_string))
    }

    /// A framework that decodes twice, then strips `;params` and resolves dots.
    fn double_decoder(raw: &str) -> Vec<String> {
        let twice = decode_once(&decode_once(raw));
        resolve(twice.split('/').map(|s| s.split(';').next().unwrap_or("").to_string()))
    }

    /// A back end that ignores a trailing dot or whitespace in a segment.
    fn trimming(raw: &str) -> Vec<String> {
        servlet(raw).into_iter().map(|s| s.trim().trim_end_matches('.').to_string()).filter(|s| !s.is_empty()).collect()
    }

    fn ours(canonical: &str) -> Vec<String> {
        canonical.split('/').filter(|s| !s.is_empty()).map(|s| s.replace("%25", "%")).collect()
    }

    fn encode_once(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    fn piece() -> impl Strategy<Value = String> {
        let plain = prop::sample::select(vec![
            "admin",
            "public",
            "x",
            "v1",
            "a.b",
            "a b",
            ".",
            "..",
            ";",
            ";jsessionid=1",
            "..;",
            ".;",
            "%",
            "/",
            "\\",
            " ",
            "\t",
            "é",
            "25",
            "2e",
            "2f",
        ]);
        (plain, 0u8..3).prop_map(|(s, times)| {
            let mut s = s.to_string();
            for _ in 0..times {
                s = encode_once(&s);
            }
            s
        })
    }

    fn random_path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::collection::vec(piece(), 1..3).prop_map(|p| p.concat()), 0..6)
            .prop_map(|segments| format!("/{}", segments.join("/")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever is accepted means the same route to every back end; the rest is refused.
        #[test]
        fn accepted_paths_route_alike_everywhere(raw in random_path()) {
            if let Ok(canonical) = canonical_path(&raw) {
                let route = ours(&canonical);
                prop_assert_eq!(&servlet(&raw), &route, "servlet, {}", raw);
                prop_assert_eq!(&decoding_proxy(&raw), &route, "decoding proxy, {}", raw);
                prop_assert_eq!(&double_decoder(&raw), &route, "double decoder, {}", raw);
                prop_assert_eq!(&trimming(&raw), &route, "trimming, {}", raw);
                let again = canonical_path(&canonical);
                prop_assert_eq!(again.as_ref(), Ok(&canonical), "idempotent, {}", raw);
            }
        }

        #[test]
        fn never_panics(raw in "\\PC{0,40}") {
            let _ = canonical_path(&raw);
        }
    }
}
