// A pg connection pool whose password follows rotation: pg asks for the password each time it
// opens a connection (it accepts a function for `password`) and the psst Source answers from
// memory, so every new connection uses the current password; on rotation the app moves to a
// fresh pool and drains the old one.
//
//   npm install pg @psst/client
//   PGHOST=db PGUSER=app node examples/pg-pool.mjs
//
// Needs a grant to read and watch the reference (here sm:prod/db#password).
import pg from 'pg';
import { PsstClient } from '@psst/client';

const reference = process.env.PSST_DB_PASSWORD_REF ?? 'sm:prod/db#password';

const psst = new PsstClient();
const secrets = await psst.source([reference]); // fails here if the grant is missing

// Called for every new connection: always the current password, from memory.
const makePool = () => new pg.Pool({ max: 10, idleTimeoutMillis: 30_000, password: () => secrets.get(reference).text() });
let pool = makePool();

secrets.on('update', ({ reference: ref, secret, previousVersionId }) => {
  console.log(`psst: ${ref} rotated from version ${previousVersionId} to ${secret.versionId}`);
  // New work goes to a fresh pool that logs in with the new password; the old pool closes once
  // the connections checked out of it are released (pool.end() waits for them).
  const old = pool;
  pool = makePool();
  old.end().catch((err) => console.warn('psst: closing the old pool:', err.message));
});
secrets.on('status', ({ reachable, error }) => {
  if (!reachable) console.warn(`psst: agent unreachable (${error?.codeName}); keeping the last password`);
});

const { rows } = await pool.query('select now()');
console.log(rows[0]);

process.on('SIGTERM', async () => {
  secrets.close();
  psst.close();
  await pool.end();
});
