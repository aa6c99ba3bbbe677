package dev.psst.client;

import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;

/**
 * A failed call: the gRPC status code and the agent's message. Unchecked. The common codes have
 * subclasses ({@link NotFoundException}, {@link PermissionDeniedException}, ...), so callers can
 * catch what they handle and let the rest through. Never carries a secret value.
 */
public class PsstException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final Status.Code code;
  private final String description;
  private final String reference;

  public PsstException(Status.Code code, String description, String reference, Throwable cause) {
    super(code.name() + ": " + (description == null ? "" : description), cause);
    this.code = code;
    this.description = description == null ? "" : description;
    this.reference = reference;
  }

  public PsstException(Status.Code code, String description) {
    this(code, description, null, null);
  }

  /** The gRPC status code, e.g. {@code NOT_FOUND}. */
  public Status.Code code() {
    return code;
  }

  /** The code's name as grpcurl and the docs print it, e.g. {@code "NOT_FOUND"}. */
  public String codeName() {
    return code.name();
  }

  /** The agent's message, without the code prefix. */
  public String description() {
    return description;
  }

  /** The reference the error is about, where known (batch items always have one), else null. */
  public String reference() {
    return reference;
  }

  /** The exception for a status code: the matching subclass, else a plain {@code PsstException}. */
  public static PsstException of(Status.Code code, String description, String reference, Throwable cause) {
    switch (code) {
      case INVALID_ARGUMENT:
      case OUT_OF_RANGE:
        return new InvalidArgumentException(code, description, reference, cause);
      case PERMISSION_DENIED:
        return new PermissionDeniedException(code, description, reference, cause);
      case NOT_FOUND:
        return new NotFoundException(code, description, reference, cause);
      case UNAVAILABLE:
        return new UnavailableException(code, description, reference, cause);
      case UNAUTHENTICATED:
        return new UnauthenticatedException(code, description, reference, cause);
      case FAILED_PRECONDITION:
        return new FailedPreconditionException(code, description, reference, cause);
      case RESOURCE_EXHAUSTED:
        return new ResourceExhaustedException(code, description, reference, cause);
      default:
        return new PsstException(code, description, reference, cause);
    }
  }

  public static PsstException of(Status.Code code, String description) {
    return of(code, description, null, null);
  }

  /** A per-item error of a batch: a {@code google.rpc.Code} number and a message. */
  static PsstException ofCodeValue(int code, String description, String reference) {
    return of(Status.fromCodeValue(code).getCode(), description, reference, null);
  }

  /** Turns what a grpc-java call threw into a {@code PsstException}. */
  public static PsstException from(Throwable t) {
    if (t instanceof PsstException) {
      return (PsstException) t;
    }
    Status status;
    if (t instanceof StatusRuntimeException) {
      status = ((StatusRuntimeException) t).getStatus();
    } else if (t instanceof StatusException) {
      status = ((StatusException) t).getStatus();
    } else {
      status = Status.fromThrowable(t);
    }
    String description = status.getDescription();
    if (description == null && status.getCause() != null) {
      description = status.getCause().toString();
    }
    return of(status.getCode(), description, null, t);
  }
}
