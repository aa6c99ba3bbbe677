package dev.psst.client;

import java.time.Duration;
import java.util.Objects;
import java.util.function.DoubleSupplier;

/**
 * How calls are retried while the agent is not up yet: a call that fails with UNAVAILABLE before
 * the client has ever reached the agent is tried again after an exponentially growing, jittered
 * delay, up to {@code maxAttempts} tries in all. Once the agent has answered, errors are thrown at once.
 *
 * @param maxAttempts tries in all, the first included (1 disables retrying)
 * @param initialDelay the delay before the first retry
 * @param maxDelay the delay never grows past this
 * @param multiplier each delay is the previous one times this
 * @param jitter each delay is moved at random by up to this fraction of itself, 0..1
 */
public record RetryPolicy(int maxAttempts, Duration initialDelay, Duration maxDelay, double multiplier, double jitter) {
  /** 10 tries, 50 ms doubling up to 1 s, ±20 %: about 5.5 s in all. */
  public static final RetryPolicy DEFAULT = new RetryPolicy(10, Duration.ofMillis(50), Duration.ofSeconds(1), 2.0, 0.2);
  /** One try only. */
  public static final RetryPolicy NONE = new RetryPolicy(1, Duration.ZERO, Duration.ZERO, 1.0, 0.0);

  public RetryPolicy {
    Objects.requireNonNull(initialDelay, "initialDelay");
    Objects.requireNonNull(maxDelay, "maxDelay");
    if (maxAttempts < 1) {
      throw new IllegalArgumentException("maxAttempts must be >= 1");
    }
    if (initialDelay.isNegative() || maxDelay.compareTo(initialDelay) < 0) {
      throw new IllegalArgumentException("need 0 <= initialDelay <= maxDelay");
    }
    if (!(multiplier >= 1.0)) {
      throw new IllegalArgumentException("multiplier must be >= 1");
    }
    if (!(jitter >= 0.0 && jitter <= 1.0)) {
      throw new IllegalArgumentException("jitter must be between 0 and 1");
    }
  }

  /** The wait after failed try number {@code attempt} (from 1), jitter included. */
  public Duration delay(int attempt, DoubleSupplier random) {
    double base = Math.min(maxDelay.toNanos(), initialDelay.toNanos() * Math.pow(multiplier, attempt - 1));
    double spread = base * jitter;
    double nanos = base - spread + random.getAsDouble() * 2 * spread;
    return Duration.ofNanos(Math.max(0L, Math.round(nanos)));
  }

  /** Told before each retry's wait, e.g. to log it. */
  @FunctionalInterface
  public interface Listener {
    void onRetry(int attempt, Duration delay, PsstException error);
  }
}
