package dev.psst.client;

import io.grpc.Status;

/**
 * The socket is not served by the agent this client trusts: the process at the other end runs
 * as another uid than the expected one. Nothing was sent on that connection. A subclass of
 * {@link UnavailableException}, so code that waits for the agent keeps waiting and never talks
 * to the impostor.
 */
public final class UntrustedAgentException extends UnavailableException {
  private static final long serialVersionUID = 1L;

  UntrustedAgentException(String message) {
    super(Status.Code.UNAVAILABLE, "refusing the agent's socket: " + message, null, null);
  }
}
