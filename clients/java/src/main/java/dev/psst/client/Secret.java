package dev.psst.client;

import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import javax.security.auth.Destroyable;

/**
 * A secret as the agent served it. {@link #toString()} shows the reference, version and the
 * value's length, never the value; read the value deliberately with {@link #value()} (a copy) or
 * {@link #valueAsString()}. {@link #destroy()} zeroes this object's copy.
 */
public final class Secret implements Destroyable {
  private final String reference;
  private final byte[] value;
  private final String versionId;
  private final List<String> stages;
  private final Instant createdAt;
  private final CacheInfo cache;
  private volatile boolean destroyed;

  public Secret(String reference, byte[] value, String versionId, List<String> stages, Instant createdAt,
      CacheInfo cache) {
    this.reference = Objects.requireNonNull(reference, "reference");
    this.value = Objects.requireNonNull(value, "value").clone();
    this.versionId = Objects.requireNonNull(versionId, "versionId");
    this.stages = List.copyOf(stages == null ? List.of() : stages);
    this.createdAt = createdAt;
    this.cache = cache == null ? CacheInfo.NONE : cache;
  }

  static Secret fromProto(dev.psst.v1.Secret message) {
    return new Secret(
        message.getReference(),
        message.getValue().toByteArray(),
        message.getVersionId(),
        message.getStagesList(),
        message.hasCreatedAt() ? Timestamps.toInstant(message.getCreatedAt()) : null,
        message.hasCache() ? CacheInfo.fromProto(message.getCache()) : CacheInfo.NONE);
  }

  /** The reference as asked for, in canonical form. */
  public String reference() {
    return reference;
  }

  /** A copy of the value's bytes. */
  public byte[] value() {
    checkNotDestroyed();
    return value.clone();
  }

  /** The value decoded as UTF-8. */
  public String valueAsString() {
    return valueAsString(StandardCharsets.UTF_8);
  }

  public String valueAsString(Charset charset) {
    checkNotDestroyed();
    return new String(value, charset);
  }

  /** The value's length in bytes. */
  public int size() {
    return value.length;
  }

  /** The backend's id of the version served. */
  public String versionId() {
    return versionId;
  }

  /** Stages or labels of that version (e.g. AWSCURRENT), where the backend has them. */
  public List<String> stages() {
    return stages;
  }

  /** When the backend created this version, where it says. */
  public Optional<Instant> createdAt() {
    return Optional.ofNullable(createdAt);
  }

  public CacheInfo cache() {
    return cache;
  }

  /** Overwrites this object's copy of the value with zeros; reading the value afterwards throws. */
  @Override
  public void destroy() {
    Arrays.fill(value, (byte) 0);
    destroyed = true;
  }

  @Override
  public boolean isDestroyed() {
    return destroyed;
  }

  private void checkNotDestroyed() {
    if (destroyed) {
      throw new IllegalStateException("the secret " + reference + " was destroyed");
    }
  }

  /** Never the value: {@code Secret[reference=..., versionId=..., value=<redacted N bytes>, ...]}. */
  @Override
  public String toString() {
    return "Secret[reference=" + reference
        + ", versionId=" + versionId
        + ", value=<redacted " + value.length + " bytes>"
        + ", stages=" + stages
        + ", createdAt=" + createdAt
        + ", cache=" + cache
        + "]";
  }
}
