import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';

import { PsstClient, PsstError, Status, UnavailableError, type RetryEvent } from '@psst/client';

import { fail, startFakeAgent, tempSocket } from './helpers';

test('a missing socket: retries with backoff, then fails with UNAVAILABLE (bounded, fast)', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const events: RetryEvent[] = [];
  const client = new PsstClient({
    socket,
    retry: { maxAttempts: 4, initialDelayMs: 20, maxDelayMs: 80, jitter: 0, onRetry: (e) => events.push(e) },
  });
  t.after(() => client.close());
  const started = Date.now();
  await assert.rejects(client.get('local:a'), (err: unknown) => {
    assert.ok(err instanceof UnavailableError, String(err));
    assert.equal((err as PsstError).code, Status.UNAVAILABLE);
    assert.equal((err as PsstError).codeName, 'UNAVAILABLE');
    return true;
  });
  const elapsed = Date.now() - started;
  assert.deepEqual(events.map((e) => e.attempt), [1, 2, 3]);
  assert.deepEqual(events.map((e) => e.delayMs), [20, 40, 80]);
  assert.ok(events.every((e) => e.error.code === Status.UNAVAILABLE));
  assert.ok(elapsed >= 140, `gave up too early: ${elapsed} ms`);
  assert.ok(elapsed < 3000, `took too long: ${elapsed} ms`);
});

test('retry: false makes one try only', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const client = new PsstClient({ socket, retry: false });
  t.after(() => client.close());
  const started = Date.now();
  await assert.rejects(client.health(), UnavailableError);
  assert.ok(Date.now() - started < 1000);
  const events: RetryEvent[] = [];
  const once = new PsstClient({ socket, retry: { maxAttempts: 1, onRetry: (e) => events.push(e) } });
  t.after(() => once.close());
  await assert.rejects(once.health(), UnavailableError);
  assert.equal(events.length, 0);
});

test('an agent that comes up while the client retries is used', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const events: RetryEvent[] = [];
  const client = new PsstClient({
    socket,
    retry: { maxAttempts: 40, initialDelayMs: 20, maxDelayMs: 100, onRetry: (e) => events.push(e) },
  });
  t.after(() => client.close());
  let agent: Awaited<ReturnType<typeof startFakeAgent>> | undefined;
  const late = setTimeout(async () => {
    agent = await startFakeAgent({
      GetSecret: (call, cb) => cb(null, { reference: call.request.reference, value: Buffer.from('late'), versionId: '7' }),
    }, socket);
  }, 300);
  t.after(async () => {
    clearTimeout(late);
    await agent?.stop();
  });
  const secret = await client.get('local:late');
  assert.equal(secret.text(), 'late');
  assert.equal(secret.versionId, '7');
  assert.ok(events.length >= 2, `expected retries before the agent came up, saw ${events.length}`);
});

test('once the agent has answered, UNAVAILABLE is returned at once', async (t) => {
  let calls = 0;
  const agent = await startFakeAgent({
    GetSecret: (_call, cb) => {
      calls++;
      cb(fail(Status.UNAVAILABLE, 'backend unreachable'));
    },
  });
  t.after(() => agent.stop());
  const events: RetryEvent[] = [];
  const client = new PsstClient({ socket: agent.socket, retry: { initialDelayMs: 1, onRetry: (e) => events.push(e) } });
  t.after(() => client.close());
  assert.equal(await client.health(), 'SERVING');
  await assert.rejects(client.get('sm:prod/db'), (err: unknown) => {
    assert.ok(err instanceof UnavailableError);
    assert.equal((err as UnavailableError).details, 'backend unreachable');
    return true;
  });
  assert.equal(calls, 1);
  assert.equal(events.length, 0);
});

test('an abort signal stops the retries with CANCELLED', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const client = new PsstClient({ socket, retry: { maxAttempts: 1000, initialDelayMs: 50, maxDelayMs: 50 } });
  t.after(() => client.close());
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 150);
  const started = Date.now();
  await assert.rejects(client.get('local:a', { signal: controller.signal }), (err: unknown) => {
    assert.equal((err as PsstError).codeName, 'CANCELLED');
    return true;
  });
  assert.ok(Date.now() - started < 2000);
});
