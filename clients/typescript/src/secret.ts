import { inspect } from 'node:util';

import type { Timestamp__Output } from './generated/google/protobuf/Timestamp';
import type { Secret__Output } from './generated/psst/v1/Secret';

/** How the agent's cache served a secret. */
export interface CacheInfo {
  /** True when the value came from the agent's cache without a backend call for this request. */
  readonly hit: boolean;
  /** True when the value is past its TTL and served because the backend could not be reached. */
  readonly stale: boolean;
  readonly fetchedAt?: Date;
  readonly expiresAt?: Date;
}

export interface SecretInit {
  reference: string;
  value: Uint8Array;
  versionId: string;
  stages?: readonly string[];
  createdAt?: Date;
  cache?: CacheInfo;
}

const REDACTED = '[redacted]';

/**
 * A secret as the agent served it. The value is kept in a private field: `toString()`,
 * `JSON.stringify()` and `util.inspect()`/`console.log()` show metadata and the value's length only.
 * Read it with `value` (a copy, as a Buffer) or `text()`.
 */
export class Secret {
  /** The reference as asked for, in canonical form. */
  readonly reference: string;
  /** The backend's id of the version served. */
  readonly versionId: string;
  /** Stages or labels of that version (e.g. AWSCURRENT), where the backend has them. */
  readonly stages: readonly string[];
  /** When the backend created this version, where it says. */
  readonly createdAt: Date | undefined;
  readonly cache: CacheInfo;
  readonly #value: Buffer;

  constructor(init: SecretInit) {
    this.reference = init.reference;
    // An unpooled copy of our own, so that wipe() clears all of it and nothing else.
    this.#value = Buffer.alloc(init.value.byteLength);
    this.#value.set(init.value);
    this.versionId = init.versionId;
    this.stages = Object.freeze([...(init.stages ?? [])]);
    this.createdAt = init.createdAt;
    this.cache = Object.freeze({ ...(init.cache ?? { hit: false, stale: false }) });
  }

  /** A copy of the value's bytes. */
  get value(): Buffer {
    const copy = Buffer.alloc(this.#value.length);
    this.#value.copy(copy);
    return copy;
  }

  /** The value's length in bytes. */
  get size(): number {
    return this.#value.length;
  }

  /** The value decoded as text (UTF-8 unless told otherwise). */
  text(encoding: BufferEncoding = 'utf8'): string {
    return this.#value.toString(encoding);
  }

  /** Overwrites this object's copy of the value with zeros. */
  wipe(): void {
    this.#value.fill(0);
  }

  toString(): string {
    return `Secret(${this.reference}, version ${JSON.stringify(this.versionId)}, value ${REDACTED} ${this.#value.length} bytes)`;
  }

  toJSON(): Record<string, unknown> {
    return {
      reference: this.reference,
      versionId: this.versionId,
      stages: this.stages,
      createdAt: this.createdAt,
      cache: this.cache,
      value: REDACTED,
      size: this.#value.length,
    };
  }

  [inspect.custom](depth: number, options: object, inspectFn: typeof inspect = inspect): string {
    if (depth < 0) return `[Secret ${this.reference}]`;
    return `Secret ${inspectFn(this.toJSON(), { ...options, depth: depth - 1 })}`;
  }

  /** @internal Builds a Secret from the wire message and zeros the message's copy of the value. */
  static fromProto(message: Secret__Output): Secret {
    const secret = new Secret({
      reference: message.reference,
      value: message.value ?? Buffer.alloc(0),
      versionId: message.versionId,
      stages: message.stages ?? [],
      createdAt: toDate(message.createdAt),
      cache: {
        hit: message.cache?.hit ?? false,
        stale: message.cache?.stale ?? false,
        fetchedAt: toDate(message.cache?.fetchedAt),
        expiresAt: toDate(message.cache?.expiresAt),
      },
    });
    message.value?.fill(0);
    return secret;
  }
}

/** A google.protobuf.Timestamp as a Date; undefined when absent. */
export function toDate(ts: Timestamp__Output | null | undefined): Date | undefined {
  if (!ts) return undefined;
  return new Date(Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6));
}
