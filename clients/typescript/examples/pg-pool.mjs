// A pg connection pool whose password follows rotation: the pool asks for the password each
// time it opens a connection (pg accepts a function for `password`), and the psst Source
// answers from memory, so a rotated password is used by every new connection at once; on
// rotation the idle connections, opened with the old password, are let go.
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

const pool = new pg.Pool({
  max: 10,
  idleTimeoutMillis: 30_000,
  // Called for every new connection: always the current password, from memory.
  password: () => secrets.get(reference).text(),
});

secrets.on('update', ({ reference: ref, secret, previousVersionId }) => {
  console.log(`psst: ${ref} rotated from version ${previousVersionId} to ${secret.versionId}`);
  // Connections in use finish their work; idle ones close now, and new ones log in with the
  // new password. (Most rotation schemes keep the previous password valid for a while.)
  for (const client of pool._clients ?? []) if (client._idle !== false) client.release?.(true);
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
