package dev.psst.client;

import io.grpc.Status;

/**
 * The socket is not served by the agent this client trusts: the process at the other end runs
 * as another uid than the expected one. Nothing was sent on that connection. Code
 * UNAUTHENTICATED, as in every psst client; thrown at once, without waiting for the deadline.
 */
public final class UntrustedAgentException extends UnauthenticatedException {
  private static final long serialVersionUID = 1L;

  UntrustedAgentException(String message) {
    super(Status.Code.UNAUTHENTICATED, "refusing the agent's socket: " + message, null, null);
  }
}
