package dev.psst.client;

import io.grpc.Status;

/** The agent's policy does not grant this to the calling process (PERMISSION_DENIED). A denied caller gets it whether or not the secret exists. */
public class PermissionDeniedException extends PsstException {
  private static final long serialVersionUID = 1L;

  public PermissionDeniedException(Status.Code code, String description, String reference, Throwable cause) {
    super(code, description, reference, cause);
  }
}
