use super::*;
use crate::test_rng::Rng;

fn norm(sql: &str) -> String {
    normalize(sql.as_bytes(), true)
}

fn fp(sql: &str) -> u64 {
    fingerprint(sql.as_bytes(), true)
}

#[test]
fn normalized_text() {
    let cases = [
        ("SELECT 1", "SELECT $1"),
        (
            "SELECT * FROM t WHERE a = 'x' AND b = 2.5e3",
            "SELECT * FROM t WHERE a = $1 AND b = $2",
        ),
        (
            "select  *\n\tfrom t /* c */ where id=1 -- x",
            "select * from t where id=$1",
        ),
        (
            "SELECT E'a\\'b', U&'\\0061', $$x$$, $t$y$t$",
            "SELECT $1, $2, $3, $4",
        ),
        (
            "SELECT B'101', X'1F', N'abc', b '1'",
            "SELECT $1, $2, $3, b $4",
        ),
        ("SELECT $2 + 'a' + $1", "SELECT $1 + $2 + $3"),
        (
            "SELECT * FROM t WHERE a = -1 AND b = (+2)",
            "SELECT * FROM t WHERE a = $1 AND b = ($2)",
        ),
        (
            "SELECT a -1, a - 1 FROM t LIMIT -1",
            "SELECT a -$1, a - $2 FROM t LIMIT -$3",
        ),
        (
            "SELECT * FROM t WHERE id IN (1, 2, 3)",
            "SELECT * FROM t WHERE id IN (...)",
        ),
        (
            "SELECT * FROM t WHERE id in($1,$2)",
            "SELECT * FROM t WHERE id in(...)",
        ),
        (
            "SELECT * FROM t WHERE s IN ('a'::text, -2::int, $1::varchar(10)[], NULL)",
            "SELECT * FROM t WHERE s IN (...)",
        ),
        (
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = 1)",
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = $1)",
        ),
        (
            "SELECT * FROM t WHERE id IN (a, 2)",
            "SELECT * FROM t WHERE id IN (a, $1)",
        ),
        (
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), ($1, DEFAULT)",
            "INSERT INTO t (a, b) VALUES (...)",
        ),
        (
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a) VALUES (...) ON CONFLICT (a) DO NOTHING",
        ),
        (
            "INSERT INTO t VALUES (1, now()), (2, now())",
            "INSERT INTO t VALUES ($1, now()), ($2, now())",
        ),
        ("SELECT ARRAY[1, 2, 3]", "SELECT ARRAY[...]"),
        (
            "SELECT x::timestamp with time zone",
            "SELECT x::timestamp with time zone",
        ),
        ("SELECT true, false, NULL", "SELECT true, false, NULL"),
        (
            "SELECT \"Weird \"\" Name\" FROM \"T\"",
            "SELECT \"Weird \"\" Name\" FROM \"T\"",
        ),
        ("SELECT 1; SELECT 'a';", "SELECT $1; SELECT $2"),
        (";; SELECT 1 ;;", "SELECT $1"),
        ("", ""),
        ("  -- only a comment", ""),
        ("SELECT 'unterminated", "SELECT $1"),
        ("SELECT /* unterminated", "SELECT"),
        (
            "SELECT * FROM t WHERE id IN (...)",
            "SELECT * FROM t WHERE id IN (...)",
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(norm(sql), want, "{sql:?}");
    }
}

#[test]
fn same_and_different_fingerprints() {
    let same = [
        (
            "SELECT * FROM t WHERE id = 1",
            "select * from T where ID=22",
        ),
        ("SELECT 'a'", "SELECT $$b$$"),
        (
            "SELECT * FROM t WHERE id = $1",
            "SELECT * FROM t WHERE id = 42",
        ),
        ("SELECT 1", "SELECT 1;"),
        (
            "SELECT * FROM t WHERE id IN (1)",
            "SELECT * FROM t WHERE id IN (1, 2, 3, 4)",
        ),
        (
            "SELECT * FROM t WHERE id IN ($1, $2)",
            "SELECT * FROM t WHERE id IN ('a', 'b')",
        ),
        (
            "INSERT INTO t VALUES (1, 2)",
            "INSERT INTO t VALUES (1, 2), (3, 4)",
        ),
        (
            "SELECT count(*) FROM t",
            "SELECT count ( * ) FROM t /* c */",
        ),
        ("SELECT a = -1", "SELECT a = 7"),
    ];
    for (a, b) in same {
        assert_eq!(fp(a), fp(b), "{a:?} vs {b:?}");
    }
    let different = [
        (
            "SELECT * FROM t WHERE id = 1",
            "SELECT * FROM u WHERE id = 1",
        ),
        ("SELECT \"A\" FROM t", "SELECT \"a\" FROM t"),
        ("SELECT ab", "SELECT a b"),
        ("SELECT a >= 1", "SELECT a > = 1"),
        ("SELECT 1", "SELECT 1; SELECT 2"),
        (
            "SELECT * FROM t WHERE id IN (1)",
            "SELECT * FROM t WHERE id = ANY (1)",
        ),
        ("SELECT deleted = true", "SELECT deleted = false"),
        ("SELECT $1", "SELECT $"),
        ("SELECT a IN (1)", "SELECT a IN [1]"),
    ];
    for (a, b) in different {
        assert_ne!(fp(a), fp(b), "{a:?} vs {b:?}");
    }
}

