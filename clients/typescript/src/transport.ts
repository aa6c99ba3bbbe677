import * as path from 'node:path';

import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';

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

/** The .proto files shipped in the package (copied from the repository's proto/ by scripts/gen.sh). */
export const PROTO_DIR = path.resolve(__dirname, '..', 'proto');

/** Must match the options scripts/gen.sh passes to proto-loader-gen-types. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

export type Protos = PsstProto & HealthProto;

let loaded: Protos | undefined;

/** Loads psst.v1 and grpc.health.v1 from the shipped .proto files, once per process. */
export function loadProtos(): Protos {
  if (!loaded) {
    const definition = protoLoader.loadSync(['psst/v1/psst.proto', 'grpc/health/v1/health.proto'], LOADER_OPTIONS);
    loaded = grpc.loadPackageDefinition(definition) as unknown as Protos;
  }
  return loaded;
}
