//! How Postgres spells the names the scanner reports: identifiers folded or unquoted and
//! truncated as the server does, so that the pooler's names match the server's. Also the
//! allocation-free lower-casing used to match keywords.

use super::lexer::{Token, TokenKind};

/// A short keyword-like word in lower case, without allocating (`None` if longer than any
/// keyword we look for).
pub fn lower_word(w: &[u8]) -> Option<LowerWord> {
    let mut buf = [0u8; 12];
    buf.get_mut(..w.len())?.copy_from_slice(w);
    buf.make_ascii_lowercase();
    Some(LowerWord { buf, len: w.len() })
}

pub struct LowerWord {
    buf: [u8; 12],
    len: usize,
}

impl std::ops::Deref for LowerWord {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Postgres's longest identifier (NAMEDATALEN - 1); longer ones are truncated.
const MAX_IDENT: usize = 63;

/// The name an identifier token stands for, as Postgres stores it: unquoted folded to ASCII
/// lower case, quoted with `""` undone; truncated to 63 bytes at a UTF-8 character boundary
/// (as Postgres does for a UTF-8 database). `None` if `t` is not a name.
pub fn ident_name(src: &[u8], t: Token) -> Option<Vec<u8>> {
    let mut name = match t.kind {
        TokenKind::Ident => t.text(src).to_ascii_lowercase(),
        TokenKind::QuotedIdent => unquote(t.body(src), b'"'),
        _ => return None,
    };
    if name.len() > MAX_IDENT {
        let mut cut = MAX_IDENT;
        while cut > 0 && name[cut] & 0xC0 == 0x80 {
            cut -= 1;
        }
        name.truncate(cut);
    }
    Some(name)
}

/// `body` with each doubled `quote` made single.
pub fn unquote(body: &[u8], quote: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        out.push(c);
        i += if c == quote && body.get(i + 1) == Some(&quote) {
            2
        } else {
            1
        };
    }
    out
}
