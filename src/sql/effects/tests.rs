use super::*;

const NONE: Flags = Flags::empty();
const SETTINGS: Flags = Flags::SETTINGS;
const TEMP: Flags = Flags::TEMP;
const LOCK: Flags = Flags::ADVISORY_LOCK;
const UNLOCK: Flags = Flags::ADVISORY_UNLOCK;

fn show(sql: &[u8]) -> std::string::String {
    std::string::String::from_utf8_lossy(sql).into_owned()
}

/// Each text and exactly the flags it must raise.
#[test]
fn flags_table() {
    let cases: &[(&str, Flags)] = &[
        // Ordinary statements: nothing.
        ("", NONE),
        (";;  ; -- nothing\n", NONE),
        ("SELECT 1", NONE),
        ("select * from t where a = 'x' and b = $1", NONE),
        ("INSERT INTO t VALUES (1, 'two')", NONE),
        ("UPDATE t SET a = 1 WHERE b = 2", NONE),
        ("update t set a = 1, b = 2", NONE),
        ("DELETE FROM t", NONE),
        ("BEGIN; COMMIT", NONE),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1; END", NONE),
        (
            "INSERT INTO t SELECT 1 ON CONFLICT (a) DO UPDATE SET b = 2",
            NONE,
        ),
        ("ALTER ROLE bob SET search_path = a", NONE),
        (
            "ALTER TABLE t ALTER c SET DEFAULT 1, ALTER d RESET (n_distinct)",
            NONE,
        ),
        ("CREATE TABLE t (a int)", NONE),
        ("CREATE UNLOGGED TABLE t (a int)", NONE),
        ("CREATE TABLE public.t (a int)", NONE),
        (
            "CREATE FUNCTION f() RETURNS int SET search_path = a AS 'select 1' LANGUAGE sql",
            NONE,
        ),
        ("GRANT EXECUTE ON FUNCTION f() TO bob", NONE),
        (
            "CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()",
            NONE,
        ),
        // SET and friends.
        ("SET search_path TO a, b", SETTINGS),
        ("set statement_timeout = 5", SETTINGS),
        ("SET SESSION work_mem = '64MB'", SETTINGS),
        ("SET TIME ZONE 'UTC'", SETTINGS),
        ("SET ROLE admin", SETTINGS),
        ("SET SESSION AUTHORIZATION bob", SETTINGS),
        ("SET SCHEMA 'a'", SETTINGS),
        ("SET NAMES 'UTF8'", SETTINGS),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            SETTINGS,
        ),
        ("SET myapp.tenant = 42", SETTINGS),
        ("RESET ALL", SETTINGS),
        ("reset search_path", SETTINGS),
        ("RESET SESSION AUTHORIZATION", SETTINGS),
        ("SELECT set_config('search_path', 'a', false)", SETTINGS),
        ("SELECT pg_catalog.set_config('a.b', 'c', true)", SETTINGS),
        ("SELECT SET_CONFIG ( 'x', 'y', false )", SETTINGS),
        ("SELECT \"set_config\"('x', 'y', false)", SETTINGS),
        (
            "SELECT \"pg_catalog\".set_config /* why */ ('x', 'y', false)",
            SETTINGS,
        ),
        (
            "WITH s AS (SELECT set_config('x', 'y', false)) SELECT * FROM s",
            SETTINGS,
        ),
        (
            "EXPLAIN ANALYZE SELECT set_config('x', 'y', false)",
            SETTINGS,
        ),
        ("  /* lead */ -- lead\n  SET x = 1", SETTINGS),
        ("SET /* between */ x -- and\n = 1", SETTINGS),
        ("SeT x = 1", SETTINGS),
        // Transaction-scoped SETs, and SET that is not at a statement start.
        ("SET LOCAL search_path = a", NONE),
        ("set local myapp.x = 1", NONE),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", NONE),
        ("SET SESSION TRANSACTION READ ONLY", NONE),
        ("SET CONSTRAINTS ALL DEFERRED", NONE),
        ("SET TRANSACTION SNAPSHOT '0001'", NONE),
        ("SELECT \"set_config\" FROM t", NONE),
        ("SELECT set_config FROM t", NONE),
        ("SELECT myschema.set_config('a', 'b', false)", NONE),
        ("SELECT t.set_config FROM t", NONE),
        ("SELECT \"SET_CONFIG\"('a', 'b', false)", NONE),
        // Strings, comments, dollar quotes and quoted identifiers hide everything.
        ("SELECT 'SET x=1'", NONE),
        ("SELECT 'a'';SET x=1;'", NONE),
        ("SELECT E'\\';SET x=1;'", NONE),
        ("SELECT U&'a'';SET x=1'", NONE),
        ("SELECT $$LISTEN a$$", NONE),
        ("SELECT $q$ $$; LISTEN a; $$ $q$", NONE),
        ("/* DISCARD ALL */ SELECT 1", NONE),
        ("/* a /* nested */ ; SET x = 1 */ SELECT 1", NONE),
        ("-- SET x = 1\nSELECT 1", NONE),
        ("SELECT 1 -- ; SET x = 1", NONE),
        ("SELECT \";SET x=1;\"", NONE),
        (
            "SELECT 'pg_advisory_lock(1)', $$set_config('a','b',false)$$",
            NONE,
        ),
        ("SELECT 'x' /* unterminated ; SET x = 1", NONE),
        ("SELECT 'unterminated ; SET x = 1", NONE),
        ("SELECT \"unterminated ; SET x = 1", NONE),
        ("SELECT $t$ unterminated ; SET x = 1", NONE),
        // Multi-statement texts.
        ("SELECT 1; SET x = 1", SETTINGS),
        ("SELECT 'a;b'; SET x = 1;", SETTINGS),
        ("BEGIN; SET LOCAL x = 1; LISTEN c; COMMIT", Flags::LISTEN),
        ("SELECT $$;$$;DISCARD ALL", Flags::DISCARD_ALL),
        (
            "SET x = 1;RESET y;SELECT pg_advisory_lock(1)",
            SETTINGS.union(LOCK),
        ),
        ("(SELECT 1); SET x = 1", SETTINGS),
        // DISCARD.
        ("DISCARD ALL", Flags::DISCARD_ALL),
        ("discard plans", Flags::DISCARD_OTHER),
        ("DISCARD SEQUENCES", Flags::DISCARD_OTHER),
        ("DISCARD TEMP", Flags::DISCARD_OTHER),
        ("Discard Temporary", Flags::DISCARD_OTHER),
        // Prepared statements.
        ("DEALLOCATE s1", Flags::DEALLOCATE),
        ("DEALLOCATE PREPARE ALL", Flags::DEALLOCATE),
        ("PREPARE s1 AS SELECT 1", Flags::PREPARE),
        ("PREPARE s1 (int, text) AS SELECT $1, $2", Flags::PREPARE),
        ("PREPARE TRANSACTION 'gid'", NONE),
        ("PREPARE transaction AS SELECT 1", Flags::PREPARE),
        ("COMMIT PREPARED 'gid'", NONE),
        ("EXECUTE s1", Flags::EXECUTE),
        ("EXECUTE s1 (1, 'a')", Flags::EXECUTE),
        ("EXPLAIN EXECUTE s1", Flags::EXECUTE),
        ("EXPLAIN (ANALYZE, BUFFERS) EXECUTE s1", Flags::EXECUTE),
        ("CREATE TABLE t AS EXECUTE s1", Flags::EXECUTE),
        // LISTEN.
        ("LISTEN chan", Flags::LISTEN),
        ("UNLISTEN *", Flags::UNLISTEN),
        (
            "listen \"Chan\"; unlisten \"Chan\"",
            Flags::LISTEN.union(Flags::UNLISTEN),
        ),
        ("NOTIFY chan, 'LISTEN'", NONE),
        // Temporary tables.
        ("CREATE TEMP TABLE t (a int)", TEMP),
        ("CREATE TEMPORARY TABLE t (a int)", TEMP),
        ("create local temp table t (a int)", TEMP),
        ("CREATE GLOBAL TEMPORARY TABLE t (a int)", TEMP),
        ("CREATE TEMP UNLOGGED TABLE t (a int)", TEMP),
        ("CREATE TEMP VIEW v AS SELECT 1", TEMP),
        ("CREATE TEMP SEQUENCE s", TEMP),
        ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", TEMP),
        (
            "CREATE OR REPLACE TEMPORARY RECURSIVE VIEW v (n) AS SELECT 1",
            TEMP,
        ),
        ("CREATE TEMP TABLE t AS SELECT 1", TEMP),
        ("CREATE TEMP TABLE IF NOT EXISTS t (a int)", TEMP),
        ("CREATE TABLE pg_temp.t (a int)", TEMP),
        ("CREATE TABLE IF NOT EXISTS PG_TEMP.t (a int)", TEMP),
        ("CREATE VIEW pg_temp.v AS SELECT 1", TEMP),
        ("CREATE SEQUENCE \"pg_temp\".s", TEMP),
        (
            "CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql",
            TEMP,
        ),
        ("CREATE TABLE pg_temp_3.t (a int)", TEMP),
        ("CREATE TABLE pg_temporary.t (a int)", NONE),
        ("CREATE TABLE \"PG_TEMP\".t (a int)", NONE),
        ("CREATE TABLE pg_temp (a int)", NONE),
        ("SELECT * INTO TEMP t FROM u", TEMP),
        ("SELECT * INTO TEMPORARY TABLE t FROM u", TEMP),
        ("SELECT 1 AS a INTO LOCAL TEMP \"T\"", TEMP),
        ("WITH x AS (SELECT 1) SELECT * INTO TEMP t FROM x", TEMP),
        ("SELECT * INTO temp FROM u", NONE),
        ("SELECT * INTO t FROM u", NONE),
        ("SELECT * INTO UNLOGGED t FROM u", NONE),
        ("INSERT INTO temp VALUES (1)", NONE),
        ("INSERT INTO temp t VALUES (1)", NONE),
        (
            "WITH x AS (INSERT INTO temp t VALUES (1) RETURNING *) SELECT * FROM x",
            NONE,
        ),
        (
            "MERGE INTO temp t USING u ON true WHEN MATCHED THEN DELETE",
            NONE,
        ),
        ("SELECT 'CREATE TEMP TABLE t'", NONE),
        // Cursors.
        (
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            Flags::HOLD_CURSOR,
        ),
        (
            "declare c no scroll cursor with hold for select 1",
            Flags::HOLD_CURSOR,
        ),
        (
            "DECLARE c BINARY INSENSITIVE SCROLL CURSOR WITH HOLD FOR SELECT 1",
            Flags::HOLD_CURSOR,
        ),
        ("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", NONE),
        ("DECLARE c CURSOR FOR SELECT 1", NONE),
        (
            "DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold",
            NONE,
        ),
        ("CLOSE c", Flags::CLOSE_CURSOR),
        ("CLOSE ALL", Flags::CLOSE_CURSOR),
        // Advisory locks.
        ("SELECT pg_advisory_lock(1)", LOCK),
        ("SELECT pg_advisory_lock_shared(1, 2)", LOCK),
        ("SELECT pg_try_advisory_lock(hashtext('m'))", LOCK),
        ("select PG_TRY_ADVISORY_LOCK_SHARED(1)", LOCK),
        ("SELECT pg_catalog.pg_advisory_lock(1)", LOCK),
        ("SELECT pg_advisory_unlock(1)", UNLOCK),
        ("SELECT pg_advisory_unlock_shared(1)", UNLOCK),
        ("SELECT pg_advisory_unlock_all()", UNLOCK),
        ("SELECT pg_advisory_xact_lock(1)", NONE),
        ("SELECT pg_try_advisory_xact_lock(1)", NONE),
        ("SELECT pg_advisory_xact_lock_shared(1)", NONE),
        ("SELECT pg_advisory_lock FROM t", NONE),
        ("SELECT x.pg_advisory_lock(1)", NONE),
        (
            "SELECT pg_advisory_lock(1), pg_advisory_unlock(1)",
            LOCK.union(UNLOCK),
        ),
        ("UPDATE t SET a = pg_try_advisory_lock(id)", LOCK),
        ("CREATE TABLE t AS SELECT pg_advisory_lock(1)", LOCK),
        // Calls in a definition do not run now.
        ("CREATE VIEW v AS SELECT pg_advisory_lock(1)", NONE),
        ("CREATE TEMP VIEW v AS SELECT pg_advisory_lock(1)", TEMP),
        (
            "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql RETURN pg_advisory_lock(1)",
            NONE,
        ),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC SELECT 1; \
             SELECT CASE WHEN true THEN pg_advisory_lock(1) END; END; SELECT 1",
            NONE,
        ),
        (
            "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END; \
             SELECT pg_advisory_lock(1)",
            LOCK,
        ),
        // DROP, DO, CALL.
        ("DROP TABLE t", Flags::DROP),
        ("drop function f", Flags::DROP),
        ("DO $$BEGIN PERFORM 1; END$$", Flags::OPAQUE),
        ("CALL p(1)", Flags::OPAQUE),
        ("do language plpgsql 'begin end'", Flags::OPAQUE),
        // EXPLAIN ANALYZE runs its statement.
        ("EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1", TEMP),
        ("EXPLAIN (ANALYZE) SELECT * INTO TEMP t FROM u", TEMP),
        ("EXPLAIN SELECT 1", NONE),
    ];
    assert!(cases.len() >= 150, "{}", cases.len());
    for (sql, want) in cases {
        let got = scan(sql.as_bytes()).flags;
        assert_eq!(got, *want, "{sql}");
    }
}

