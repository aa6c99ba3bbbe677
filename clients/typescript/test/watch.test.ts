// watch() against a fake agent: mapping, latest-value folding, resume after a reconnect
// (known_versions), errors, close and cancel, redaction.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

import * as grpc from '@grpc/grpc-js';
import {
  NotFoundError,
  PermissionDeniedError,
  PsstClient,
  PsstError,
  Secret,
  Status,
  UnavailableError,
  WatchEvent,
  type Watch,
} from '@psst/client';

import { fail, startFakeAgent, tempSocket, type FakeAgent } from './helpers';

type Kind = 'CURRENT' | 'NEW_VERSION' | 'PENDING_VERSION' | 'DELETED';

/** A WatchEvent message as the agent sends it. */
function ev(reference: string, kind: Kind, version?: string, previous = '', pending = ''): Record<string, unknown> {
  return {
    reference,
    kind,
    secret: version === undefined ? null : { reference, value: Buffer.from(`value-${version}`), versionId: version },
    previousVersionId: previous,
    pendingVersionId: pending,
    observedAt: { seconds: '1700000000', nanos: 0 },
  };
}

/** What the tests check of an event. */
function brief(e: WatchEvent): string {
  const parts: string[] = [e.kind, e.reference];
  if (e.secret) parts.push(`v${e.secret.versionId}=${e.secret.text()}`);
  if (e.previousVersionId) parts.push(`prev ${e.previousVersionId}`);
  if (e.pendingVersionId) parts.push(`pending ${e.pendingVersionId}`);
  return parts.join(' ');
}

/** Settles with the promise, or fails after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} in ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function nextEvent(watch: Watch, ms = 5000): Promise<WatchEvent> {
  const result = await within(watch.next(), ms, 'event');
  assert.equal(result.done, false, 'the watch ended');
  return result.value as WatchEvent;
}

async function nextError(watch: Watch, ms = 5000): Promise<PsstError> {
  let result: IteratorResult<WatchEvent>;
  try {
    result = await within(watch.next(), ms, 'error');
  } catch (err) {
    assert.ok(err instanceof PsstError, String(err));
    return err;
  }
  assert.fail(`expected an error, got ${result.done ? 'the end' : String(result.value)}`);
}

/** A fake agent whose WatchSecrets calls the test drives: calls[i] is the i-th call;
 * called(n) waits until there have been n calls. */
async function watchAgent(socket?: string): Promise<FakeAgent & { calls: grpc.ServerWritableStream<any, any>[]; called: (n: number) => Promise<void> }> {
  const calls: grpc.ServerWritableStream<any, any>[] = [];
  let waiting: (() => void) | undefined;
  const agent = await startFakeAgent(
    {
      WatchSecrets: (call) => {
        calls.push(call);
        waiting?.();
      },
    },
    socket,
  );
  const called = (n: number): Promise<void> =>
    calls.length >= n
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          waiting = () => {
            if (calls.length >= n) resolve();
          };
        });
  return Object.assign(agent, { calls, called });
}

test('watch sends the references and maps the events', async (t) => {
  const agent = await watchAgent();
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  const watch = client.watch(['local:a', 'local:b']);
  await agent.called(1);
  const call = agent.calls[0]!;
  assert.deepEqual(call.request.references, ['local:a', 'local:b']);
  assert.deepEqual(call.request.knownVersions, {});
  assert.deepEqual(agent.authorities, ['localhost']);
  call.write(ev('local:a', 'CURRENT', '1'));
  const first = await nextEvent(watch);
  assert.ok(first instanceof WatchEvent);
  assert.ok(first.secret instanceof Secret);
  assert.equal(first.kind, 'CURRENT');
  assert.equal(first.reference, 'local:a');
  assert.equal(first.versionId, '1');
  assert.equal(first.secret?.text(), 'value-1');
  assert.equal(first.previousVersionId, '');
  assert.equal(first.observedAt?.getTime(), 1_700_000_000_000);
  call.write(ev('local:a', 'PENDING_VERSION', undefined, '', '2'));
  call.write(ev('local:b', 'CURRENT', '7'));
  assert.equal(brief(await nextEvent(watch)), 'PENDING_VERSION local:a pending 2');
  assert.equal(brief(await nextEvent(watch)), 'CURRENT local:b v7=value-7');
  call.write(ev('local:a', 'NEW_VERSION', '2', '1'));
  call.write(ev('local:b', 'DELETED'));
  assert.equal(brief(await nextEvent(watch)), 'NEW_VERSION local:a v2=value-2 prev 1');
  assert.equal(brief(await nextEvent(watch)), 'DELETED local:b');
  assert.deepEqual([...watch.knownVersions], [['local:a', '2']]);
  watch.close();
});

