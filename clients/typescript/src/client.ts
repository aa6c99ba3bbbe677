import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';

import { PsstError, UnavailableError, UntrustedAgentError, toPsstError } from './errors';
import { CheckedSocketCredentials, checkSocket, resolveExpectedUid } from './peer';
import { backoffDelayMs, resolveRetry, type ResolvedRetry, type RetryOptions } from './retry';
import { Secret, toDate } from './secret';
import { Source, type SourceOptions } from './source';
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
  /** Waiting for the agent while it is unreachable; `false` fails at once. See {@link RetryOptions}. */
  retry?: RetryOptions | false;
  /** The deadline of each call, in milliseconds (default 10 000). */
  timeoutMs?: number;
  /**
   * The uid the agent must run as, checked on every connection before anything is sent;
   * `false` skips the check. Default: `$PSST_EXPECTED_UID` (a uid, or `off`), else the socket
   * file's owner when first seen, pinned for the client's life.
   */
  expectedUid?: number | false;
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

/** The deadline of a call unless told otherwise. */
export const DEFAULT_TIMEOUT_MS = 10_000;

type Invoke<Res> = (metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;

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
  readonly #waitForAgent: boolean;
  readonly #timeoutMs: number;
  #closed = false;
  readonly #watches = new Set<Watch>();
  /** The uid the agent must run as: configured, or pinned at the first connection. */
  #expectedUid: number | false | undefined;
  /** Told when a connection is refused by the socket check: calls waiting for the agent fail at once. */
  readonly #refusals = new Set<(error: UntrustedAgentError) => void>();
  #lastRefusal: UntrustedAgentError | undefined;

  constructor(options: PsstClientOptions = {}) {
    this.socket = resolveSocketPath(options.socket);
    this.#retry = resolveRetry(options.retry);
    this.#waitForAgent = options.retry !== false;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(this.#timeoutMs > 0)) throw new RangeError('timeoutMs must be > 0');
    this.#expectedUid = resolveExpectedUid(options.expectedUid);
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
    const credentials =
      this.#expectedUid === false
        ? grpc.credentials.createInsecure()
        : new CheckedSocketCredentials(
            () => {
              const owner = checkSocket(this.socket, this.#expectedUid === false ? undefined : this.#expectedUid);
              this.#expectedUid ??= owner;
              this.#lastRefusal = undefined;
            },
            (error) => {
              this.#lastRefusal = error;
              for (const refuse of [...this.#refusals]) refuse(error);
            },
          );
    this.#secrets = new protos.psst.v1.Secrets(target, credentials, channelOptions);
    this.#health = new protos.grpc.health.v1.Health(target, credentials, {
      ...channelOptions,
      channelOverride: this.#secrets.getChannel(),
    });
  }

  /** One secret, e.g. `local:demo/db-password`, `local:a?version=2` or `sm:prod/db#password`. */
  async get(reference: string, options?: CallOptions): Promise<Secret> {
    const message = await this.#unary<Secret__Output>(
      (m, o, cb) => this.#secrets.GetSecret({ reference }, m, o, cb),
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
      (m, o, cb) => this.#secrets.BatchGetSecrets({ references: [...references] }, m, o, cb),
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
      (m, o, cb) => this.#secrets.ListSecrets({ prefix }, m, o, cb),
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
        (m, o, cb) => this.#secrets.PutSecret({ reference, value: bytes }, m, o, cb),
        options,
        false,
      );
      return { reference: response.reference, versionId: response.versionId, createdAt: toDate(response.createdAt) };
    } finally {
      if (ownCopy) (bytes as Buffer).fill(0);
    }
  }

  /** How the agent sees this process, and what its policy grants it. */
  async whoami(options?: CallOptions): Promise<WhoAmI> {
    const response = await this.#unary<WhoAmIResponse__Output>(
      (m, o, cb) => this.#secrets.WhoAmI({}, m, o, cb),
      options,
    );
    return { caller: response.caller ?? undefined, grants: response.grants, matchedRules: response.matchedRules };
  }

  /** The agent's gRPC health (`grpc.health.v1`): `SERVING` when it answers requests. */
  async health(service = '', options?: CallOptions): Promise<HealthStatus> {
    const response = await this.#unary<HealthCheckResponse__Output>(
      (m, o, cb) => this.#health.Check({ service }, m, o, cb),
      options,
    );
    return response.status as HealthStatus;
  }

  /**
   * An always-current view of `references`: fetches each once (rejecting with the agent's error
   * when one is refused), then keeps them current through a watch that never gives up.
   * `source.get(ref)` answers from memory; `'update'` events and `for await (const u of source)`
   * tell of new values; errors and outages never replace a value it has. See {@link Source}.
   */
  async source(references: string | readonly string[], options: SourceOptions = {}): Promise<Source> {
    const refs = typeof references === 'string' ? [references] : [...references];
    return Source.open(this, refs, options);
  }

  /**
   * Follows secrets: each reference's current secret first (`CURRENT`), then one event per change
   * (`NEW_VERSION`, `PENDING_VERSION`, `DELETED`). Iterate with `for await`; `break`, `close()` or
   * `options.signal` end it.
   *
   * The watch reconnects by itself for as long as it is open when the agent restarts or the
   * stream breaks (UNAVAILABLE, or UNKNOWN/INTERNAL/CANCELLED from a reset), with capped,
   * jittered exponential backoff; its `'status'` event tells when the agent becomes unreachable
   * and reachable again. `reconnectForMs` opts in to giving up (`UnavailableError`). It resumes
   * from the versions it has delivered (`known_versions`), so a version is never delivered
   * twice. Other errors end it:
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
        lastRefusal: () => this.#lastRefusal,
      },
      options,
    );
    if (!watch.closed) this.#watches.add(watch);
    return watch;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the connection and ends its watches. Calls made afterwards fail with CANCELLED. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const watch of [...this.#watches]) watch.close();
    this.#secrets.close();
  }

  /**
   * One unary call. Unless `retry: false`, it waits for the agent (grpc's wait-for-ready): while
   * the socket is missing or refuses, the channel reconnects with backoff and the request is
   * sent only once a connection is up, so a call that never reached the agent is retried
   * within its deadline, on every call. A read whose connection broke before the agent answered
   * (no headers, no status of the agent's) is sent again within its deadline; a put is never
   * repeated (it could be applied twice). A connection refused by the socket check fails the
   * call at once.
   */
  async #unary<Res>(invoke: Invoke<Res>, options: CallOptions = {}, repeatable = true): Promise<Res> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 1; ; attempt++) {
      let failure: AttemptFailure;
      try {
        return await this.#once(invoke, options, deadline);
      } catch (err) {
        if (!(err instanceof AttemptFailure)) throw err;
        failure = err;
      }
      const { error, answered } = failure;
      const left = deadline - Date.now();
      // A broken connection shows as UNAVAILABLE, or as CANCELLED when the agent reset the stream
      // (a CANCELLED of this client's own, on abort, is never retried).
      const broken = error.code === grpc.status.UNAVAILABLE || (error.code === grpc.status.CANCELLED && !failure.cancelledHere);
      const again = repeatable && this.#waitForAgent && !answered && broken && !(error instanceof UntrustedAgentError);
      if (again && left > 0 && !this.#closed && !options.signal?.aborted) {
        try {
          await sleep(Math.min(left, backoffDelayMs(attempt, this.#retry, this.#retry.maxDelayMs)), undefined, options.signal ? { signal: options.signal } : undefined);
        } catch {
          throw new PsstError(grpc.status.CANCELLED, 'the call was cancelled', { cause: error });
        }
        continue;
      }
      if (error.code !== grpc.status.DEADLINE_EXCEEDED || this.#connected()) throw error;
      // The deadline passed while no connection was up: the agent was never reached.
      const why = this.#lastRefusal ? `: ${this.#lastRefusal.details}` : '';
      throw new UnavailableError(grpc.status.UNAVAILABLE, `the agent at ${this.socket} could not be reached within ${timeoutMs} ms${why}`, {
        cause: error,
      });
    }
  }

  #connected(): boolean {
    return this.#secrets.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
  }

  /** One try; it fails with an {@link AttemptFailure} saying whether the agent answered. */
  #once<Res>(invoke: Invoke<Res>, options: CallOptions, deadlineMs: number): Promise<Res> {
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
      const deadline = new Date(deadlineMs);
      // The agent answered if its headers came, or its status (a status grpc-js makes up for a
      // broken connection has no metadata; the agent's always has content-type at least).
      let answered = false;
      let refused: PsstError | undefined;
      let cancelledHere = false;
      const onAbort = () => {
        cancelledHere = true;
        call.cancel();
      };
      const onRefused = (error: UntrustedAgentError) => {
        refused = error;
        call.cancel();
      };
      const call = invoke(new grpc.Metadata({ waitForReady: this.#waitForAgent }), { deadline }, (err, response) => {
        signal?.removeEventListener('abort', onAbort);
        this.#refusals.delete(onRefused);
        if (refused) reject(refused);
        else if (err) {
          const status = err as Partial<grpc.ServiceError>;
          if (status.metadata && Object.keys(status.metadata.getMap()).length > 0) answered = true;
          reject(new AttemptFailure(toPsstError(err), answered, cancelledHere));
        }
        else if (response === undefined) reject(new PsstError(grpc.status.INTERNAL, 'the agent sent no response'));
        else resolve(response);
      });
      call.on('metadata', () => {
        answered = true;
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#refusals.add(onRefused);
    });
  }
}

/** A failed try, and whether the agent answered it (then it is never sent again). */
class AttemptFailure {
  constructor(
    readonly error: PsstError,
    readonly answered: boolean,
    /** The call was cancelled by this client (an abort signal). */
    readonly cancelledHere: boolean,
  ) {}
}
