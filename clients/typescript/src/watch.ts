import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

import * as grpc from '@grpc/grpc-js';

import { PsstError, UnavailableError, toPsstError } from './errors';
import { MAX_BACKOFF_LIMIT_MS, backoffDelayMs, type ResolvedRetry } from './retry';
import { Secret, toDate } from './secret';
import type { WatchEvent__Output } from './generated/psst/v1/WatchEvent';
import type { WatchSecretsRequest } from './generated/psst/v1/WatchSecretsRequest';

/** What happened to a watched secret. */
export type WatchEventKind = 'CURRENT' | 'NEW_VERSION' | 'PENDING_VERSION' | 'DELETED';

const KINDS: ReadonlySet<string> = new Set<WatchEventKind>(['CURRENT', 'NEW_VERSION', 'PENDING_VERSION', 'DELETED']);

export interface WatchOptions {
  /** Stops the watch: the iteration then fails with a CANCELLED `PsstError`. */
  signal?: AbortSignal;
  /**
   * Opt-in give-up: once reconnecting has failed for this long in a row (agent down, stream
   * reset), the watch ends with an `UnavailableError`, in milliseconds. Default: never; the
   * watch reconnects for as long as it is open.
   */
  reconnectForMs?: number;
  /** The longest wait between reconnects, at most 30 000 (default 5000 ms). */
  maxBackoffMs?: number;
  /** Called on each change of reachability, as the `'status'` event is emitted. */
  onStatus?: (status: WatchStatus) => void;
  /**
   * Reference → the version the caller already has: the watch starts as if it had delivered
   * it, so its first event for that reference comes only with a different version.
   */
  knownVersions?: Readonly<Record<string, string>> | ReadonlyMap<string, string>;
}

/** Whether the agent can be reached, as a watch last found. */
export interface WatchStatus {
  /** False from the first failed reconnect until a stream is up again. */
  reachable: boolean;
  /** Why it is unreachable (the last failure). */
  error?: PsstError;
  /** When this status began. */
  since: Date;
}

/** A watch's longest wait between reconnects unless told otherwise. */
export const DEFAULT_WATCH_MAX_BACKOFF_MS = 5000;

/**
 * One change of a watched secret. `secret` is set for `CURRENT` and `NEW_VERSION`; like
 * {@link Secret}, `toString()`, `JSON.stringify()` and `util.inspect()` never show the value.
 */
export class WatchEvent {
  /** The reference as passed to `watch`. */
  readonly reference: string;
  readonly kind: WatchEventKind;
  /** The secret now current (`CURRENT`, `NEW_VERSION`); undefined otherwise. */
  readonly secret: Secret | undefined;
  /** For `NEW_VERSION`: the version the caller had before (empty when unknown). */
  readonly previousVersionId: string;
  /** For `PENDING_VERSION`: the staged version. */
  readonly pendingVersionId: string;
  /** When the agent saw the change. */
  readonly observedAt: Date | undefined;

  constructor(init: {
    reference: string;
    kind: WatchEventKind;
    secret?: Secret | undefined;
    previousVersionId?: string;
    pendingVersionId?: string;
    observedAt?: Date | undefined;
  }) {
    this.reference = init.reference;
    this.kind = init.kind;
    this.secret = init.secret;
    this.previousVersionId = init.previousVersionId ?? '';
    this.pendingVersionId = init.pendingVersionId ?? '';
    this.observedAt = init.observedAt;
  }

  /** The version this event brings (`secret.versionId`), or undefined. */
  get versionId(): string | undefined {
    return this.secret?.versionId;
  }

  toString(): string {
    const parts = [this.kind, this.reference];
    if (this.secret) parts.push(`version ${JSON.stringify(this.secret.versionId)}`);
    if (this.previousVersionId) parts.push(`previous ${JSON.stringify(this.previousVersionId)}`);
    if (this.pendingVersionId) parts.push(`pending ${JSON.stringify(this.pendingVersionId)}`);
    return `WatchEvent(${parts.join(', ')})`;
  }

