package dev.psst.client;

import io.grpc.Status;

/** A rate or size limit was hit (RESOURCE_EXHAUSTED). */
public class ResourceExhaustedException extends PsstException {
  private static final long serialVersionUID = 1L;

  public ResourceExhaustedException(Status.Code code, String description, String reference, Throwable cause) {
    super(code, description, reference, cause);
  }
}
