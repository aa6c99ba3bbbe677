// Calls that never reached the agent wait for it within their deadline, on every call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';

import { PsstClient, PsstError, Status, UnavailableError } from '@psst/client';

import { fail, startFakeAgent, tempSocket } from './helpers';

test('a missing socket: the call waits for the agent until its deadline, then fails with UNAVAILABLE', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const client = new PsstClient({ socket, timeoutMs: 400 });
  t.after(() => client.close());
  const started = Date.now();
  await assert.rejects(client.get('local:a'), (err: unknown) => {
    assert.ok(err instanceof UnavailableError, String(err));
    assert.equal((err as PsstError).codeName, 'UNAVAILABLE');
    assert.match((err as PsstError).details, /could not be reached within 400 ms/);
    return true;
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 350 && elapsed < 3000, `the deadline was not honoured: ${elapsed} ms`);
  // A per-call deadline wins over the client's.
  const quick = Date.now();
  await assert.rejects(client.health('', { timeoutMs: 100 }), UnavailableError);
  assert.ok(Date.now() - quick < 1500);
});

test('retry: false fails at once when the agent is not there', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const client = new PsstClient({ socket, retry: false });
  t.after(() => client.close());
  const started = Date.now();
  await assert.rejects(client.health(), UnavailableError);
  assert.ok(Date.now() - started < 1000);
});

test('every call, not only the first, waits for an agent that comes back', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const serve = () =>
    startFakeAgent({
      GetSecret: (call, cb) => cb(null, { reference: call.request.reference, value: Buffer.from('up'), versionId: '7' }),
    }, socket);
  let agent = await serve();
  t.after(() => agent.stop());
  const client = new PsstClient({ socket, retry: { initialDelayMs: 20, maxDelayMs: 100 } });
  t.after(() => client.close());
  assert.equal((await client.get('local:a')).text(), 'up');
  await agent.stop();
  fs.rmSync(socket, { force: true });
  // The agent is down: a call made now is not failed at once but served once it is back.
  const pending = client.get('local:a');
  await new Promise((r) => setTimeout(r, 400));
  agent = await serve();
  const secret = await pending;
  assert.equal(secret.text(), 'up');
  assert.equal(secret.versionId, '7');
});

test('UNAVAILABLE from the agent itself (its backend is down) is returned at once, not repeated', async (t) => {
  let calls = 0;
  const agent = await startFakeAgent({
    GetSecret: (_call, cb) => {
      calls++;
      cb(fail(Status.UNAVAILABLE, 'backend unreachable'));
    },
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  await assert.rejects(client.get('sm:prod/db'), (err: unknown) => {
    assert.ok(err instanceof UnavailableError);
    assert.equal((err as UnavailableError).details, 'backend unreachable');
    return true;
  });
  assert.equal(calls, 1);
});

test('a put that reached the agent is never sent twice', async (t) => {
  let calls = 0;
  const agent = await startFakeAgent({
    PutSecret: (_call, cb) => {
      calls++;
      cb(fail(Status.UNAVAILABLE, 'store busy'));
    },
  });
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  await assert.rejects(client.put('local:a', 'v'), UnavailableError);
  assert.equal(calls, 1);
});

test('an abort signal ends a call that waits for the agent with CANCELLED', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const client = new PsstClient({ socket });
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

test('a read whose connection broke before the agent answered is sent again; a put is not', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  let gets = 0;
  let puts = 0;
  let first: Awaited<ReturnType<typeof startFakeAgent>> | undefined;
  let second: Awaited<ReturnType<typeof startFakeAgent>> | undefined;
  // The first agent dies holding the request (as a crashed agent would); a second one answers.
  const dying = async () => {
    first = await startFakeAgent(
      {
        GetSecret: () => {
          gets++;
          void first!.stop();
        },
        PutSecret: () => {
          puts++;
          void first!.stop();
        },
      },
      socket,
    );
  };
  t.after(async () => {
    await first?.stop();
    await second?.stop();
  });
  await dying();
  const client = new PsstClient({ socket, timeoutMs: 10_000, retry: { initialDelayMs: 20, maxDelayMs: 100 } });
  t.after(() => client.close());
  const answered = client.get('local:a');
  const back = setTimeout(async () => {
    fs.rmSync(socket, { force: true });
    second = await startFakeAgent(
      { GetSecret: (call, cb) => cb(null, { reference: call.request.reference, value: Buffer.from('again'), versionId: '2' }) },
      socket,
    );
  }, 300);
  t.after(() => clearTimeout(back));
  assert.equal((await answered).text(), 'again');
  assert.equal(gets, 1);
  await second!.stop();
  fs.rmSync(socket, { force: true });
  await dying();
  await assert.rejects(client.put('local:a', 'v'), (err: unknown) => {
    assert.ok(err instanceof PsstError && ['UNAVAILABLE', 'CANCELLED'].includes(err.codeName), String(err));
    return true;
  });
  assert.equal(puts, 1);
});
