//! The rule tokenizer: a faithful copy of iptables' `add_param_to_argv`.
//!
//! Owns splitting one restore/save line into arguments. Rules (verified against iptables 1.8.11
//! `xshared.c`): only double quotes group; inside quotes a backslash escapes any next character;
//! outside quotes a backslash is literal; a quote may open mid-word (`ab"c d"` is `abc d`); a
//! closing quote ends the argument (`"a"b` is `a`, `b`) and `""` is an empty argument; only space,
//! tab and newline separate (and carriage return, which line trimming removes anyway). Each token remembers whether any part was quoted, because a quoted
//! token is never an option name or a `!`. It does not interpret the tokens.

use std::borrow::Cow;

/// One argument of a rule line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    /// The decoded text (quotes and escapes removed). Borrowed when nothing was quoted.
    pub text: Cow<'a, str>,
    /// Whether any part of the token was inside double quotes.
    pub quoted: bool,
    /// Byte offset of the token's first character in the line.
    pub offset: usize,
}

impl Token<'_> {
    /// The decoded text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// An unquoted token equal to `s`.
    pub fn is(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }

    /// An unquoted `!`: negation.
    pub fn is_bang(&self) -> bool {
        self.is("!")
    }

    /// An unquoted option name: `-x` (not `-` alone, not `--` alone) or `--name`.
    pub fn is_option(&self) -> bool {
        if self.quoted {
            return false;
        }
        let b = self.text.as_bytes();
        match b {
            [b'-', b'-', _, ..] => true,
            [b'-', second, ..] => *second != b'-',
            _ => false,
        }
    }
}

/// An unterminated double quote at this byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnterminatedQuote {
    /// Byte offset of the opening quote in the line.
    pub offset: usize,
}

/// Space, tab and newline as in iptables, plus carriage return: lines are trimmed of CRLF
/// remains, so a token must never end in one.
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Splits `line[start..]` into tokens appended to `out`. Offsets are relative to `line`.
pub(crate) fn tokenize<'a>(
    line: &'a str,
    start: usize,
    out: &mut Vec<Token<'a>>,
) -> Result<(), UnterminatedQuote> {
    let bytes = line.as_bytes();
    let mut i = start;
    while i < bytes.len() {
        if is_separator(bytes[i]) {
            i += 1;
            continue;
        }
        i = lex_one(line, i, out)?;
    }
    Ok(())
}

/// Lexes the token starting at `begin` (not a separator); returns the offset after it.
fn lex_one<'a>(
    line: &'a str,
    begin: usize,
    out: &mut Vec<Token<'a>>,
) -> Result<usize, UnterminatedQuote> {
    let bytes = line.as_bytes();
    let mut i = begin;
    while i < bytes.len() && !is_separator(bytes[i]) && bytes[i] != b'"' {
        i += 1;
    }
    if i == bytes.len() || bytes[i] != b'"' {
        out.push(Token {
            text: Cow::Borrowed(&line[begin..i]),
            quoted: false,
            offset: begin,
        });
        return Ok(i);
    }
    // A quote opens: collect the unquoted prefix plus the quoted part, up to the closing quote.
    let quote_at = i;
    let mut buf: Vec<u8> = bytes[begin..i].to_vec();
    i += 1;
    let mut escaped = false;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if escaped {
            buf.push(b);
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            out.push(Token {
                text: Cow::Owned(into_string(buf)),
                quoted: true,
                offset: begin,
            });
            return Ok(i);
        } else {
            buf.push(b);
        }
    }
    Err(UnterminatedQuote { offset: quote_at })
}

/// Only ASCII bytes (`"` and `\`) are ever dropped, so the buffer stays valid UTF-8.
fn into_string(buf: Vec<u8>) -> String {
    String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(line: &str) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        tokenize(line, 0, &mut out).unwrap();
        out.into_iter()
            .map(|t| (t.text.into_owned(), t.quoted))
            .collect()
    }

    #[test]
    fn splits_on_space_and_tab_only() {
        assert_eq!(
            toks("a  b\tc"),
            vec![
                ("a".into(), false),
                ("b".into(), false),
                ("c".into(), false)
            ]
        );
    }

    #[test]
    fn quotes_group_and_escape() {
        assert_eq!(toks(r#""a \"b\" \\c""#), vec![(r#"a "b" \c"#.into(), true)]);
        assert_eq!(toks(r#"x\y"#), vec![(r#"x\y"#.into(), false)]);
        assert_eq!(
            toks("'a b'"),
            vec![("'a".into(), false), ("b'".into(), false)]
        );
    }

    #[test]
    fn quote_opens_mid_word_and_closing_quote_ends_token() {
        assert_eq!(
            toks(r#"ab"c d"e"#),
            vec![("abc d".into(), true), ("e".into(), false)]
        );
        assert_eq!(
            toks(r#""" x"#),
            vec![("".into(), true), ("x".into(), false)]
        );
    }

    #[test]
    fn unterminated_quote_reports_its_offset() {
        let mut out = Vec::new();
        assert_eq!(
            tokenize(r#"-m comment --comment "abc"#, 0, &mut out),
            Err(UnterminatedQuote { offset: 21 })
        );
    }

    #[test]
    fn option_detection() {
        let t = |s: &'static str, quoted| Token {
            text: Cow::Borrowed(s),
            quoted,
            offset: 0,
        };
        assert!(t("-s", false).is_option());
        assert!(t("--dport", false).is_option());
        assert!(!t("--dport", true).is_option());
        assert!(!t("-", false).is_option());
        assert!(!t("--", false).is_option());
        assert!(!t("!", false).is_option());
        assert!(t("!", false).is_bang());
        assert!(!t("!", true).is_bang());
    }
}
