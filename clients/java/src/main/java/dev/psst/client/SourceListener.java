package dev.psst.client;

/**
 * Hears what happens to a {@link Source}: updates and deletions on its thread ({@code psst-source}),
 * one at a time; status changes on the thread that noticed them. Keep them short. Every method
 * has a default that does nothing.
 */
public interface SourceListener {
  /** {@code secret} is now current for {@code reference} ({@link Source#get(String)} returns it too). */
  default void onUpdate(String reference, Secret secret) {}

  /**
   * The agent became unreachable or reachable again, or the watch ended with an error (a denied
   * watch after a policy reload): the values are kept and the Source tries again.
   */
  default void onStatus(WatchStatus status) {}

  /** The secret was deleted; {@link Source#get(String)} keeps its last value. */
  default void onDeleted(String reference) {}
}