#[test]
fn non_utf8_bytes_are_just_bytes() {
    let cases: &[(&[u8], Flags)] = &[
        (b"SELECT '\xff\xfe'; SET x = 1", SETTINGS),
        (b"SELECT \xff; LISTEN c", Flags::LISTEN),
        (b"\xffSET x = 1", NONE),
        (b"SET \xc3\xa9t\xc3\xa9 = 1", SETTINGS),
        (b"SELECT $\xe9$ ; LISTEN a $\xe9$", NONE),
        (b"SELECT 1 /* \x80\x81 */; DISCARD ALL", Flags::DISCARD_ALL),
        (b"\x00SET x = 1", NONE),
    ];
    for (sql, want) in cases {
        assert_eq!(scan(sql).flags, *want, "{}", show(sql));
    }
}

#[test]
fn standard_conforming_strings_off_moves_string_ends() {
    let sql = b"SELECT 'a\\'; SET x = 1; --'";
    assert_eq!(scan(sql).flags, SETTINGS);
    assert_eq!(scan_with(sql, false).flags, NONE);
    let sql = b"SELECT 'a\\''; SET x = 1";
    assert_eq!(scan_with(sql, false).flags, SETTINGS);
    // A set_config name with a backslash is only taken when backslashes mean nothing.
    let sql = b"SELECT set_config('a.b\\c', 'v', false)";
    assert_eq!(scan(sql).custom_settings, [b"a.b\\c".to_vec()]);
    assert!(scan_with(sql, false).custom_settings.is_empty());
}

