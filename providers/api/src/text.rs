//! Characters that make one text read as another.

/// Characters a reader shows as nothing, as a line break, or that reorder
/// what follows: the line and paragraph separators, these Unicode format
/// characters (soft hyphen, zero-width space and joiners, word joiner,
/// byte-order mark, invisible operators, interlinear annotation, tag
/// characters) and the bidirectional controls (marks, embeddings,
/// overrides, isolates). `admin\u{200b}` shows as `admin`, and
/// `\u{202e}nimda` as `admin`, to whoever reads a log or a header next.
pub fn is_invisible_or_bidi(c: char) -> bool {
    matches!(c,
        // Unicode's Default_Ignorable_Code_Point: soft hyphen, combining grapheme joiner,
        // Hangul fillers, variation selectors, zero-width space and joiners, bidi marks,
        // embeddings, overrides and isolates, word joiner, BOM, tags.
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}'
        // The rest of general category Cf (format): prepended number signs and other
        // invisible marks, interlinear annotation, Egyptian format controls.
        | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}' | '\u{08E2}'
        | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
        // Line and paragraph separators: readers break lines at them.
        | '\u{2028}' | '\u{2029}')
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
