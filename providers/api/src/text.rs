//! Characters that make one text read as another.

/// Characters a reader shows as nothing, as a line break, or that reorder
/// what follows: the line and paragraph separators, these Unicode format
/// characters (soft hyphen, zero-width space and joiners, word joiner,
/// byte-order mark, invisible operators, interlinear annotation, tag
/// characters) and the bidirectional controls (marks, embeddings,
/// overrides, isolates). `admin\u{200b}` shows as `admin`, and
/// `\u{202e}nimda` as `admin`, to whoever reads a log or a header next.
pub fn is_invisible_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2028}'..='\u{2029}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_bidi_characters_are_named_and_letters_are_not() {
        for c in [
            '\u{2028}',
            '\u{ad}',
            '\u{200b}',
            '\u{200d}',
            '\u{200e}',
            '\u{202e}',
            '\u{2060}',
            '\u{2066}',
            '\u{feff}',
            '\u{e0041}',
        ] {
            assert!(is_invisible_or_bidi(c), "{:?}", c);
        }
        for c in ['a', 'é', 'ж', '中', ' ', '\u{a0}', '-', '\u{fffd}'] {
            assert!(!is_invisible_or_bidi(c), "{:?}", c);
        }
    }
}