fn names(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn custom_settings_are_named() {
    let cases: &[(&str, &[&str])] = &[
        ("SET myapp.tenant = 42", &["myapp.tenant"]),
        ("SET MyApp.Tenant TO 'x'", &["myapp.tenant"]),
        ("SET SESSION myapp.tenant = 1", &["myapp.tenant"]),
        ("SET \"MyApp\".x = 1", &["MyApp.x"]),
        ("SET \"my\"\"app\" . X = 1", &["my\"app.x"]),
        ("SET a.b.c = 1", &["a.b.c"]),
        ("RESET myapp.tenant", &["myapp.tenant"]),
        ("SET a.b = 1; RESET a.b; SET A.B = 2", &["a.b"]),
        (
            "SELECT set_config('myapp.user', 'bob', false)",
            &["myapp.user"],
        ),
        (
            "SELECT set_config('MyApp.User', 'bob', false)",
            &["MyApp.User"],
        ),
        ("SELECT set_config('it''s.x', 'bob', false)", &["it's.x"]),
        (
            "SET x.y = 1; SELECT set_config('p.q', '', false)",
            &["x.y", "p.q"],
        ),
        // SET LOCAL changes nothing past the transaction, but the placeholder it creates
        // does: its custom name is recorded (without SETTINGS).
        ("SET LOCAL myapp.tenant = 1", &["myapp.tenant"]),
        // Plain names and non-literal names are not recorded.
        ("SET search_path = a", &[]),
        ("SET TIME ZONE 'UTC'", &[]),
        ("RESET ALL", &[]),
        ("SELECT set_config('work_mem', '1MB', false)", &[]),
        ("SELECT set_config($1, 'v', false)", &[]),
        ("SELECT set_config('a.' || 'b', 'v', false)", &[]),
        ("SELECT set_config(E'a.b', 'v', false)", &[]),
        ("SELECT set_config('a.b'", &[]),
        ("SELECT x.set_config('a.b', 'v', false)", &[]),
    ];
    for (sql, want) in cases {
        assert_eq!(scan(sql.as_bytes()).custom_settings, names(want), "{sql}");
    }
    assert!(scan(b"RESET ALL").reset_all);
    assert!(!scan(b"RESET a.b").reset_all);
}

#[test]
fn deallocate_names() {
    let cases: &[(&str, bool, &[&str])] = &[
        ("DEALLOCATE s1", false, &["s1"]),
        ("DEALLOCATE PREPARE S1", false, &["s1"]),
        ("deallocate \"S1\"", false, &["S1"]),
        ("DEALLOCATE ALL", true, &[]),
        ("DEALLOCATE PREPARE ALL", true, &[]),
        ("DEALLOCATE \"ALL\"", false, &["ALL"]),
        ("DEALLOCATE prepare", false, &["prepare"]),
        (
            "DEALLOCATE a; DEALLOCATE b; DEALLOCATE a",
            false,
            &["a", "b"],
        ),
    ];
    for (sql, all, want) in cases {
        let fx = scan(sql.as_bytes());
        assert_eq!(fx.flags, Flags::DEALLOCATE, "{sql}");
        assert_eq!(fx.deallocate_all, *all, "{sql}");
        assert_eq!(fx.deallocated, names(want), "{sql}");
    }
}

#[test]
fn prepares_carry_their_statement() {
    let sql = "SELECT 1; PREPARE Q1 (int) AS SELECT $1 ; prepare \"Q2\" as select ';' -- c\n";
    let fx = scan(sql.as_bytes());
    assert_eq!(fx.flags, Flags::PREPARE);
    let got: Vec<(&[u8], &str)> = fx
        .prepares
        .iter()
        .map(|p| (&p.name[..], &sql[p.range.clone()]))
        .collect();
    assert_eq!(
        got,
        [
            (&b"q1"[..], "PREPARE Q1 (int) AS SELECT $1"),
            (b"Q2", "prepare \"Q2\" as select ';'"),
        ]
    );
    // Each range scans, on its own, to the same PREPARE.
    for p in &fx.prepares {
        let again = scan(&sql.as_bytes()[p.range.clone()]);
        assert_eq!(again.prepares.len(), 1);
        assert_eq!(again.prepares[0].name, p.name);
        assert_eq!(again.prepares[0].range, 0..p.range.len());
    }
    let sql = b"PREPARE s AS SELECT 'unterminated";
    assert_eq!(scan(sql).prepares[0].range, 0..sql.len());
    assert!(scan(b"PREPARE TRANSACTION 'x'").prepares.is_empty());
    assert!(scan(b"PREPARE").prepares.is_empty());
}

#[test]
fn executed_names() {
    let cases: &[(&str, &[&str])] = &[
        ("EXECUTE S1", &["s1"]),
        ("EXECUTE \"S1\"(1)", &["S1"]),
        ("EXPLAIN ANALYZE VERBOSE EXECUTE s1", &["s1"]),
        (
            "CREATE TEMP TABLE t AS EXECUTE s2 (1) WITH NO DATA",
            &["s2"],
        ),
        ("EXECUTE a; EXECUTE b; EXECUTE a", &["a", "b"]),
    ];
    for (sql, want) in cases {
        let fx = scan(sql.as_bytes());
        assert!(fx.has(Flags::EXECUTE), "{sql}");
        assert_eq!(fx.executed, names(want), "{sql}");
    }
}

#[test]
fn long_names_are_truncated_as_postgres_does() {
    let long = "a".repeat(70);
    let fx = scan(format!("PREPARE {long} AS SELECT 1").as_bytes());
    assert_eq!(fx.prepares[0].name, vec![b'a'; 63]);
    // 62 ASCII bytes then a two-byte character: cut before it, not through it.
    let name = format!("\"{}éé\"", "b".repeat(62));
    let fx = scan(format!("DEALLOCATE {name}").as_bytes());
    assert_eq!(fx.deallocated[0], vec![b'b'; 62]);
}

#[test]
fn session_feature_names_the_first_one() {
    let cases: &[(&str, Option<&str>)] = &[
        ("SELECT 1", None),
        ("SET x = 1; DISCARD ALL; DROP TABLE t", None),
        ("LISTEN a", Some("LISTEN")),
        ("CREATE TEMP TABLE t ()", Some("temporary tables")),
        (
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            Some("cursors WITH HOLD"),
        ),
        ("SELECT pg_advisory_lock(1)", Some("session advisory locks")),
        ("SELECT pg_advisory_lock(1); LISTEN a", Some("LISTEN")),
        ("SELECT pg_advisory_unlock_all()", None),
    ];
    for (sql, want) in cases {
        assert_eq!(scan(sql.as_bytes()).session_feature(), *want, "{sql}");
    }
}

#[test]
fn is_empty_and_flag_helpers() {
    assert!(scan(b"SELECT 1").is_empty());
    let fx = scan(b"SET x = 1; LISTEN c");
    assert!(!fx.is_empty());
    assert!(fx.has(Flags::LISTEN | Flags::TEMP));
    assert!(!fx.flags.contains(Flags::LISTEN | Flags::TEMP));
    assert_eq!(format!("{:?}", fx.flags), "SETTINGS | LISTEN");
    assert_eq!(format!("{:?}", Flags::empty()), "(empty)");
}

#[test]
fn ordinary_statements_allocate_nothing() {
    let fx = scan(b"SELECT a, b FROM t WHERE c = 'x' AND d IN (1, 2, 3); COMMIT");
    assert_eq!(fx, Effects::default());
    assert_eq!(
        (fx.custom_settings.capacity(), fx.prepares.capacity()),
        (0, 0)
    );
}

/// Deterministic "no panic on random input" checks, the CI-sized cousin of `fuzz/` target
/// `sql_effects`.
#[cfg(test)]
mod random_input_tests {
    use super::*;
    use crate::test_rng::Rng;

    /// Statement starts, effect keywords and the lexer's traps, mixed with random bytes.
    fn sqlish(rng: &mut Rng) -> Vec<u8> {
        const BITS: &[&[u8]] = &[
            b"SET ",
            b"RESET ",
            b"PREPARE ",
            b"DEALLOCATE ",
            b"EXECUTE ",
            b"CREATE ",
            b"TEMP ",
            b"TABLE ",
            b"pg_temp",
            b"SELECT ",
            b"INTO ",
            b"DECLARE ",
            b"WITH ",
            b"HOLD ",
            b"FOR ",
            b"LISTEN ",
            b"DISCARD ",
            b"ALL ",
            b"EXPLAIN ",
            b"AS ",
            b"FUNCTION ",
            b"BEGIN ",
            b"END ",
            b"CASE ",
            b"set_config",
            b"pg_advisory_lock",
            b"pg_catalog",
            b"'a.b'",
            b"a.b ",
            b"\"Q\"",
            b"'",
            b"\"",
            b"$$",
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
            b" ",
            b"\xff",
            b"E'",
        ];
        rng.pieces(BITS, 20, 8)
    }

    #[test]
    fn random_texts_scan_without_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut flagged, mut prepares) = (0, 0);
        for _ in 0..5000 {
            let sql = sqlish(&mut rng);
            for standard in [true, false] {
                let fx = scan_with(&sql, standard);
                flagged += usize::from(!fx.is_empty());
                for p in &fx.prepares {
                    prepares += 1;
                    let text = &sql[p.range.clone()];
                    assert!(text[..7].eq_ignore_ascii_case(b"prepare"), "{}", show(&sql));
                    let again = scan_with(text, standard);
                    assert_eq!(again.prepares.len(), 1, "{}", show(&sql));
                    assert_eq!(again.prepares[0].name, p.name);
                }
                // A complete statement in front changes nothing but the offsets.
                let mut prefixed = b"SELECT 1;\n".to_vec();
                prefixed.extend_from_slice(&sql);
                let mut shifted = scan_with(&prefixed, standard);
                for p in &mut shifted.prepares {
                    p.range = p.range.start - 10..p.range.end - 10;
                }
                assert_eq!(shifted, fx, "{}", show(&sql));
            }
            let random = rng.bytes(64);
            let _ = scan(&random);
        }
        assert!(flagged > 500 && prepares > 50, "{flagged} {prepares}");
    }
}
