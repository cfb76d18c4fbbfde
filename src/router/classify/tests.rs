//! The classification table (what reads, what opens a transaction, what writes), hints, the
//! cache's behaviour with changing literals, and random input.

use super::*;
use Class::{Begin, Read, Write};

/// Each group: a class and the texts that must get it.
const TABLE: &[(Class, &[&str])] = &[
    // Plain reads.
    (
        Read,
        &[
            "SELECT 1",
            "select 1",
            "SELECT * FROM users WHERE id = 42",
            "SELECT a, b FROM t JOIN u USING (id) WHERE t.x > 3 ORDER BY a LIMIT 10 OFFSET 5",
            "SELECT count(*) FROM t GROUP BY a HAVING count(*) > 1",
            "SELECT DISTINCT ON (a) a, b FROM t",
            "SELECT * FROM t WHERE id IN (SELECT id FROM u)",
            "SELECT EXISTS (SELECT 1 FROM t)",
            "SELECT (SELECT max(x) FROM t) AS m",
            "SELECT * FROM (SELECT * FROM t) AS s",
            "SELECT 1 UNION SELECT 2",
            "SELECT 1 UNION ALL SELECT 2 EXCEPT SELECT 3 INTERSECT SELECT 4",
            "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t",
            "SELECT * FROM t TABLESAMPLE SYSTEM (10)",
            "SELECT * FROM generate_series(1, 10) AS g",
            "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.t = t.id) l",
            "SELECT '{1,2}'::int[], 'a'::text, $1::bigint",
            "SELECT \"Weird Name\" FROM \"Schema\".\"Table\"",
            "SELECT $$dollar body; DELETE FROM t$$",
            "SELECT 'INSERT INTO t VALUES (1)'",
            "SELECT 'nextval(''s'')'",
            "SELECT * FROM t WHERE a = $1 AND b = $2",
            "TABLE users",
            "VALUES (1, 'a'), (2, 'b')",
            "(SELECT 1)",
            "SELECT",
            "SELECT 1;",
            "SELECT 1; SELECT 2",
            "SELECT 1; SELECT 2; TABLE t; VALUES (3)",
        ],
    ),
    // Read-only CTEs.
    (
        Read,
        &[
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
            "WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b",
            "WITH x AS MATERIALIZED (SELECT * FROM t) SELECT count(*) FROM x",
        ],
    ),
    // Ordinary function calls: a replica refuses a real write (25006) and the caller retries.
    (
        Read,
        &[
            "SELECT now()",
            "SELECT count(*) FROM t",
            "SELECT pg_sleep(1)",
            "SELECT my_function(1, 'x')",
            "SELECT app.compute(id) FROM t",
            "SELECT lower(name), upper(name), length(name) FROM t",
            "SELECT current_setting('work_mem')",
            "SELECT pg_last_wal_replay_lsn()",
            "SELECT pg_is_in_recovery()",
            "SELECT version()",
            "SELECT coalesce(a, b), greatest(1, 2) FROM t",
            "SELECT json_agg(t) FROM t",
            "SELECT random()",
            "SELECT CURRENT_DATE, CURRENT_USER, LOCALTIMESTAMP",
        ],
    ),
    // SHOW, SET, RESET, session characteristics.
    (
        Read,
        &[
            "SHOW work_mem",
            "SHOW ALL",
            "SHOW TRANSACTION ISOLATION LEVEL",
            "SET work_mem = '64MB'",
            "SET search_path TO app, public",
            "SET LOCAL statement_timeout = 1000",
            "SET SESSION timezone = 'UTC'",
            "SET lagoon.route = replica",
            "SET lagoon.route = 'primary'",
            "SET lagoon.route = auto",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            "SET default_transaction_read_only = on",
            "SET default_transaction_read_only = off",
            "SET TRANSACTION READ ONLY",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "SET ROLE app_reader",
            "SET TIME ZONE 'Europe/Paris'",
            "RESET work_mem",
            "RESET ALL",
        ],
    ),
    // Transaction ends and savepoints alone.
    (
        Read,
        &[
            "COMMIT",
            "ROLLBACK",
            "END",
            "ABORT",
            "COMMIT AND CHAIN",
            "SAVEPOINT s1",
            "RELEASE SAVEPOINT s1",
            "ROLLBACK TO SAVEPOINT s1",
        ],
    ),
    // Read-only transactions that only read.
    (
        Read,
        &[
            "BEGIN READ ONLY",
            "BEGIN TRANSACTION READ ONLY",
            "START TRANSACTION READ ONLY",
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY",
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY DEFERRABLE",
            "begin read only; select 1",
            "BEGIN; SET TRANSACTION READ ONLY; SELECT * FROM t",
            "BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY; SELECT 1",
            "START TRANSACTION; SET transaction_read_only = on; SELECT 1",
            "BEGIN; SET LOCAL transaction_read_only TO true; SELECT 1",
            "BEGIN; SELECT 1; COMMIT",
            "BEGIN; SELECT 1; ROLLBACK",
            "BEGIN; SELECT 1; SET TRANSACTION READ ONLY",
        ],
    ),
    // EXPLAIN of reads (with or without ANALYZE), COPY to the client.
    (
        Read,
        &[
            "EXPLAIN SELECT * FROM t",
            "EXPLAIN ANALYZE SELECT * FROM t",
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM t WHERE a = 1",
            "EXPLAIN (ANALYZE 0) SELECT 1",
            "EXPLAIN VERBOSE WITH x AS (SELECT 1) SELECT * FROM x",
            "COPY t TO STDOUT",
            "COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER)",
            "COPY (SELECT * FROM t WHERE a > 1) TO STDOUT",
            "COPY (SELECT 1) TO STDOUT (FORMAT binary)",
        ],
    ),
    // Blank texts.
    (
        Read,
        &[
            "",
            "   ",
            ";",
            " ; ;; ",
            "-- just a comment",
            "/* a /* nested */ comment */",
            "/* lagoon:primary */ ;",
        ],
    ),
    // Transactions in the session's default access mode.
    (
        Begin,
        &[
            "BEGIN",
            "begin",
            "BEGIN TRANSACTION",
            "BEGIN WORK",
            "START TRANSACTION",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "START TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "BEGIN DEFERRABLE",
            "BEGIN; SELECT 1",
            "BEGIN; SELECT * FROM t WHERE id = 1; SHOW work_mem",
            "SELECT 1; BEGIN",
            "BEGIN; BEGIN READ ONLY; SELECT 1",
            "BEGIN; SELECT 1; COMMIT; BEGIN",
            "COMMIT; BEGIN",
            "BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        ],
    ),
    // Data modification.
    (
        Write,
        &[
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t (a) SELECT a FROM u",
            "INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING",
            "INSERT INTO t VALUES (1) RETURNING id",
            "UPDATE t SET a = 1 WHERE id = 2",
            "UPDATE t SET a = u.a FROM u WHERE t.id = u.id",
            "DELETE FROM t WHERE id = 1",
            "DELETE FROM t USING u WHERE t.id = u.id RETURNING t.*",
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a",
            "TRUNCATE t",
            "with x as (insert into t values (1) returning *) select * from x",
            "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x",
            "WITH x AS (DELETE FROM t RETURNING *) SELECT count(*) FROM x",
            "WITH a AS (SELECT 1), b AS (INSERT INTO t SELECT * FROM a RETURNING 1) SELECT 1",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s",
            "SELECT 1; INSERT INTO t VALUES (1)",
            "INSERT INTO t VALUES (1); SELECT 1",
            "BEGIN; UPDATE t SET a = 1; COMMIT",
            "BEGIN READ ONLY; DELETE FROM t",
        ],
    ),
    // Row locks anywhere.
    (
        Write,
        &[
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t FOR SHARE",
            "SELECT * FROM t FOR NO KEY UPDATE",
            "SELECT * FROM t FOR KEY SHARE",
            "SELECT * FROM t WHERE id = 1 FOR UPDATE SKIP LOCKED",
            "SELECT * FROM t FOR UPDATE OF t NOWAIT",
            "SELECT * FROM (SELECT * FROM t FOR UPDATE) s",
            "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)",
            "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x",
            "SELECT 1 UNION ALL (SELECT 2 FROM t FOR UPDATE)",
            "BEGIN; SELECT * FROM t FOR UPDATE",
            "EXPLAIN SELECT * FROM t FOR UPDATE",
        ],
    ),
    // Creating tables from queries, and DDL.
    (
        Write,
        &[
            "SELECT * INTO new_t FROM t",
            "SELECT 1 AS a INTO TEMP tmp",
            "CREATE TABLE t2 AS SELECT * FROM t",
            "CREATE TABLE t (id int primary key)",
            "CREATE TEMP TABLE tmp (a int)",
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "CREATE VIEW v AS SELECT 1",
            "CREATE MATERIALIZED VIEW mv AS SELECT 1",
            "REFRESH MATERIALIZED VIEW mv",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
            "CREATE EXTENSION dblink",
            "CREATE SCHEMA s",
            "CREATE SEQUENCE s",
            "ALTER TABLE t ADD COLUMN b int",
            "ALTER ROLE app SET work_mem = '1GB'",
            "ALTER SYSTEM SET work_mem = '1GB'",
            "DROP TABLE t",
            "DROP FUNCTION f()",
            "COMMENT ON TABLE t IS 'x'",
            "SECURITY LABEL ON TABLE t IS 'x'",
            "GRANT SELECT ON t TO app",
            "REVOKE ALL ON t FROM app",
        ],
    ),
    // Maintenance, locks, notifications, procedural code.
    (
        Write,
        &[
            "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
            "VACUUM",
            "VACUUM ANALYZE t",
            "ANALYZE t",
            "CLUSTER t USING i",
            "REINDEX TABLE t",
            "CHECKPOINT",
            "LISTEN ch",
            "UNLISTEN *",
            "NOTIFY ch, 'payload'",
            "DO $$ BEGIN PERFORM 1; END $$",
            "CALL proc(1)",
            "LOAD 'auto_explain'",
            "DISCARD ALL",
            "DISCARD PLANS",
            "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
            "REASSIGN OWNED BY a TO b",
        ],
    ),
    // Statements and cursors live on one server.
    (
        Write,
        &[
            "PREPARE p AS SELECT 1",
            "EXECUTE p",
            "EXECUTE p(1, 'a')",
            "DEALLOCATE p",
            "DEALLOCATE ALL",
            "DECLARE c CURSOR FOR SELECT * FROM t",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "FETCH 10 FROM c",
            "FETCH NEXT FROM c",
            "MOVE FORWARD 5 IN c",
            "CLOSE c",
            "CLOSE ALL",
            "BEGIN; DECLARE c CURSOR FOR SELECT 1; FETCH ALL FROM c",
        ],
    ),
    // COPY in, to files or programs, of writes; EXPLAIN of writes.
    (
        Write,
        &[
            "COPY t FROM STDIN",
            "COPY t (a) FROM STDIN WITH (FORMAT csv)",
            "COPY t FROM '/tmp/x.csv'",
            "COPY t TO '/tmp/x.csv'",
            "COPY t TO PROGRAM 'gzip > /tmp/x.gz'",
            "COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT",
            "COPY (SELECT nextval('s')) TO STDOUT",
            "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
            "EXPLAIN ANALYZE DELETE FROM t",
            "EXPLAIN (ANALYZE 0) UPDATE t SET a = 1",
            "EXPLAIN INSERT INTO t VALUES (1)",
            "EXPLAIN CREATE TABLE x AS SELECT 1",
            "EXPLAIN EXECUTE p",
            "EXPLAIN ANALYZE SELECT nextval('s')",
        ],
    ),
    // Transaction modes and two-phase commit that need the primary.
    (
        Write,
        &[
            "BEGIN READ WRITE",
            "START TRANSACTION READ WRITE",
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ WRITE",
            "BEGIN READ ONLY, READ WRITE",
            "BEGIN; SET TRANSACTION READ WRITE; SELECT 1",
            "SET TRANSACTION READ WRITE",
            "SET transaction_read_only = off",
            "BEGIN; SET transaction_read_only = 0; SELECT 1",
            "RESET transaction_read_only",
            "PREPARE TRANSACTION 'tx1'",
            "COMMIT PREPARED 'tx1'",
            "ROLLBACK PREPARED 'tx1'",
        ],
    ),
    // Writing functions, anywhere in the tree.
    (
        Write,
        &[
            "SELECT nextval('s')",
            "SELECT NEXTVAL('s')",
            "SELECT pg_catalog.nextval('s')",
            "SELECT \"nextval\"('s')",
            "SELECT setval('s', 10)",
            "SELECT currval('s')",
            "SELECT lastval()",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_advisory_xact_lock(1, 2)",
            "SELECT pg_advisory_unlock_all()",
            "SELECT pg_try_advisory_lock(1)",
            "SELECT pg_try_advisory_xact_lock_shared(1)",
            "SELECT set_config('search_path', 'x', false)",
            "SELECT set_config('transaction_read_only', 'on', true)",
            "SELECT lo_create(0)",
            "SELECT lo_import('/tmp/x')",
            "SELECT loread(fd, 10) FROM t",
            "SELECT lowrite(0, 'x')",
            "SELECT txid_current()",
            "SELECT txid_current_if_assigned()",
            "SELECT pg_current_xact_id()",
            "SELECT pg_current_xact_id_if_assigned()",
            "SELECT pg_notify('ch', 'x')",
            "SELECT pg_current_wal_lsn()",
            "SELECT pg_current_wal_insert_lsn()",
            "SELECT pg_current_wal_flush_lsn()",
            "SELECT pg_switch_wal()",
            "SELECT pg_create_restore_point('r')",
            "SELECT pg_create_physical_replication_slot('s')",
            "SELECT pg_drop_replication_slot('s')",
            "SELECT pg_terminate_backend(123)",
            "SELECT pg_cancel_backend(123)",
            "SELECT pg_reload_conf()",
            "SELECT dblink_exec('conn', 'DELETE FROM t')",
            "SELECT public.dblink_exec('conn', 'DELETE FROM t')",
            "SELECT audit_write(1)",
            "SELECT app.audit_write(1)",
            "SELECT billing.charge(1)",
        ],
    ),
    // ... in every corner of a query.
    (
        Write,
        &[
            "SELECT id, nextval('s') FROM t",
            "SELECT * FROM nextval('s')",
            "SELECT * FROM t WHERE id = nextval('s')",
            "SELECT * FROM t WHERE id IN (SELECT currval('s'))",
            "SELECT lower(upper(nextval('s')::text))",
            "SELECT coalesce(a, nextval('s')) FROM t",
            "SELECT CASE WHEN a THEN pg_advisory_lock(1) END FROM t",
            "SELECT * FROM t ORDER BY nextval('s')",
            "SELECT count(*) FILTER (WHERE pg_try_advisory_lock(id)) FROM t",
            "SELECT * FROM t GROUP BY a HAVING max(setval('s', 1)) > 0",
            "SELECT * FROM t LIMIT (SELECT lastval())",
            "WITH x AS (SELECT nextval('s')) SELECT * FROM x",
            "SELECT * FROM t JOIN LATERAL (SELECT txid_current()) x ON true",
            "SELECT ARRAY[pg_notify('a', 'b')]",
            "VALUES (nextval('s'))",
            "SELECT 1; SELECT nextval('s')",
            "BEGIN READ ONLY; SELECT nextval('s')",
        ],
    ),
    // Unparsable or unsure.
    (
        Write,
        &[
            "SELEC 1",
            "SELECT 'unterminated",
            "SELECT * FROM",
            "SELECT 1; SELEC 2",
            "garbage (",
            // PRIMARY is a reserved word: Postgres rejects this unquoted spelling, so the
            // session must act on `SET lagoon.route` before (or instead of) asking here.
            "SET lagoon.route = primary",
            "SELECT \"unterminated",
            "SELECT $$unterminated",
            "/* unterminated comment SELECT 1",
            "SELECT 1 /* unterminated",
        ],
    ),
];

fn classifier() -> Classifier {
    Classifier::new(&["audit_write".into(), "billing.charge".into()], 1000)
}

#[test]
fn table() {
    let c = classifier();
    let mut cases = 0;
    let mut failures = Vec::new();
    for &(want, texts) in TABLE {
        for text in texts {
            cases += 1;
            // Twice: the second answer comes from the cache.
            for round in ["miss", "hit"] {
                let got = c.classify(text.as_bytes(), true).class;
                if got != want {
                    failures.push(format!("{text:?} ({round}): got {got:?}, want {want:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases >= 150, "{cases} cases");
}

#[test]
fn no_cache_gives_the_same_answers() {
    let c = Classifier::new(&["audit_write".into()], 0);
    for &(want, texts) in TABLE {
        for text in texts.iter().filter(|t| !t.contains("charge")) {
            assert_eq!(c.classify(text.as_bytes(), true).class, want, "{text:?}");
        }
    }
}

#[test]
fn hints_travel_with_the_text_not_the_cache_entry() {
    let c = classifier();
    let v = |sql: &str| c.classify(sql.as_bytes(), true);
    assert_eq!(
        v("/* lagoon:primary */ SELECT * FROM t WHERE id = 1"),
        Verdict {
            class: Read,
            hint: Some(Hint::Primary)
        }
    );
    // Same shape, now a hit: its own hint, or none.
    assert_eq!(
        v("SELECT * FROM t WHERE id = 2 -- lagoon:replica").hint,
        Some(Hint::Replica)
    );
    assert_eq!(v("SELECT * FROM t WHERE id = 3").hint, None);
    assert_eq!(
        v("-- lagoon:replica\nINSERT INTO t VALUES (1)"),
        Verdict {
            class: Write,
            hint: Some(Hint::Replica)
        }
    );
    assert_eq!(v("SELECT 'lagoon:primary'").hint, None);
}

#[test]
fn changing_literals_hit_one_entry_without_changing_the_class() {
    let c = classifier();
    for i in 0..50 {
        let read = format!("SELECT * FROM t WHERE id = {i} AND name = 'n{i}'");
        assert_eq!(c.classify(read.as_bytes(), true).class, Read);
        let write = format!("SELECT set_config('a{i}', '{i}', false)");
        assert_eq!(c.classify(write.as_bytes(), true).class, Write);
    }
    assert_eq!(c.cache.len(), 2);
    // SET keeps its literals in the key: on and off are two entries with two answers.
    for (sql, want) in [
        ("BEGIN; SET transaction_read_only = 1; SELECT 1", Read),
        ("BEGIN; SET transaction_read_only = 0; SELECT 1", Write),
        ("BEGIN; SET transaction_read_only = 'on'; SELECT 1", Read),
        ("BEGIN; SET transaction_read_only = 'off'; SELECT 1", Write),
    ] {
        assert_eq!(c.classify(sql.as_bytes(), true).class, want, "{sql}");
    }
}

#[test]
fn standard_conforming_strings_moves_string_ends() {
    let c = classifier();
    // On: a string `'a\'`, then a DELETE. Off: one string, a read.
    let sql = b"SELECT 'a\\'; DELETE FROM t; SELECT '";
    assert_eq!(c.classify(sql, true).class, Write);
    assert_eq!(c.classify(sql, false).class, Read);
    assert_eq!(c.classify(sql, true).class, Write);
}

#[test]
fn bytes_the_parser_cannot_take_are_writes() {
    let c = classifier();
    assert_eq!(c.classify(b"SELECT 'ok'", true).class, Read);
    // Same shape as the cached read, but not UTF-8 / holding a NUL: never from the cache.
    assert_eq!(c.classify(b"SELECT '\xff'", true).class, Write);
    assert_eq!(c.classify(b"SELECT '\0'", true).class, Write);
    assert_eq!(c.classify(b"SELECT 1\0", true).class, Write);
}

#[test]
fn long_and_deep_texts() {
    let c = classifier();
    let mut long = b"SELECT * FROM t WHERE id IN (0".to_vec();
    for i in 1..5000 {
        long.extend_from_slice(format!(", {i}").as_bytes());
    }
    long.push(b')');
    assert!(long.len() > MAX_CACHED_LEN);
    assert_eq!(c.classify(&long, true).class, Read);
    // Parentheses only group: a shallow tree.
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(c.classify(deep.as_bytes(), true).class, Read);
    // A tree deeper than the protobuf decoder's recursion limit: uncertain, so the primary.
    let deep = format!("SELECT {}1{}", "ARRAY[".repeat(2000), "]".repeat(2000));
    assert_eq!(c.classify(deep.as_bytes(), true).class, Write);
    let deep = format!("SELECT {}1{}", "(SELECT ".repeat(500), ")".repeat(500));
    assert_eq!(c.classify(deep.as_bytes(), true).class, Write);
}

#[test]
fn shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Classifier>();
    let c = std::sync::Arc::new(classifier());
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let sql = format!("SELECT * FROM t{} WHERE a = {i}", i % 7);
                    assert_eq!(c.classify(sql.as_bytes(), n % 2 == 0).class, Read);
                }
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_ok());
    }
}

#[cfg(test)]
mod random_input_tests {
    use super::*;
    use crate::test_rng::Rng;

    /// Statement starts, writing names and the lexer's traps, mixed with random bytes.
    fn sqlish(rng: &mut Rng) -> Vec<u8> {
        const BITS: &[&[u8]] = &[
            b"SELECT ",
            b"INSERT INTO t ",
            b"WITH x AS (",
            b"BEGIN ",
            b"READ ONLY ",
            b"SET ",
            b"TRANSACTION ",
            b"EXPLAIN ",
            b"ANALYZE ",
            b"COPY ",
            b"TO STDOUT ",
            b"FOR UPDATE ",
            b"FROM t ",
            b"nextval(",
            b"pg_catalog.",
            b"lagoon:primary",
            b"VALUES ",
            b"'",
            b"\"",
            b"E'",
            b"U&'",
            b"$$",
            b"$1",
            b"1.5",
            b"--",
            b"\n",
            b"/*",
            b"*/",
            b"\\",
            b";",
            b"(",
            b")",
            b",",
            b" ",
            b"\xff",
            b"\0",
        ];
        rng.pieces(BITS, 24, 6)
    }

    #[test]
    fn random_texts_classify_without_panic() {
        let c = Classifier::new(&[], 64);
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut reads = 0;
        for _ in 0..3000 {
            let sql = sqlish(&mut rng);
            for std_strings in [true, false] {
                reads += usize::from(c.classify(&sql, std_strings).class == Read);
            }
        }
        for _ in 0..500 {
            let raw = rng.bytes(64);
            let _ = c.classify(&raw, true);
        }
        assert!(reads > 50, "{reads}");
    }
}
