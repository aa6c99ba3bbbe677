// The shared peer-uid scenario of tests/conformance/with-fake-agent: a socket file owned by this
// runner's uid, in a directory of a throwaway user who serves it. Node cannot read the peer's
// credentials (see src/peer.ts), so this client judges the socket file and its directories: the
// impostor's directory gives it away, and the fake agent receives nothing, with the default
// expected uid and with PSST_EXPECTED_UID set to the runner's uid. With the check off the client
// connects and sends (the control that proves the test can fail).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { PsstClient, PsstError, UntrustedAgentError } from '@psst/client';

const socket = process.env.PSST_FAKE_SOCKET;
const receivedFile = process.env.PSST_FAKE_RECEIVED;
const received = () => Number(fs.readFileSync(receivedFile!, 'utf8').trim());

if (!socket) {
  const why = 'PSST_FAKE_SOCKET is not set: run under tests/conformance/with-fake-agent (as root)';
  if (process.env.PSST_REQUIRE_FAKE_AGENT) test('shared fake agent', () => assert.fail(`${why} (PSST_REQUIRE_FAKE_AGENT is set)`));
  else test('shared fake agent', { skip: why }, () => {});
} else {
  test('the default expected uid refuses the impostor, and it receives nothing', async () => {
    const client = new PsstClient({ socket, timeoutMs: 10_000 });
    const started = Date.now();
    await assert.rejects(client.put('local:a', 'secret value'), (err: unknown) => {
      assert.ok(err instanceof UntrustedAgentError, String(err));
      assert.equal((err as PsstError).codeName, 'UNAUTHENTICATED');
      assert.match(
        (err as PsstError).details,
        new RegExp(`belongs to uid ${process.env.PSST_FAKE_UID}, who could replace the socket \\(the agent is expected to run as uid ${process.getuid!()}\\)`),
      );
      return true;
    });
    assert.ok(Date.now() - started < 3000, 'the refusal waited for the deadline');
    client.close();
    assert.equal(received(), 0);
  });

  test('PSST_EXPECTED_UID set to the runner refuses the impostor, and it receives nothing', async () => {
    process.env.PSST_EXPECTED_UID = String(process.getuid!());
    const client = new PsstClient({ socket, timeoutMs: 3000 });
    delete process.env.PSST_EXPECTED_UID;
    await assert.rejects(client.put('local:a', 'secret value'), UntrustedAgentError);
    client.close();
    assert.equal(received(), 0);
  });

  test('with the check off the client sends (the control)', async () => {
    const client = new PsstClient({ socket, timeoutMs: 1000, expectedUid: false });
    await assert.rejects(client.get('local:a'), (err: unknown) => !(err instanceof UntrustedAgentError));
    client.close();
    for (let i = 0; received() === 0; i++) {
      assert.ok(i < 250, 'the control sent nothing: the test could not fail');
      await sleep(20);
    }
  });
}
