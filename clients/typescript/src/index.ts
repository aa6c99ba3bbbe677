export { DEFAULT_TIMEOUT_MS, PsstClient } from './client';
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
export { DEFAULT_WATCH_MAX_BACKOFF_MS, Watch, WatchEvent } from './watch';
export type { WatchEventKind, WatchOptions, WatchStatus } from './watch';
export { Source } from './source';
export type { SourceOptions, SourceUpdate } from './source';
export type { CacheInfo, SecretInit } from './secret';
export {
  PsstError,
  InvalidArgumentError,
  PermissionDeniedError,
  NotFoundError,
  UnavailableError,
  UntrustedAgentError,
  UnauthenticatedError,
  FailedPreconditionError,
  ResourceExhaustedError,
  codeName,
  toPsstError,
} from './errors';
export type { ErrorKind, PsstErrorOptions } from './errors';
export { DEFAULT_RETRY, backoffDelayMs, resolveRetry } from './retry';
export type { RetryOptions, ResolvedRetry } from './retry';
export { EXPECTED_UID_ENV, resolveExpectedUid } from './peer';
export { DEFAULT_SOCKET, SOCKET_ENV, resolveSocketPath } from './transport';
export { status as Status } from '@grpc/grpc-js';
