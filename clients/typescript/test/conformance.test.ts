// The shared conformance scenarios (tests/conformance/scenarios.json, and the watch scenarios in
// watch-scenarios.json), run through this client against a live agent started by
// tests/conformance/with-agent, which sets PSST_CONFORMANCE, PSST_CONFORMANCE_WATCH,
// PSST_RESTART_AGENT and PSST_SOCKET.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  PsstClient,
  PsstError,
  ResourceExhaustedError,
  Secret,
  UnauthenticatedError,
  UnavailableError,
  type Watch,
  type WatchEvent,
} from '@psst/client';

import { withoutAgent } from './helpers';

type Expect = Record<string, unknown>;
interface Scenario {
  name: string;
  call: string;
  reference?: string;
  references?: string[];
  prefix?: string;
  expect: Expect;
}

const SUBCLASS: Record<string, Function> = {
  INVALID_ARGUMENT: InvalidArgumentError,
  PERMISSION_DENIED: PermissionDeniedError,
  NOT_FOUND: NotFoundError,
  UNAVAILABLE: UnavailableError,
  UNAUTHENTICATED: UnauthenticatedError,
  FAILED_PRECONDITION: FailedPreconditionError,
  RESOURCE_EXHAUSTED: ResourceExhaustedError,
};

function onlyKeys(expect: Expect, allowed: string[], where: string): void {
  const keys = Object.keys(expect);
  assert.ok(keys.length > 0, `${where}: empty expectation`);
  for (const key of keys) assert.ok(allowed.includes(key), `${where}: unknown expectation key ${JSON.stringify(key)}`);
}

function assertCode(outcome: unknown, code: unknown, where: string): void {
  assert.ok(outcome instanceof PsstError, `${where}: expected ${String(code)}, got ${String(outcome)}`);
  assert.equal(outcome.codeName, code, `${where}: code`);
  const Subclass = SUBCLASS[String(code)];
  if (Subclass) assert.ok(outcome instanceof Subclass, `${where}: expected a ${Subclass.name}, got ${outcome.name}`);
}

/** One secret-or-error against {value?, version_id?} or {code}. */
function assertItem(outcome: Secret | PsstError, expect: Expect, where: string): void {
  onlyKeys(expect, ['value', 'version_id', 'code'], where);
  if ('code' in expect) {
    assertCode(outcome, expect.code, where);
    return;
  }
  assert.ok(outcome instanceof Secret, `${where}: expected a secret, got ${String(outcome)}`);
  if ('value' in expect) assert.equal(outcome.text(), expect.value, `${where}: value`);
  if ('version_id' in expect) assert.equal(outcome.versionId, expect.version_id, `${where}: version_id`);
}

async function settle<T>(promise: Promise<T>): Promise<T | PsstError> {
  try {
    return await promise;
  } catch (err) {
    if (err instanceof PsstError) return err;
    throw err;
  }
}

async function run(client: PsstClient, s: Scenario): Promise<void> {
  switch (s.call) {
    case 'get': {
      assert.equal(typeof s.reference, 'string', 'get needs a reference');
      assertItem(await settle(client.get(s.reference!)), s.expect, s.name);
      return;
    }
    case 'batch_get': {
      assert.ok(Array.isArray(s.references), 'batch_get needs references');
      onlyKeys(s.expect, ['results', 'code'], s.name);
      const outcome = await settle(client.batchGet(s.references!));
      if ('code' in s.expect) return assertCode(outcome, s.expect.code, s.name);
      assert.ok(Array.isArray(outcome), `${s.name}: the batch failed: ${String(outcome)}`);
      const expected = s.expect.results as Expect[];
      assert.equal(outcome.length, expected.length, `${s.name}: number of results`);
      expected.forEach((e, i) => assertItem(outcome[i]!, e, `${s.name} [${i}] ${s.references![i]}`));
      return;
    }
    case 'list': {
      assert.equal(typeof s.prefix, 'string', 'list needs a prefix');
      onlyKeys(s.expect, ['references', 'code'], s.name);
      const outcome = await settle(client.list(s.prefix!));
      if ('code' in s.expect) return assertCode(outcome, s.expect.code, s.name);
      assert.ok(Array.isArray(outcome), `${s.name}: the list failed: ${String(outcome)}`);
      assert.deepEqual(outcome.map((m) => m.reference), s.expect.references, `${s.name}: references`);
      return;
    }
    default:
      assert.fail(`${s.name}: unknown call ${JSON.stringify(s.call)}: teach this runner about it`);
  }
}

interface WatchScenario {
  name: string;
  call: string;
  reference: string;
  steps: Array<Record<string, unknown>>;
}

/** How long an expect_event (or expect_error) step waits. */
const WATCH_STEP_MS = 10_000;

