"""psycopg 3 through Lagoon, with automatic preparation on and made certain: prepare_threshold=0
(the default is 5) prepares every parameterised query on its first execution as a named
statement (_pg3_N), and executes it by name afterwards, on whichever server the transaction
lands on. libpq prepares with Parse+Sync and executes in a separate round trip, so in autocommit
the two can land on different servers.

Usage: psycopg_check.py URL TABLE ITERATIONS

Two connections take turns, each iteration its own (autocommit) transactions; the second
connection first uses the statements in the opposite order, so the same statement name means a
different SQL text on each connection. Also: pipeline mode, explicit transactions, statements
re-used after their own errors. Every result is checked; any mismatch or unexpected error exits
non-zero. The last line is a summary with the number of distinct server backends
(pg_backend_pid()) each connection's transactions ran on.
Run by tests/integration/drivers.rs.
"""

import datetime
import decimal
import sys

import psycopg
from psycopg import errors

ADD = "SELECT %s::int + %s::int AS sum, %s::text || '!' AS shout"
TYPES = (
    "SELECT %s::int8 AS big, %s::float8 AS f, %s::bool AS b, %s::text AS t, "
    "%s::numeric AS n, %s::bytea AS raw, %s::date AS d, NULL::int AS nothing, "
    "ARRAY[%s::int, %s::int + 1] AS arr"
)
DIV = "SELECT 10 / %s::int"
TRIPLE = "SELECT %s::int * 3"
PID = "SELECT pg_backend_pid()"
COUNT = "SELECT count(*), coalesce(sum(id), 0) FROM {table} WHERE conn = %s"
INSERT = "INSERT INTO {table} (id, conn, name, amount) VALUES (%s, %s, %s, %s)"


