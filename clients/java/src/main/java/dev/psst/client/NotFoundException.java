package dev.psst.client;

import io.grpc.Status;

/** The secret, version or JSON key does not exist (NOT_FOUND). */
public class NotFoundException extends PsstException {
  private static final long serialVersionUID = 1L;

  public NotFoundException(Status.Code code, String description, String reference, Throwable cause) {
    super(code, description, reference, cause);
  }
}
