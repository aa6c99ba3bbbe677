package dev.psst.client;

import io.grpc.Status;

/** The reference or request is malformed (INVALID_ARGUMENT, OUT_OF_RANGE). */
public class InvalidArgumentException extends PsstException {
  private static final long serialVersionUID = 1L;

  public InvalidArgumentException(Status.Code code, String description, String reference, Throwable cause) {
    super(code, description, reference, cause);
  }
}