  toJSON(): Record<string, unknown> {
    return {
      reference: this.reference,
      kind: this.kind,
      secret: this.secret?.toJSON(),
      previousVersionId: this.previousVersionId,
      pendingVersionId: this.pendingVersionId,
      observedAt: this.observedAt,
    };
  }

  [inspect.custom](depth: number, options: object, inspectFn: typeof inspect = inspect): string {
    if (depth < 0) return `[WatchEvent ${this.kind} ${this.reference}]`;
    return `WatchEvent ${inspectFn(this.toJSON(), { ...options, depth: depth - 1 })}`;
  }
}

/** A broken connection (the agent restarting) shows as UNAVAILABLE, or as UNKNOWN, INTERNAL or
 * CANCELLED when the stream is reset: reconnect and resume. */
const BROKEN = new Set<number>([grpc.status.UNAVAILABLE, grpc.status.UNKNOWN, grpc.status.INTERNAL, grpc.status.CANCELLED]);

const carriesValue = (e: WatchEvent__Output): boolean => e.kind === 'CURRENT' || e.kind === 'NEW_VERSION';

/**
 * Folds events that arrived together, in order (the Rust client's `coalesce`): a later version
 * of a reference replaces the undelivered earlier one in its place, keeping the earlier one's
 * previous version (what the reader last had), and stays CURRENT if the earlier one was. Only a
 * reference's latest undelivered event is replaced, so a DELETED or PENDING_VERSION between two
 * versions keeps its order. Replaced values are zeroed.
 */
export function coalesce(batch: readonly WatchEvent__Output[]): WatchEvent__Output[] {
  const out: WatchEvent__Output[] = [];
  const latest = new Map<string, number>(); // reference → index in out of its latest event
  for (const event of batch) {
    const i = latest.get(event.reference);
    const earlier = i === undefined ? undefined : out[i];
    if (i !== undefined && earlier && carriesValue(earlier) && carriesValue(event)) {
      earlier.secret?.value?.fill(0);
      out[i] = {
        ...event,
        kind: earlier.kind === 'CURRENT' ? 'CURRENT' : event.kind,
        previousVersionId: earlier.previousVersionId,
      };
    } else {
      latest.set(event.reference, out.length);
      out.push(event);
    }
  }
  return out;
}

/** @internal What a Watch needs from its client. */
export interface WatchTransport {
  open(request: WatchSecretsRequest): grpc.ClientReadableStream<WatchEvent__Output>;
  retry: ResolvedRetry;
  /** Called once when the watch finishes, however it does. */
  onFinish(watch: Watch): void;
  /** Why the last connection was refused by the socket check, if it was. */
  lastRefusal(): PsstError | undefined;
}

