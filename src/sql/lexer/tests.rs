use super::*;
use TokenKind::*;

type Tokens<'a> = &'a [(TokenKind, &'a [u8])];

fn kinds(src: &[u8]) -> Vec<(TokenKind, &[u8])> {
    Lexer::new(src).map(|t| (t.kind, t.text(src))).collect()
}

#[test]
fn splits_where_postgres_does() {
    let cases: &[(&[u8], Tokens)] = &[
        (b"", &[]),
        (b"  \t\n -- only a comment", &[]),
        (
            b"SELECT a, b FROM t;",
            &[
                (Ident, b"SELECT"),
                (Ident, b"a"),
                (Comma, b","),
                (Ident, b"b"),
                (Ident, b"FROM"),
                (Ident, b"t"),
                (Semicolon, b";"),
            ],
        ),
        (b"'it''s'", &[(String, b"'it''s'")]),
        (
            b"'a\\' b'",
            &[(String, b"'a\\'"), (Ident, b"b"), (String, b"'")],
        ),
        (b"E'a\\'b' x", &[(EscapeString, b"E'a\\'b'"), (Ident, b"x")]),
        (b"e'a''b'", &[(EscapeString, b"e'a''b'")]),
        (b"se'x'", &[(Ident, b"se"), (String, b"'x'")]),
        (b"U&'d\\0061t'", &[(UnicodeString, b"U&'d\\0061t'")]),
        (b"u&\"a\"\"b\"", &[(QuotedIdent, b"u&\"a\"\"b\"")]),
        (
            b"u & 'x'",
            &[(Ident, b"u"), (Operator, b"&"), (String, b"'x'")],
        ),
        (
            b"\"a\"\"b\".c",
            &[(QuotedIdent, b"\"a\"\"b\""), (Dot, b"."), (Ident, b"c")],
        ),
        (b"$$a;b$$ x", &[(DollarString, b"$$a;b$$"), (Ident, b"x")]),
        (b"$f$ $$ $g$ $f$", &[(DollarString, b"$f$ $$ $g$ $f$")]),
        (b"$a$x$ab$y$a$", &[(DollarString, b"$a$x$ab$y$a$")]),
        (
            b"$1 + $23",
            &[(Param, b"$1"), (Operator, b"+"), (Param, b"$23")],
        ),
        (b"a$b$c", &[(Ident, b"a$b$c")]),
        (b"$x y", &[(Operator, b"$"), (Ident, b"x"), (Ident, b"y")]),
        (b"/* a /* nested */ still */ x", &[(Ident, b"x")]),
        (b"/*/ x */ y", &[(Ident, b"y")]),
        (
            b"1+--c\n2",
            &[(Number, b"1"), (Operator, b"+"), (Number, b"2")],
        ),
        (
            b"2*/*c*/3",
            &[(Number, b"2"), (Operator, b"*"), (Number, b"3")],
        ),
        (b"a<>b", &[(Ident, b"a"), (Operator, b"<>"), (Ident, b"b")]),
        (
            b"x::text",
            &[
                (Ident, b"x"),
                (Operator, b":"),
                (Operator, b":"),
                (Ident, b"text"),
            ],
        ),
        (
            b"1.5e-3 .5 0x1F 1_000 1..2",
            &[
                (Number, b"1.5e-3"),
                (Number, b".5"),
                (Number, b"0x1F"),
                (Number, b"1_000"),
                (Number, b"1"),
                (Dot, b"."),
                (Number, b".2"),
            ],
        ),
        (b"(a)", &[(LParen, b"("), (Ident, b"a"), (RParen, b")")]),
        (
            b"caf\xc3\xa9 \xff",
            &[(Ident, b"caf\xc3\xa9"), (Ident, b"\xff")],
        ),
        (b"\x00\\", &[(Operator, b"\x00"), (Operator, b"\\")]),
        (b"--x\rSET", &[(Ident, b"SET")]),
        (b"a\x0bb", &[(Ident, b"a"), (Ident, b"b")]),
    ];
    for (src, want) in cases {
        assert_eq!(
            &kinds(src),
            want,
            "{}",
            std::string::String::from_utf8_lossy(src)
        );
    }
}

#[test]
fn unterminated_runs_to_the_end() {
    for (src, kind) in [
        (&b"x 'abc"[..], String),
        (b"x E'ab\\'", EscapeString),
        (b"x E'ab\\", EscapeString),
        (b"x U&'a", UnicodeString),
        (b"x \"ab\"\"", QuotedIdent),
        (b"x $t$ab$t", DollarString),
        (b"x $$", DollarString),
    ] {
        let toks: Vec<Token> = Lexer::new(src).collect();
        assert_eq!(toks.len(), 2, "{src:?}");
        assert_eq!((toks[1].kind, toks[1].end), (kind, src.len()), "{src:?}");
        assert!(toks[1].unterminated, "{src:?}");
    }
    assert_eq!(kinds(b"/* a /* b */ SET"), []);
    assert_eq!(kinds(b"-- SET"), []);
}

#[test]
fn with_comments_returns_them_and_nothing_else_changes() {
    let src = b"/* a /* b */ c */ x --d\ny /*/ e */ 1+--f\r2 '/*' \"--\" $$--$$ /* open";
    let with: Vec<(TokenKind, &[u8], bool)> = Lexer::new(src)
        .with_comments()
        .map(|t| (t.kind, t.text(src), t.unterminated))
        .collect();
    let comments: Vec<_> = with.iter().filter(|t| t.0 == Comment).collect();
    let want: [(TokenKind, &[u8], bool); 5] = [
        (Comment, b"/* a /* b */ c */", false),
        (Comment, b"--d", false),
        (Comment, b"/*/ e */", false),
        (Comment, b"--f", false),
        (Comment, b"/* open", true),
    ];
    assert_eq!(comments, want.iter().collect::<Vec<_>>());
    let rest: Vec<_> = with
        .iter()
        .filter(|t| t.0 != Comment)
        .map(|t| (t.0, t.1))
        .collect();
    assert_eq!(rest, kinds(src));
}

#[test]
fn standard_conforming_strings_off_honours_backslashes() {
    let src = b"'a\\' ; b' c";
    let on: Vec<_> = Lexer::new(src).map(|t| t.kind).collect();
    assert_eq!(on, [String, Semicolon, Ident, String]);
    let off: Vec<_> = Lexer::with_standard_strings(src, false)
        .map(|t| t.kind)
        .collect();
    assert_eq!(off, [String, Ident]);
}

#[test]
fn body_is_between_the_delimiters() {
    let src = b"'a''b' E'c' U&'d' \"e\" U&\"f\" $t$g$t$ $$h$$ 'i $u$j h";
    let bodies: Vec<&[u8]> = Lexer::new(src).map(|t| t.body(src)).collect();
    let want: [&[u8]; 8] = [b"a''b", b"c", b"d", b"e", b"f", b"g", b"h", b"i $u$j h"];
    assert_eq!(bodies, want);
    let open = b"$u$j";
    let t = Lexer::new(open).next().expect("a token");
    assert_eq!(t.body(open), b"j");
    // A token applied to another, shorter input does not panic.
    assert_eq!(t.body(b""), b"");
}

/// Deterministic "no panic on random input" checks, the CI-sized cousin of `fuzz/` target
/// `sql_effects`: tokens are in order, non-empty, inside the input, and what lies between them
/// is only whitespace and comments.
#[cfg(test)]
mod random_input_tests {
    use super::*;
    use crate::test_rng::Rng;

    /// SQL-ish fragments mixed with random bytes: quotes, comments and dollar signs are where
    /// the lexer can go wrong.
    pub(crate) fn sqlish(rng: &mut Rng) -> Vec<u8> {
        const BITS: &[&[u8]] = &[
            b"SELECT ",
            b"SET ",
            b"'",
            b"''",
            b"\"",
            b"E'",
            b"U&'",
            b"$$",
            b"$a$",
            b"$1",
            b"--",
            b"\n",
            b"/*",
            b"*/",
            b"\\",
            b";",
            b"(",
            b")",
            b".",
            b",",
            b"x",
            b" ",
            b"\xc3\xa9",
            b"\xff",
            b"1.5e",
            b"::",
            b"+-",
            b"e",
            b"u&",
        ];
        rng.pieces(BITS, 24, 6)
    }

    #[test]
    fn random_inputs_lex_into_ordered_tokens() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let (mut unterminated, mut dollar) = (0, 0);
        for _ in 0..5000 {
            let src = sqlish(&mut rng);
            for standard in [true, false] {
                let mut last = 0;
                for t in Lexer::with_standard_strings(&src, standard) {
                    assert!(
                        last <= t.start && t.start < t.end && t.end <= src.len(),
                        "{src:?}"
                    );
                    // Between tokens: whitespace and comments only, so nothing re-lexes there.
                    let gap = &src[last..t.start];
                    assert!(
                        Lexer::new(gap).next().is_none(),
                        "{src:?}: {gap:?} holds a token"
                    );
                    last = t.end;
                    unterminated += usize::from(t.unterminated);
                    dollar += usize::from(t.kind == DollarString && !t.unterminated);
                    let _ = t.body(&src);
                }
                let plain: Vec<Token> = Lexer::with_standard_strings(&src, standard).collect();
                let with: Vec<Token> = Lexer::with_standard_strings(&src, standard)
                    .with_comments()
                    .filter(|t| t.kind != Comment)
                    .collect();
                assert_eq!(plain, with, "{src:?}");
            }
        }
        assert!(
            unterminated > 100 && dollar > 100,
            "{unterminated} {dollar}"
        );
    }
}
