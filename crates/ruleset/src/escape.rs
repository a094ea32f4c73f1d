//! Escaping of input text quoted in messages: the one place that keeps control characters read
//! from a dump (ESC, CSI, BEL, CR, …) from reaching a terminal or a log raw.
//!
//! Every error `Display` of this crate (and of crates quoting dump text in errors) goes through
//! [`escape_control`]. It does not quote or escape anything else: printable text, including
//! non-ASCII letters, is kept as written.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character (C0, DEL, C1) and the Unicode bidirectional overrides
/// written as `\u{…}` (`\t` stays a tab's escape too). Borrowed when there is nothing to escape.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        assert_eq!(escape_control("plain ü text"), "plain ü text");
        assert!(matches!(escape_control("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_control("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape_control("\u{9b}31m\x07\r"), "\\u{9b}31m\\u{7}\\u{d}");
        assert_eq!(escape_control("x\u{202e}y"), "x\\u{202e}y");
    }
}