/** The watch's next item within WATCH_STEP_MS: an event, the end, or the error it ended with. */
async function nextWithin(watch: Watch, where: string): Promise<WatchEvent | PsstError> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${where}: nothing within ${WATCH_STEP_MS} ms`)), WATCH_STEP_MS);
  });
  try {
    const result = await settle(Promise.race([watch.next(), timeout]));
    if (result instanceof PsstError) return result;
    assert.equal(result.done, false, `${where}: the watch ended`);
    return result.value as WatchEvent;
  } finally {
    clearTimeout(timer);
  }
}

async function runWatch(s: WatchScenario): Promise<void> {
  assert.equal(s.call, 'watch', `${s.name}: unknown call ${JSON.stringify(s.call)}: teach this runner about it`);
  assert.equal(typeof s.reference, 'string', `${s.name}: watch needs a reference`);
  assert.ok(Array.isArray(s.steps) && s.steps.length > 0, `${s.name}: no steps`);
  // The watch has a client of its own; puts go through another one, made anew after a restart
  // (as the Rust runner does), so that only the watch has to find its way back.
  const watcher = new PsstClient();
  let writer = new PsstClient();
  const watch = watcher.watch([s.reference]);
  try {
    for (const [i, step] of s.steps.entries()) {
      const where = `${s.name}: step ${i + 1}`;
      const keys = Object.keys(step);
      assert.equal(keys.length, 1, `${where}: a step has one key, got ${JSON.stringify(keys)}`);
      if ('expect_event' in step) {
        const expect = step.expect_event as Expect;
        onlyKeys(expect, ['kind', 'value', 'version_id', 'previous_version_id'], where);
        const event = await nextWithin(watch, where);
        assert.ok(!(event instanceof PsstError), `${where}: expected an event, got ${String(event)}`);
        assert.equal(event.reference, s.reference, `${where}: reference`);
        if ('kind' in expect) assert.equal(event.kind, expect.kind, `${where}: kind`);
        if ('value' in expect || 'version_id' in expect) assert.ok(event.secret, `${where}: the event has no secret`);
        if ('value' in expect) assert.equal(event.secret!.text(), expect.value, `${where}: value`);
        if ('version_id' in expect) assert.equal(event.secret!.versionId, expect.version_id, `${where}: version_id`);
        if ('previous_version_id' in expect) {
          assert.equal(event.previousVersionId, expect.previous_version_id, `${where}: previous_version_id`);
        }
      } else if ('put' in step) {
        assert.equal(typeof step.put, 'string', `${where}: put needs a value`);
        await writer.put(s.reference, step.put as string);
      } else if ('restart_agent' in step) {
        const restart = process.env.PSST_RESTART_AGENT;
        assert.ok(restart, `${where}: PSST_RESTART_AGENT is not set: run under tests/conformance/with-agent`);
        // Asynchronously: the event loop must keep running, so that the client sees the agent go.
        const status = await new Promise<number | null>((resolve, reject) => {
          spawn(restart!, { stdio: 'inherit' }).on('error', reject).on('exit', resolve);
        });
        assert.equal(status, 0, `${where}: ${restart} failed`);
        writer.close();
        writer = new PsstClient();
      } else if ('expect_error' in step) {
        const outcome = await nextWithin(watch, where);
        assertCode(outcome, step.expect_error, where);
      } else {
        assert.fail(`${where}: unknown step ${JSON.stringify(step)}: teach this runner about it`);
      }
    }
  } finally {
    watch.close();
    watcher.close();
    writer.close();
  }
}

const file = process.env.PSST_CONFORMANCE;
if (!file) {
  withoutAgent('conformance scenarios', 'PSST_CONFORMANCE');
} else {
  const spec = JSON.parse(readFileSync(file, 'utf8')) as { scenarios: Scenario[] };
  describe('conformance', () => {
    let client: PsstClient;
    before(() => {
      client = new PsstClient();
    });
    after(() => client.close());
    test('the scenario file has scenarios', () => {
      assert.ok(Array.isArray(spec.scenarios) && spec.scenarios.length > 0);
    });
    for (const scenario of spec.scenarios) {
      test(scenario.name, () => run(client, scenario));
    }
  });
}

const watchFile = process.env.PSST_CONFORMANCE_WATCH;
if (!watchFile) {
  withoutAgent('watch conformance scenarios', 'PSST_CONFORMANCE_WATCH');
} else {
  const spec = JSON.parse(readFileSync(watchFile, 'utf8')) as { scenarios: WatchScenario[] };
  describe('watch conformance', () => {
    test('the watch scenario file has scenarios', () => {
      assert.ok(Array.isArray(spec.scenarios) && spec.scenarios.length > 0);
    });
    for (const scenario of spec.scenarios) {
      test(scenario.name, () => runWatch(scenario));
    }
  });
}
