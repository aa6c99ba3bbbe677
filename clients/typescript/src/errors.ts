import { status as Status } from '@grpc/grpc-js';

/** What kind of failure a {@link PsstError} is, as a stable string for `switch` statements. */
export type ErrorKind =
  | 'invalid_argument'
  | 'permission_denied'
  | 'not_found'
  | 'unavailable'
  | 'unauthenticated'
  | 'failed_precondition'
  | 'resource_exhausted'
  | 'other';

/** The gRPC status code name as grpcurl and the docs print it, e.g. `NOT_FOUND`. */
export function codeName(code: number): string {
  const name = (Status as unknown as Record<number, string | undefined>)[code];
  return typeof name === 'string' ? name : `CODE_${code}`;
}

export interface PsstErrorOptions {
  /** The reference the error is about, where known (batch items always have one). */
  reference?: string;
  cause?: unknown;
}

/**
 * A failed call: the gRPC status code and the agent's message. Never carries a secret value.
 * `PsstError.from` returns the subclass for the code (`NotFoundError`, ...), so both
 * `err instanceof NotFoundError` and `switch (err.kind)` work.
 */
export class PsstError extends Error {
  /** The gRPC status code number, e.g. 5 (`status.NOT_FOUND` in `@grpc/grpc-js`). */
  readonly code: number;
  /** The code's name, e.g. `NOT_FOUND`. */
  readonly codeName: string;
  /** The agent's message, without the code prefix. */
  readonly details: string;
  readonly reference?: string;

  constructor(code: number, details: string, options: PsstErrorOptions = {}) {
    super(`${codeName(code)}: ${details}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.codeName = codeName(code);
    this.details = details;
    if (options.reference !== undefined) this.reference = options.reference;
  }

  get kind(): ErrorKind {
    switch (this.code) {
      case Status.INVALID_ARGUMENT:
      case Status.OUT_OF_RANGE:
        return 'invalid_argument';
      case Status.PERMISSION_DENIED:
        return 'permission_denied';
      case Status.NOT_FOUND:
        return 'not_found';
      case Status.UNAVAILABLE:
        return 'unavailable';
      case Status.UNAUTHENTICATED:
        return 'unauthenticated';
      case Status.FAILED_PRECONDITION:
        return 'failed_precondition';
      case Status.RESOURCE_EXHAUSTED:
        return 'resource_exhausted';
      default:
        return 'other';
    }
  }

  /** The error for a status code: the matching subclass, else a plain `PsstError`. */
  static from(code: number, details: string, options: PsstErrorOptions = {}): PsstError {
    const Subclass = SUBCLASSES.get(code) ?? PsstError;
    return new Subclass(code, details, options);
  }
}

/** The reference or request is malformed (INVALID_ARGUMENT, OUT_OF_RANGE). */
export class InvalidArgumentError extends PsstError {}
/** The agent's policy does not grant this to the calling process (PERMISSION_DENIED). */
export class PermissionDeniedError extends PsstError {}
/** The secret, version or JSON key does not exist (NOT_FOUND). */
export class NotFoundError extends PsstError {}
/** The agent, or its backend, cannot be reached (UNAVAILABLE): worth retrying later. */
export class UnavailableError extends PsstError {}
/** The agent could not identify the calling process (UNAUTHENTICATED). */
export class UnauthenticatedError extends PsstError {}
/** The agent cannot do it as configured, e.g. the backend is not enabled (FAILED_PRECONDITION). */
export class FailedPreconditionError extends PsstError {}
/** A rate limit or size limit was hit (RESOURCE_EXHAUSTED). */
export class ResourceExhaustedError extends PsstError {}

const SUBCLASSES = new Map<number, new (code: number, details: string, options?: PsstErrorOptions) => PsstError>([
  [Status.INVALID_ARGUMENT, InvalidArgumentError],
  [Status.OUT_OF_RANGE, InvalidArgumentError],
  [Status.PERMISSION_DENIED, PermissionDeniedError],
  [Status.NOT_FOUND, NotFoundError],
  [Status.UNAVAILABLE, UnavailableError],
  [Status.UNAUTHENTICATED, UnauthenticatedError],
  [Status.FAILED_PRECONDITION, FailedPreconditionError],
  [Status.RESOURCE_EXHAUSTED, ResourceExhaustedError],
]);

/** Turns whatever a grpc-js call failed with into a `PsstError`. */
export function toPsstError(err: unknown, reference?: string): PsstError {
  if (err instanceof PsstError) return err;
  const e = err as { code?: unknown; details?: unknown; message?: unknown } | null;
  const options: PsstErrorOptions = { cause: err };
  if (reference !== undefined) options.reference = reference;
  if (e && typeof e.code === 'number') {
    const details = typeof e.details === 'string' ? e.details : String(e.message ?? '');
    return PsstError.from(e.code, details, options);
  }
  return new PsstError(Status.UNKNOWN, e && typeof e.message === 'string' ? e.message : String(err), options);
}

/**
 * The socket is not served by the agent this client trusts (its owner is not the expected uid,
 * or another user could have replaced it): nothing was sent. Code UNAUTHENTICATED, as in every
 * psst client; raised at once, without waiting for the deadline.
 */
export class UntrustedAgentError extends UnauthenticatedError {}
