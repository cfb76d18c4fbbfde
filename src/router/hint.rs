//! Routing hints written into the SQL text: a comment holding `lagoon:primary` or
//! `lagoon:replica` (`/* lagoon:primary */ SELECT ...`, `-- lagoon:replica`). They are read off
//! the comments the shape scan already walks past, never from the parse tree, so a cache hit
//! carries the hint of the text at hand and not that of the text that filled the entry.
//!
//! A hint is the application's word, not a verdict: whether a `Replica` hint may override a
//! `Write` class is the caller's policy.

/// Where the application asked this text to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    Primary,
    Replica,
}

const PRIMARY: &[u8] = b"lagoon:primary";
const REPLICA: &[u8] = b"lagoon:replica";

/// The first hint in one comment's text (delimiters included), if any. The marker is matched
/// exactly (lowercase), anywhere in the comment, so it can sit beside other tags
/// (`/* app:web lagoon:replica */`).
pub fn in_comment(comment: &[u8]) -> Option<Hint> {
    // Comments are short and few: a plain window scan is cheaper than anything clever.
    comment.windows(PRIMARY.len()).find_map(|w| {
        if w == PRIMARY {
            Some(Hint::Primary)
        } else if w == REPLICA {
            Some(Hint::Replica)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_anywhere_in_a_comment() {
        assert_eq!(in_comment(b"/* lagoon:primary */"), Some(Hint::Primary));
        assert_eq!(
            in_comment(b"-- app:web lagoon:replica"),
            Some(Hint::Replica)
        );
        assert_eq!(in_comment(b"/*lagoon:replica*/"), Some(Hint::Replica));
        assert_eq!(in_comment(b"/* lagoon:prim */"), None);
        assert_eq!(in_comment(b"/* LAGOON:PRIMARY */"), None);
        assert_eq!(in_comment(b""), None);
        assert_eq!(in_comment(b"-- lagoon:"), None);
    }
}
