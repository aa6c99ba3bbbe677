/**
 * How the client waits for an agent it cannot reach. Unary calls wait within their deadline
 * while the channel reconnects from `initialDelayMs` up to `maxDelayMs` between tries; a watch
 * reconnects from `initialDelayMs`, multiplying by `multiplier` up to its `maxBackoffMs`, each
 * delay moved at random by `jitter`.
 */
export interface RetryOptions {
  /** The delay before the first reconnect (default 50 ms). */
  initialDelayMs?: number;
  /** Unary calls: the channel's reconnect delay never grows past this (default 1000 ms). */
  maxDelayMs?: number;
  /** Each delay is the previous one times this (default 2). */
  multiplier?: number;
  /** Each delay is moved at random by up to this fraction of itself, 0..1 (default 0.2). */
  jitter?: number;
}

export type ResolvedRetry = Required<RetryOptions>;

export const DEFAULT_RETRY: Readonly<ResolvedRetry> = Object.freeze({
  initialDelayMs: 50,
  maxDelayMs: 1000,
  multiplier: 2,
  jitter: 0.2,
});

/** The longest a watch may wait between reconnects. */
export const MAX_BACKOFF_LIMIT_MS = 30_000;

export function resolveRetry(options: RetryOptions | false | undefined): ResolvedRetry {
  const r: ResolvedRetry = { ...DEFAULT_RETRY, ...(options || {}) };
  if (!(r.initialDelayMs >= 0)) throw new RangeError('retry.initialDelayMs must be >= 0');
  if (!(r.maxDelayMs >= r.initialDelayMs)) throw new RangeError('retry.maxDelayMs must be >= retry.initialDelayMs');
  if (!(r.maxDelayMs <= MAX_BACKOFF_LIMIT_MS)) throw new RangeError(`retry.maxDelayMs must be <= ${MAX_BACKOFF_LIMIT_MS}`);
  if (!(r.multiplier >= 1)) throw new RangeError('retry.multiplier must be >= 1');
  if (!(r.jitter >= 0 && r.jitter <= 1)) throw new RangeError('retry.jitter must be between 0 and 1');
  return r;
}

/** The wait after failed try number `attempt` (from 1), capped at `maxMs`, jitter included. */
export function backoffDelayMs(
  attempt: number,
  retry: Omit<ResolvedRetry, 'maxDelayMs'>,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const base = Math.min(maxMs, retry.initialDelayMs * retry.multiplier ** (attempt - 1));
  const spread = base * retry.jitter;
  return Math.max(0, Math.round(base - spread + random() * 2 * spread));
}
