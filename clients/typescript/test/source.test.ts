// Source against a fake agent: the first fetch, resuming the watch from the fetched versions,
// updates (events and for await), and errors and outages that never replace a value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import { PermissionDeniedError, PsstClient, Status, type SourceUpdate, type WatchStatus } from '@psst/client';

import { fail, startFakeAgent } from './helpers';

const secret = (reference: string, version: string) => ({ reference, value: Buffer.from(`value-${version}`), versionId: version });

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    assert.ok(Date.now() < end, `${what}: not within ${ms} ms`);
    await sleep(10);
  }
}

test('a Source fetches once, resumes the watch from what it fetched, and keeps values through errors and outages', async (t) => {
  const watches: grpc.ServerWritableStream<any, any>[] = [];
  const agent = await startFakeAgent({
    GetSecret: (call, cb) => cb(null, secret(call.request.reference, '1')),
    WatchSecrets: (call) => {
      watches.push(call);
      call.sendMetadata(new grpc.Metadata());
    },
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  const source = await client.source(['local:a', 'local:b']);
  t.after(() => source.close());
  const statuses: WatchStatus[] = [];
  const updates: SourceUpdate[] = [];
  source.on('status', (s: WatchStatus) => statuses.push(s));
  source.on('update', (u: SourceUpdate) => updates.push(u));
  const reader = source[Symbol.asyncIterator]();

  assert.equal(source.get('local:a').text(), 'value-1');
  assert.throws(() => source.get('local:other'), RangeError);
  await until(() => watches.length === 1, 'the watch');
  assert.deepEqual(watches[0]!.request.knownVersions, { 'local:a': '1', 'local:b': '1' });

  watches[0]!.write({ reference: 'local:a', kind: 'NEW_VERSION', secret: secret('local:a', '2'), previousVersionId: '1' });
  const read = await reader.next();
  assert.equal(read.done, false);
  assert.equal((read.value as SourceUpdate).secret.text(), 'value-2');
  assert.equal(updates.length, 1);
  assert.equal(updates[0]!.previousVersionId, '1');
  assert.equal(source.get('local:a').text(), 'value-2');

  // A policy reload takes the watch grant away: the values stay, the status says why, and the
  // Source watches again, from the versions it has.
  watches[0]!.emit('error', fail(Status.PERMISSION_DENIED, 'no'));
  await until(() => statuses.some((s) => s.error?.codeName === 'PERMISSION_DENIED'), 'the denied status');
  assert.equal(source.get('local:a').text(), 'value-2');
  await until(() => watches.length === 2, 'a new watch', 10_000);
  assert.deepEqual(watches[1]!.request.knownVersions, { 'local:a': '2', 'local:b': '1' });

  // The agent goes away: still the last values, and the status says unreachable.
  await agent.stop();
  await until(() => source.status?.reachable === false, 'unreachable');
  assert.equal(source.get('local:a').text(), 'value-2');
  assert.equal(source.get('local:b').text(), 'value-1');
  source.close();
  assert.deepEqual(await reader.next(), { done: true, value: undefined });
});

test('opening a Source fails with the agent error when a reference is refused', async (t) => {
  const agent = await startFakeAgent({
    GetSecret: (call, cb) =>
      call.request.reference === 'local:denied' ? cb(fail(Status.PERMISSION_DENIED, 'denied')) : cb(null, secret(call.request.reference, '1')),
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  await assert.rejects(client.source(['local:a', 'local:denied']), PermissionDeniedError);
});

test('closing the client closes its Sources, which keep their values', async (t) => {
  const agent = await startFakeAgent({
    GetSecret: (call, cb) => cb(null, secret(call.request.reference, '1')),
    WatchSecrets: (call) => call.sendMetadata(new grpc.Metadata()),
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  const source = await client.source('local:a');
  client.close();
  await until(() => source.closed, 'the Source closed');
  assert.equal(source.get('local:a').text(), 'value-1');
});
