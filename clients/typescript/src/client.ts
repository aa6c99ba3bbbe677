import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';

import { PsstError, toPsstError } from './errors';
import { backoffDelayMs, resolveRetry, type ResolvedRetry, type RetryOptions } from './retry';
import { Secret, toDate } from './secret';
import { loadProtos, resolveSocketPath, socketTarget } from './transport';
import { Watch, type WatchOptions } from './watch';
import type { HealthClient } from './generated/grpc/health/v1/Health';
import type { SecretsClient } from './generated/psst/v1/Secrets';
import type { Caller__Output } from './generated/psst/v1/Caller';
import type { Grant__Output } from './generated/psst/v1/Grant';
import type { BatchGetSecretsResponse__Output } from './generated/psst/v1/BatchGetSecretsResponse';
import type { HealthCheckResponse__Output } from './generated/grpc/health/v1/HealthCheckResponse';
import type { ListSecretsResponse__Output } from './generated/psst/v1/ListSecretsResponse';
import type { PutSecretResponse__Output } from './generated/psst/v1/PutSecretResponse';
import type { Secret__Output } from './generated/psst/v1/Secret';
import type { WhoAmIResponse__Output } from './generated/psst/v1/WhoAmIResponse';

export interface PsstClientOptions {
  /** The agent's socket. Default: `$PSST_SOCKET`, else `/run/psst/psst.sock`. */
  socket?: string;
  /** Retrying while the agent is not up yet; `false` disables it. See {@link RetryOptions}. */
  retry?: RetryOptions | false;
  /** The deadline of each call, in milliseconds (default 10 000). */
  timeoutMs?: number;
  /** Extra grpc-js channel options; they win over the client's own. */
  channelOptions?: grpc.ChannelOptions;
}

/** Per-call options. */
export interface CallOptions {
  /** This call's deadline in milliseconds, instead of the client's `timeoutMs`. */
  timeoutMs?: number;
  /** Cancels the call (and its retries): it then fails with CANCELLED. */
  signal?: AbortSignal;
}

/** A listed secret: metadata only, never the value. */
export interface SecretMetadata {
  reference: string;
  /** The id of the current version. */
  versionId: string;
  updatedAt: Date | undefined;
}

/** The version a `put` wrote. */
export interface PutResult {
  /** The new version as a reference with a version selector, e.g. `local:demo/db?version=2`. */
  reference: string;
  versionId: string;
  createdAt: Date | undefined;
}

/** The calling process as the agent sees it (uid, gid, pid, executable, cgroup, ...). */
export type Caller = Caller__Output;
/** What the policy grants the caller for one operation (`read`, `list`, `write`). */
export type Grant = Grant__Output;

export interface WhoAmI {
  caller: Caller | undefined;
  grants: Grant[];
  /** Names of the policy rules that matched the caller. */
  matchedRules: string[];
}

/** The gRPC health status of the agent. */
export type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

const DEFAULT_TIMEOUT_MS = 10_000;

/** The statuses that say nothing about whether the agent was reached. */
const NOT_REACHED = new Set<number>([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED]);

