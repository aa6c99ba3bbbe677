// The shared conformance scenarios (tests/conformance/scenarios.json), run through this client
// against a live agent started by tests/conformance/with-agent, which sets PSST_CONFORMANCE and
// PSST_SOCKET.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
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
} from '@psst/client';

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

const file = process.env.PSST_CONFORMANCE;
if (!file) {
  test('conformance scenarios', { skip: 'PSST_CONFORMANCE is not set: run under tests/conformance/with-agent (see test.sh)' }, () => {});
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
