package dev.psst.client;

import java.time.Instant;

/**
 * How the agent's cache served a secret.
 *
 * @param hit true when the value came from the agent's cache without a backend call for this request
 * @param stale true when the value is past its TTL and served because the backend could not be reached
 * @param fetchedAt when the agent fetched it from the backend, or null
 * @param expiresAt when the cached value expires, or null
 */
public record CacheInfo(boolean hit, boolean stale, Instant fetchedAt, Instant expiresAt) {
  static final CacheInfo NONE = new CacheInfo(false, false, null, null);

  static CacheInfo fromProto(dev.psst.v1.CacheInfo c) {
    return new CacheInfo(
        c.getHit(),
        c.getStale(),
        c.hasFetchedAt() ? Timestamps.toInstant(c.getFetchedAt()) : null,
        c.hasExpiresAt() ? Timestamps.toInstant(c.getExpiresAt()) : null);
  }
}
