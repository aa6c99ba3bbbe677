package dev.psst.client;

import dev.psst.v1.SecretsGrpc;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.netty.shaded.io.netty.channel.ChannelOption;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.MultiThreadIoEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollIoHandler;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.unix.DomainSocketAddress;
import io.grpc.protobuf.services.HealthStatusManager;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

/** A fake agent for the unit tests: a grpc-java server on a Unix socket with a chosen Secrets service. */
final class FakeAgent implements AutoCloseable {
  final Path socket;
  /** The :authority of every request the fake agent saw. */
  final List<String> authorities = new CopyOnWriteArrayList<>();
  private final EventLoopGroup group;
  private final Server server;

  private FakeAgent(Path socket, SecretsGrpc.SecretsImplBase secrets) throws IOException {
    this.socket = socket;
    this.group = new MultiThreadIoEventLoopGroup(1, EpollIoHandler.newFactory());
    HealthStatusManager health = new HealthStatusManager();
    health.setStatus("", HealthCheckResponse.ServingStatus.SERVING);
    ServerInterceptor recordAuthority = new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
          ServerCallHandler<Q, R> next) {
        authorities.add(String.valueOf(call.getAuthority()));
        return next.startCall(call, headers);
      }
    };
    this.server = NettyServerBuilder.forAddress(new DomainSocketAddress(socket.toString()))
        .channelType(EpollServerDomainSocketChannel.class)
        .bossEventLoopGroup(group)
        .workerEventLoopGroup(group)
        .withChildOption(ChannelOption.SO_KEEPALIVE, null)
        .addService(ServerInterceptors.intercept(secrets, recordAuthority))
        .addService(ServerInterceptors.intercept(health.getHealthService(), recordAuthority))
        .build()
        .start();
  }

  static FakeAgent start(Path socket, SecretsGrpc.SecretsImplBase secrets) throws IOException {
    return new FakeAgent(socket, secrets);
  }

  /**
   * Serves GetSecret with {@code argv[1]} as every value on the socket {@code argv[0]}, prints
   * "ready" and runs until killed: the impostor of PeerCheckTest, run as another user.
   */
  public static void main(String[] argv) throws Exception {
    start(Path.of(argv[0]), new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(dev.psst.v1.GetSecretRequest request, io.grpc.stub.StreamObserver<dev.psst.v1.Secret> out) {
        out.onNext(dev.psst.v1.Secret.newBuilder().setReference(request.getReference())
            .setValue(com.google.protobuf.ByteString.copyFromUtf8(argv[1])).setVersionId("1").build());
        out.onCompleted();
      }
    });
    System.out.println("ready");
    System.out.flush();
    Thread.currentThread().join();
  }

  static FakeAgent start(SecretsGrpc.SecretsImplBase secrets) throws IOException {
    return start(tempSocket(), secrets);
  }

  /** A socket path in a fresh temp dir, that nothing listens on. */
  static Path tempSocket() throws IOException {
    Path dir = Files.createTempDirectory("psst-java-test-");
    dir.toFile().deleteOnExit();
    return dir.resolve("psst.sock");
  }

  PsstClient client() {
    return PsstClient.builder().socket(socket).build();
  }

  @Override
  public void close() {
    server.shutdown();
    try {
      if (!server.awaitTermination(5, TimeUnit.SECONDS)) {
        server.shutdownNow();
        server.awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    group.shutdownGracefully(100, 2000, TimeUnit.MILLISECONDS).syncUninterruptibly();
    try {
      Files.deleteIfExists(socket);
      Files.deleteIfExists(socket.getParent());
    } catch (IOException ignored) {
      // a temp dir
    }
  }
}
