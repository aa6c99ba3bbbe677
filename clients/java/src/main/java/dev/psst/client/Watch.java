package dev.psst.client;

import dev.psst.v1.WatchSecretsRequest;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.time.Instant;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * A watch on secrets that survives agent restarts: a blocking {@link Iterator} of
 * {@link WatchEvent}s, made by {@link PsstClient#watch(java.util.List)}.
 *
 * <pre>{@code
 * try (Watch watch = psst.watch("local:demo/db-password")) {
 *   for (WatchEvent event : watch) {
 *     event.secret().ifPresent(s -> pool.rotatePassword(s.valueAsString()));
 *   }
 * }
 * }</pre>
 *
 * <p>The call starts when the watch is made. {@link #hasNext()} blocks until an event arrives; it
 * returns false once the watch is closed, and throws the {@link PsstException} the watch ended
 * with: {@link PermissionDeniedException} (no {@code watch} grant, or a policy reload took it
 * away), {@link NotFoundException} (the secret does not exist when the watch starts),
 * {@link InvalidArgumentException}, or {@link UnavailableException} when reconnecting kept failing
 * for longer than the opt-in give-up ({@link PsstClient.Builder#watchReconnect}). {@link #poll(Duration)}
 * waits at most a given time. {@link #onStatus} hears when the agent becomes unreachable and
 * reachable again; the watch goes on either way.
 *
 * <p>When the agent restarts or the stream breaks (UNAVAILABLE, or UNKNOWN/INTERNAL/CANCELLED from
 * a reset), the watch reconnects by itself with backoff and resumes from the version it last
 * delivered per reference ({@code known_versions}), so no version is delivered twice. Events that
 * have arrived but are not read yet are folded per reference: a reader that falls behind gets the
 * newest version, with {@link WatchEvent#previousVersionId()} the version it last had. At most
 * {@value #MAX_BUFFERED} events wait in the client; after that the agent's own latest-value
 * streaming takes over.
 *
 * <p>Like a {@link java.nio.file.DirectoryStream}, a watch is {@link Iterable} for the
 * enhanced {@code for} loop, but once: {@link #iterator()} returns the watch itself.
 *
 * <p>One thread reads a watch; {@link #close()} may be called from any thread and ends a
 * blocked {@code hasNext()} (it then returns false).
 */
public final class Watch implements AutoCloseable, Iterator<WatchEvent>, Iterable<WatchEvent> {
  /** Events received and not yet delivered, at most. */
  public static final int MAX_BUFFERED = 256;

  /** A broken connection (the agent restarting) shows as UNAVAILABLE, or as UNKNOWN, INTERNAL or
   * CANCELLED when the stream is reset: reconnect and resume. */
  private static final Set<Status.Code> BROKEN =
      EnumSet.of(Status.Code.UNAVAILABLE, Status.Code.UNKNOWN, Status.Code.INTERNAL, Status.Code.CANCELLED);
  private static final long NEVER = Long.MIN_VALUE;

  /** Starts a WatchSecrets call; {@code onHeaders} runs when the agent's response headers arrive. */
  @FunctionalInterface
  interface Opener {
    void open(WatchSecretsRequest request, StreamObserver<dev.psst.v1.WatchEvent> observer, Runnable onHeaders);
  }

  /** What a watch needs from its client. */
  static final class Transport {
    final Opener open;
    final Runnable resetBackoff;
    final BooleanSupplier clientClosed;
    final Consumer<Watch> onFinish;
    /** Reconnect delays: the client's initial delay, multiplier and jitter, capped at the watch's maximum. */
    final RetryPolicy backoff;
    /** The opt-in give-up, or null: reconnect for as long as the watch is open. */
    final Duration reconnectFor;
    final Supplier<PsstException> lastRefusal;

    Transport(Opener open, Runnable resetBackoff, BooleanSupplier clientClosed, Consumer<Watch> onFinish,
        RetryPolicy backoff, Duration reconnectFor, Supplier<PsstException> lastRefusal) {
      this.open = open;
      this.resetBackoff = resetBackoff;
      this.clientClosed = clientClosed;
      this.onFinish = onFinish;
      this.backoff = backoff;
      this.reconnectFor = reconnectFor;
      this.lastRefusal = lastRefusal;
    }
  }

  private final List<String> references;
  private final Transport transport;
  private final ReentrantLock lock = new ReentrantLock();
  private final Condition changed = lock.newCondition();
  // Guarded by lock:
  /** Reference → the version id last delivered: sent on reconnect so nothing repeats. */
  private final Map<String, String> known = new HashMap<>();
  /** Events received and folded, not yet delivered. */
  private final List<dev.psst.v1.WatchEvent> arrived = new ArrayList<>();
  private Stream stream;
  /** An error to hand out once the events before it are delivered; it ends the watch. */
  private PsstException failed;
  private boolean closed;
  private long failingSince = NEVER;
  private int attempt;
  private long reconnectAt;
  private PsstException lastError;
  private WatchStatus status;
  private final List<Consumer<WatchStatus>> statusListeners = new CopyOnWriteArrayList<>();
  // The reading thread's:
  private WatchEvent peeked;

  Watch(List<String> references, Transport transport, Map<String, String> knownVersions) {
    this.references = List.copyOf(references);
    this.transport = transport;
    this.known.putAll(knownVersions);
    lock.lock();
    try {
      open();
    } finally {
      lock.unlock();
    }
  }

  /** The references watched, as given. */
  public List<String> references() {
    return references;
  }

  /** Reference → the version id last delivered (what a reconnect resumes from). */
  public Map<String, String> knownVersions() {
    lock.lock();
    try {
      return Map.copyOf(known);
    } finally {
      lock.unlock();
    }
  }

  /**
   * Calls {@code listener} on each change of reachability: the agent became unreachable (with
   * the last failure) or reachable again. The watch goes on either way. Called on the thread
   * that noticed (the reader's, or grpc's): keep it short.
   */
  public Watch onStatus(Consumer<WatchStatus> listener) {
    statusListeners.add(Objects.requireNonNull(listener, "listener"));
    return this;
  }

  /** The reachability last reported, or null before the first stream is up or fails. */
  public WatchStatus status() {
    lock.lock();
    try {
      return status;
    } finally {
      lock.unlock();
    }
  }

  /** Reports a change of reachability (under the lock). */
  private void setReachable(boolean reachable, PsstException error) {
    if (status != null && status.reachable() == reachable) {
      return;
    }
    status = new WatchStatus(reachable, error, Instant.now());
    for (Consumer<WatchStatus> listener : statusListeners) {
      listener.accept(status);
    }
  }

  /** True once the watch has ended: closed, or failed and its error handed out. */
  public boolean isClosed() {
    lock.lock();
    try {
      return closed;
    } finally {
      lock.unlock();
    }
  }

  /** The watch itself, for {@code for (WatchEvent event : watch)}; the events are read once. */
  @Override
  public Iterator<WatchEvent> iterator() {
    return this;
  }

  /**
   * Waits for the next event. False once the watch is closed; throws the {@link PsstException}
   * the watch ended with (once; afterwards false). An interrupt while waiting throws a
   * {@code CANCELLED} PsstException with the thread's interrupt flag set (the watch stays open).
   */
  @Override
  public boolean hasNext() {
    if (peeked != null) {
      return true;
    }
    try {
      peeked = take(false, 0);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw PsstException.of(Status.Code.CANCELLED, "interrupted while waiting for a watch event", null, e);
    }
    return peeked != null;
  }

  /** The next event, waiting for it; {@link NoSuchElementException} when the watch is closed. */
  @Override
  public WatchEvent next() {
    if (!hasNext()) {
      throw new NoSuchElementException("the watch is closed");
    }
    WatchEvent event = peeked;
    peeked = null;
    return event;
  }

  /**
   * The next event, waiting at most {@code timeout}: null when none came in time, or when the
   * watch is closed ({@link #isClosed()} tells which). Throws the {@link PsstException} the watch
   * ended with.
   */
  public WatchEvent poll(Duration timeout) throws InterruptedException {
    Objects.requireNonNull(timeout, "timeout");
    if (peeked != null) {
      WatchEvent event = peeked;
      peeked = null;
      return event;
    }
    return take(true, Math.max(0L, timeout.toNanos()));
  }

  /** Ends the watch and cancels its call. Idempotent; a blocked {@code hasNext()} returns false. */
  @Override
  public void close() {
    lock.lock();
    try {
      failed = null;
      finish();
    } finally {
      lock.unlock();
    }
  }

  @Override
  public String toString() {
    return "Watch" + references + (isClosed() ? " (closed)" : "");
  }

  /** The next event; null on timeout (when timed) or when the watch is closed. */
  private WatchEvent take(boolean timed, long nanos) throws InterruptedException {
    long deadline = System.nanoTime() + nanos;
    lock.lockInterruptibly();
    try {
      for (;;) {
        if (!arrived.isEmpty()) {
          dev.psst.v1.WatchEvent event = arrived.remove(0);
          if (stream != null && stream.starved) {
            stream.starved = false;
            stream.call.request(1);
          }
          return deliver(event);
        }
        if (failed != null) {
          PsstException error = failed;
          failed = null;
          finish();
          throw error;
        }
        if (closed) {
          return null;
        }
        long waitNanos;
        if (stream != null && stream.ended) {
          Stream ended = stream;
          stream = null;
          streamEnded(ended);
          continue;
        } else if (stream == null) {
          long now = System.nanoTime();
          if (transport.reconnectFor != null && failingSince != NEVER
              && now - failingSince > transport.reconnectFor.toNanos()) {
            failed = lastError.code() == Status.Code.UNAVAILABLE ? lastError
                : PsstException.of(Status.Code.UNAVAILABLE, "the watch could not reconnect for "
                    + Duration.ofNanos(now - failingSince).toMillis() + " ms: " + lastError.getMessage(), null, lastError);
            continue;
          }
          if (now - reconnectAt >= 0) {
            open();
            continue;
          }
          waitNanos = reconnectAt - now;
        } else {
          waitNanos = Long.MAX_VALUE;
        }
        if (timed) {
          long left = deadline - System.nanoTime();
          if (left <= 0) {
            return null;
          }
          waitNanos = Math.min(waitNanos, left);
        }
        if (waitNanos == Long.MAX_VALUE) {
          changed.await();
        } else {
          changed.awaitNanos(waitNanos);
        }
      }
    } finally {
      lock.unlock();
    }
  }

  private WatchEvent deliver(dev.psst.v1.WatchEvent event) {
    if (event.hasSecret()) {
      known.put(event.getReference(), event.getSecret().getVersionId());
    } else if (event.getKind() == dev.psst.v1.WatchEvent.Kind.DELETED) {
      known.remove(event.getReference());
    }
    return WatchEvent.fromProto(event);
  }

  /** Starts a call (under the lock), resuming from what was delivered. */
  private void open() {
    if (closed) {
      return;
    }
    if (transport.clientClosed.getAsBoolean()) {
      failed = PsstException.of(Status.Code.CANCELLED, "the client is closed");
      return;
    }
    if (failingSince != NEVER) {
      // Skip grpc's own reconnect backoff: try the socket again now.
      transport.resetBackoff.run();
    }
    WatchSecretsRequest request = WatchSecretsRequest.newBuilder()
        .addAllReferences(references)
        .putAllKnownVersions(known)
        .build();
    Stream s = new Stream();
    stream = s;
    transport.open.open(request, s, s::onHeaders);
  }

  /** A stream ended (under the lock): a lost connection is reconnected, anything else ends the watch. */
  private void streamEnded(Stream s) {
    PsstException error = s.error;
    if (error != null && !BROKEN.contains(error.code())) {
      failed = error;
      return;
    }
    lastError = error != null ? error
        : PsstException.of(Status.Code.UNAVAILABLE, "the agent ended the watch stream");
    long now = System.nanoTime();
    if (s.connected) {
      // The first failure after a working stream: reconnect at once.
      failingSince = now;
      attempt = 0;
      reconnectAt = now;
    } else {
      // A reconnect failed: the agent is unreachable (or refused by the socket check).
      if (failingSince == NEVER) {
        failingSince = now;
      }
      attempt++;
      long delay = transport.backoff.delay(attempt, ThreadLocalRandom.current()::nextDouble).toNanos();
      if (transport.reconnectFor != null) {
        // Never wait past the give-up time: the watch ends when it says.
        delay = Math.min(delay, failingSince + transport.reconnectFor.toNanos() + 1_000_000 - now);
      }
      reconnectAt = now + Math.max(0, delay);
      PsstException refusal = transport.lastRefusal.get();
      setReachable(false, refusal != null ? refusal : lastError);
    }
  }

  /** Ends the watch (under the lock). */
  private void finish() {
    if (closed) {
      return;
    }
    closed = true;
    arrived.clear();
    if (stream != null && !stream.ended && stream.call != null) {
      stream.call.cancel("the watch was closed", null);
    }
    stream = null;
    changed.signalAll();
    transport.onFinish.accept(this);
  }

  /**
   * Folds {@code event} into the undelivered events, in order (the Rust client's {@code coalesce}):
   * a new version of a reference replaces the reference's latest undelivered event in its place
   * when that one carries a version too, keeping its previous version (what the reader last had)
   * and staying CURRENT if it was. A DELETED or PENDING_VERSION in between is not folded over.
   */
  static void fold(List<dev.psst.v1.WatchEvent> queue, dev.psst.v1.WatchEvent event) {
    for (int i = queue.size() - 1; i >= 0; i--) {
      dev.psst.v1.WatchEvent earlier = queue.get(i);
      if (!earlier.getReference().equals(event.getReference())) {
        continue;
      }
      if (carriesValue(earlier) && carriesValue(event)) {
        dev.psst.v1.WatchEvent.Builder merged = event.toBuilder()
            .setPreviousVersionId(earlier.getPreviousVersionId());
        if (earlier.getKind() == dev.psst.v1.WatchEvent.Kind.CURRENT) {
          merged.setKind(dev.psst.v1.WatchEvent.Kind.CURRENT);
        }
        queue.set(i, merged.build());
        return;
      }
      break;
    }
    queue.add(event);
  }

  /** {@link #fold} applied to each event of a batch, in order. */
  static List<dev.psst.v1.WatchEvent> coalesce(List<dev.psst.v1.WatchEvent> batch) {
    List<dev.psst.v1.WatchEvent> out = new ArrayList<>(batch.size());
    for (dev.psst.v1.WatchEvent event : batch) {
      fold(out, event);
    }
    return out;
  }

  private static boolean carriesValue(dev.psst.v1.WatchEvent e) {
    return e.getKind() == dev.psst.v1.WatchEvent.Kind.CURRENT || e.getKind() == dev.psst.v1.WatchEvent.Kind.NEW_VERSION;
  }

  /** One WatchSecrets call. Its callbacks come on grpc's executor, one at a time. */
  private final class Stream implements ClientResponseObserver<WatchSecretsRequest, dev.psst.v1.WatchEvent> {
    ClientCallStreamObserver<WatchSecretsRequest> call;
    /** The agent answered: headers or an event arrived. */
    boolean connected;
    /** No message requested because the buffer is full: the reader requests one when it takes one. */
    boolean starved;
    boolean ended;
    PsstException error;

    @Override
    public void beforeStart(ClientCallStreamObserver<WatchSecretsRequest> requestStream) {
      call = requestStream;
      // Flow control by hand: one message at a time, and none while the buffer is full.
      requestStream.disableAutoRequestWithInitial(1);
    }

    @Override
    public void onNext(dev.psst.v1.WatchEvent event) {
      lock.lock();
      try {
        if (stream != this) {
          return;
        }
        connectedUnderLock();
        if (WatchEvent.kindOf(event) != null) {
          fold(arrived, event);
        }
        if (arrived.size() < MAX_BUFFERED) {
          call.request(1);
        } else {
          starved = true;
        }
        changed.signalAll();
      } finally {
        lock.unlock();
      }
    }

    /** The agent sends its headers as soon as it takes the watch, though a resumed watch may have no event. */
    void onHeaders() {
      lock.lock();
      try {
        if (stream == this && !closed) {
          connectedUnderLock();
        }
      } finally {
        lock.unlock();
      }
    }

    private void connectedUnderLock() {
      connected = true;
      failingSince = NEVER;
      attempt = 0;
      setReachable(true, null);
    }

    @Override
    public void onError(Throwable t) {
      end(PsstException.from(t));
    }

    @Override
    public void onCompleted() {
      end(null);
    }

    private void end(PsstException error) {
      lock.lock();
      try {
        this.error = error;
        this.ended = true;
        changed.signalAll();
      } finally {
        lock.unlock();
      }
    }
  }
}
