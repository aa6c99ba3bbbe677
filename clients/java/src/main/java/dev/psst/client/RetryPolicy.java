package dev.psst.client;

import java.time.Duration;
import java.util.Objects;
import java.util.function.DoubleSupplier;

/**
 * How the client waits for an agent it cannot reach. Unary calls wait within their deadline
 * (grpc's wait-for-ready) while the channel reconnects after these delays: from
 * {@code initialDelay}, times {@code multiplier} each time, up to {@code maxDelay}, each moved at
 * random by {@code jitter}. Watches reconnect after the same delays, capped at
 * {@link PsstClient.Builder#watchMaxBackoff(Duration)} instead. A request that reached the agent
 * is never sent again.
 *
 * @param maxAttempts 1 ({@link #NONE}) makes calls fail at once when no connection is up; any
 *     other value waits within the call's deadline
 * @param initialDelay the delay before the first retry
 * @param maxDelay the delay never grows past this
 * @param multiplier each delay is the previous one times this
 * @param jitter each delay is moved at random by up to this fraction of itself, 0..1
 */
public record RetryPolicy(int maxAttempts, Duration initialDelay, Duration maxDelay, double multiplier, double jitter) {
  /** 50 ms doubling up to 1 s between reconnects, ±20 %. */
  public static final RetryPolicy DEFAULT = new RetryPolicy(10, Duration.ofMillis(50), Duration.ofSeconds(1), 2.0, 0.2);
  /** No waiting: a call fails at once when no connection is up. */
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
}
