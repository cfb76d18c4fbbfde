// node-postgres (pg) through Lagoon, with its prepared statements: a query config with a
// `name` is parsed once per connection as that named statement (node-postgres remembers it)
// and executed by name afterwards, on whichever server the transaction lands on.
//
// Usage: node node_pg_check.js URL TABLE ITERATIONS   (pg found through NODE_PATH)
//
// Two connections take turns, each iteration its own (autocommit) transactions. Both use the
// same statement names for different SQL texts (the second connection's names are rotated),
// as two applications sharing a pool would. Every result is checked; any mismatch or
// unexpected error exits non-zero. The last line is a summary with the number of distinct
// server backends (pg_backend_pid()) each connection's transactions ran on.
// Run by tests/integration/drivers.rs.
'use strict';

const assert = require('node:assert');
const pg = require('pg');

const SQL = {
  add: "SELECT $1::int + $2::int AS sum, $3::text || '!' AS shout",
  types:
    'SELECT $1::int8 AS big, $2::float8 AS f, $3::bool AS b, $4::text AS t, ' +
    '$5::numeric AS n, $6::bytea AS raw, $7::date::text AS d, NULL::int AS nothing, ' +
    'ARRAY[$8::int, $8::int + 1] AS arr',
  div: 'SELECT 10 / $1::int AS q',
  triple: 'SELECT $1::int * 3 AS t',
  pid: 'SELECT pg_backend_pid() AS pid',
  count: 'SELECT count(*)::int AS n, coalesce(sum(id), 0)::int8 AS s FROM {table} WHERE conn = $1',
  insert: 'INSERT INTO {table} (id, conn, name, amount) VALUES ($1, $2, $3, $4)',
};
const KEYS = Object.keys(SQL);

class Failure extends Error {}

function fail(what) {
  throw new Failure(what);
}

