//! A small PostgreSQL-compatible lexer: statement boundaries and word tokens.
//!
//! Owns splitting text into statements the way the server (and psql) sees
//! them, without parsing: `--` comments end at `\n` or `\r`; `/* */` comments
//! nest; `'…'` strings double their quotes and take no backslash escapes
//! (`standard_conforming_strings = on`, the default: the analyzer flags any
//! change of it); `E'…'` strings take backslash escapes; `U&'…'`, `B'…'`,
//! `X'…'` and `N'…'` are ordinary strings; `"…"` and `U&"…"` identifiers
//! double their quotes; `$tag$…$tag$` dollar quotes have tags that cannot
//! start with a digit, and a `$` inside an identifier does not open one.
//! Like psql, a `;` inside parentheses or inside the `BEGIN … END` of a
//! `CREATE FUNCTION/PROCEDURE` body does not end the statement.
//!
//! Invariant: tokens never overlap and always advance, so the lexer is
//! linear in the input and cannot loop. It never panics on any `&str`.

use std::ops::Range;

/// What a token is; only what the splitter and the keyword fallback need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// An unquoted identifier or keyword.
    Word,
    /// A `"quoted"` or `U&"quoted"` identifier.
    QuotedIdent,
    /// Any string literal, including dollar-quoted ones.
    String,
    /// A number or a `$1` parameter.
    Number,
    /// `;`
    Semicolon,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `.`
    Dot,
    /// Any other punctuation or operator character.
    Other,
    /// A string, identifier, dollar quote or comment that never ends: the
    /// server rejects the whole text.
    Unterminated,
}

/// One token and where it is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub range: Range<usize>,
}

/// An iterator over the tokens of a text, skipping blanks and comments.
pub(crate) struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// One statement of a text, as the splitter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    /// From the first token to the end of the last one (no `;`, no blanks).
    pub range: Range<usize>,
    /// True when the piece holds an unterminated string, identifier or comment.
    pub unterminated: bool,
    /// An upper bound on the longest operator chain (`a OR b OR …`,
    /// `1 + 1 + …`) at one parenthesis level: such chains parse without
    /// recursion but give an AST as deep as they are long.
    pub chain: usize,
}

