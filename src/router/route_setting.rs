//! `SET lagoon.route = primary`: the session override, as users write it.
//!
//! The override is an ordinary custom setting: Postgres keeps it, SET LOCAL, RESET and
//! rollbacks apply as to any setting, and the session-state probe (`client::probe`) brings
//! its value to the session, which routes by it from the next transaction on. One snag:
//! `primary` is a reserved word in Postgres's grammar, so `SET lagoon.route = primary`
//! unquoted is a syntax error there. The proxy quotes that one word before the server sees
//! it; `replica`, `auto` and quoted values need nothing.

use crate::sql::lexer::{Lexer, TokenKind};

/// The setting's name, as the probe reports it.
pub const NAME: &str = "lagoon.route";

/// `text` with the bare `primary` quoted, when `text` is one `SET [SESSION | LOCAL]
/// lagoon.route {= | TO} primary` statement (an optional `;` after it); None otherwise.
pub fn quote_primary(text: &[u8]) -> Option<Vec<u8>> {
    let mut toks = Lexer::new(text).peekable();
    let mut word = |w: &[u8]| {
        toks.next_if(|t| t.kind == TokenKind::Ident && t.text(text).eq_ignore_ascii_case(w))
            .is_some()
    };
    if !word(b"set") {
        return None;
    }
    let _ = word(b"session") || word(b"local");
    if !(word(b"lagoon")) {
        return None;
    }
    let mut next = |kind: TokenKind, t: Option<&[u8]>| {
        toks.next_if(|k| k.kind == kind && t.is_none_or(|t| k.text(text).eq_ignore_ascii_case(t)))
    };
    next(TokenKind::Dot, None)?;
    next(TokenKind::Ident, Some(b"route"))?;
    if next(TokenKind::Operator, Some(b"=")).is_none() {
        next(TokenKind::Ident, Some(b"to"))?;
    }
    let value = next(TokenKind::Ident, Some(b"primary"))?;
    let _ = next(TokenKind::Semicolon, None);
    if toks.next().is_some() {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() + 2);
    out.extend_from_slice(&text[..value.start]);
    out.extend_from_slice(b"'primary'");
    out.extend_from_slice(&text[value.end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::quote_primary;

    fn q(s: &str) -> Option<String> {
        quote_primary(s.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn the_bare_reserved_word_is_quoted() {
        assert_eq!(
            q("SET lagoon.route = primary").as_deref(),
            Some("SET lagoon.route = 'primary'")
        );
        assert_eq!(
            q("set session LAGOON.Route to PRIMARY ;").as_deref(),
            Some("set session LAGOON.Route to 'primary' ;")
        );
        assert_eq!(
            q("SET LOCAL lagoon.route=primary").as_deref(),
            Some("SET LOCAL lagoon.route='primary'")
        );
    }

    #[test]
    fn anything_else_is_left_to_the_server() {
        for s in [
            "SET lagoon.route = 'primary'",
            "SET lagoon.route = replica",
            "SET lagoon.route = primary; SELECT 1",
            "SET other.route = primary",
            "SET lagoon.routes = primary",
            "SELECT 1",
            "SET lagoon.route = primary key",
            "",
        ] {
            assert_eq!(q(s), None, "{s}");
        }
    }
}
