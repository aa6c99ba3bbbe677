package dev.psst.client;

import com.google.protobuf.ByteString;
import dev.psst.v1.BatchGetResult;
import dev.psst.v1.BatchGetSecretsRequest;
import dev.psst.v1.GetSecretRequest;
import dev.psst.v1.ListSecretsRequest;
import dev.psst.v1.PutSecretRequest;
import dev.psst.v1.PutSecretResponse;
import dev.psst.v1.SecretsGrpc;
import dev.psst.v1.WhoAmIRequest;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ConnectivityState;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.InternalNettyChannelBuilder;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.netty.channel.ChannelOption;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.MultiThreadIoEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.Epoll;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollDomainSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollIoHandler;
import io.grpc.netty.shaded.io.netty.channel.unix.DomainSocketAddress;
import io.grpc.netty.shaded.io.netty.util.concurrent.DefaultThreadFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.OptionalInt;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * A connection to the psst agent over its Unix socket (grpc-java, Netty epoll). Thread-safe: create
 * one per process and share it; close it when done. Every method throws an unchecked
 * {@link PsstException} (or a subclass such as {@link NotFoundException}) when the call fails.
 *
 * <pre>{@code
 * try (PsstClient psst = PsstClient.create()) {
 *   Secret secret = psst.get("local:demo/db-password");
 *   connect(secret.valueAsString());
 * }
 * }</pre>
 */
public final class PsstClient implements AutoCloseable {
  /** Where the agent listens unless told otherwise. */
  public static final String DEFAULT_SOCKET = "/run/psst/psst.sock";
  /** The environment variable naming the socket. */
  public static final String SOCKET_ENV = "PSST_SOCKET";
  /** The deadline of each call unless told otherwise. */
  public static final Duration DEFAULT_CALL_TIMEOUT = Duration.ofSeconds(10);
  /** A watch's longest wait between reconnects unless told otherwise. */
  public static final Duration DEFAULT_WATCH_MAX_BACKOFF = Duration.ofSeconds(5);
  /** The longest wait between reconnects a watch may be given. */
  public static final Duration MAX_BACKOFF_LIMIT = Duration.ofSeconds(30);

  /** What a client and its {@link #withTimeout} views share. */
  private static final class Shared {
    final Set<Watch> watches = ConcurrentHashMap.newKeySet();
    /** Calls waiting for a connection: a refused connection cancels them. */
    final Set<Context.CancellableContext> waiting = ConcurrentHashMap.newKeySet();
    volatile UntrustedAgentException lastRefusal;
    volatile boolean closed;
    final AtomicInteger reconnects = new AtomicInteger();
    final AtomicBoolean reconnecting = new AtomicBoolean();
  }

  private final Path socket;
  private final RetryPolicy retry;
  private final Duration callTimeout;
  private final Duration watchReconnect;
  private final Duration watchMaxBackoff;
  private final Shared shared;
  private final EventLoopGroup eventLoop;
  private final ManagedChannel channel;

  private PsstClient(PsstClient parent, Duration callTimeout) {
    this.socket = parent.socket;
    this.retry = parent.retry;
    this.callTimeout = callTimeout;
    this.watchReconnect = parent.watchReconnect;
    this.watchMaxBackoff = parent.watchMaxBackoff;
    this.shared = parent.shared;
    this.eventLoop = parent.eventLoop;
    this.channel = parent.channel;
  }