class Check:
    def __init__(self, table):
        self.table = table
        self.statements = 0
        self.transactions = 0
        self.pids = {0: set(), 1: set()}  # server backends each connection landed on
        self.inserted = {0: [], 1: []}

    def fail(self, what):
        print(f"FAIL psycopg: {what}", file=sys.stderr, flush=True)
        sys.exit(1)

    def expect(self, what, got, want):
        if got != want:
            self.fail(f"{what}: got {got!r}, expected {want!r}")

    def one(self, conn, sql, params=()):
        row = conn.execute(sql, params).fetchone()
        self.statements += 1
        return row

    def add(self, conn, i):
        self.expect("ADD", self.one(conn, ADD, (i, 7, f"x{i}")), (i + 7, f"x{i}!"))

    def types_params(self, i):
        raw = bytes([i % 256, 0, 255])
        day = datetime.date(2024, 1, 1) + datetime.timedelta(days=i)
        params = (
            10_000_000_000 + i, i + 0.5, i % 2 == 0, f"t{i}", decimal.Decimal(f"{i}.25"),
            raw, day, i, i,
        )
        want = (
            10_000_000_000 + i, i + 0.5, i % 2 == 0, f"t{i}", decimal.Decimal(f"{i}.25"),
            raw, day, None, [i, i + 1],
        )
        return params, want

    def types(self, conn, i):
        params, want = self.types_params(i)
        self.expect("TYPES", self.one(conn, TYPES, params), want)

    def pid(self, conn, k):
        (pid,) = self.one(conn, PID)
        self.pids[k].add(pid)
        return pid

    def insert(self, conn, k, i, record=True):
        cur = conn.execute(
            INSERT.format(table=self.table), (i, k, f"row {i}", decimal.Decimal(i) / 4)
        )
        self.statements += 1
        self.expect("INSERT rowcount", cur.rowcount, 1)
        if record:
            self.inserted[k].append(i)

    def count(self, conn, k):
        ids = self.inserted[k]
        got = self.one(conn, COUNT.format(table=self.table), (k,))
        self.expect(f"COUNT conn {k}", got, (len(ids), sum(ids)))

    def division_error_then_reuse(self, conn, i):
        try:
            conn.execute(DIV, (0,))
            self.fail("10 / 0 did not fail")
        except errors.DivisionByZero:
            pass
        self.statements += 1
        self.expect("DIV after its error", self.one(conn, DIV, (2,)), (5,))
        self.add(conn, i)

    def explicit_transaction(self, conn, k, i):
        with conn.transaction():
            first = self.pid(conn, k)
            self.add(conn, i)
            self.insert(conn, k, 100_000 + i)
            self.types(conn, i)
            self.count(conn, k)
            self.expect("backend inside one transaction", self.pid(conn, k), first)
        self.transactions += 1

    def failed_transaction_then_reuse(self, conn, k, i):
        try:
            with conn.transaction():
                self.add(conn, i)
                self.insert(conn, k, 200_000 + i, record=False)  # rolled back
                conn.execute(DIV, (0,))
                self.fail("10 / 0 did not fail inside a transaction")
        except errors.DivisionByZero:
            pass
        self.statements += 1
        self.transactions += 1
        # The same statements, after the rollback, wherever the next transaction lands.
        self.expect("DIV after a rolled-back transaction", self.one(conn, DIV, (5,)), (2,))
        self.count(conn, k)
        self.transactions += 2

    def pipeline(self, conn, i):
        # Several prepared statements sent before any result is read.
        params, want = self.types_params(i)
        with conn.pipeline():
            curs = [
                conn.execute(ADD, (i, 7, f"x{i}")),
                conn.execute(TYPES, params),
                conn.execute(TRIPLE, (i,)),
            ]
            got = [c.fetchone() for c in curs]
        self.statements += 3
        self.transactions += 1
        self.expect("pipeline", got, [(i + 7, f"x{i}!"), want, (3 * i,)])


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url, table, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ck = Check(table)
    conns = [psycopg.connect(url, autocommit=True, prepare_threshold=0) for _ in range(2)]
    conns[0].execute(f"DROP TABLE IF EXISTS {table}")
    conns[0].execute(
        f"CREATE TABLE {table} (id int, conn int, name text, amount numeric(12, 2), "
        "PRIMARY KEY (conn, id))"
    )
    # Warm-up in opposite orders: statement names are handed out in order of first use.
    warm = [
        lambda c, k: ck.add(c, 0),
        lambda c, k: ck.types(c, 0),
        lambda c, k: ck.pid(c, k),
        lambda c, k: ck.count(c, k),
    ]
    for k, conn in enumerate(conns):
        for step in warm if k == 0 else reversed(warm):
            step(conn, k)
            ck.transactions += 1
    for i in range(1, iterations + 1):
        k = i % 2
        conn = conns[k]
        ck.add(conn, i)
        ck.insert(conn, k, i)
        ck.types(conn, i)
        ck.pid(conn, k)
        ck.expect("TRIPLE", ck.one(conn, TRIPLE, (i,)), (3 * i,))
        ck.transactions += 5
        # The periods are odd, so both connections get each of these in turn.
        if i % 5 == 0:
            ck.division_error_then_reuse(conn, i)
            ck.transactions += 3
        if i % 25 == 0:
            ck.explicit_transaction(conn, k, i)
        if i % 25 == 12:
            ck.failed_transaction_then_reuse(conn, k, i)
        if i % 15 == 7:
            ck.pipeline(conn, i)
    for k, conn in enumerate(conns):
        ck.count(conn, k)
        ck.transactions += 1
    prepared = sum(len(c._prepared._names) for c in conns)
    if prepared == 0:
        ck.fail("psycopg prepared no statement: automatic preparation is off")
    for conn in conns:
        conn.close()
    print(
        f"SUMMARY driver=psycopg-{psycopg.__version__} statements={ck.statements} "
        f"transactions={ck.transactions} backends={len(ck.pids[0])},{len(ck.pids[1])} "
        f"prepared_statements={prepared}",
        flush=True,
    )


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - any driver error fails the check, shown whole
        print(f"FAIL psycopg: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise
