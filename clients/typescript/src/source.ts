import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

import { status as Status } from '@grpc/grpc-js';

import { PsstError } from './errors';
import { MAX_BACKOFF_LIMIT_MS, backoffDelayMs, DEFAULT_RETRY } from './retry';
import type { Secret } from './secret';
import type { Watch, WatchOptions, WatchStatus } from './watch';

export interface SourceOptions {
  /** The deadline of the first fetch of each reference (default: the client's). */
  timeoutMs?: number;
  /** The longest wait between the watch's reconnects, at most 30 000 (default 5000 ms). */
  maxBackoffMs?: number;
}

/** A new value of one of a Source's references. */
export interface SourceUpdate {
  reference: string;
  /** The value now current; `source.get(reference)` returns it too. */
  secret: Secret;
  /** The version it replaced. */
  previousVersionId: string;
}

/** What a Source needs from its client. */
export interface SourceClient {
  readonly closed: boolean;
  get(reference: string, options?: { timeoutMs?: number }): Promise<Secret>;
  watch(references: readonly string[], options?: WatchOptions): Watch;
}

/**
 * The always-current secret: the value of each reference in memory, kept current by a watch
 * that never gives up. Made by `PsstClient.source(refs)`, which fetches each reference once and
 * rejects with the agent's error when one is refused.
 *
 * - `get(ref)` returns the last good `Secret` from memory, at once, even while the agent is down.
 * - `'update'` ({@link SourceUpdate}) fires on each new version; `for await (const u of source)`
 *   reads the same updates (a reader that falls behind gets the newest value per reference).
 * - `'status'` ({@link WatchStatus}) fires when the agent becomes unreachable and reachable again.
 * - `'deleted'` (reference) fires when a secret is deleted; `get` keeps its last value.
 * - Closing the client closes its Sources (their `get` keeps answering).
 *
 * Errors never replace a value: an outage, a denied watch (say, after a policy reload) or a
 * deletion leave `get` answering the last good value; a watch that ended with an error is
 * opened again after a backoff. `close()` ends it.
 */
export class Source extends EventEmitter implements AsyncIterable<SourceUpdate> {
  /** The references, as given. */
  readonly references: readonly string[];
  readonly #values = new Map<string, Secret>();
  readonly #client: SourceClient;
  readonly #maxBackoffMs: number;
  readonly #stop = new AbortController();
  readonly #readers = new Set<Reader>();
  #watch: Watch | undefined;
  #status: WatchStatus | undefined;
  #closed = false;

  private constructor(client: SourceClient, references: readonly string[], options: SourceOptions) {
    super();
    this.references = Object.freeze([...references]);
    this.#client = client;
    this.#maxBackoffMs = options.maxBackoffMs ?? 5000;
    if (!(this.#maxBackoffMs >= 0 && this.#maxBackoffMs <= MAX_BACKOFF_LIMIT_MS)) {
      throw new RangeError(`maxBackoffMs must be between 0 and ${MAX_BACKOFF_LIMIT_MS}`);
    }
  }

  /** @internal Use `PsstClient.source`. */
  static async open(client: SourceClient, references: readonly string[], options: SourceOptions = {}): Promise<Source> {
    if (references.length === 0) throw new RangeError('a Source needs at least one reference');
    const source = new Source(client, references, options);
    const call = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
    const secrets = await Promise.all(references.map((ref) => client.get(ref, call)));
    secrets.forEach((secret, i) => source.#values.set(references[i]!, secret));
    void source.#run();
    return source;
  }

  /** The last good value of `reference` (one of `references`), from memory. */
  get(reference: string): Secret {
    const secret = this.#values.get(reference);
    if (!secret) throw new RangeError(`${reference} is not one of this Source's references`);
    return secret;
  }

  /** The reachability its watch last reported. */
  get status(): WatchStatus | undefined {
    return this.#status;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Stops watching; `get` keeps answering the last values; readers finish. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    this.#watch?.close();
    for (const reader of this.#readers) reader.finish();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<SourceUpdate> {
    return new Reader(this.#readers, this.#closed);
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#closed) {
      const known = new Map([...this.#values].map(([ref, secret]) => [ref, secret.versionId] as [string, string]));
      const watch = this.#client.watch(this.references, {
        knownVersions: known,
        maxBackoffMs: this.#maxBackoffMs,
        onStatus: (status) => this.#setStatus(status),
      });
      this.#watch = watch;
      if (this.#closed) watch.close();
      try {
        for await (const event of watch) {
          attempt = 0;
          if (event.secret) this.#update(event.reference, event.secret, event.previousVersionId);
          else if (event.kind === 'DELETED') this.emit('deleted', event.reference);
        }
      } catch (err) {
        // Denied (a policy reload), or the secret was gone when the watch (re)started: keep the
        // values, say so, and try again later.
        if (this.#closed) break;
        const error = err instanceof PsstError ? err : new PsstError(Status.UNKNOWN, String(err));
        this.#setStatus({ reachable: true, error, since: new Date() });
      }
      if (this.#client.closed) {
        // The client was closed under it: nothing more will come.
        this.close();
        break;
      }
      attempt++;
      try {
        await sleep(backoffDelayMs(attempt, DEFAULT_RETRY, MAX_BACKOFF_LIMIT_MS), undefined, { signal: this.#stop.signal });
      } catch {
        break;
      }
    }
  }

  #setStatus(status: WatchStatus): void {
    this.#status = status;
    this.emit('status', status);
  }

  #update(reference: string, secret: Secret, previousVersionId: string): void {
    this.#values.set(reference, secret);
    const update: SourceUpdate = { reference, secret, previousVersionId };
    for (const reader of this.#readers) reader.push(update);
    this.emit('update', update);
  }
}

/** One `for await` over a Source: its own queue, the newest update per reference. */
class Reader implements AsyncIterableIterator<SourceUpdate> {
  readonly #readers: Set<Reader>;
  #queue: SourceUpdate[] = [];
  #done: boolean;
  #wake: (() => void) | undefined;

  constructor(readers: Set<Reader>, done: boolean) {
    this.#readers = readers;
    this.#done = done;
    if (!done) readers.add(this);
  }

  push(update: SourceUpdate): void {
    const i = this.#queue.findIndex((u) => u.reference === update.reference);
    if (i >= 0) this.#queue.splice(i, 1);
    this.#queue.push(update);
    this.#wakeUp();
  }

  finish(): void {
    this.#done = true;
    this.#readers.delete(this);
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<SourceUpdate>> {
    for (;;) {
      const update = this.#queue.shift();
      if (update) return { done: false, value: update };
      if (this.#done) return { done: true, value: undefined };
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  async return(): Promise<IteratorResult<SourceUpdate>> {
    this.finish();
    return { done: true, value: undefined };
  }
}
