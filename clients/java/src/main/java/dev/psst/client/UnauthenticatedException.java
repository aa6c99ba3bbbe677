package dev.psst.client;

import io.grpc.Status;

/** The agent could not identify the calling process (UNAUTHENTICATED). */
public class UnauthenticatedException extends PsstException {
  private static final long serialVersionUID = 1L;

  public UnauthenticatedException(Status.Code code, String description, String reference, Throwable cause) {
    super(code, description, reference, cause);
  }
}