  private PsstClient(Builder b) {
    this.socket = b.socket != null ? b.socket : socketPath(b.environment);
    this.retry = b.retry;
    this.callTimeout = b.callTimeout;
    this.watchReconnect = b.watchReconnect;
    this.watchMaxBackoff = b.watchMaxBackoff;
    this.shared = new Shared();
    OptionalInt expectedUid = PeerCheck.configured(b.expectedUid, b.environment);
    if (!Epoll.isAvailable()) {
      throw new IllegalStateException(
          "psst-client needs Netty's epoll transport (Linux) for Unix sockets", Epoll.unavailabilityCause());
    }
    // One daemon epoll thread (Netty 4.2's form of an EpollEventLoopGroup).
    this.eventLoop = new MultiThreadIoEventLoopGroup(
        1, new DefaultThreadFactory("psst-client", true), EpollIoHandler.newFactory());
    NettyChannelBuilder builder = NettyChannelBuilder.forAddress(new DomainSocketAddress(socket.toString()));
    if (expectedUid != null) {
      PeerCheck check = new PeerCheck(socket, expectedUid, this::refused);
      InternalNettyChannelBuilder.setProtocolNegotiatorFactory(builder, check::negotiator);
    }
    this.channel = builder
        .eventLoopGroup(eventLoop)
        .channelType(EpollDomainSocketChannel.class)
        // Agents before the h2 patch (third_party/h2) refuse a socket path as :authority, which
        // grpc-java would send.
        .overrideAuthority(b.authority)
        .usePlaintext()
        // grpc sets TCP keepalive, which a Unix socket does not have (Netty would warn on every connect).
        .withOption(ChannelOption.SO_KEEPALIVE, null)
        // Room for large batches (grpc's default is 4 MiB).
        .maxInboundMessageSize(16 * 1024 * 1024)
        .build();
    followConnectivity();
  }

  /**
   * grpc's own reconnect backoff grows to two minutes, and the channel stays in TRANSIENT_FAILURE
   * while it waits; calls waiting for the agent must see it within their deadline, so while the
   * channel is in TRANSIENT_FAILURE its backoff is cut short after this client's retry delays
   * (50 ms doubling to 1 s by default).
   */
  private void followConnectivity() {
    if (shared.closed) {
      return;
    }
    ConnectivityState state = channel.getState(false);
    if (state == ConnectivityState.TRANSIENT_FAILURE) {
      scheduleReconnect();
    } else if (state == ConnectivityState.READY) {
      shared.reconnects.set(0);
    }
    channel.notifyWhenStateChanged(state, this::followConnectivity);
  }

  private void scheduleReconnect() {
    if (!shared.reconnecting.compareAndSet(false, true)) {
      return;
    }
    long delay = retry.delay(shared.reconnects.incrementAndGet(), ThreadLocalRandom.current()::nextDouble).toNanos();
    eventLoop.schedule(() -> {
      shared.reconnecting.set(false);
      if (!shared.closed && channel.getState(false) == ConnectivityState.TRANSIENT_FAILURE) {
        channel.resetConnectBackoff();
        scheduleReconnect();
      }
    }, Math.max(1, delay), TimeUnit.NANOSECONDS);
  }

  /** A connection was refused by the socket check: calls waiting for one fail now. */
  private void refused(UntrustedAgentException e) {
    shared.lastRefusal = e;
    for (Context.CancellableContext waiting : shared.waiting) {
      waiting.cancel(e);
    }
  }

  /**
   * A view of this client whose calls have {@code timeout} as their deadline. It shares the
   * connection and its watches (closing either closes both).
   */
  public PsstClient withTimeout(Duration timeout) {
    return new PsstClient(this, checkPositive(timeout, "timeout"));
  }

  private static Duration checkPositive(Duration d, String name) {
    if (d.isNegative() || d.isZero()) {
      throw new IllegalArgumentException(name + " must be positive");
    }
    return d;
  }

  /** A client for {@code $PSST_SOCKET}, else {@code /run/psst/psst.sock}, with the defaults. */
  public static PsstClient create() {
    return builder().build();
  }

  public static Builder builder() {
    return new Builder();
  }

  /** The socket path: {@code $PSST_SOCKET} when set and not empty, else {@code /run/psst/psst.sock}. */
  public static Path socketPath(Map<String, String> environment) {
    String fromEnv = environment.get(SOCKET_ENV);
    return Path.of(fromEnv == null || fromEnv.isEmpty() ? DEFAULT_SOCKET : fromEnv).toAbsolutePath();
  }

  /** The socket this client talks to. */
  public Path socket() {
    return socket;
  }

