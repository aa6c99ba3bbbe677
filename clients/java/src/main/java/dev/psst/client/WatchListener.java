package dev.psst.client;

/**
 * Receives the events of {@link PsstClient#watch(java.util.List, WatchListener)}, one at a time,
 * on the watch's own thread ({@code psst-watch}).
 */
@FunctionalInterface
public interface WatchListener {
  /** One event. A slow listener gets the newest version next, not every version in between. */
  void onEvent(WatchEvent event);

  /**
   * The watch ended with this error (denied, not found, invalid reference, or the agent
   * unreachable for longer than the opt-in give-up). Not called after {@link Watch#close()}.
   * The default logs it as a warning.
   */
  default void onError(PsstException error) {
    System.getLogger(WatchListener.class.getName())
        .log(System.Logger.Level.WARNING, "psst watch ended: " + error.getMessage(), error);
  }

  /**
   * The agent became unreachable (a reconnect failed) or reachable again; the watch goes on.
   * Called on the thread that noticed: keep it short. The default does nothing.
   */
  default void onStatus(WatchStatus status) {}
}
