// What the conformance scenarios do not cover, against the same live agent: health, whoami, put,
// and the :authority the agent's HTTP/2 server accepts. Writes only under local:scratch/, which
// the conformance policy lets the runner write but not read or list, so the scenarios are unaffected.
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { PermissionDeniedError, PsstClient, PsstError } from '@psst/client';

import { withoutAgent } from './helpers';

if (!process.env.PSST_CONFORMANCE) {
  withoutAgent('live agent', 'PSST_CONFORMANCE');
} else {
  describe('live agent', () => {
    let client: PsstClient;
    before(() => {
      client = new PsstClient();
    });
    after(() => client.close());

    test('health is SERVING', async () => {
      assert.equal(await client.health(), 'SERVING');
    });

    test('whoami names this process and the conformance rule', async () => {
      const me = await client.whoami();
      assert.equal(me.caller?.uid, process.getuid!());
      assert.equal(me.caller?.pid, process.pid);
      assert.deepEqual(me.matchedRules, ['conformance runner']);
      const read = me.grants.find((g) => g.operation === 'read');
      // The grants the conformance agent's policy gives: the one rule in scenarios.json.
      const spec = JSON.parse(readFileSync(process.env.PSST_CONFORMANCE!, 'utf8'));
      const want: string[] = spec.policy.allow.read;
      assert.ok(want.length > 0);
      assert.deepEqual(read?.patterns, want);
    });

    test('put writes new versions; reading them back is denied by the policy', async () => {
      const reference = `local:scratch/ts-${process.pid}`;
      const first = await client.put(reference, 'one');
      assert.equal(first.versionId, '1');
      assert.equal(first.reference, `${reference}?version=1`);
      assert.ok(first.createdAt instanceof Date);
      const second = await client.put(reference, Buffer.from('two'));
      assert.equal(second.versionId, '2');
      await assert.rejects(client.get(reference), PermissionDeniedError);
    });

    test('a put with a selector is INVALID_ARGUMENT', async () => {
      await assert.rejects(client.put('local:scratch/x?version=1', 'v'), (err: unknown) => {
        assert.equal((err as PsstError).codeName, 'INVALID_ARGUMENT');
        return true;
      });
    });

    test('the agent also answers with the socket path as :authority', async () => {
      // The agent's h2 is patched (third_party/h2/PSST-PATCH.md) to ignore an :authority that
      // does not parse, so that stock gRPC tools reach it; agents before that reset the stream,
      // which is why the client sends localhost. If the agent goes back to refusing it, this says so.
      const other = new PsstClient({ retry: false, channelOptions: { 'grpc.default_authority': client.socket } });
      try {
        assert.equal(await other.health(), 'SERVING');
      } finally {
        other.close();
      }
    });
  });
}
