// The wrapper against a fake agent: what goes on the wire and how answers are mapped.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  PsstClient,
  PsstError,
  Secret,
  Status,
} from '@psst/client';

import { fail, startFakeAgent } from './helpers';

const ts = (seconds: number) => ({ seconds: String(seconds), nanos: 500_000_000 });

test('every call sends :authority localhost, not the socket path', async (t) => {
  const agent = await startFakeAgent({
    GetSecret: (call, cb) => cb(null, { reference: call.request.reference, value: Buffer.from('v'), versionId: '1' }),
    ListSecrets: (_call, cb) => cb(null, { secrets: [] }),
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  await client.health();
  await client.get('local:a');
  await client.list('local:');
  assert.equal(agent.authorities.length, 3);
  assert.deepEqual(new Set(agent.authorities), new Set(['localhost']));
});

test('get maps the message, including timestamps, cache info and binary values', async (t) => {
  const bytes = Buffer.from([0, 1, 2, 250, 255]);
  let asked = '';
  const agent = await startFakeAgent({
    GetSecret: (call, cb) => {
      asked = call.request.reference;
      cb(null, {
        reference: 'sm:prod/db#password',
        value: bytes,
        versionId: 'abc',
        stages: ['AWSCURRENT'],
        createdAt: ts(1_700_000_000),
        cache: { hit: true, stale: true, fetchedAt: ts(1_700_000_100), expiresAt: ts(1_700_000_400) },
      });
    },
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  const s = await client.get('sm:prod/db#password');
  assert.equal(asked, 'sm:prod/db#password');
  assert.ok(s instanceof Secret);
  assert.deepEqual(s.value, bytes);
  assert.equal(s.reference, 'sm:prod/db#password');
  assert.equal(s.versionId, 'abc');
  assert.deepEqual(s.stages, ['AWSCURRENT']);
  assert.equal(s.createdAt?.getTime(), 1_700_000_000_500);
  assert.deepEqual(s.cache, {
    hit: true,
    stale: true,
    fetchedAt: new Date(1_700_000_100_500),
    expiresAt: new Date(1_700_000_400_500),
  });
});

test('get without timestamps leaves them undefined', async (t) => {
  const agent = await startFakeAgent({
    GetSecret: (_call, cb) => cb(null, { reference: 'local:a', value: Buffer.from('x'), versionId: '1' }),
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  const s = await client.get('local:a');
  assert.equal(s.createdAt, undefined);
  assert.deepEqual(s.cache, { hit: false, stale: false, fetchedAt: undefined, expiresAt: undefined });
});

for (const [code, Subclass] of [
  [Status.NOT_FOUND, NotFoundError],
  [Status.PERMISSION_DENIED, PermissionDeniedError],
  [Status.INVALID_ARGUMENT, InvalidArgumentError],
] as const) {
  test(`a ${Status[code]} status from the agent becomes ${Subclass.name}`, async (t) => {
    const agent = await startFakeAgent({ GetSecret: (_call, cb) => cb(fail(code, 'agent message')) });
    t.after(() => agent.stop());
    const client = new PsstClient({ socket: agent.socket });
    t.after(() => client.close());
    await assert.rejects(client.get('local:a'), (err: unknown) => {
      assert.ok(err instanceof Subclass);
      assert.equal((err as PsstError).code, code);
      assert.equal((err as PsstError).details, 'agent message');
      return true;
    });
  });
}

test('batchGet keeps order and maps per-item errors, with their reference', async (t) => {
  const agent = await startFakeAgent({
    BatchGetSecrets: (call, cb) => {
      assert.deepEqual(call.request.references, ['local:a', 'local:b', 'local:c']);
      cb(null, {
        results: [
          { reference: 'local:a', secret: { reference: 'local:a', value: Buffer.from('A'), versionId: '1' } },
          { reference: 'local:b', error: { code: Status.PERMISSION_DENIED, message: 'no' } },
          { reference: 'local:c' },
        ],
      });
    },
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  const [a, b, c] = await client.batchGet(['local:a', 'local:b', 'local:c']);
  assert.ok(a instanceof Secret && a.text() === 'A');
  assert.ok(b instanceof PermissionDeniedError);
  assert.equal(b.reference, 'local:b');
  assert.equal(b.details, 'no');
  assert.ok(c instanceof PsstError);
  assert.equal(c.codeName, 'INTERNAL');
  assert.equal(c.reference, 'local:c');
});

test('list, put and whoami map their messages', async (t) => {
  let put: { reference: string; value: Buffer } | undefined;
  const agent = await startFakeAgent({
    ListSecrets: (call, cb) =>
      cb(null, { secrets: [{ reference: `${call.request.prefix}x`, versionId: '4', updatedAt: ts(10) }] }),
    PutSecret: (call, cb) => {
      put = call.request;
      cb(null, { reference: `${call.request.reference}?version=2`, versionId: '2', createdAt: ts(20) });
    },
    WhoAmI: (_call, cb) =>
      cb(null, {
        caller: { uid: 1000, gid: 1000, pid: 42, user: 'app', identitySource: 'process' },
        grants: [{ operation: 'read', patterns: ['local:demo/**'] }],
        matchedRules: ['apps'],
      }),
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  assert.deepEqual(await client.list('local:demo/'), [
    { reference: 'local:demo/x', versionId: '4', updatedAt: new Date(10_500) },
  ]);
  const written = await client.put('local:demo/y', 'täst');
  assert.deepEqual(written, { reference: 'local:demo/y?version=2', versionId: '2', createdAt: new Date(20_500) });
  assert.equal(put?.reference, 'local:demo/y');
  assert.deepEqual(put?.value, Buffer.from('täst', 'utf8'));
  await client.put('local:demo/z', new Uint8Array([1, 2, 3]));
  assert.deepEqual(put?.value, Buffer.from([1, 2, 3]));
  const me = await client.whoami();
  assert.equal(me.caller?.uid, 1000);
  assert.equal(me.caller?.user, 'app');
  assert.deepEqual(me.grants, [{ operation: 'read', patterns: ['local:demo/**'] }]);
  assert.deepEqual(me.matchedRules, ['apps']);
});

test('a per-call timeout gives DEADLINE_EXCEEDED', async (t) => {
  const agent = await startFakeAgent({ GetSecret: () => undefined /* never answers */ });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  await assert.rejects(client.get('local:a', { timeoutMs: 100 }), (err: unknown) => {
    assert.equal((err as PsstError).codeName, 'DEADLINE_EXCEEDED');
    return true;
  });
});

test('calls after close() fail with CANCELLED', async (t) => {
  const agent = await startFakeAgent({});
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  assert.equal(await client.health(), 'SERVING');
  client.close();
  await assert.rejects(client.health(), (err: unknown) => (err as PsstError).codeName === 'CANCELLED');
});
