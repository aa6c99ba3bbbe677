// A fake agent for the unit tests: a grpc-js server on a temp Unix socket serving psst.v1.Secrets
// and grpc.health.v1.Health with handlers the test chooses.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');

function load(): any {
  const definition = protoLoader.loadSync(['psst/v1/psst.proto', 'grpc/health/v1/health.proto'], {
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [PROTO_DIR],
  });
  return grpc.loadPackageDefinition(definition);
}

export type Handlers = Partial<Record<'GetSecret' | 'BatchGetSecrets' | 'ListSecrets' | 'PutSecret' | 'WhoAmI', grpc.handleUnaryCall<any, any>>> & {
  WatchSecrets?: grpc.handleServerStreamingCall<any, any>;
};

/** A fresh temp dir and a socket path inside it that nothing listens on. */
export function tempSocket(): { dir: string; socket: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psst-ts-test-'));
  return { dir, socket: path.join(dir, 'psst.sock') };
}

export interface FakeAgent {
  socket: string;
  /** The :authority of every request the fake agent saw. */
  authorities: string[];
  stop(): Promise<void>;
}

const unimplemented: grpc.handleUnaryCall<any, any> = (_call, cb) =>
  cb({ code: grpc.status.UNIMPLEMENTED, details: 'not in this fake' } as grpc.ServiceError);

export async function startFakeAgent(handlers: Handlers, socket?: string): Promise<FakeAgent> {
  const protos = load();
  const where = socket ?? tempSocket().socket;
  const authorities: string[] = [];
  const record = <T extends grpc.handleUnaryCall<any, any>>(h: T): T =>
    ((call: any, cb: any) => {
      authorities.push(call.getHost());
      return h(call, cb);
    }) as T;
  const server = new grpc.Server();
  server.addService(protos.psst.v1.Secrets.service, {
    GetSecret: record(handlers.GetSecret ?? unimplemented),
    BatchGetSecrets: record(handlers.BatchGetSecrets ?? unimplemented),
    ListSecrets: record(handlers.ListSecrets ?? unimplemented),
    PutSecret: record(handlers.PutSecret ?? unimplemented),
    WhoAmI: record(handlers.WhoAmI ?? unimplemented),
    WatchSecrets: (call: grpc.ServerWritableStream<any, any>) => {
      authorities.push(call.getHost());
      if (handlers.WatchSecrets) handlers.WatchSecrets(call);
      else call.emit('error', fail(grpc.status.UNIMPLEMENTED, 'not in this fake'));
    },
  });
  server.addService(protos.grpc.health.v1.Health.service, {
    Check: record((_call: any, cb: any) => cb(null, { status: 'SERVING' })),
    Watch: (call: any) => call.end(),
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${where}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  return {
    socket: where,
    authorities,
    stop: async () => server.forceShutdown(),
  };
}

export function fail(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** Stands in for a live suite when `variable` is missing: skipped, or failed when
 * PSST_REQUIRE_AGENT is set (test.sh sets it), so the live suites are never skipped silently. */
export function withoutAgent(name: string, variable: string): void {
  const why = `${variable} is not set: run under tests/conformance/with-agent (see test.sh)`;
  if (process.env.PSST_REQUIRE_AGENT) {
    test(name, () => assert.fail(`${why} (PSST_REQUIRE_AGENT is set)`));
  } else {
    test(name, { skip: why }, () => {});
  }
}
