export { PsstClient } from './client';
export type {
  CallOptions,
  Caller,
  Grant,
  HealthStatus,
  PsstClientOptions,
  PutResult,
  SecretMetadata,
  WhoAmI,
} from './client';
export { Secret } from './secret';
export { DEFAULT_WATCH_RECONNECT_MS, Watch, WatchEvent } from './watch';
export type { WatchEventKind, WatchOptions } from './watch';
export type { CacheInfo, SecretInit } from './secret';
export {
  PsstError,
  InvalidArgumentError,
  PermissionDeniedError,
  NotFoundError,
  UnavailableError,
  UnauthenticatedError,
  FailedPreconditionError,
  ResourceExhaustedError,
  codeName,
  toPsstError,
} from './errors';
export type { ErrorKind, PsstErrorOptions } from './errors';
export { DEFAULT_RETRY, backoffDelayMs, resolveRetry } from './retry';
export type { RetryEvent, RetryOptions, ResolvedRetry } from './retry';
export { DEFAULT_SOCKET, SOCKET_ENV, resolveSocketPath } from './transport';
export { status as Status } from '@grpc/grpc-js';