  /** One secret, e.g. {@code local:demo/db-password}, {@code local:a?version=2}, {@code sm:prod/db#password}. */
  public Secret get(String reference) {
    Objects.requireNonNull(reference, "reference");
    GetSecretRequest request = GetSecretRequest.newBuilder().setReference(reference).build();
    return Secret.fromProto(call(true, a -> a.secrets().getSecret(request)));
  }

  /**
   * One result per reference, in order; a bad item does not fail the batch. Throws only when the
   * call as a whole fails.
   */
  public List<BatchResult> batchGet(List<String> references) {
    BatchGetSecretsRequest request = BatchGetSecretsRequest.newBuilder().addAllReferences(references).build();
    List<BatchGetResult> items = call(true, a -> a.secrets().batchGetSecrets(request)).getResultsList();
    List<BatchResult> results = new ArrayList<>(items.size());
    for (int i = 0; i < items.size(); i++) {
      BatchGetResult item = items.get(i);
      String reference = !item.getReference().isEmpty() ? item.getReference()
          : i < references.size() ? references.get(i) : "";
      switch (item.getResultCase()) {
        case SECRET:
          results.add(BatchResult.ok(reference, Secret.fromProto(item.getSecret())));
          break;
        case ERROR:
          results.add(BatchResult.failed(reference,
              PsstException.ofCodeValue(item.getError().getCode(), item.getError().getMessage(), reference)));
          break;
        default:
          results.add(BatchResult.failed(reference,
              PsstException.of(Status.Code.INTERNAL, "the agent sent an empty batch result", reference, null)));
      }
    }
    return results;
  }

  /** @see #batchGet(List) */
  public List<BatchResult> batchGet(String... references) {
    return batchGet(Arrays.asList(references));
  }

  /** The references under a prefix (e.g. {@code local:demo/}) that the caller may list: metadata only. */
  public List<SecretMetadata> list(String prefix) {
    Objects.requireNonNull(prefix, "prefix");
    ListSecretsRequest request = ListSecretsRequest.newBuilder().setPrefix(prefix).build();
    List<SecretMetadata> out = new ArrayList<>();
    for (dev.psst.v1.SecretMetadata m : call(true, a -> a.secrets().listSecrets(request)).getSecretsList()) {
      out.add(new SecretMetadata(m.getReference(), m.getVersionId(),
          m.hasUpdatedAt() ? Timestamps.toInstant(m.getUpdatedAt()) : null));
    }
    return out;
  }

  /** Writes a new version of a secret. */
  public PutResult put(String reference, byte[] value) {
    Objects.requireNonNull(reference, "reference");
    PutSecretRequest request = PutSecretRequest.newBuilder()
        .setReference(reference)
        .setValue(ByteString.copyFrom(value))
        .build();
    PutSecretResponse response = call(false, a -> a.secrets().putSecret(request));
    return new PutResult(response.getReference(), response.getVersionId(),
        response.hasCreatedAt() ? Timestamps.toInstant(response.getCreatedAt()) : null);
  }

  /** Writes a new version of a secret, as UTF-8. */
  public PutResult put(String reference, String value) {
    byte[] bytes = value.getBytes(StandardCharsets.UTF_8);
    try {
      return put(reference, bytes);
    } finally {
      Arrays.fill(bytes, (byte) 0);
    }
  }

  /** How the agent sees this process (caller), what the policy grants it, and which rules matched. */
  public Identity whoAmI() {
    return Identity.fromProto(call(true, a -> a.secrets().whoAmI(WhoAmIRequest.getDefaultInstance())));
  }

  /** The agent's gRPC health ({@code grpc.health.v1}): {@code SERVING} when it answers requests. */
  public HealthCheckResponse.ServingStatus health() {
    return health("");
  }

  public HealthCheckResponse.ServingStatus health(String service) {
    HealthCheckRequest request = HealthCheckRequest.newBuilder().setService(service).build();
    return call(true, a -> a.health().check(request)).getStatus();
  }

