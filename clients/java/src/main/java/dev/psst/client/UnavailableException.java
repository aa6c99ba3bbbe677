package dev.psst.client;

import io.grpc.Status;

/** The agent, or its backend, cannot be reached (UNAVAILABLE): worth retrying later. */
public class UnavailableException extends PsstException {
  private static final long serialVersionUID = 1L;

  public UnavailableException(Status.Code code, String description, String reference, Throwable cause) {
    super(code, description, reference, cause);
  }
}
