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
import dev.psst.v1.WhoAmIResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
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
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

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
  /** How long a watch keeps reconnecting (agent down, stream reset) unless told otherwise. */
  public static final Duration DEFAULT_WATCH_RECONNECT = Duration.ofSeconds(5);

  private final Path socket;
  private final RetryPolicy retry;
  private final RetryPolicy.Listener retryListener;
  private final Duration callTimeout;
  private final Duration watchReconnect;
  private final Set<Watch> watches = ConcurrentHashMap.newKeySet();
  private final EventLoopGroup eventLoop;
  private final ManagedChannel channel;
  private volatile boolean reached;
  private volatile boolean closed;

  private PsstClient(Builder b) {
    this.socket = b.socket != null ? b.socket : socketPath(b.environment);
    this.retry = b.retry;
    this.retryListener = b.retryListener;
    this.callTimeout = b.callTimeout;
    this.watchReconnect = b.watchReconnect;
    if (!Epoll.isAvailable()) {
      throw new IllegalStateException(
          "psst-client needs Netty's epoll transport (Linux) for Unix sockets", Epoll.unavailabilityCause());
    }
    // One daemon epoll thread (Netty 4.2's form of an EpollEventLoopGroup).
    this.eventLoop = new MultiThreadIoEventLoopGroup(
        1, new DefaultThreadFactory("psst-client", true), EpollIoHandler.newFactory());
    this.channel = NettyChannelBuilder.forAddress(new DomainSocketAddress(socket.toString()))
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
    return Secret.fromProto(call(() -> secrets().getSecret(request)));
  }

  /**
   * One result per reference, in order; a bad item does not fail the batch. Throws only when the
   * call as a whole fails.
   */
  public List<BatchResult> batchGet(List<String> references) {
    BatchGetSecretsRequest request = BatchGetSecretsRequest.newBuilder().addAllReferences(references).build();
    List<BatchGetResult> items = call(() -> secrets().batchGetSecrets(request)).getResultsList();
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
    for (dev.psst.v1.SecretMetadata m : call(() -> secrets().listSecrets(request)).getSecretsList()) {
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
    PutSecretResponse response = call(() -> secrets().putSecret(request));
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
  public WhoAmIResponse whoAmI() {
    return call(() -> secrets().whoAmI(WhoAmIRequest.getDefaultInstance()));
  }

  /** The agent's gRPC health ({@code grpc.health.v1}): {@code SERVING} when it answers requests. */
  public HealthCheckResponse.ServingStatus health() {
    return health("");
  }

  public HealthCheckResponse.ServingStatus health(String service) {
    HealthCheckRequest request = HealthCheckRequest.newBuilder().setService(service).build();
    return call(() -> HealthGrpc.newBlockingStub(channel)
        .withDeadlineAfter(callTimeout.toNanos(), TimeUnit.NANOSECONDS)
        .check(request)).getStatus();
  }

  /**
   * Follows secrets: each reference's current secret first ({@code CURRENT}), then one event per
   * change ({@code NEW_VERSION}, {@code PENDING_VERSION}, {@code DELETED}). The returned
   * {@link Watch} is a blocking iterator; close it when done. It reconnects by itself when the
   * agent restarts or the stream breaks, for up to {@link Builder#watchReconnect(Duration)} (5 s)
   * of failures, and resumes from the versions it has delivered, so no version is delivered twice.
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
    Objects.requireNonNull(references, "references");
    Watch.Transport transport = new Watch.Transport(
        (request, observer) -> SecretsGrpc.newStub(channel).watchSecrets(request, observer),
        channel::resetConnectBackoff,
        () -> closed,
        watches::remove,
        retry,
        watchReconnect);
    Watch watch = new Watch(references, transport);
    watches.add(watch);
    if (closed) {
      watch.close();
    }
    return watch;
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
    Watch watch = watch(references);
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

  /**
   * Closes the connection and its event loop, and ends its watches. Calls made afterwards fail
   * with CANCELLED.
   */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    for (Watch watch : List.copyOf(watches)) {
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

  private SecretsGrpc.SecretsBlockingStub secrets() {
    return SecretsGrpc.newBlockingStub(channel).withDeadlineAfter(callTimeout.toNanos(), TimeUnit.NANOSECONDS);
  }

  /** One unary call, retried while the agent has never been reached and answers UNAVAILABLE. */
  private <T> T call(Supplier<T> rpc) {
    if (closed) {
      throw PsstException.of(Status.Code.CANCELLED, "the client is closed");
    }
    for (int attempt = 1; ; attempt++) {
      try {
        T response = rpc.get();
        reached = true;
        return response;
      } catch (RuntimeException e) {
        PsstException error = PsstException.from(e);
        Status.Code code = error.code();
        if (code != Status.Code.UNAVAILABLE && code != Status.Code.DEADLINE_EXCEEDED
            && code != Status.Code.CANCELLED) {
          reached = true;
        }
        if (code != Status.Code.UNAVAILABLE || reached || closed || attempt >= retry.maxAttempts()) {
          throw error;
        }
        Duration delay = retry.delay(attempt, ThreadLocalRandom.current()::nextDouble);
        if (retryListener != null) {
          retryListener.onRetry(attempt, delay, error);
        }
        try {
          TimeUnit.NANOSECONDS.sleep(delay.toNanos());
        } catch (InterruptedException interrupted) {
          Thread.currentThread().interrupt();
          error.addSuppressed(interrupted);
          throw error;
        }
        // Skip grpc's own reconnect backoff: try the socket again now.
        channel.resetConnectBackoff();
      }
    }
  }

  /** Options for a {@link PsstClient}. */
  public static final class Builder {
    private Path socket;
    private Map<String, String> environment = System.getenv();
    private RetryPolicy retry = RetryPolicy.DEFAULT;
    private RetryPolicy.Listener retryListener;
    private Duration callTimeout = DEFAULT_CALL_TIMEOUT;
    private Duration watchReconnect = DEFAULT_WATCH_RECONNECT;
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

    /** Retrying while the agent is not up yet; {@link RetryPolicy#NONE} for a single try. */
    public Builder retry(RetryPolicy retry) {
      this.retry = Objects.requireNonNull(retry, "retry");
      return this;
    }

    /** Told before each startup retry, e.g. to log it. */
    public Builder onRetry(RetryPolicy.Listener listener) {
      this.retryListener = listener;
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
     * How long a watch keeps reconnecting while the agent is unreachable or the stream keeps
     * breaking, counted from the first failure after the last event (default 5 s); then the
     * watch ends with {@link UnavailableException}.
     */
    public Builder watchReconnect(Duration watchReconnect) {
      if (watchReconnect.isNegative()) {
        throw new IllegalArgumentException("watchReconnect must not be negative");
      }
      this.watchReconnect = watchReconnect;
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
