package dev.psst.client;

import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The always-current secret: the value of each reference in memory, kept current by a watch that
 * never gives up. Made by {@link PsstClient#source(List)}, which fetches each reference once and
 * throws the agent's error when one is refused.
 *
 * <pre>{@code
 * try (Source db = psst.source("sm:prod/db#password")) {
 *   db.addListener(new SourceListener() {
 *     public void onUpdate(String ref, Secret secret) { pool.setPassword(secret.valueAsString()); }
 *   });
 *   connect(db.get("sm:prod/db#password").valueAsString());
 * }
 * }</pre>
 *
 * <p>{@link #get(String)} returns the last good value from memory, at once, even while the agent
 * is down. Errors never replace a value: an outage, a denied watch (say, after a policy reload)
 * or a deletion leave {@code get} answering the last good value; a watch that ended with an
 * error is opened again after a backoff. Listeners run on the {@code psst-source} daemon thread.
 * Closing the client closes its Sources (their {@code get} keeps answering). Thread-safe.
 */
public final class Source implements AutoCloseable {
  private static final RetryPolicy REOPEN = new RetryPolicy(2, Duration.ofMillis(100), PsstClient.MAX_BACKOFF_LIMIT, 2.0, 0.2);

  private final PsstClient client;
  private final List<String> references;
  private final Map<String, Secret> values = new ConcurrentHashMap<>();
  private final List<SourceListener> listeners = new CopyOnWriteArrayList<>();
  private final Thread thread;
  private volatile Watch watch;
  private volatile WatchStatus status;
  private volatile boolean closed;

  private Source(PsstClient client, List<String> references) {
    this.client = client;
    this.references = List.copyOf(references);
    this.thread = new Thread(this::run, "psst-source");
    this.thread.setDaemon(true);
  }

  static Source open(PsstClient client, List<String> references) {
    Objects.requireNonNull(references, "references");
    if (references.isEmpty()) {
      throw new IllegalArgumentException("a Source needs at least one reference");
    }
    Source source = new Source(client, references);
    for (String reference : source.references) {
      source.values.put(reference, client.get(reference));
    }
    source.thread.start();
    return source;
  }

  /** The references, as given. */
  public List<String> references() {
    return references;
  }

  /** The last good value of {@code reference} (one of {@link #references()}), from memory. */
  public Secret get(String reference) {
    Secret secret = values.get(reference);
    if (secret == null) {
      throw new IllegalArgumentException(reference + " is not one of this Source's references");
    }
    return secret;
  }

  /** Adds a listener; returns this Source. */
  public Source addListener(SourceListener listener) {
    listeners.add(Objects.requireNonNull(listener, "listener"));
    return this;
  }

  /** The reachability its watch last reported, or null before it has reported any. */
  public WatchStatus status() {
    return status;
  }

  public boolean isClosed() {
    return closed;
  }

  /** Stops watching; {@code get} keeps answering the last values. */
  @Override
  public void close() {
    closed = true;
    Watch w = watch;
    if (w != null) {
      w.close();
    }
    thread.interrupt();
  }

  @Override
  public String toString() {
    return "Source" + references + (closed ? " (closed)" : "");
  }

  private void run() {
    int attempt = 0;
    while (!closed) {
      Map<String, String> known = new HashMap<>();
      values.forEach((ref, secret) -> known.put(ref, secret.versionId()));
      Watch w = client.watch(references, known).onStatus(this::setStatus);
      watch = w;
      if (closed) {
        w.close();
        break;
      }
      try {
        while (w.hasNext()) {
          attempt = 0;
          WatchEvent event = w.next();
          if (event.secret().isPresent()) {
            Secret secret = event.secret().get();
            values.put(event.reference(), secret);
            listeners.forEach(l -> l.onUpdate(event.reference(), secret));
          } else if (event.kind() == WatchEvent.Kind.DELETED) {
            listeners.forEach(l -> l.onDeleted(event.reference()));
          }
        }
      } catch (PsstException e) {
        // Denied (a policy reload), or the secret was gone when the watch (re)started: keep the
        // values, say so, and try again later.
        if (closed) {
          break;
        }
        setStatus(new WatchStatus(true, e, Instant.now()));
      } finally {
        w.close();
      }
      if (client.isClosed()) {
        // The client was closed under it: nothing more will come.
        closed = true;
        break;
      }
      try {
        Thread.sleep(REOPEN.delay(++attempt, ThreadLocalRandom.current()::nextDouble).toMillis());
      } catch (InterruptedException e) {
        break;
      }
    }
  }

  private void setStatus(WatchStatus s) {
    status = s;
    listeners.forEach(l -> l.onStatus(s));
  }
}