#[test]
fn fingerprint_is_stable_across_processes() {
    // Pinned values: a change here breaks fingerprints users have stored. Change the encoding
    // only on purpose.
    assert_eq!(fp(""), xxh3_64(b""));
    assert_eq!(fp("SELECT 1"), fp("select 2"));
    let pinned = fp("SELECT * FROM users WHERE id = 1");
    assert_eq!(pinned, fp("select * from users where id = $1"));
    assert_eq!(format!("{pinned:016x}").len(), 16);
}

#[test]
fn normalizing_is_idempotent_for_the_fingerprint() {
    let texts = [
        "SELECT * FROM t WHERE a = 'x' AND b IN (1, 2) AND c = -3",
        "INSERT INTO t VALUES (1, 'a'), (2, 'b') RETURNING id",
        "SELECT ARRAY[1,2], B'1', E'x', $$y$$, $3 FROM \"T\" WHERE x::int = 5;",
        "UPDATE t SET a = a - 1 WHERE id = ANY($1)",
    ];
    for t in texts {
        let n = norm(t);
        assert_eq!(fp(&n), fp(t), "{t:?} -> {n:?}");
        assert_eq!(norm(&n), n, "{t:?}");
    }
}

#[test]
fn backslash_strings_follow_the_session() {
    // With standard_conforming_strings off, `\'` does not end the string.
    let sql = b"SELECT 'a\\' , 1";
    assert_eq!(normalize(sql, false), "SELECT $1");
    assert_eq!(normalize(sql, true), "SELECT $1 , $2");
}

#[test]
fn long_texts_are_cut_but_fully_fingerprinted() {
    let mut long = String::from("SELECT ");
    for i in 0..2000 {
        long.push_str(&format!("col_{i}, "));
    }
    long.push_str("1 FROM t");
    let n = norm(&long);
    assert!(n.len() <= MAX_TEXT + 3, "{}", n.len());
    assert!(n.ends_with("..."));
    // The encoding streams past the stack buffer: still the hash of the whole sequence, and a
    // change at the very end still changes it.
    let other = long.replace("FROM t", "FROM u");
    assert_ne!(fp(&long), fp(&other));
    assert_eq!(fp(&long), fp(&long.replace(", ", ",  ")));
}

#[test]
fn streaming_equals_one_shot() {
    let mut sink = HashSink::new();
    let word = [b'a'; 300];
    for _ in 0..40 {
        sink.unit(true, Unit::Raw(&word));
    }
    let streamed = sink.finish();
    let mut whole = Vec::new();
    for _ in 0..40 {
        whole.push(TAG_RAW);
        whole.extend_from_slice(&[u8::MAX]);
        whole.extend_from_slice(&300u32.to_le_bytes());
        whole.extend_from_slice(&word);
    }
    assert_eq!(streamed, xxh3_64(&whole));

    // Short tokens straddling the buffer's end take the slow path with the same encoding.
    let mut sink = HashSink::new();
    let mut whole = Vec::new();
    for i in 0..1000 {
        if i % 3 == 0 {
            sink.unit(false, Unit::Word(b"SeLeCt"));
            whole.extend_from_slice(&[TAG_WORD, 6]);
            whole.extend_from_slice(b"select");
        } else {
            sink.unit(false, Unit::Placeholder);
            sink.unit(false, Unit::Raw(b"::"));
            whole.extend_from_slice(&[TAG_PLACEHOLDER, TAG_RAW, 2, b':', b':']);
        }
    }
    assert!(whole.len() > 2 * HASH_BUF);
    assert_eq!(sink.finish(), xxh3_64(&whole));
}

#[test]
fn non_utf8_is_kept_lossily() {
    let sql = b"SELECT \xff\xfe FROM t WHERE a = '\xff'";
    assert_eq!(
        normalize(sql, true),
        "SELECT \u{fffd}\u{fffd} FROM t WHERE a = $1"
    );
    assert_eq!(fingerprint(sql, true), fingerprint(sql, true));
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5eed_f00d);
    let pieces: &[&[u8]] = &[
        b"SELECT ", b"IN", b" (", b")", b",", b"'", b"$$", b"$1", b"-", b"::", b"[", b"]",
        b"VALUES", b"ARRAY", b"1", b"e", b"\"", b"/*", b"*/", b"--", b"\n", b";", b"B'", b"x",
        b"...", b".", b"\xff",
    ];
    for _ in 0..20_000 {
        let sql = rng.pieces(pieces, 40, 4);
        let _ = fingerprint(&sql, rng.below(2) == 0);
        let _ = normalize(&sql, false);
    }
}

#[test]
fn memo_gives_the_fingerprint_of_each_text() {
    let mut memo = Memo::default();
    // More texts than slots, each seen several times and in both lexings: whatever the memo
    // kept or evicted, every answer is the text's own fingerprint.
    let texts: Vec<String> = (0..12)
        .map(|i| format!("SELECT a{i} FROM t WHERE s = 'x\\' OR {i} = $1"))
        .collect();
    for round in 0..3 {
        for (i, t) in texts.iter().enumerate() {
            let std = (i + round) % 2 == 0;
            assert_eq!(
                memo.fingerprint(t.as_bytes(), std),
                fingerprint(t.as_bytes(), std),
                "{t} std_strings={std}"
            );
        }
    }
    // The same text under the other lexing is another key (its strings end elsewhere).
    let t = b"SELECT 'a\\' OR 1 = 1 -- '";
    assert_ne!(fingerprint(t, true), fingerprint(t, false));
    assert_eq!(memo.fingerprint(t, true), fingerprint(t, true));
    assert_eq!(memo.fingerprint(t, false), fingerprint(t, false));
}
