package dev.psst.client;

import java.time.Instant;
import java.util.Optional;

/**
 * Whether the agent can be reached, as a watch (or a {@link Source}) last found. A watch goes on
 * either way: it reconnects for as long as it is open.
 *
 * @param reachable false from the first failed reconnect until a stream is up again
 * @param error why it is unreachable (the last failure), or why a Source's watch ended
 * @param since when this status began
 */
public record WatchStatus(boolean reachable, PsstException error, Instant since) {
  public Optional<PsstException> errorIfAny() {
    return Optional.ofNullable(error);
  }
}