/** One open WatchSecrets call and what it has said so far. */
interface Stream {
  call: grpc.ClientReadableStream<WatchEvent__Output>;
  /** Set when the call has ended: its error, or null when it ended with OK. */
  ended?: PsstError | null;
  /** The agent answered: headers or an event arrived. */
  connected: boolean;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * A watch that survives agent restarts: an `AsyncIterableIterator<WatchEvent>`. Made by
 * `PsstClient.watch`; see there. `close()` (or `break` out of a `for await`) ends the
 * iteration; errors other than a lost connection end it with the `PsstError`. It is an
 * `EventEmitter` too: `'status'` ({@link WatchStatus}) fires when the agent becomes unreachable
 * and reachable again; the watch goes on either way.
 */
export class Watch extends EventEmitter implements AsyncIterableIterator<WatchEvent> {
  /** The references watched, as given. */
  readonly references: readonly string[];
  readonly #transport: WatchTransport;
  readonly #reconnectForMs: number;
  readonly #maxBackoffMs: number;
  #status: WatchStatus | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort: (() => void) | undefined;
  /** Aborted by close(): interrupts a reconnect wait. */
  readonly #stop = new AbortController();
  /** Reference → the version id last delivered: sent on reconnect so nothing repeats. */
  readonly #known = new Map<string, string>();
  /** Events received and coalesced, not yet handed out. */
  #ready: WatchEvent__Output[] = [];
  #stream: Stream | undefined;
  /** An error to hand out once the events before it are delivered; it ends the watch. */
  #failed: PsstError | undefined;
  #finished = false;
  #failingSince: number | undefined;
  #attempt = 0;
  #lastError: PsstError | undefined;
  #wake: (() => void) | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  /** @internal Use `PsstClient.watch`. */
  constructor(references: readonly string[], transport: WatchTransport, options: WatchOptions = {}) {
    super();
    this.references = Object.freeze([...references]);
    this.#transport = transport;
    this.#reconnectForMs = options.reconnectForMs ?? Infinity;
    if (!(this.#reconnectForMs >= 0)) throw new RangeError('reconnectForMs must be >= 0');
    this.#maxBackoffMs = options.maxBackoffMs ?? DEFAULT_WATCH_MAX_BACKOFF_MS;
    if (!(this.#maxBackoffMs >= 0 && this.#maxBackoffMs <= MAX_BACKOFF_LIMIT_MS)) {
      throw new RangeError(`maxBackoffMs must be between 0 and ${MAX_BACKOFF_LIMIT_MS}`);
    }
    if (options.onStatus) this.on('status', options.onStatus);
    const known = options.knownVersions;
    if (known) for (const [ref, version] of known instanceof Map ? known : Object.entries(known)) this.#known.set(ref, version);
    this.#signal = options.signal;
    if (this.#signal) {
      this.#onAbort = () => this.#end(new PsstError(grpc.status.CANCELLED, 'the watch was cancelled'));
      if (this.#signal.aborted) {
        this.#onAbort();
        return;
      }
      this.#signal.addEventListener('abort', this.#onAbort, { once: true });
    }
    // The call starts now: events arriving before the first next() wait in its buffer.
    this.#open();
  }

  /** Reference → the version id last delivered (what a reconnect resumes from). */
  get knownVersions(): ReadonlyMap<string, string> {
    return new Map(this.#known);
  }

  /** True once the watch has ended (closed, cancelled or failed). */
  get closed(): boolean {
    return this.#finished;
  }

  /** The reachability last reported (undefined until the first stream is up or fails). */
  get status(): WatchStatus | undefined {
    return this.#status;
  }

  #setReachable(reachable: boolean, error?: PsstError): void {
    if (this.#status?.reachable === reachable) return;
    const status: WatchStatus = { reachable, since: new Date() };
    if (error) status.error = error;
    this.#status = status;
    this.emit('status', status);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** The next event; waits for one. Calls are served in order. */
  next(): Promise<IteratorResult<WatchEvent>> {
    const result = this.#queue.then(() => this.#pull());
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** Ends the watch (what `break` in a `for await` loop calls). */
  async return(): Promise<IteratorResult<WatchEvent>> {
    this.close();
    return DONE;
  }

  /** Ends the watch: the call is cancelled, pending and later `next()` calls return done. */
  close(): void {
    this.#end(undefined);
  }

  #end(error: PsstError | undefined): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#failed = error;
    for (const e of this.#ready) e.secret?.value?.fill(0);
    this.#ready = [];
    this.#stream?.call.cancel();
    this.#stream = undefined;
    this.#stop.abort();
    if (this.#onAbort) this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#notify();
    this.#transport.onFinish(this);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #pull(): Promise<IteratorResult<WatchEvent>> {
    for (;;) {
      const ready = this.#ready.shift();
      if (ready) return { done: false, value: this.#deliver(ready) };
      if (this.#failed) {
        const error = this.#failed;
        this.#failed = undefined;
        this.#end(undefined);
        throw error;
      }
      if (this.#finished) return DONE;
      if (!this.#stream) {
        await this.#reconnect();
        continue;
      }
      const stream = this.#stream;
      // Whatever has already arrived is folded: a reader that fell behind gets the newest
      // version, not every version in between. The stream's own buffer is bounded (grpc-js
      // reads no further while it is full), so this is too.
      const batch: WatchEvent__Output[] = [];
      for (let m = stream.call.read() as WatchEvent__Output | null; m !== null; m = stream.call.read()) batch.push(m);
      if (batch.length > 0) {
        this.#connected(stream);
        this.#attempt = 0;
        this.#ready = coalesce(batch.filter((e) => KINDS.has(e.kind)));
        continue;
      }
      if (stream.ended !== undefined) {
        this.#stream = undefined;
        this.#streamEnded(stream);
        continue;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** A stream ended: a lost connection is reconnected (next loop), anything else ends the watch. */
  #streamEnded(stream: Stream): void {
    const error = stream.ended ?? null;
    if (error && !BROKEN.has(error.code)) {
      this.#failed = error;
      return;
    }
    this.#lastError = error ?? new UnavailableError(grpc.status.UNAVAILABLE, 'the agent ended the watch stream');
    if (stream.connected) {
      // The first failure after a working stream: reconnect at once.
      this.#failingSince = Date.now();
      this.#attempt = 0;
    } else {
      // A reconnect failed: the agent is unreachable (or refused by the socket check).
      this.#failingSince ??= Date.now();
      this.#attempt++;
      this.#setReachable(false, this.#transport.lastRefusal() ?? this.#lastError);
    }
  }

  /** The agent answered on `stream`. */
  #connected(stream: Stream): void {
    if (this.#stream !== stream || this.#finished) return;
    stream.connected = true;
    this.#failingSince = undefined;
    this.#attempt = 0;
    this.#setReachable(true);
  }

  async #reconnect(): Promise<void> {
    if (this.#failingSince !== undefined) {
      const failingFor = Date.now() - this.#failingSince;
      if (failingFor > this.#reconnectForMs) {
        const last = this.#lastError!;
        this.#failed =
          last.code === grpc.status.UNAVAILABLE
            ? last
            : new UnavailableError(grpc.status.UNAVAILABLE, `the watch could not reconnect for ${failingFor} ms: ${last.message}`, { cause: last });
        return;
      }
      if (this.#attempt > 0) {
        // Never sleep past the give-up time: the watch ends when it says.
        const delayMs = Math.min(backoffDelayMs(this.#attempt, this.#transport.retry, this.#maxBackoffMs), this.#reconnectForMs - failingFor + 1);
        try {
          await sleep(delayMs, undefined, {
            signal: this.#stop.signal,
          });
        } catch {
          return; // closed meanwhile
        }
      }
    }
    this.#open();
  }

  #open(): void {
    if (this.#finished) return;
    const request: WatchSecretsRequest = {
      references: [...this.references],
      knownVersions: Object.fromEntries(this.#known),
    };
    let call: grpc.ClientReadableStream<WatchEvent__Output>;
    try {
      call = this.#transport.open(request);
    } catch (err) {
      // grpc-js throws at once when the client is closed.
      this.#end(new PsstError(grpc.status.CANCELLED, 'the client is closed', { cause: err }));
      return;
    }
    const stream: Stream = { call, connected: false };
    this.#stream = stream;
    // The agent sends its headers as soon as it takes the watch: it is reachable, though a
    // resumed watch may have no event to send.
    call.on('metadata', () => this.#connected(stream));
    call.on('readable', () => this.#notify());
    call.on('error', (err) => {
      stream.ended = toPsstError(err);
    });
    call.on('status', (status: grpc.StatusObject) => {
      if (stream.ended === undefined) stream.ended = status.code === grpc.status.OK ? null : toPsstError(status);
      this.#notify();
    });
  }

  #deliver(event: WatchEvent__Output): WatchEvent {
    if (event.secret) this.#known.set(event.reference, event.secret.versionId);
    else if (event.kind === 'DELETED') this.#known.delete(event.reference);
    return new WatchEvent({
      reference: event.reference,
      kind: event.kind as WatchEventKind,
      secret: event.secret ? Secret.fromProto(event.secret) : undefined,
      previousVersionId: event.previousVersionId,
      pendingVersionId: event.pendingVersionId,
      observedAt: toDate(event.observedAt),
    });
  }
}
