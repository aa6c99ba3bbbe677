// A stand-in agent for the socket-check tests, run as another user: serves GetSecret with a
// value of its own on the socket given as argv[2], prints "ready", and runs until killed.
import { startFakeAgent } from './helpers';

void startFakeAgent(
  { GetSecret: (call, cb) => cb(null, { reference: call.request.reference, value: Buffer.from('stolen'), versionId: '1' }) },
  process.argv[2],
).then(() => process.stdout.write('ready\n'));
