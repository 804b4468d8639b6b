// Driver matrix, Node side: node-postgres (pg, pg-cursor, Pool) as a restricted
// account over TLS. Prints `ok <check>` or `FAIL <check>: <why>`; exits 1 on failure.
// NODE_PATH points at the node_modules tests/drivers/install.sh filled.
'use strict';
const fs = require('fs');
const { Client, Pool } = require('pg');
const Cursor = require('pg-cursor');

const config = {
  host: process.env.MG_HOST,
  port: Number(process.env.MG_PORT),
  user: process.env.MG_USER,
  password: process.env.MG_PASSWORD,
  database: process.env.MG_DB,
  ssl: { ca: fs.readFileSync(process.env.MG_CA), rejectUnauthorized: true, checkServerIdentity: () => undefined },
};
const COLUMNS = ['id', 'full_name', 'citizen_id', 'province_code', 'employer_id', 'birth_date'];
let failed = 0;

function expectRow(fields, row) {
  const names = fields.map((f) => f.name);
  if (JSON.stringify(names) !== JSON.stringify(COLUMNS)) throw new Error(`columns ${names}`);
  if (row.citizen_id !== '********4002') throw new Error(`citizen_id ${row.citizen_id}`);
  if (JSON.stringify(row).includes('001203004002') || JSON.stringify(row).includes('0999')) {
    throw new Error('a raw value came back');
  }
}

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e && e.message}`);
  }
}

async function main() {
  const client = new Client(config);
  await check('node-postgres connect', () => client.connect());
  await check('node-postgres simple query', async () => {
    const r = await client.query('SELECT * FROM person WHERE id = 2');
    expectRow(r.fields, r.rows[0]);
  });
  await check('node-postgres parameterized query', async () => {
    for (let i = 0; i < 2; i += 1) {
      const r = await client.query({ name: 'person_by_id', text: 'SELECT * FROM person WHERE id = $1', values: [2] });
      expectRow(r.fields, r.rows[0]);
    }
  });
  await check('node-postgres denied column refused', async () => {
    try {
      await client.query('SELECT phone FROM person');
    } catch (e) {
      if (e.code === '42501') return;
      throw e;
    }
    throw new Error('phone was readable');
  });
  await check('pg-cursor', async () => {
    const cursor = client.query(new Cursor('SELECT * FROM person ORDER BY id'));
    const read = (n) => new Promise((resolve, reject) => cursor.read(n, (err, rows, result) => (err ? reject(err) : resolve([rows, result]))));
    let all = [];
    let fields = null;
    for (let i = 0; i < 10; i += 1) {
      const [rows, result] = await read(7);
      if (rows.length === 0) break;
      fields = result.fields;
      all = all.concat(rows);
    }
    await new Promise((resolve) => cursor.close(resolve));
    if (all.length !== 20) throw new Error(`${all.length} rows`);
    expectRow(fields, all[0]);
  });
  await client.end().catch(() => {});
  const pool = new Pool({ ...config, max: 1 });
  await check('node-postgres Pool', async () => {
    for (let i = 0; i < 3; i += 1) {
      const c = await pool.connect();
      try {
        const r = await c.query('SELECT * FROM person WHERE id = $1', [2]);
        expectRow(r.fields, r.rows[0]);
      } finally {
        c.release();
      }
    }
  });
  await pool.end();
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`FAIL node-postgres: ${e && e.message}`);
  process.exit(1);
});