function expect(what, got, want) {
  try {
    assert.deepStrictEqual(got, want);
  } catch (e) {
    fail(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
}

class Check {
  constructor(table) {
    this.table = table;
    this.statements = 0;
    this.transactions = 0;
    this.pids = [new Set(), new Set()];
    this.inserted = [[], []];
    this.names = new Set();
  }

  // Connection k names statement key with a rotated name: s0 is `add` on connection 0 but
  // `types` on connection 1, and so on.
  async run(conn, k, key, values) {
    const name = `s${(KEYS.indexOf(key) + KEYS.length - k) % KEYS.length}`;
    this.names.add(name);
    const text = SQL[key].replace('{table}', this.table);
    const res = await conn.query({ name, text, values });
    this.statements++;
    return res;
  }

  async add(conn, k, i) {
    const { rows } = await this.run(conn, k, 'add', [i, 7, `x${i}`]);
    expect('add', rows, [{ sum: i + 7, shout: `x${i}!` }]);
  }

  typesParams(i) {
    const raw = Buffer.from([i % 256, 0, 255]);
    const day = new Date(Date.UTC(2024, 0, 1 + i)).toISOString().slice(0, 10);
    const values = [(10_000_000_000 + i).toString(), i + 0.5, i % 2 === 0, `t${i}`, `${i}.25`, raw, day, i];
    // int8 and numeric come back as strings (exact), dates as text by the query's own cast.
    const want = {
      big: (10_000_000_000 + i).toString(), f: i + 0.5, b: i % 2 === 0, t: `t${i}`, n: `${i}.25`,
      raw, d: day, nothing: null, arr: [i, i + 1],
    };
    return [values, want];
  }

  async types(conn, k, i) {
    const [values, want] = this.typesParams(i);
    const { rows } = await this.run(conn, k, 'types', values);
    expect('types', rows, [want]);
  }

  async pid(conn, k) {
    const { rows } = await this.run(conn, k, 'pid', []);
    this.pids[k].add(rows[0].pid);
    return rows[0].pid;
  }

  async triple(conn, k, i) {
    const { rows } = await this.run(conn, k, 'triple', [i]);
    expect('triple', rows, [{ t: 3 * i }]);
  }

  async insert(conn, k, i, record = true) {
    const res = await this.run(conn, k, 'insert', [i, k, `row ${i}`, (i / 4).toString()]);
    expect('insert rowCount', res.rowCount, 1);
    if (record) this.inserted[k].push(i);
  }

  async count(conn, k) {
    const ids = this.inserted[k];
    const { rows } = await this.run(conn, k, 'count', [k]);
    expect(`count conn ${k}`, rows, [{ n: ids.length, s: ids.reduce((a, b) => a + b, 0).toString() }]);
  }

  async divisionByZero(conn, k) {
    try {
      await this.run(conn, k, 'div', [0]);
    } catch (e) {
      if (e instanceof Failure || e.code !== '22012') throw e;
      this.statements++;
      return;
    }
    fail('10 / 0 did not fail');
  }

  async divisionErrorThenReuse(conn, k, i) {
    await this.divisionByZero(conn, k);
    const { rows } = await this.run(conn, k, 'div', [2]);
    expect('div after its error', rows, [{ q: 5 }]);
    await this.add(conn, k, i);
  }

  async explicitTransaction(conn, k, i) {
    await conn.query('BEGIN');
    const first = await this.pid(conn, k);
    await this.add(conn, k, i);
    await this.insert(conn, k, 100_000 + i);
    await this.types(conn, k, i);
    await this.count(conn, k);
    expect('backend inside one transaction', await this.pid(conn, k), first);
    await conn.query('COMMIT');
    this.transactions++;
  }

  async failedTransactionThenReuse(conn, k, i) {
    await conn.query('BEGIN');
    await this.add(conn, k, i);
    await this.insert(conn, k, 200_000 + i, false); // rolled back below
    await this.divisionByZero(conn, k);
    await conn.query('ROLLBACK');
    this.transactions++;
    // The same statements, after the rollback, wherever the next transaction lands.
    const { rows } = await this.run(conn, k, 'div', [5]);
    expect('div after a rolled-back transaction', rows, [{ q: 2 }]);
    await this.count(conn, k);
    this.transactions += 2;
  }
}

async function main() {
  if (process.argv.length !== 5) {
    console.error('usage: node node_pg_check.js URL TABLE ITERATIONS');
    process.exit(2);
  }
  const [url, table, iterations] = [process.argv[2], process.argv[3], Number(process.argv[4])];
  const ck = new Check(table);
  const conns = [];
  for (let k = 0; k < 2; k++) {
    const c = new pg.Client({ connectionString: url, ssl: false });
    c.on('error', (e) => {
      console.error(`FAIL node-postgres: connection ${k}: ${e.message}`);
      process.exit(1);
    });
    await c.connect();
    conns.push(c);
  }
  await conns[0].query(`DROP TABLE IF EXISTS ${table}`);
  await conns[0].query(
    `CREATE TABLE ${table} (id int, conn int, name text, amount numeric(12, 2), PRIMARY KEY (conn, id))`,
  );
  for (let k = 0; k < 2; k++) {
    await ck.add(conns[k], k, 0);
    await ck.types(conns[k], k, 0);
    await ck.pid(conns[k], k);
    await ck.count(conns[k], k);
    ck.transactions += 4;
  }
  for (let i = 1; i <= iterations; i++) {
    const k = i % 2;
    const c = conns[k];
    await ck.add(c, k, i);
    await ck.insert(c, k, i);
    await ck.types(c, k, i);
    await ck.pid(c, k);
    await ck.triple(c, k, i);
    ck.transactions += 5;
    // The periods are odd, so both connections get each of these in turn.
    if (i % 5 === 0) {
      await ck.divisionErrorThenReuse(c, k, i);
      ck.transactions += 3;
    }
    if (i % 25 === 0) await ck.explicitTransaction(c, k, i);
    if (i % 25 === 12) await ck.failedTransactionThenReuse(c, k, i);
  }
  for (let k = 0; k < 2; k++) {
    await ck.count(conns[k], k);
    ck.transactions++;
  }
  for (const c of conns) await c.end();
  const version = require('pg/package.json').version;
  console.log(
    `SUMMARY driver=node-postgres-${version} statements=${ck.statements} transactions=${ck.transactions} ` +
      `backends=${ck.pids[0].size},${ck.pids[1].size} statement_names=${ck.names.size}`,
  );
}

main().catch((e) => {
  const detail = e instanceof Failure ? e.message : `${e.code ?? ''} ${e.stack}`;
  console.error(`FAIL node-postgres: ${detail}`);
  process.exit(1);
});
