import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';

import { DEFAULT_RETRY, DEFAULT_SOCKET, PsstClient, SOCKET_ENV, backoffDelayMs, resolveExpectedUid, resolveRetry, resolveSocketPath } from '@psst/client';

test('socket: explicit beats $PSST_SOCKET beats the default', () => {
  assert.equal(SOCKET_ENV, 'PSST_SOCKET');
  assert.equal(DEFAULT_SOCKET, '/run/psst/psst.sock');
  assert.equal(resolveSocketPath(undefined, {}), '/run/psst/psst.sock');
  assert.equal(resolveSocketPath(undefined, { PSST_SOCKET: '/tmp/a.sock' }), '/tmp/a.sock');
  assert.equal(resolveSocketPath('/tmp/b.sock', { PSST_SOCKET: '/tmp/a.sock' }), '/tmp/b.sock');
  assert.equal(resolveSocketPath(undefined, { PSST_SOCKET: '' }), '/run/psst/psst.sock');
  assert.equal(resolveSocketPath('rel/psst.sock', {}), path.resolve('rel/psst.sock'));
});

test('the client reads $PSST_SOCKET when no socket is given', (t) => {
  const saved = process.env.PSST_SOCKET;
  t.after(() => {
    if (saved === undefined) delete process.env.PSST_SOCKET;
    else process.env.PSST_SOCKET = saved;
  });
  process.env.PSST_SOCKET = '/tmp/from-env.sock';
  const fromEnv = new PsstClient();
  assert.equal(fromEnv.socket, '/tmp/from-env.sock');
  fromEnv.close();
  const explicit = new PsstClient({ socket: '/tmp/explicit.sock' });
  assert.equal(explicit.socket, '/tmp/explicit.sock');
  explicit.close();
  delete process.env.PSST_SOCKET;
  const fallback = new PsstClient();
  assert.equal(fallback.socket, '/run/psst/psst.sock');
  fallback.close();
});

test('backoff grows exponentially, is capped, and jitters within bounds', () => {
  const r = resolveRetry({ initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, jitter: 0 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((a) => backoffDelayMs(a, r, 1000)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([9, 10, 20].map((a) => backoffDelayMs(a, r, 30_000)), [25_600, 30_000, 30_000]);
  const j = resolveRetry({ initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, jitter: 0.5 });
  assert.equal(backoffDelayMs(1, j, 1000, () => 0), 50);
  assert.equal(backoffDelayMs(1, j, 1000, () => 1), 150);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelayMs(3, j, 1000);
    assert.ok(d >= 200 && d <= 600, String(d));
  }
});

test('retry options: defaults, false, and validation', () => {
  assert.deepEqual(resolveRetry(undefined), { ...DEFAULT_RETRY });
  assert.deepEqual(resolveRetry(false), { ...DEFAULT_RETRY });
  assert.throws(() => resolveRetry({ jitter: 2 }), RangeError);
  assert.throws(() => resolveRetry({ initialDelayMs: 10, maxDelayMs: 5 }), RangeError);
  assert.throws(() => resolveRetry({ maxDelayMs: 31_000 }), RangeError);
  assert.throws(() => resolveRetry({ multiplier: 0.5 }), RangeError);
  assert.throws(() => new PsstClient({ socket: '/tmp/x.sock', retry: { jitter: -1 } }), RangeError);
  assert.throws(() => new PsstClient({ socket: '/tmp/x.sock', timeoutMs: 0 }), RangeError);
});

test('expected uid: option, $PSST_EXPECTED_UID, off, and validation', () => {
  assert.equal(resolveExpectedUid(undefined, {}), undefined);
  assert.equal(resolveExpectedUid(false, { PSST_EXPECTED_UID: '5' }), false);
  assert.equal(resolveExpectedUid(7, { PSST_EXPECTED_UID: '5' }), 7);
  assert.equal(resolveExpectedUid(undefined, { PSST_EXPECTED_UID: '5' }), 5);
  assert.equal(resolveExpectedUid(undefined, { PSST_EXPECTED_UID: 'off' }), false);
  assert.throws(() => resolveExpectedUid(undefined, { PSST_EXPECTED_UID: 'psst' }), RangeError);
  assert.throws(() => resolveExpectedUid(-1, {}), RangeError);
});
