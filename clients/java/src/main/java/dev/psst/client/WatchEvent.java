package dev.psst.client;

import java.time.Instant;
import java.util.Objects;
import java.util.Optional;

/**
 * One change of a watched secret, as a {@link Watch} delivers it. {@link #secret()} is present for
 * {@link Kind#CURRENT} and {@link Kind#NEW_VERSION}. {@link #toString()} never shows the value.
 */
public final class WatchEvent {
  /** What happened to the secret. */
  public enum Kind {
    /** The state when the watch starts (or resumes with a version the caller did not have). */
    CURRENT,
    /** A new version became current; {@link #previousVersionId()} is the one the caller had. */
    NEW_VERSION,
    /** A version is staged but not current yet (Secrets Manager AWSPENDING: rotation started). */
    PENDING_VERSION,
    /** The secret no longer exists. */
    DELETED
  }

  private final String reference;
  private final Kind kind;
  private final Secret secret;
  private final String previousVersionId;
  private final String pendingVersionId;
  private final Instant observedAt;

  public WatchEvent(String reference, Kind kind, Secret secret, String previousVersionId,
      String pendingVersionId, Instant observedAt) {
    this.reference = Objects.requireNonNull(reference, "reference");
    this.kind = Objects.requireNonNull(kind, "kind");
    this.secret = secret;
    this.previousVersionId = previousVersionId == null ? "" : previousVersionId;
    this.pendingVersionId = pendingVersionId == null ? "" : pendingVersionId;
    this.observedAt = observedAt;
  }

  /** Null when the message's kind is not one this client knows (it is then skipped). */
  static WatchEvent fromProto(dev.psst.v1.WatchEvent message) {
    Kind kind = kindOf(message);
    if (kind == null) {
      return null;
    }
    return new WatchEvent(
        message.getReference(),
        kind,
        message.hasSecret() ? Secret.fromProto(message.getSecret()) : null,
        message.getPreviousVersionId(),
        message.getPendingVersionId(),
        message.hasObservedAt() ? Timestamps.toInstant(message.getObservedAt()) : null);
  }

  static Kind kindOf(dev.psst.v1.WatchEvent message) {
    switch (message.getKind()) {
      case CURRENT:
        return Kind.CURRENT;
      case NEW_VERSION:
        return Kind.NEW_VERSION;
      case PENDING_VERSION:
        return Kind.PENDING_VERSION;
      case DELETED:
        return Kind.DELETED;
      default:
        return null;
    }
  }

  /** The reference as passed to {@code watch}. */
  public String reference() {
    return reference;
  }

  public Kind kind() {
    return kind;
  }

  /** The secret now current, for {@code CURRENT} and {@code NEW_VERSION}. */
  public Optional<Secret> secret() {
    return Optional.ofNullable(secret);
  }

  /** The version this event brings ({@code secret().versionId()}), if it brings one. */
  public Optional<String> versionId() {
    return secret == null ? Optional.empty() : Optional.of(secret.versionId());
  }

  /** For {@code NEW_VERSION}: the version the caller had before (empty when unknown). */
  public String previousVersionId() {
    return previousVersionId;
  }

  /** For {@code PENDING_VERSION}: the staged version. */
  public String pendingVersionId() {
    return pendingVersionId;
  }

  /** When the agent saw the change. */
  public Optional<Instant> observedAt() {
    return Optional.ofNullable(observedAt);
  }

  /** Never the value: the secret part is {@link Secret#toString()}, which redacts it. */
  @Override
  public String toString() {
    StringBuilder s = new StringBuilder("WatchEvent[kind=").append(kind).append(", reference=").append(reference);
    if (secret != null) {
      s.append(", secret=").append(secret);
    }
    if (!previousVersionId.isEmpty()) {
      s.append(", previousVersionId=").append(previousVersionId);
    }
    if (!pendingVersionId.isEmpty()) {
      s.append(", pendingVersionId=").append(pendingVersionId);
    }
    if (observedAt != null) {
      s.append(", observedAt=").append(observedAt);
    }
    return s.append(']').toString();
  }
}