test('events that arrived unread are folded per reference: the newest version, the previous one the reader had', async (t) => {
  const agent = await watchAgent();
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  const watch = client.watch(['local:a', 'local:b']);
  t.after(() => watch.close());
  await agent.called(1);
  const call = agent.calls[0]!;
  // Nothing read yet: CURRENT then two new versions of a fold into one CURRENT of the newest.
  call.write(ev('local:a', 'CURRENT', '1'));
  call.write(ev('local:b', 'CURRENT', '5'));
  call.write(ev('local:a', 'NEW_VERSION', '2', '1'));
  call.write(ev('local:a', 'NEW_VERSION', '3', '2'));
  await sleep(300);
  assert.equal(brief(await nextEvent(watch)), 'CURRENT local:a v3=value-3');
  assert.equal(brief(await nextEvent(watch)), 'CURRENT local:b v5=value-5');
  // After delivery: NEW_VERSIONs fold into one, previous = the version last delivered.
  call.write(ev('local:a', 'NEW_VERSION', '4', '3'));
  call.write(ev('local:b', 'NEW_VERSION', '6', '5'));
  call.write(ev('local:a', 'NEW_VERSION', '5', '4'));
  call.write(ev('local:a', 'NEW_VERSION', '6', '5'));
  await sleep(300);
  assert.equal(brief(await nextEvent(watch)), 'NEW_VERSION local:a v6=value-6 prev 3');
  assert.equal(brief(await nextEvent(watch)), 'NEW_VERSION local:b v6=value-6 prev 5');
  // A deletion or a pending version in between is not folded over: the order stays true.
  call.write(ev('local:a', 'DELETED'));
  call.write(ev('local:a', 'NEW_VERSION', '1', ''));
  call.write(ev('local:a', 'PENDING_VERSION', undefined, '', '2'));
  call.write(ev('local:a', 'NEW_VERSION', '2', '1'));
  await sleep(300);
  assert.equal(brief(await nextEvent(watch)), 'DELETED local:a');
  assert.equal(brief(await nextEvent(watch)), 'NEW_VERSION local:a v1=value-1');
  assert.equal(brief(await nextEvent(watch)), 'PENDING_VERSION local:a pending 2');
  assert.equal(brief(await nextEvent(watch)), 'NEW_VERSION local:a v2=value-2 prev 1');
});

test('unread events of other references, or after a pending version, are not folded', async (t) => {
  const agent = await watchAgent();
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  const watch = client.watch(['local:a', 'local:b']);
  t.after(() => watch.close());
  await agent.called(1);
  const call = agent.calls[0]!;
  call.write(ev('local:a', 'CURRENT', '1'));
  call.write(ev('local:b', 'CURRENT', '1'));
  call.write(ev('local:a', 'PENDING_VERSION', undefined, '', '2'));
  await sleep(300);
  const got = [await nextEvent(watch), await nextEvent(watch), await nextEvent(watch)].map(brief);
  assert.deepEqual(got, ['CURRENT local:a v1=value-1', 'CURRENT local:b v1=value-1', 'PENDING_VERSION local:a pending 2']);
});

test('after the agent restarts, the watch reconnects and resumes with known_versions', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const first = await watchAgent(socket);
  const client = new PsstClient({ socket });
  t.after(() => client.close());
  const watch = client.watch(['local:a', 'local:b']);
  t.after(() => watch.close());
  await first.called(1);
  first.calls[0]!.write(ev('local:a', 'CURRENT', '1'));
  first.calls[0]!.write(ev('local:b', 'CURRENT', '1'));
  assert.equal(brief(await nextEvent(watch)), 'CURRENT local:a v1=value-1');
  // local:b v1 has arrived but is not delivered when the agent goes away.
  await sleep(200);
  await first.stop();
  fs.rmSync(socket, { force: true });
  const waiting = nextEvent(watch); // local:b, from the buffer
  assert.equal(brief(await waiting), 'CURRENT local:b v1=value-1');
  const resumed = nextEvent(watch, 8000); // reconnects: nothing listens for a while
  await sleep(400);
  const second = await watchAgent(socket);
  t.after(() => second.stop());
  await second.called(1);
  const call = second.calls[0]!;
  assert.deepEqual(call.request.references, ['local:a', 'local:b']);
  assert.deepEqual(call.request.knownVersions, { 'local:a': '1', 'local:b': '1' });
  call.write(ev('local:a', 'NEW_VERSION', '2', '1'));
  assert.equal(brief(await resumed), 'NEW_VERSION local:a v2=value-2 prev 1');
});

test('a stream that ends with UNAVAILABLE or a reset resumes from what was delivered', async (t) => {
  const agent = await watchAgent();
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());
  const watch = client.watch('local:a');
  t.after(() => watch.close());
  await agent.called(1);
  agent.calls[0]!.write(ev('local:a', 'CURRENT', '1'));
  agent.calls[0]!.write(ev('local:a', 'NEW_VERSION', '2', '1'));
  await sleep(200);
  agent.calls[0]!.emit('error', fail(Status.UNAVAILABLE, 'the agent is shutting down'));
  assert.equal(brief(await nextEvent(watch)), 'CURRENT local:a v2=value-2');
  const next = nextEvent(watch);
  await agent.called(2);
  assert.deepEqual(agent.calls[1]!.request.knownVersions, { 'local:a': '2' });
  agent.calls[1]!.emit('error', fail(Status.INTERNAL, 'stream reset'));
  await agent.called(3);
  assert.deepEqual(agent.calls[2]!.request.knownVersions, { 'local:a': '2' });
  agent.calls[2]!.write(ev('local:a', 'NEW_VERSION', '3', '2'));
  assert.equal(brief(await next), 'NEW_VERSION local:a v3=value-3 prev 2');
});

