// Who serves the socket (issue #14, item 4): an agent run by another user is refused before
// anything is sent, and so is a socket in a directory other users can write. The impostor is a
// real gRPC server run as a user made for the test (useradd; removed afterwards), and the same
// client without the check gets its value, so the refusal is the check's doing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { PsstClient, UntrustedAgentError } from '@psst/client';

import { startFakeAgent } from './helpers';

const asRoot = process.getuid?.() === 0;
const user = `psstts${process.pid}`;

/** Runs the fake server as `user` on `socket`; resolves once it listens. */
async function impostor(socket: string): Promise<ChildProcess> {
  const child = spawn('runuser', ['-u', user, '--', process.execPath, path.join(__dirname, 'fake-server.js'), socket], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`the impostor exited with ${code}`)));
    child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
  });
  return child;
}

test('socket check against an agent run by another user', { skip: asRoot ? false : 'needs root (useradd, runuser)' }, async (t) => {
  // A shared directory like /tmp: root's, sticky, writable by all, so the other user can bind in it.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psst-peer-'));
  execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  const children: ChildProcess[] = [];
  // One hook, in order: the user's processes end before the user is removed.
  t.after(async () => {
    await Promise.all(children.map((c) => new Promise((resolve) => (c.exitCode !== null ? resolve(null) : (c.on('exit', resolve), c.kill())))));
    execFileSync('userdel', [user]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
  fs.chmodSync(dir, 0o1777);
  const socket = path.join(dir, 'psst.sock');

  await t.test('an expected uid refuses the impostor at once, and nothing is sent', async () => {
    children.push(await impostor(socket));
    const client = new PsstClient({ socket, expectedUid: 0, timeoutMs: 5000 });
    const started = Date.now();
    await assert.rejects(client.get('local:a'), (err: unknown) => {
      assert.ok(err instanceof UntrustedAgentError, String(err));
      assert.match((err as UntrustedAgentError).details, new RegExp(`belongs to uid ${uid}, not the expected uid 0`));
      return true;
    });
    assert.ok(Date.now() - started < 2000, 'the refusal waited for the deadline');
    client.close();
    // The same client without the check talks to the impostor: the refusal above was the check's.
    const unchecked = new PsstClient({ socket, expectedUid: false });
    assert.equal((await unchecked.get('local:a')).text(), 'stolen');
    unchecked.close();
    const fromEnv = new PsstClient({ socket, timeoutMs: 2000 });
    process.env.PSST_EXPECTED_UID = '0';
    const pinned = new PsstClient({ socket, timeoutMs: 2000 });
    delete process.env.PSST_EXPECTED_UID;
    await assert.rejects(pinned.get('local:a'), UntrustedAgentError);
    pinned.close();
    // Without an expected uid the first owner seen is trusted: here, the impostor.
    assert.equal((await fromEnv.get('local:a')).text(), 'stolen');
    fromEnv.close();
    const done = children.pop()!;
    await new Promise((resolve) => (done.on('exit', resolve), done.kill()));
    fs.rmSync(socket, { force: true });
  });

  await t.test('the owner first seen is pinned: an impostor taking over the socket later is refused', async () => {
    const agent = await startFakeAgent(
      { GetSecret: (call, cb) => cb(null, { reference: call.request.reference, value: Buffer.from('real'), versionId: '1' }) },
      socket,
    );
    const client = new PsstClient({ socket, timeoutMs: 3000 });
    t.after(() => client.close());
    assert.equal((await client.get('local:a')).text(), 'real');
    await agent.stop();
    fs.rmSync(socket, { force: true });
    children.push(await impostor(socket));
    await assert.rejects(client.get('local:a'), (err: unknown) => {
      assert.ok(err instanceof UntrustedAgentError, String(err));
      assert.match((err as UntrustedAgentError).details, new RegExp(`uid ${uid}, not the expected uid 0`));
      return true;
    });
  });
});

test('a socket in a directory other users can write is refused', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psst-peer-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const agent = await startFakeAgent(
    { GetSecret: (call, cb) => cb(null, { reference: call.request.reference, value: Buffer.from('v'), versionId: '1' }) },
    path.join(dir, 'psst.sock'),
  );
  t.after(() => agent.stop());
  fs.chmodSync(dir, 0o777);
  const client = new PsstClient({ socket: agent.socket, timeoutMs: 3000 });
  t.after(() => client.close());
  await assert.rejects(client.get('local:a'), (err: unknown) => {
    assert.ok(err instanceof UntrustedAgentError, String(err));
    assert.match((err as UntrustedAgentError).details, /is writable by other users/);
    return true;
  });
  fs.chmodSync(dir, 0o755);
  assert.equal((await client.get('local:a')).text(), 'v');
});
