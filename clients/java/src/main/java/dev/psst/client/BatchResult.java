package dev.psst.client;

import java.util.Objects;
import java.util.Optional;

/** One item of a {@link PsstClient#batchGet batchGet}: a secret, or the error for that reference. */
public final class BatchResult {
  private final String reference;
  private final Secret secret;
  private final PsstException error;

  private BatchResult(String reference, Secret secret, PsstException error) {
    this.reference = reference;
    this.secret = secret;
    this.error = error;
  }

  public static BatchResult ok(String reference, Secret secret) {
    return new BatchResult(reference, Objects.requireNonNull(secret, "secret"), null);
  }

  public static BatchResult failed(String reference, PsstException error) {
    return new BatchResult(reference, null, Objects.requireNonNull(error, "error"));
  }

  /** The reference as requested. */
  public String reference() {
    return reference;
  }

  public boolean isOk() {
    return secret != null;
  }

  /** The secret; throws this item's {@link PsstException} when it failed. */
  public Secret secret() {
    if (secret == null) {
      throw error;
    }
    return secret;
  }

  /** This item's error, empty when it succeeded. */
  public Optional<PsstException> error() {
    return Optional.ofNullable(error);
  }

  @Override
  public String toString() {
    return isOk() ? "BatchResult[" + secret + "]" : "BatchResult[" + reference + ": " + error.getMessage() + "]";
  }
}
