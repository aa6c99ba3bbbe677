import * as path from 'node:path';

import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';

import { descriptor } from './generated/descriptor';
import type { ProtoGrpcType as PsstProto } from './generated/psst';
import type { ProtoGrpcType as HealthProto } from './generated/health';

/** Where the agent listens unless told otherwise. */
export const DEFAULT_SOCKET = '/run/psst/psst.sock';
/** The environment variable naming the socket. */
export const SOCKET_ENV = 'PSST_SOCKET';

/**
 * The socket path: the one given, else `$PSST_SOCKET` (when set and not empty), else
 * `/run/psst/psst.sock`. Relative paths are resolved against the working directory.
 */
export function resolveSocketPath(socket?: string, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = socket || env[SOCKET_ENV] || DEFAULT_SOCKET;
  return path.resolve(chosen);
}

/** The grpc-js target for a socket path. */
export function socketTarget(socketPath: string): string {
  return `unix:${socketPath}`;
}

/** Must match the options scripts/gen.sh passes to proto-loader-gen-types. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export type Protos = PsstProto & HealthProto;

let loaded: Protos | undefined;

/** Builds psst.v1 and grpc.health.v1 from the generated descriptor, once per process: no file is read. */
export function loadProtos(): Protos {
  if (!loaded) {
    const definition = protoLoader.fromJSON(descriptor as Parameters<typeof protoLoader.fromJSON>[0], LOADER_OPTIONS);
    loaded = grpc.loadPackageDefinition(definition) as unknown as Protos;
  }
  return loaded;
}