// === impl Lexer ===

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Lexer {
            src,
            bytes: src.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self, off: usize) -> Option<u8> {
        self.bytes.get(self.pos + off).copied()
    }

    /// Skips blanks and comments; returns false on an unterminated comment.
    fn skip_trivia(&mut self) -> bool {
        loop {
            match self.peek(0) {
                Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c') => self.pos += 1,
                Some(b'-') if self.peek(1) == Some(b'-') => {
                    // PostgreSQL ends a `--` comment at either \n or \r.
                    while let Some(c) = self.peek(0) {
                        if c == b'\n' || c == b'\r' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                Some(b'/') if self.peek(1) == Some(b'*') => {
                    self.pos += 2;
                    let mut depth = 1usize;
                    loop {
                        match (self.peek(0), self.peek(1)) {
                            (None, _) => return false,
                            (Some(b'/'), Some(b'*')) => {
                                depth += 1;
                                self.pos += 2;
                            }
                            (Some(b'*'), Some(b'/')) => {
                                depth -= 1;
                                self.pos += 2;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => self.pos += 1,
                        }
                    }
                }
                _ => return true,
            }
        }
    }

    /// Consumes a quoted run closed by `quote`, where a doubled quote is
    /// literal and, if `backslash`, `\x` escapes any byte. `self.pos` is just
    /// after the opening quote. Returns false if the text ends first.
    fn quoted(&mut self, quote: u8, backslash: bool) -> bool {
        loop {
            match self.peek(0) {
                None => return false,
                Some(b'\\') if backslash => {
                    self.pos += 2.min(self.bytes.len() - self.pos);
                }
                Some(c) if c == quote => {
                    if self.peek(1) == Some(quote) {
                        self.pos += 2;
                    } else {
                        self.pos += 1;
                        return true;
                    }
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// At a `$`: a dollar quote, a `$n` parameter, or a lone `$`.
    fn dollar(&mut self) -> TokenKind {
        let start = self.pos;
        let rest = &self.bytes[start + 1..];
        if rest.first().is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
            while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
            return TokenKind::Number;
        }
        // Tag: [A-Za-z\x80-\xff_][A-Za-z\x80-\xff_0-9]*, then `$`.
        let mut len = 0usize;
        while let Some(&c) = rest.get(len) {
            let ok = c.is_ascii_alphabetic()
                || c == b'_'
                || c >= 0x80
                || (len > 0 && c.is_ascii_digit());
            if !ok {
                break;
            }
            len += 1;
        }
        if rest.get(len) != Some(&b'$') {
            self.pos += 1;
            return TokenKind::Other;
        }
        let delim_end = start + 1 + len + 1;
        let delim = &self.bytes[start..delim_end];
        match find(&self.bytes[delim_end..], delim) {
            Some(at) => {
                self.pos = delim_end + at + delim.len();
                TokenKind::String
            }
            None => {
                self.pos = self.bytes.len();
                TokenKind::Unterminated
            }
        }
    }

    fn is_ident_start(c: u8) -> bool {
        c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
    }

    fn is_ident_cont(c: u8) -> bool {
        Self::is_ident_start(c) || c.is_ascii_digit() || c == b'$'
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if !self.skip_trivia() {
            let start = self.pos;
            self.pos = self.bytes.len();
            return Some(Token {
                kind: TokenKind::Unterminated,
                range: start..self.pos,
            });
        }
        let start = self.pos;
        let c = self.peek(0)?;
        let kind = match c {
            b';' => {
                self.pos += 1;
                TokenKind::Semicolon
            }
            b'(' => {
                self.pos += 1;
                TokenKind::LParen
            }
            b')' => {
                self.pos += 1;
                TokenKind::RParen
            }
            b'.' if !self.peek(1).is_some_and(|c| c.is_ascii_digit()) => {
                self.pos += 1;
                TokenKind::Dot
            }
            b'\'' => {
                self.pos += 1;
                if self.quoted(b'\'', false) {
                    TokenKind::String
                } else {
                    TokenKind::Unterminated
                }
            }
            b'"' => {
                self.pos += 1;
                if self.quoted(b'"', false) {
                    TokenKind::QuotedIdent
                } else {
                    TokenKind::Unterminated
                }
            }
            b'$' => self.dollar(),
            b'e' | b'E' if self.peek(1) == Some(b'\'') => {
                self.pos += 2;
                if self.quoted(b'\'', true) {
                    TokenKind::String
                } else {
                    TokenKind::Unterminated
                }
            }
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if self.peek(1) == Some(b'\'') => {
                self.pos += 2;
                if self.quoted(b'\'', false) {
                    TokenKind::String
                } else {
                    TokenKind::Unterminated
                }
            }
            b'u' | b'U'
                if self.peek(1) == Some(b'&') && matches!(self.peek(2), Some(b'\'' | b'"')) =>
            {
                let q = self.peek(2).unwrap_or(b'\'');
                self.pos += 3;
                match (self.quoted(q, false), q) {
                    (false, _) => TokenKind::Unterminated,
                    (true, b'"') => TokenKind::QuotedIdent,
                    (true, _) => TokenKind::String,
                }
            }
            c if Self::is_ident_start(c) => {
                self.pos += 1;
                while self.peek(0).is_some_and(Self::is_ident_cont) {
                    self.pos += 1;
                }
                TokenKind::Word
            }
            c if c.is_ascii_digit() || c == b'.' => {
                self.pos += 1;
                while self
                    .peek(0)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_')
                {
                    self.pos += 1;
                }
                TokenKind::Number
            }
            c if is_op_char(c) => {
                // An operator is a run of operator characters, cut where a
                // comment starts, as in PostgreSQL's lexer.
                self.pos += 1;
                while let Some(n) = self.peek(0) {
                    let comment = (n == b'-' && self.peek(1) == Some(b'-'))
                        || (n == b'/' && self.peek(1) == Some(b'*'));
                    if !is_op_char(n) || comment {
                        break;
                    }
                    self.pos += 1;
                }
                TokenKind::Other
            }
            _ => {
                // One character (not byte) of punctuation, so ranges stay on
                // char boundaries.
                let len = self.src[start..].chars().next().map_or(1, char::len_utf8);
                self.pos += len;
                TokenKind::Other
            }
        };
        Some(Token {
            kind,
            range: start..self.pos,
        })
    }
}

/// PostgreSQL's operator characters.
fn is_op_char(c: u8) -> bool {
    matches!(
        c,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}

/// The first index of `needle` in `hay` (a plain scan: dollar tags are short).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                i += off;
                if hay.get(i..i + needle.len()) == Some(needle) {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// Splits `src` into statements (empty ones dropped), psql-style.
pub(crate) fn split(src: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut cur: Option<Piece> = None;
    let mut paren = 0usize;
    // psql's heuristic for SQL-standard function bodies: inside
    // CREATE [OR REPLACE] FUNCTION|PROCEDURE, BEGIN/CASE … END nest.
    let mut head: Vec<[u8; 10]> = Vec::new();
    let mut words = 0usize;
    let mut begin_depth = 0usize;
    // Operators since the last `,` or `(` at each parenthesis level.
    let mut chains: Vec<usize> = vec![0];
    for tok in Lexer::new(src) {
        if tok.kind == TokenKind::Semicolon && paren == 0 && begin_depth == 0 {
            if let Some(p) = cur.take() {
                pieces.push(p);
            }
            head.clear();
            words = 0;
            chains.clear();
            chains.push(0);
            continue;
        }
        let p = cur.get_or_insert(Piece {
            range: tok.range.clone(),
            unterminated: false,
            chain: 0,
        });
        p.range.end = tok.range.end;
        let mut operator = false;
        match tok.kind {
            TokenKind::LParen => {
                paren += 1;
                chains.push(0);
            }
            TokenKind::RParen => {
                paren = paren.saturating_sub(1);
                if chains.len() > 1 {
                    chains.pop();
                }
            }
            TokenKind::Unterminated => p.unterminated = true,
            TokenKind::Other if &src[tok.range.clone()] == "," => {
                if let Some(c) = chains.last_mut() {
                    *c = 0;
                }
            }
            TokenKind::Other | TokenKind::Dot => operator = true,
            TokenKind::Word => {
                let w = upper(&src[tok.range.clone()]);
                operator = matches!(&w, b"AND\0\0\0\0\0\0\0" | b"OR\0\0\0\0\0\0\0\0");
                if words < 4 {
                    head.push(w);
                }
                words += 1;
                let is_routine = matches!(
                    head.as_slice(),
                    [c, f, ..] if c == b"CREATE\0\0\0\0" && (f == b"FUNCTION\0\0" || f == b"PROCEDURE\0")
                ) || matches!(
                    head.as_slice(),
                    [c, o, r, f, ..] if c == b"CREATE\0\0\0\0" && o == b"OR\0\0\0\0\0\0\0\0"
                        && r == b"REPLACE\0\0\0" && (f == b"FUNCTION\0\0" || f == b"PROCEDURE\0")
                );
                if is_routine && paren == 0 {
                    if &w == b"BEGIN\0\0\0\0\0" {
                        begin_depth += 1;
                    } else if &w == b"CASE\0\0\0\0\0\0" {
                        if begin_depth >= 1 {
                            begin_depth += 1;
                        }
                    } else if &w == b"END\0\0\0\0\0\0\0" {
                        begin_depth = begin_depth.saturating_sub(1);
                    }
                }
            }
            _ => {}
        }
        if operator && let Some(c) = chains.last_mut() {
            *c += 1;
            p.chain = p.chain.max(*c);
        }
    }
    if let Some(p) = cur.take() {
        pieces.push(p);
    }
    pieces
}

/// A word upper-cased into a fixed buffer (longer words are cut: only
/// keywords of at most 10 letters are ever compared).
pub(crate) fn upper(word: &str) -> [u8; 10] {
    let mut out = [0u8; 10];
    for (o, b) in out.iter_mut().zip(word.bytes()) {
        *o = b.to_ascii_uppercase();
    }
    if word.len() > 10 {
        // Make over-long words never equal a keyword.
        out[9] = b'~';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<&str> {
        split(src).into_iter().map(|p| &src[p.range]).collect()
    }

    #[test]
    fn splits_on_top_level_semicolons() {
        assert_eq!(texts("select 1; select 2;;  "), ["select 1", "select 2"]);
        assert_eq!(texts("select (1;2); x"), ["select (1;2)", "x"]);
        assert!(texts("  -- only a comment\n /* c */ ;").is_empty());
    }

    #[test]
    fn comments_and_quotes_hide_semicolons() {
        assert_eq!(
            texts("select 1 -- a; b\r delete"),
            ["select 1 -- a; b\r delete"]
        );
        assert_eq!(texts("select 1 -- a\r; delete"), ["select 1", "delete"]);
        assert_eq!(texts("/* a /* b; */ c; */ select 1; x"), ["select 1", "x"]);
        assert_eq!(texts("select 'a;''b'; x"), ["select 'a;''b'", "x"]);
        assert_eq!(texts(r"select E'a\';b'; x"), [r"select E'a\';b'", "x"]);
        assert_eq!(texts(r"select 'a\'; x"), [r"select 'a\'", "x"]);
        assert_eq!(texts(r#"select "a;""b"; x"#), [r#"select "a;""b""#, "x"]);
        assert_eq!(
            texts("select $t$ ; $x$ ; $t$; x"),
            ["select $t$ ; $x$ ; $t$", "x"]
        );
        assert_eq!(texts("select $$;$$; x"), ["select $$;$$", "x"]);
        assert_eq!(texts("select U&'\\0061;'; x"), ["select U&'\\0061;'", "x"]);
    }

    #[test]
    fn dollar_edge_cases() {
        // `$1` is a parameter; `a$b$` is an identifier; `$;` opens nothing.
        assert_eq!(texts("select $1; x"), ["select $1", "x"]);
        assert_eq!(texts("select a$b$; x$"), ["select a$b$", "x$"]);
        assert_eq!(texts("select $; x"), ["select $", "x"]);
        assert_eq!(texts("select $1$; x $1$"), ["select $1$", "x $1$"]);
    }

    #[test]
    fn unterminated_constructs_are_marked() {
        for src in [
            "select 'abc",
            "select \"abc",
            "select $q$ abc",
            "select /* a /* b */",
            "select E'\\",
        ] {
            let p = split(src);
            assert_eq!(p.len(), 1, "{src}");
            assert!(p[0].unterminated, "{src}");
        }
    }

    #[test]
    fn begin_atomic_bodies_stay_whole() {
        let src = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END; SELECT 2";
        let t = texts(src);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t[1], "SELECT 2");
        // BEGIN as a transaction is not nested.
        assert_eq!(texts("BEGIN; SELECT 1; END"), ["BEGIN", "SELECT 1", "END"]);
    }

    #[test]
    fn chains_are_measured_per_level() {
        let p = split("SELECT a OR b OR c, (d + e + f + g) FROM t WHERE x IN (1, 2, 3)");
        assert_eq!(p[0].chain, 3);
        let p = split("VALUES (1, 2), (3, 4)");
        assert_eq!(p[0].chain, 0);
    }

    #[test]
    fn multibyte_text_never_splits_a_char() {
        let src = "select 'é'; «x»; ñ";
        for p in split(src) {
            assert!(src.get(p.range.clone()).is_some());
        }
    }
}