for (const [code, Subclass] of [
  [Status.PERMISSION_DENIED, PermissionDeniedError],
  [Status.NOT_FOUND, NotFoundError],
] as const) {
  test(`${Status[code]} ends the watch with ${Subclass.name}, after the events before it`, async (t) => {
    const agent = await watchAgent();
    t.after(() => agent.stop());
    const client = new PsstClient({ socket: agent.socket });
    t.after(() => client.close());
    const watch = client.watch('local:a');
    await agent.called(1);
    agent.calls[0]!.write(ev('local:a', 'CURRENT', '1'));
    agent.calls[0]!.emit('error', fail(code, 'no'));
    await sleep(200);
    assert.equal(brief(await nextEvent(watch)), 'CURRENT local:a v1=value-1');
    const error = await nextError(watch);
    assert.ok(error instanceof Subclass, String(error));
    assert.equal(error.details, 'no');
    assert.deepEqual(await watch.next(), { done: true, value: undefined });
    assert.equal(watch.closed, true);
    assert.equal(agent.calls.length, 1, 'no reconnect after a final error');
  });
}

test('reconnecting gives up after reconnectForMs with UnavailableError', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const agent = await watchAgent(socket);
  const client = new PsstClient({ socket });
  t.after(() => client.close());
  const watch = client.watch('local:a', { reconnectForMs: 300 });
  await agent.called(1);
  agent.calls[0]!.write(ev('local:a', 'CURRENT', '1'));
  assert.equal(brief(await nextEvent(watch)), 'CURRENT local:a v1=value-1');
  await agent.stop();
  const started = Date.now();
  const error = await nextError(watch, 10_000);
  const elapsed = Date.now() - started;
  assert.ok(error instanceof UnavailableError, String(error));
  assert.ok(elapsed >= 250 && elapsed < 4000, `gave up after ${elapsed} ms`);
  assert.equal(watch.closed, true);
});

test('a missing agent at the start is waited for, like the startup retry', async (t) => {
  const { dir, socket } = tempSocket();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const client = new PsstClient({ socket });
  t.after(() => client.close());
  const watch = client.watch('local:a');
  t.after(() => watch.close());
  const first = nextEvent(watch);
  await sleep(300);
  const agent = await watchAgent(socket);
  t.after(() => agent.stop());
  await agent.called(1);
  agent.calls.at(-1)!.write(ev('local:a', 'CURRENT', '1'));
  assert.equal(brief(await first), 'CURRENT local:a v1=value-1');
});

test('close() and break end the iteration; an AbortSignal ends it with CANCELLED', async (t) => {
  const agent = await watchAgent();
  t.after(() => agent.stop());
  const client = new PsstClient({ socket: agent.socket });
  t.after(() => client.close());

  const closed = client.watch('local:a');
  const pending = closed.next();
  await sleep(50);
  closed.close();
  assert.deepEqual(await pending, { done: true, value: undefined });
  assert.deepEqual(await closed.next(), { done: true, value: undefined });

  const looped = client.watch('local:a');
  await agent.called(2);
  agent.calls.at(-1)!.write(ev('local:a', 'CURRENT', '1'));
  const seen: string[] = [];
  for await (const event of looped) {
    seen.push(brief(event));
    break;
  }
  assert.deepEqual(seen, ['CURRENT local:a v1=value-1']);
  assert.equal(looped.closed, true);

  const controller = new AbortController();
  const aborted = client.watch('local:a', { signal: controller.signal });
  const waiting = aborted.next();
  await sleep(50);
  controller.abort();
  await assert.rejects(waiting, (err: unknown) => (err as PsstError).codeName === 'CANCELLED');
  assert.deepEqual(await aborted.next(), { done: true, value: undefined });

  const watch = client.watch('local:a');
  const last = watch.next();
  client.close();
  assert.deepEqual(await last, { done: true, value: undefined });
});

test('watch events never print the secret value', () => {
  const value = 'hunter2-watch-secret';
  const event = new WatchEvent({
    reference: 'local:a',
    kind: 'NEW_VERSION',
    secret: new Secret({ reference: 'local:a', value: Buffer.from(value), versionId: '2' }),
    previousVersionId: '1',
    observedAt: new Date(0),
  });
  for (const text of [String(event), `${event}`, JSON.stringify(event), JSON.stringify([event]), inspect(event), inspect([event], { depth: 5 })]) {
    assert.ok(!text.includes(value), text);
  }
  assert.match(String(event), /NEW_VERSION/);
  assert.match(JSON.stringify(event), /\[redacted\]/);
  assert.equal(event.secret?.text(), value);
});
