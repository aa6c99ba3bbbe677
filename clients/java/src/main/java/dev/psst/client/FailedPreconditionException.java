package dev.psst.client;

import io.grpc.Status;

/** The agent cannot do it as configured, e.g. the backend is not enabled (FAILED_PRECONDITION). */
public class FailedPreconditionException extends PsstException {
  private static final long serialVersionUID = 1L;

  public FailedPreconditionException(Status.Code code, String description, String reference, Throwable cause) {
    super(code, description, reference, cause);
  }
}
