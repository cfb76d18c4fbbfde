"""asyncpg through Lagoon, with asyncpg's automatic statement cache left on (the default,
statement_cache_size=100): every parameterised query is prepared on first use as a named
statement (__asyncpg_stmt_N__) and executed by name afterwards, on whichever server the
transaction lands on.

Usage: asyncpg_check.py URL TABLE ITERATIONS

Two connections take turns, each iteration its own (autocommit) transactions; the second
connection first uses the statements in the opposite order, so the same statement name means a
different SQL text on each connection. Every result is checked; any mismatch or unexpected
error exits non-zero. The last line is a summary with the number of distinct server backends
(pg_backend_pid()) each connection's transactions ran on.
Run by tests/integration/drivers.rs.
"""

import asyncio
import datetime
import decimal
import sys

import asyncpg

ADD = "SELECT $1::int + $2::int AS sum, $3::text || '!' AS shout"
TYPES = (
    "SELECT $1::int8 AS big, $2::float8 AS f, $3::bool AS b, $4::text AS t, "
    "$5::numeric AS n, $6::bytea AS raw, $7::date AS d, NULL::int AS nothing, "
    "ARRAY[$8::int, $8::int + 1] AS arr"
)
DIV = "SELECT 10 / $1::int"
TRIPLE = "SELECT $1::int * 3"
PID = "SELECT pg_backend_pid()"
COUNT = "SELECT count(*), coalesce(sum(id), 0) FROM {table} WHERE conn = $1"
INSERT = "INSERT INTO {table} (id, conn, name, amount) VALUES ($1, $2, $3, $4)"


class Check:
    def __init__(self, table):
        self.table = table
        self.statements = 0
        self.transactions = 0
        self.pids = {0: set(), 1: set()}  # server backends each connection landed on
        self.inserted = {0: [], 1: []}

    def fail(self, what):
        print(f"FAIL asyncpg: {what}", file=sys.stderr, flush=True)
        sys.exit(1)

    def expect(self, what, got, want):
        if got != want:
            self.fail(f"{what}: got {got!r}, expected {want!r}")

    async def add(self, conn, i):
        row = await conn.fetchrow(ADD, i, 7, f"x{i}")
        self.statements += 1
        self.expect("ADD", (row["sum"], row["shout"]), (i + 7, f"x{i}!"))

    async def types(self, conn, i):
        raw = bytes([i % 256, 0, 255])
        day = datetime.date(2024, 1, 1) + datetime.timedelta(days=i)
        row = await conn.fetchrow(
            TYPES, 10_000_000_000 + i, i + 0.5, i % 2 == 0, f"t{i}",
            decimal.Decimal(f"{i}.25"), raw, day, i,
        )
        self.statements += 1
        want = (
            10_000_000_000 + i, i + 0.5, i % 2 == 0, f"t{i}", decimal.Decimal(f"{i}.25"),
            raw, day, None, [i, i + 1],
        )
        self.expect("TYPES", tuple(row.values()), want)

    async def pid(self, conn, k):
        pid = await conn.fetchval(PID)
        self.statements += 1
        self.pids[k].add(pid)
        return pid

    async def insert(self, conn, k, i, record=True):
        status = await conn.execute(
            INSERT.format(table=self.table), i, k, f"row {i}", decimal.Decimal(i) / 4
        )
        self.statements += 1
        self.expect("INSERT status", status, "INSERT 0 1")
        if record:
            self.inserted[k].append(i)

    async def count(self, conn, k):
        row = await conn.fetchrow(COUNT.format(table=self.table), k)
        self.statements += 1
        ids = self.inserted[k]
        self.expect(f"COUNT conn {k}", (row[0], row[1]), (len(ids), sum(ids)))

    async def division_error_then_reuse(self, conn, i):
        try:
            await conn.fetchval(DIV, 0)
            self.fail("10 / 0 did not fail")
        except asyncpg.exceptions.DivisionByZeroError:
            pass
        self.statements += 1
        self.expect("DIV after its error", await conn.fetchval(DIV, 2), 5)
        self.statements += 1
        await self.add(conn, i)

    async def explicit_transaction(self, conn, k, i):
        async with conn.transaction():
            first = await self.pid(conn, k)
            await self.add(conn, i)
            await self.insert(conn, k, 100_000 + i)
            await self.types(conn, i)
            await self.count(conn, k)
            self.expect("backend inside one transaction", await self.pid(conn, k), first)
        self.transactions += 1

    async def failed_transaction_then_reuse(self, conn, k, i):
        tr = conn.transaction()
        await tr.start()
        await self.add(conn, i)
        await self.insert(conn, k, 200_000 + i, record=False)  # rolled back below
        try:
            await conn.fetchval(DIV, 0)
            self.fail("10 / 0 did not fail inside a transaction")
        except asyncpg.exceptions.DivisionByZeroError:
            pass
        self.statements += 1
        await tr.rollback()
        self.transactions += 1
        # The same statements, after the rollback, wherever the next transaction lands.
        self.expect("DIV after a rolled-back transaction", await conn.fetchval(DIV, 5), 2)
        self.statements += 1
        await self.count(conn, k)
        self.transactions += 2


async def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url, table, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ck = Check(table)
    conns = [await asyncpg.connect(url) for _ in range(2)]
    await conns[0].execute(
        f"DROP TABLE IF EXISTS {table}; "
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
            await step(conn, k)
            ck.transactions += 1
    triple = [await c.prepare(TRIPLE) for c in conns]
    for i in range(1, iterations + 1):
        k = i % 2
        conn = conns[k]
        await ck.add(conn, i)
        await ck.insert(conn, k, i)
        await ck.types(conn, i)
        await ck.pid(conn, k)
        ck.transactions += 4
        # An explicitly prepared statement (also named), held for the whole run.
        ck.expect("TRIPLE", await triple[k].fetchval(i), 3 * i)
        ck.statements += 1
        ck.transactions += 1
        # The periods are odd, so both connections get each of these in turn.
        if i % 5 == 0:
            await ck.division_error_then_reuse(conn, i)
            ck.transactions += 3
        if i % 25 == 0:
            await ck.explicit_transaction(conn, k, i)
        if i % 25 == 12:
            await ck.failed_transaction_then_reuse(conn, k, i)
    for k, conn in enumerate(conns):
        await ck.count(conn, k)
        ck.transactions += 1
    cached = sum(len(getattr(c, "_stmt_cache", ())) for c in conns)
    for conn in conns:
        await conn.close()
    print(
        f"SUMMARY driver=asyncpg-{asyncpg.__version__} statements={ck.statements} "
        f"transactions={ck.transactions} backends={len(ck.pids[0])},{len(ck.pids[1])} "
        f"cached_statements={cached}",
        flush=True,
    )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - any driver error fails the check, shown whole
        print(f"FAIL asyncpg: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise
