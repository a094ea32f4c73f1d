//! Tokens of nft text: words, quoted strings, the always-separate punctuation `{ } ( ) , ;`,
//! newlines (they end statements) and `#` comments (they carry `# handle N`).

use crate::parse::ParseError;

use super::escape;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A run of characters without whitespace or `{}(),;"#`.
    Word(String),
    /// A double-quoted string, unquoted.
    Str(String),
    /// One of `{ } ( ) , ;`.
    Punct(char),
    /// End of a line.
    Newline,
    /// A `#` comment's text after the `#`, trimmed.
    Comment(String),
}

/// A token and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    /// 1-based line.
    pub line: usize,
    /// 1-based column in characters.
    pub col: usize,
    /// Byte range in the input.
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// The token as nft text that lexes back to the same token (strings quoted, `"` and `\\`
    /// escaped); `None` for line ends and comments.
    pub(crate) fn source_form(&self) -> Option<String> {
        match &self.tok {
            Tok::Word(w) => Some(w.clone()),
            Tok::Str(q) => {
                let mut s = String::with_capacity(q.len() + 2);
                s.push('"');
                for c in q.chars() {
                    if matches!(c, '"' | '\\') {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
                Some(s)
            }
            Tok::Punct(p) => Some(p.to_string()),
            Tok::Newline | Tok::Comment(_) => None,
        }
    }

    pub(crate) fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }

    pub(crate) fn is_word(&self, w: &str) -> bool {
        self.word() == Some(w)
    }

    pub(crate) fn is_punct(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }

    /// The token as the user would read it in a message.
    pub(crate) fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => format!("`{}`", escape(w)),
            Tok::Str(s) => format!("\"{}\"", escape(s)),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Newline => "end of line".to_string(),
            Tok::Comment(_) => "a comment".to_string(),
        }
    }
}

fn is_sep(c: char) -> bool {
    c.is_whitespace() || matches!(c, '{' | '}' | '(' | ')' | ',' | ';' | '"' | '#')
}

/// Splits nft text into tokens. A backslash at the end of a line joins it with the next.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut line_start = 0usize;
    let mut it = text.char_indices().peekable();
    let col_of = |line_start: usize, i: usize| text[line_start..i].chars().count() + 1;
    while let Some(&(i, c)) = it.peek() {
        match c {
            '\n' => {
                it.next();
                out.push(Token {
                    tok: Tok::Newline,
                    line,
                    col: col_of(line_start, i),
                    start: i,
                    end: i + 1,
                });
                line += 1;
                line_start = i + 1;
            }
            '\\' if text[i + 1..].starts_with('\n') || text[i + 1..].starts_with("\r\n") => {
                it.next();
                if it.peek().map(|&(_, c)| c) == Some('\r') {
                    it.next();
                }
                let (j, _) = it.next().expect("newline follows");
                line += 1;
                line_start = j + 1;
            }
            c if c.is_whitespace() => {
                it.next();
            }
            '{' | '}' | '(' | ')' | ',' | ';' => {
                it.next();
                out.push(Token {
                    tok: Tok::Punct(c),
                    line,
                    col: col_of(line_start, i),
                    start: i,
                    end: i + 1,
                });
            }
            '#' => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                while it.peek().is_some_and(|&(j, _)| j < end) {
                    it.next();
                }
                out.push(Token {
                    tok: Tok::Comment(text[i + 1..end].trim().to_string()),
                    line,
                    col: col_of(line_start, i),
                    start: i,
                    end,
                });
            }
            '"' => {
                it.next();
                let mut s = String::new();
                let mut end = None;
                while let Some((j, c)) = it.next() {
                    match c {
                        '"' => {
                            end = Some(j + 1);
                            break;
                        }
                        '\\' => {
                            if let Some((_, n)) = it.next() {
                                s.push(n);
                            }
                        }
                        '\n' => break,
                        c => s.push(c),
                    }
                }
                let Some(end) = end else {
                    return Err(ParseError {
                        line,
                        column: col_of(line_start, i),
                        message: "unterminated string: expected a closing `\"` on the same line"
                            .to_string(),
                    });
                };
                out.push(Token {
                    tok: Tok::Str(s),
                    line,
                    col: col_of(line_start, i),
                    start: i,
                    end,
                });
            }
            _ => {
                let mut end = text.len();
                while let Some(&(j, c)) = it.peek() {
                    let continuation = c == '\\'
                        && (text[j + 1..].starts_with('\n') || text[j + 1..].starts_with("\r\n"));
                    if is_sep(c) || continuation {
                        end = j;
                        break;
                    }
                    it.next();
                }
                if text[i..end].ends_with('\\') {
                    return Err(ParseError {
                        line,
                        column: col_of(line_start, end - 1),
                        message: "unexpected `\\`: a backslash only continues a line at its end"
                            .to_string(),
                    });
                }
                out.push(Token {
                    tok: Tok::Word(text[i..end].to_string()),
                    line,
                    col: col_of(line_start, i),
                    start: i,
                    end,
                });
            }
        }
    }
    Ok(out)
}