  /**
   * Follows secrets: each reference's current secret first ({@code CURRENT}), then one event per
   * change ({@code NEW_VERSION}, {@code PENDING_VERSION}, {@code DELETED}). The returned
   * {@link Watch} is a blocking iterator; close it when done. It reconnects by itself when the
   * agent restarts or the stream breaks, for as long as it is open (capped, jittered backoff;
   * {@link Watch#onStatus} hears when the agent becomes unreachable and reachable again; giving
   * up is opt-in with {@link Builder#watchReconnect(Duration)}), and resumes from the versions it
   * has delivered, so no version is delivered twice.
   * See {@link Watch} for the errors that end it.
   *
   * <pre>{@code
   * try (Watch watch = psst.watch(List.of("local:demo/db-password"))) {
   *   for (WatchEvent event : watch) {
   *     event.secret().ifPresent(s -> reconnect(s.valueAsString()));
   *   }
   * }
   * }</pre>
   */
  public Watch watch(List<String> references) {
    return watch(references, Map.of());
  }

  /**
   * {@link #watch(List)} resuming from versions the caller already has (reference → version id):
   * the first event for such a reference comes only with a different version.
   */
  public Watch watch(List<String> references, Map<String, String> knownVersions) {
    Objects.requireNonNull(references, "references");
    RetryPolicy backoff = new RetryPolicy(Math.max(2, retry.maxAttempts()), retry.initialDelay(),
        watchMaxBackoff.compareTo(retry.initialDelay()) < 0 ? retry.initialDelay() : watchMaxBackoff,
        retry.multiplier(), retry.jitter());
    Watch.Transport transport = new Watch.Transport(
        (request, observer, onHeaders) -> SecretsGrpc.newStub(channel)
            .withInterceptors(onHeaders(onHeaders))
            .watchSecrets(request, observer),
        channel::resetConnectBackoff,
        () -> shared.closed,
        shared.watches::remove,
        backoff,
        watchReconnect,
        () -> shared.lastRefusal);
    Watch watch = new Watch(references, transport, knownVersions);
    shared.watches.add(watch);
    if (shared.closed) {
      watch.close();
    }
    return watch;
  }

  /**
   * An always-current view of {@code references}: fetches each once (throwing the agent's error
   * when one is refused), then keeps them current through a watch that never gives up.
   * {@link Source#get(String)} answers from memory; listeners hear of new values and of the
   * agent's reachability; errors never replace a value it has. Close it when done.
   */
  public Source source(List<String> references) {
    return Source.open(this, references);
  }

  /** @see #source(List) */
  public Source source(String... references) {
    return source(Arrays.asList(references));
  }

