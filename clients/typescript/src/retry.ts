import type { PsstError } from './errors';

/**
 * How calls are retried while the agent is not up yet: a call that fails with UNAVAILABLE before
 * the client has ever reached the agent is tried again after an exponentially growing, jittered
 * delay, up to `maxAttempts` tries in all. Once the agent has answered, errors are returned at once.
 */
export interface RetryOptions {
  /** Tries in all, the first included (default 10; 1 disables retrying). */
  maxAttempts?: number;
  /** The delay before the first retry (default 50 ms). */
  initialDelayMs?: number;
  /** The delay never grows past this (default 1000 ms). */
  maxDelayMs?: number;
  /** Each delay is the previous one times this (default 2). */
  multiplier?: number;
  /** Each delay is moved at random by up to this fraction of itself, 0..1 (default 0.2). */
  jitter?: number;
  /** Called before each retry's wait, e.g. to log it. */
  onRetry?: (event: RetryEvent) => void;
}

export interface RetryEvent {
  /** The number of the try that failed, from 1. */
  attempt: number;
  /** How long the client now waits before the next try. */
  delayMs: number;
  error: PsstError;
}

export type ResolvedRetry = Required<Omit<RetryOptions, 'onRetry'>> & Pick<RetryOptions, 'onRetry'>;

/** With the defaults, a client gives up after about 5.5 s without an agent. */
export const DEFAULT_RETRY: Readonly<ResolvedRetry> = Object.freeze({
  maxAttempts: 10,
  initialDelayMs: 50,
  maxDelayMs: 1000,
  multiplier: 2,
  jitter: 0.2,
});

export function resolveRetry(options: RetryOptions | false | undefined): ResolvedRetry {
  if (options === false) return { ...DEFAULT_RETRY, maxAttempts: 1 };
  const r: ResolvedRetry = { ...DEFAULT_RETRY, ...options };
  if (!Number.isInteger(r.maxAttempts) || r.maxAttempts < 1) throw new RangeError('retry.maxAttempts must be an integer >= 1');
  if (!(r.initialDelayMs >= 0)) throw new RangeError('retry.initialDelayMs must be >= 0');
  if (!(r.maxDelayMs >= r.initialDelayMs)) throw new RangeError('retry.maxDelayMs must be >= retry.initialDelayMs');
  if (!(r.multiplier >= 1)) throw new RangeError('retry.multiplier must be >= 1');
  if (!(r.jitter >= 0 && r.jitter <= 1)) throw new RangeError('retry.jitter must be between 0 and 1');
  return r;
}

/** The wait after failed try number `attempt` (from 1), jitter included. */
export function backoffDelayMs(attempt: number, retry: ResolvedRetry, random: () => number = Math.random): number {
  const base = Math.min(retry.maxDelayMs, retry.initialDelayMs * retry.multiplier ** (attempt - 1));
  const spread = base * retry.jitter;
  return Math.max(0, Math.round(base - spread + random() * 2 * spread));
}