type Invoke<Res> = (options: grpc.CallOptions, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;

/**
 * A connection to the psst agent over its Unix socket. Create one per process and share it; the
 * connection is opened on the first call. Every method returns a promise and fails with a
 * {@link PsstError} (or one of its subclasses).
 *
 * ```ts
 * const psst = new PsstClient();
 * const secret = await psst.get('local:demo/db-password');
 * connect(secret.text());
 * ```
 */
export class PsstClient {
  /** The socket path this client talks to. */
  readonly socket: string;
  readonly #secrets: SecretsClient;
  readonly #health: HealthClient;
  readonly #retry: ResolvedRetry;
  readonly #timeoutMs: number;
  #reached = false;
  #closed = false;
  readonly #watches = new Set<Watch>();

  constructor(options: PsstClientOptions = {}) {
    this.socket = resolveSocketPath(options.socket);
    this.#retry = resolveRetry(options.retry);
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const protos = loadProtos();
    const channelOptions: grpc.ChannelOptions = {
      // Agents before the h2 patch (third_party/h2) refuse a socket path as :authority.
      'grpc.default_authority': 'localhost',
      // Reconnect as fast as this client retries, so that an agent that comes up is seen at once.
      'grpc.initial_reconnect_backoff_ms': Math.max(1, this.#retry.initialDelayMs),
      'grpc.max_reconnect_backoff_ms': Math.max(1, this.#retry.maxDelayMs),
      ...options.channelOptions,
    };
    const target = socketTarget(this.socket);
    const credentials = grpc.credentials.createInsecure();
    this.#secrets = new protos.psst.v1.Secrets(target, credentials, channelOptions);
    this.#health = new protos.grpc.health.v1.Health(target, credentials, {
      ...channelOptions,
      channelOverride: this.#secrets.getChannel(),
    });
  }

  /** One secret, e.g. `local:demo/db-password`, `local:a?version=2` or `sm:prod/db#password`. */
  async get(reference: string, options?: CallOptions): Promise<Secret> {
    const message = await this.#unary<Secret__Output>(
      (o, cb) => this.#secrets.GetSecret({ reference }, o, cb),
      options,
    );
    return Secret.fromProto(message);
  }

  /**
   * One result per reference, in order: a `Secret`, or the `PsstError` for that item (with its
   * `reference` set). The promise itself rejects only when the call as a whole fails.
   */
  async batchGet(references: readonly string[], options?: CallOptions): Promise<Array<Secret | PsstError>> {
    const response = await this.#unary<BatchGetSecretsResponse__Output>(
      (o, cb) => this.#secrets.BatchGetSecrets({ references: [...references] }, o, cb),
      options,
    );
    return response.results.map((item, i) => {
      const reference = item.reference || references[i] || '';
      if (item.result === 'secret' && item.secret) return Secret.fromProto(item.secret);
      if (item.result === 'error' && item.error) return PsstError.from(item.error.code, item.error.message, { reference });
      return new PsstError(grpc.status.INTERNAL, 'the agent sent an empty batch result', { reference });
    });
  }

  /** The references under a prefix (e.g. `local:demo/`) that the caller may list. */
  async list(prefix: string, options?: CallOptions): Promise<SecretMetadata[]> {
    const response = await this.#unary<ListSecretsResponse__Output>(
      (o, cb) => this.#secrets.ListSecrets({ prefix }, o, cb),
      options,
    );
    return response.secrets.map((m) => ({ reference: m.reference, versionId: m.versionId, updatedAt: toDate(m.updatedAt) }));
  }

  /** Writes a new version of a secret. Strings are sent as UTF-8. */
  async put(reference: string, value: Buffer | Uint8Array | string, options?: CallOptions): Promise<PutResult> {
    const ownCopy = typeof value === 'string';
    const bytes = ownCopy ? Buffer.from(value, 'utf8') : value;
    try {
      const response = await this.#unary<PutSecretResponse__Output>(
        (o, cb) => this.#secrets.PutSecret({ reference, value: bytes }, o, cb),
        options,
      );
      return { reference: response.reference, versionId: response.versionId, createdAt: toDate(response.createdAt) };
    } finally {
      if (ownCopy) (bytes as Buffer).fill(0);
    }
  }

  /** How the agent sees this process, and what its policy grants it. */
  async whoami(options?: CallOptions): Promise<WhoAmI> {
    const response = await this.#unary<WhoAmIResponse__Output>(
      (o, cb) => this.#secrets.WhoAmI({}, o, cb),
      options,
    );
    return { caller: response.caller ?? undefined, grants: response.grants, matchedRules: response.matchedRules };
  }

  /** The agent's gRPC health (`grpc.health.v1`): `SERVING` when it answers requests. */
  async health(service = '', options?: CallOptions): Promise<HealthStatus> {
    const response = await this.#unary<HealthCheckResponse__Output>(
      (o, cb) => this.#health.Check({ service }, o, cb),
      options,
    );
    return response.status as HealthStatus;
  }

  /**
   * Follows secrets: each reference's current secret first (`CURRENT`), then one event per change
   * (`NEW_VERSION`, `PENDING_VERSION`, `DELETED`). Iterate with `for await`; `break`, `close()` or
   * `options.signal` end it.
   *
   * The watch reconnects by itself when the agent restarts or the stream breaks (UNAVAILABLE,
   * or UNKNOWN/INTERNAL/CANCELLED from a reset), with backoff, for up to `reconnectForMs` (5 s)
   * of failures, then fails with `UnavailableError`. It resumes from the versions it has
   * delivered (`known_versions`), so a version is never delivered twice. Other errors end it:
   * `PermissionDeniedError` (no `watch` grant, or a policy reload took it away),
   * `NotFoundError` (the secret does not exist when the watch starts), `InvalidArgumentError`.
   *
   * Events that have arrived but are not read yet are folded per reference: a reader that falls
   * behind gets the newest version, with `previousVersionId` the version it last had.
   *
   * ```ts
   * for await (const event of psst.watch(['local:demo/db-password'])) {
   *   if (event.secret) reconnectDb(event.secret.text());
   * }
   * ```
   */
  watch(references: string | readonly string[], options: WatchOptions = {}): Watch {
    const refs = typeof references === 'string' ? [references] : [...references];
    const watch = new Watch(
      refs,
      {
        open: (request) => {
          if (this.#closed) throw new Error('the client is closed');
          return this.#secrets.WatchSecrets(request);
        },
        retry: this.#retry,
        onFinish: (w) => this.#watches.delete(w),
      },
      options,
    );
    if (!watch.closed) this.#watches.add(watch);
    return watch;
  }

  /** Closes the connection and ends its watches. Calls made afterwards fail with CANCELLED. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const watch of [...this.#watches]) watch.close();
    this.#secrets.close();
  }

  /** One unary call, retried while the agent has never been reached and answers UNAVAILABLE. */
  async #unary<Res>(invoke: Invoke<Res>, options: CallOptions = {}): Promise<Res> {
    const retry = this.#retry;
    for (let attempt = 1; ; attempt++) {
      try {
        const response = await this.#once(invoke, options);
        this.#reached = true;
        return response;
      } catch (raw) {
        const error = toPsstError(raw);
        if (!NOT_REACHED.has(error.code)) this.#reached = true;
        const retryable =
          error.code === grpc.status.UNAVAILABLE && !this.#reached && !this.#closed && attempt < retry.maxAttempts;
        if (!retryable || options.signal?.aborted) throw error;
        const delayMs = backoffDelayMs(attempt, retry);
        retry.onRetry?.({ attempt, delayMs, error });
        try {
          await sleep(delayMs, undefined, options.signal ? { signal: options.signal } : undefined);
        } catch {
          throw new PsstError(grpc.status.CANCELLED, 'the call was cancelled', { cause: error });
        }
      }
    }
  }

  #once<Res>(invoke: Invoke<Res>, options: CallOptions): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (this.#closed) {
        reject(new PsstError(grpc.status.CANCELLED, 'the client is closed'));
        return;
      }
      const { signal } = options;
      if (signal?.aborted) {
        reject(new PsstError(grpc.status.CANCELLED, 'the call was cancelled'));
        return;
      }
      const deadline = new Date(Date.now() + (options.timeoutMs ?? this.#timeoutMs));
      let onAbort: (() => void) | undefined;
      const call = invoke({ deadline }, (err, response) => {
        if (onAbort) signal?.removeEventListener('abort', onAbort);
        if (err) reject(toPsstError(err));
        else if (response === undefined) reject(new PsstError(grpc.status.INTERNAL, 'the agent sent no response'));
        else resolve(response);
      });
      if (signal) {
        onAbort = () => call.cancel();
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }
}
