// The shared resilience and Source scenarios (tests/conformance/restart-scenarios.json and
// source-scenarios.json; tests/conformance/README.md defines every call and step), run through
// this client against the live agent of tests/conformance/with-agent.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { PsstClient, PsstError, type Source, type SourceUpdate, type Watch, type WatchEvent, type WatchStatus } from '@psst/client';

import { withoutAgent } from './helpers';

type Json = Record<string, any>;

/** Runs one of with-agent's commands without blocking the event loop (the client must keep running). */
async function run(variable: string, ...args: string[]): Promise<void> {
  const command = process.env[variable];
  assert.ok(command, `${variable} is not set: run under tests/conformance/with-agent`);
  const status = await new Promise<number | null>((resolve, reject) => {
    spawn(command, args, { stdio: 'inherit' }).on('error', reject).on('exit', resolve);
  });
  assert.equal(status, 0, `${variable} ${args.join(' ')} failed`);
}

/** Waits until `check()` holds, polling, for at most `ms`. */
async function eventually(ms: number, check: () => boolean, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    assert.ok(Date.now() < until, `${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

/** The next value-carrying event of `watch` within `ms`, or the error that ended it. */
async function nextValue(watch: Watch, ms: number, where: string): Promise<WatchEvent> {
  const timeout = sleep(ms).then(() => assert.fail(`${where}: no event within ${ms} ms`));
  for (;;) {
    const next = await Promise.race([watch.next(), timeout]);
    assert.ok(!next.done, `${where}: the watch ended`);
    if (next.value.secret) return next.value;
  }
}

function assertEvent(event: WatchEvent, expect: Json, where: string): void {
  if ('kind' in expect) assert.equal(event.kind, expect.kind, `${where}: kind`);
  if ('value' in expect) assert.equal(event.secret?.text(), expect.value, `${where}: value`);
  if ('version_id' in expect) assert.equal(event.secret?.versionId, expect.version_id, `${where}: version_id`);
  if ('previous_version_id' in expect) assert.equal(event.previousVersionId, expect.previous_version_id, `${where}: previous_version_id`);
}

async function restart(s: Json): Promise<void> {
  const client = new PsstClient();
  const statuses: WatchStatus[] = [];
  const watch = client.watch(s.watch, { onStatus: (status) => statuses.push(status) });
  let watchError: unknown;
  try {
    assertEvent(await nextValue(watch, 10_000, 'current'), { kind: 'CURRENT', ...s.expect_current }, 'current');
    // The reader keeps reading while the agent is down: an error would end the watch.
    const after = nextValue(watch, (s.down_seconds + 30) * 1000, 'after').catch((err) => {
      watchError = err;
      throw err;
    });
    await run('PSST_STOP_AGENT');
    const t0 = Date.now();
    const getters = Array.from({ length: s.getters }, () => client.get(s.get, { timeoutMs: s.get_deadline_seconds * 1000 }));
    const shortStarted = Date.now();
    const short = await client.get(s.get, { timeoutMs: s.short_get_deadline_seconds * 1000 }).then(
      (secret) => assert.fail(`the short get succeeded while the agent was down: ${String(secret)}`),
      (err: unknown) => err,
    );
    assert.ok(short instanceof PsstError, String(short));
    assert.ok(s.expect_short_get_error.includes(short.codeName), `short get: ${short.codeName}`);
    assert.ok(Date.now() - shortStarted <= (s.short_get_deadline_seconds + 2) * 1000, 'the short get overran its deadline');
    await eventually(10_000 - (Date.now() - t0), () => statuses.some((st) => !st.reachable), 'status: unreachable');
    assert.equal(watch.closed, false, 'the watch ended while the agent was down');
    assert.equal(watchError, undefined);
    await sleep(Math.max(0, s.down_seconds * 1000 - (Date.now() - t0)));
    await run('PSST_START_AGENT');
    for (const secret of await Promise.all(getters)) assert.equal(secret.text(), s.expect_get.value, 'getter value');
    await client.put(s.watch, s.put_after);
    assertEvent(await after, s.expect_after, 'after the restart');
    assert.equal(statuses.at(-1)?.reachable, true, 'status: reachable again');
  } finally {
    watch.close();
    client.close();
  }
}

async function giveUp(s: Json): Promise<void> {
  const client = new PsstClient();
  const watch = client.watch(s.watch, { reconnectForMs: s.give_up_after_seconds * 1000 });
  try {
    assertEvent(await nextValue(watch, 10_000, 'current'), { kind: 'CURRENT', ...s.expect_current }, 'current');
    const started = Date.now();
    const restarting = run('PSST_RESTART_AGENT', String(s.down_seconds));
    const error = await nextValue(watch, s.expect_error_within_seconds * 1000, 'give up').then(
      (event) => assert.fail(`expected ${s.expect_error}, got ${String(event)}`),
      (err: unknown) => err,
    );
    assert.ok(error instanceof PsstError, String(error));
    assert.equal(error.codeName, s.expect_error);
    assert.ok(Date.now() - started <= s.expect_error_within_seconds * 1000);
    await restarting;
  } finally {
    watch.close();
    client.close();
  }
}

async function source(s: Json): Promise<void> {
  const client = new PsstClient();
  let src: Source | undefined;
  let updates: AsyncIterableIterator<SourceUpdate> | undefined;
  try {
    for (const [i, step] of (s.steps as Json[]).entries()) {
      const where = `step ${i + 1} ${JSON.stringify(step)}`;
      if ('expect_open_error' in step) {
        const error = await client.source(s.reference).then(
          (opened) => {
            opened.close();
            assert.fail(`${where}: the Source opened`);
          },
          (err: unknown) => err,
        );
        assert.ok(error instanceof PsstError, String(error));
        assert.equal(error.codeName, step.expect_open_error, where);
        continue;
      }
      if (!src) {
        src = await client.source(s.reference);
        // Read from the moment it opens, so that no update is missed between steps.
        updates = src[Symbol.asyncIterator]();
      }
      const opened: Source = src;
      if ('expect_value' in step) {
        assert.equal(opened.get(s.reference).text(), step.expect_value, where);
      } else if ('aws_put' in step) {
        await run('PSST_AWS_PUT', s.reference, step.aws_put);
      } else if ('expect_update' in step) {
        const timeout = sleep(15_000).then(() => assert.fail(`${where}: no update within 15 s`));
        for (;;) {
          const next = await Promise.race([updates!.next(), timeout]);
          assert.ok(!next.done, `${where}: the Source closed`);
          const update: SourceUpdate = next.value;
          if (update.reference === s.reference && update.secret.text() === step.expect_update) break;
        }
      } else if ('stop_agent' in step) {
        await run('PSST_STOP_AGENT');
      } else if ('start_agent' in step) {
        await run('PSST_START_AGENT');
      } else if ('expect_unreachable' in step) {
        await eventually(10_000, () => opened.status?.reachable === false, `${where}: status`);
        assert.equal(opened.closed, false);
      } else {
        assert.fail(`${where}: unknown step: teach this runner about it`);
      }
    }
  } finally {
    src?.close();
    client.close();
  }
}

const restartFile = process.env.PSST_CONFORMANCE_RESTART;
if (!restartFile) {
  withoutAgent('restart conformance scenarios', 'PSST_CONFORMANCE_RESTART');
} else {
  const spec = JSON.parse(readFileSync(restartFile, 'utf8')) as { scenarios: Json[] };
  describe('restart conformance', () => {
    test('the scenario file has scenarios', () => assert.ok(spec.scenarios.length > 0));
    for (const s of spec.scenarios) {
      const runner = s.call === 'restart' ? restart : s.call === 'give_up' ? giveUp : undefined;
      test(s.name, () => (runner ? runner(s) : assert.fail(`unknown call ${JSON.stringify(s.call)}: teach this runner about it`)));
    }
  });
}

const sourceFile = process.env.PSST_CONFORMANCE_SOURCE;
if (!sourceFile) {
  withoutAgent('Source conformance scenarios', 'PSST_CONFORMANCE_SOURCE');
} else {
  const spec = JSON.parse(readFileSync(sourceFile, 'utf8')) as { scenarios: Json[] };
  describe('Source conformance', () => {
    test('the scenario file has scenarios', () => assert.ok(spec.scenarios.length > 0));
    for (const s of spec.scenarios) {
      test(s.name, () => (s.call === 'source' ? source(s) : assert.fail(`unknown call ${JSON.stringify(s.call)}`)));
    }
  });
}