  private static ClientInterceptor onHeaders(Runnable onHeaders) {
    return new ClientInterceptor() {
      @Override
      public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
        return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
          @Override
          public void start(Listener<R> listener, Metadata headers) {
            super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
              @Override
              public void onHeaders(Metadata responseHeaders) {
                onHeaders.run();
                super.onHeaders(responseHeaders);
              }
            }, headers);
          }
        };
      }
    };
  }

  /** @see #watch(List) */
  public Watch watch(String... references) {
    return watch(Arrays.asList(references));
  }

  /**
   * {@link #watch(List)} with a callback: a daemon thread ({@code psst-watch}) reads the watch and
   * hands each event to {@code listener.onEvent}, one at a time, and the error that ends it (if
   * any) to {@code listener.onError}. Close the returned {@link Watch} to stop; if the listener
   * throws, the watch is closed and the exception goes to the thread's uncaught-exception handler.
   */
  public Watch watch(List<String> references, WatchListener listener) {
    Objects.requireNonNull(listener, "listener");
    Watch watch = watch(references).onStatus(listener::onStatus);
    Thread thread = new Thread(() -> {
      try {
        while (watch.hasNext()) {
          listener.onEvent(watch.next());
        }
      } catch (PsstException e) {
        listener.onError(e);
      } finally {
        watch.close();
      }
    }, "psst-watch");
    thread.setDaemon(true);
    thread.start();
    return watch;
  }

  /** True once {@link #close()} was called (on this client or a view of it). */
  public boolean isClosed() {
    return shared.closed;
  }

  /**
   * Closes the connection and its event loop, and ends its watches. Calls made afterwards fail
   * with CANCELLED.
   */
  @Override
  public void close() {
    if (shared.closed) {
      return;
    }
    shared.closed = true;
    for (Watch watch : List.copyOf(shared.watches)) {
      watch.close();
    }
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    eventLoop.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
  }

  @Override
  public String toString() {
    return "PsstClient[socket=" + socket + "]";
  }

  /** Calls wait for a connection (grpc's wait-for-ready) unless retrying is off. */
  private <S extends io.grpc.stub.AbstractStub<S>> S withWaiting(S stub) {
    return retry.maxAttempts() > 1 ? stub.withWaitForReady() : stub;
  }

  /** One try of a call: its stubs share the call's deadline and tell whether the agent answered. */
  private final class Attempt implements ClientInterceptor {
    final Deadline deadline;
    volatile boolean answered;

    Attempt(Deadline deadline) {
      this.deadline = deadline;
    }

    SecretsGrpc.SecretsBlockingStub secrets() {
      return withWaiting(SecretsGrpc.newBlockingStub(channel)).withDeadline(deadline).withInterceptors(this);
    }

    HealthGrpc.HealthBlockingStub health() {
      return withWaiting(HealthGrpc.newBlockingStub(channel)).withDeadline(deadline).withInterceptors(this);
    }

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
            @Override
            public void onHeaders(Metadata responseHeaders) {
              answered = true;
              super.onHeaders(responseHeaders);
            }

            @Override
            public void onClose(Status status, Metadata trailers) {
              // A status grpc makes up for a broken connection has no trailers; the agent's has
              // content-type at least.
              if (trailers != null && !trailers.keys().isEmpty()) {
                answered = true;
              }
              super.onClose(status, trailers);
            }
          }, headers);
        }
      };
    }
  }

  /**
   * One unary call. Unless retrying is off ({@link RetryPolicy#NONE}), it waits for the agent:
   * while the socket is missing or refuses, the channel reconnects with backoff and the request
   * is sent only once a connection is up, so a call that never reached the agent is retried
   * within its deadline, on every call. A read ({@code repeatable}) whose connection broke
   * before the agent answered (no headers, no status of the agent's) is sent again within its
   * deadline; a put never is (it could be applied twice). A connection refused by the socket
   * check fails the calls waiting for one at once.
   */
  private <T> T call(boolean repeatable, Function<Attempt, T> rpc) {
    if (shared.closed) {
      throw PsstException.of(Status.Code.CANCELLED, "the client is closed");
    }
    Deadline deadline = Deadline.after(callTimeout.toNanos(), TimeUnit.NANOSECONDS);
    for (int attempt = 1; ; attempt++) {
      Attempt a = new Attempt(deadline);
      Context.CancellableContext context = Context.current().withCancellation();
      shared.waiting.add(context);
      PsstException error;
      try {
        return context.wrap(() -> rpc.apply(a)).call();
      } catch (Exception e) {
        if (context.isCancelled() && context.cancellationCause() instanceof UntrustedAgentException) {
          throw (UntrustedAgentException) context.cancellationCause();
        }
        error = PsstException.from(e);
      } finally {
        shared.waiting.remove(context);
        context.close();
      }
      Status.Code code = error.code();
      // A broken connection shows as UNAVAILABLE, or as CANCELLED when the agent reset the stream.
      boolean broken = code == Status.Code.UNAVAILABLE || code == Status.Code.CANCELLED;
      long left = deadline.timeRemaining(TimeUnit.NANOSECONDS);
      if (repeatable && retry.maxAttempts() > 1 && !a.answered && broken && left > 0 && !shared.closed) {
        try {
          TimeUnit.NANOSECONDS.sleep(Math.min(left, retry.delay(attempt, ThreadLocalRandom.current()::nextDouble).toNanos()));
        } catch (InterruptedException interrupted) {
          Thread.currentThread().interrupt();
          error.addSuppressed(interrupted);
          throw error;
        }
        continue;
      }
      if (code == Status.Code.DEADLINE_EXCEEDED && channel.getState(false) != ConnectivityState.READY) {
        // The deadline passed while no connection was up: the agent was never reached.
        UntrustedAgentException refusal = shared.lastRefusal;
        throw new UnavailableException(Status.Code.UNAVAILABLE, "the agent at " + socket
            + " could not be reached within " + callTimeout.toMillis() + " ms"
            + (refusal != null ? ": " + refusal.description() : ""), null, error);
      }
      throw error;
    }
  }

  /** Options for a {@link PsstClient}. */
  public static final class Builder {
    private Path socket;
    private Map<String, String> environment = System.getenv();
    private RetryPolicy retry = RetryPolicy.DEFAULT;
    private Duration callTimeout = DEFAULT_CALL_TIMEOUT;
    private Duration watchReconnect;
    private Duration watchMaxBackoff = DEFAULT_WATCH_MAX_BACKOFF;
    private Integer expectedUid;
    private String authority = "localhost";

    private Builder() {}

    /** The agent's socket. Default: {@code $PSST_SOCKET}, else {@code /run/psst/psst.sock}. */
    public Builder socket(Path socket) {
      this.socket = Objects.requireNonNull(socket, "socket").toAbsolutePath();
      return this;
    }

    public Builder socket(String socket) {
      return socket(Path.of(socket));
    }

    /**
     * Waiting for an unreachable agent: calls wait within their deadline while the channel
     * reconnects after these delays; watches reconnect after them too, up to
     * {@link #watchMaxBackoff(Duration)}. {@link RetryPolicy#NONE} makes calls fail at once.
     */
    public Builder retry(RetryPolicy retry) {
      this.retry = Objects.requireNonNull(retry, "retry");
      return this;
    }


    /** The deadline of each call (default 10 s). */
    public Builder callTimeout(Duration callTimeout) {
      if (callTimeout.isNegative() || callTimeout.isZero()) {
        throw new IllegalArgumentException("callTimeout must be positive");
      }
      this.callTimeout = callTimeout;
      return this;
    }

    /**
     * Opt-in give-up: a watch that has failed to reach the agent for this long in a row ends
     * with {@link UnavailableException}. Default: never; watches reconnect for as long as they
     * are open.
     */
    public Builder watchReconnect(Duration watchReconnect) {
      if (watchReconnect.isNegative()) {
        throw new IllegalArgumentException("watchReconnect must not be negative");
      }
      this.watchReconnect = watchReconnect;
      return this;
    }

    /** The longest wait between a watch's reconnects (default 5 s, at most 30 s). */
    public Builder watchMaxBackoff(Duration watchMaxBackoff) {
      if (watchMaxBackoff.isNegative() || watchMaxBackoff.compareTo(MAX_BACKOFF_LIMIT) > 0) {
        throw new IllegalArgumentException("watchMaxBackoff must be between 0 and " + MAX_BACKOFF_LIMIT);
      }
      this.watchMaxBackoff = watchMaxBackoff;
      return this;
    }

    /**
     * The uid the agent must run as, checked against the kernel's credentials of the process
     * serving each connection ({@code SO_PEERCRED}) before anything is sent; -1 turns the check
     * off. Default: {@code $PSST_EXPECTED_UID} (a uid, or {@code off}), else the socket file's
     * owner when first seen, pinned for the client's life.
     */
    public Builder expectedUid(int uid) {
      this.expectedUid = uid;
      return this;
    }

    /** For tests: the environment to read {@code PSST_SOCKET} from. */
    Builder environment(Map<String, String> environment) {
      this.environment = Objects.requireNonNull(environment, "environment");
      return this;
    }

    /** For tests: the HTTP/2 :authority to send instead of {@code localhost}. */
    Builder authority(String authority) {
      this.authority = Objects.requireNonNull(authority, "authority");
      return this;
    }

    public PsstClient build() {
      return new PsstClient(this);
    }
  }
}
