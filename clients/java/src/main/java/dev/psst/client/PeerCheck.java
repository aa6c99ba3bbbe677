package dev.psst.client;

import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.GrpcHttp2ConnectionHandler;
import io.grpc.netty.shaded.io.grpc.netty.InternalProtocolNegotiator;
import io.grpc.netty.shaded.io.grpc.netty.InternalProtocolNegotiators;
import io.grpc.netty.shaded.io.netty.channel.ChannelHandler;
import io.grpc.netty.shaded.io.netty.channel.ChannelHandlerContext;
import io.grpc.netty.shaded.io.netty.channel.ChannelInboundHandlerAdapter;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollDomainSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.unix.PeerCredentials;
import io.grpc.netty.shaded.io.netty.util.AsciiString;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.Map;
import java.util.OptionalInt;
import java.util.function.Consumer;

/**
 * Who serves the socket (issue #14, item 4): on every new connection, before HTTP/2 starts on it,
 * the kernel's credentials of the process at the other end ({@code SO_PEERCRED}, read through
 * Netty's epoll channel on this very connection) must show the expected uid. Otherwise the
 * connection is closed and the calls waiting for it fail with {@link UntrustedAgentException}.
 *
 * <p>The expected uid is the one configured ({@link PsstClient.Builder#expectedUid(int)} or
 * {@code $PSST_EXPECTED_UID}), else the socket file's owner when first seen, pinned for the
 * client's life.
 */
final class PeerCheck {
  /** The environment variable naming the uid the agent must run as (a number, or {@code off}). */
  static final String EXPECTED_UID_ENV = "PSST_EXPECTED_UID";

  private final Path socket;
  private final Consumer<UntrustedAgentException> onRefused;
  private volatile int expectedUid;
  private volatile boolean pinned;

  PeerCheck(Path socket, OptionalInt expectedUid, Consumer<UntrustedAgentException> onRefused) {
    this.socket = socket;
    this.onRefused = onRefused;
    this.pinned = expectedUid.isPresent();
    this.expectedUid = expectedUid.orElse(-1);
  }

  /**
   * The configured uid: the builder's, else {@code $PSST_EXPECTED_UID}; empty for the socket's
   * owner; null when the check is off ({@code off}, or {@link PsstClient.Builder#expectedUid(int)} of -1).
   */
  static OptionalInt configured(Integer fromBuilder, Map<String, String> environment) {
    if (fromBuilder != null) {
      return fromBuilder < 0 ? null : OptionalInt.of(fromBuilder);
    }
    String fromEnv = environment.get(EXPECTED_UID_ENV);
    if (fromEnv == null || fromEnv.isBlank()) {
      return OptionalInt.empty();
    }
    fromEnv = fromEnv.trim();
    if (fromEnv.equals("off")) {
      return null;
    }
    if (!fromEnv.matches("\\d{1,10}")) {
      throw new IllegalArgumentException(EXPECTED_UID_ENV + " must be a uid or \"off\", not \"" + fromEnv + "\"");
    }
    return OptionalInt.of(Integer.parseInt(fromEnv));
  }

  /** Throws {@link UntrustedAgentException} unless {@code peer} is the expected uid. */
  void check(PeerCredentials peer) {
    if (!pinned) {
      synchronized (this) {
        if (!pinned) {
          try {
            expectedUid = (Integer) Files.getAttribute(socket, "unix:uid", LinkOption.NOFOLLOW_LINKS);
          } catch (IOException | RuntimeException e) {
            throw new UntrustedAgentException("cannot read the owner of " + socket + ": " + e);
          }
          pinned = true;
        }
      }
    }
    if (peer.uid() != expectedUid) {
      throw new UntrustedAgentException("the process serving " + socket + " runs as uid " + peer.uid()
          + " (pid " + peer.pid() + "), not the expected uid " + expectedUid);
    }
  }

  /** grpc-java's plaintext negotiation, preceded by the check. */
  InternalProtocolNegotiator.ProtocolNegotiator negotiator() {
    InternalProtocolNegotiator.ProtocolNegotiator plaintext = InternalProtocolNegotiators.plaintext();
    return new InternalProtocolNegotiator.ProtocolNegotiator() {
      @Override
      public AsciiString scheme() {
        return plaintext.scheme();
      }

      @Override
      public ChannelHandler newHandler(GrpcHttp2ConnectionHandler grpcHandler) {
        return new CheckOnActive(plaintext.newHandler(grpcHandler));
      }

      @Override
      public void close() {
        plaintext.close();
      }
    };
  }

  /** Checks the peer when the connection is up, then hands over to the plaintext negotiator. */
  private final class CheckOnActive extends ChannelInboundHandlerAdapter {
    private final ChannelHandler next;

    CheckOnActive(ChannelHandler next) {
      this.next = next;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
      ctx.pipeline().addAfter(ctx.name(), null, next);
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
      try {
        if (!(ctx.channel() instanceof EpollDomainSocketChannel)) {
          throw new UntrustedAgentException("not a Unix socket connection: " + ctx.channel().getClass().getName());
        }
        check(((EpollDomainSocketChannel) ctx.channel()).peerCredentials());
      } catch (UntrustedAgentException e) {
        refuse(ctx, e);
        return;
      } catch (IOException e) {
        refuse(ctx, new UntrustedAgentException("cannot read the peer's credentials: " + e.getMessage()));
        return;
      }
      ctx.pipeline().remove(this);
      ctx.fireChannelActive();
    }

    private void refuse(ChannelHandlerContext ctx, UntrustedAgentException e) {
      onRefused.accept(e);
      ctx.fireExceptionCaught(Status.UNAVAILABLE.withDescription(e.description()).withCause(e).asRuntimeException());
      ctx.close();
    }
  }
}
