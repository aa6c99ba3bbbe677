package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.Test;

class PsstExceptionTest {
  static Stream<Arguments> subclasses() {
    return Stream.of(
        Arguments.of(Status.Code.INVALID_ARGUMENT, InvalidArgumentException.class),
        Arguments.of(Status.Code.OUT_OF_RANGE, InvalidArgumentException.class),
        Arguments.of(Status.Code.PERMISSION_DENIED, PermissionDeniedException.class),
        Arguments.of(Status.Code.NOT_FOUND, NotFoundException.class),
        Arguments.of(Status.Code.UNAVAILABLE, UnavailableException.class),
        Arguments.of(Status.Code.UNAUTHENTICATED, UnauthenticatedException.class),
        Arguments.of(Status.Code.FAILED_PRECONDITION, FailedPreconditionException.class),
        Arguments.of(Status.Code.RESOURCE_EXHAUSTED, ResourceExhaustedException.class));
  }

  @ParameterizedTest
  @MethodSource("subclasses")
  void codesMapToTheirSubclass(Status.Code code, Class<? extends PsstException> type) {
    PsstException e = PsstException.of(code, "the agent said so", "local:x", null);
    assertEquals(type, e.getClass());
    assertEquals(code, e.code());
    assertEquals(code.name(), e.codeName());
    assertEquals("the agent said so", e.description());
    assertEquals(code.name() + ": the agent said so", e.getMessage());
    assertEquals("local:x", e.reference());
    assertInstanceOf(RuntimeException.class, e);
  }

  @ParameterizedTest
  @EnumSource(value = Status.Code.class, names = {"UNKNOWN", "INTERNAL", "DEADLINE_EXCEEDED", "CANCELLED", "UNIMPLEMENTED", "ABORTED"})
  void otherCodesArePlainPsstExceptions(Status.Code code) {
    assertEquals(PsstException.class, PsstException.of(code, "x").getClass());
  }

  @Test
  void batchItemCodeNumbersMap() {
    PsstException e = PsstException.ofCodeValue(5, "secret local:a not found", "local:a");
    assertInstanceOf(NotFoundException.class, e);
    assertEquals("local:a", e.reference());
    assertEquals(Status.Code.PERMISSION_DENIED, PsstException.ofCodeValue(7, "no", "r").code());
    assertEquals(Status.Code.UNKNOWN, PsstException.ofCodeValue(999, "?", "r").code());
  }

  @Test
  void fromKeepsTheGrpcStatus() {
    StatusRuntimeException grpc = Status.NOT_FOUND.withDescription("secret local:a not found").asRuntimeException();
    PsstException e = PsstException.from(grpc);
    assertInstanceOf(NotFoundException.class, e);
    assertEquals("secret local:a not found", e.description());
    assertSame(grpc, e.getCause());
    assertNull(e.reference());
    assertSame(e, PsstException.from(e));
    assertEquals(Status.Code.UNKNOWN, PsstException.from(new IllegalStateException("boom")).code());
  }

  @Test
  void batchResultRethrowsItsError() {
    PsstException error = PsstException.of(Status.Code.PERMISSION_DENIED, "no", "local:f", null);
    BatchResult r = BatchResult.failed("local:f", error);
    assertEquals(false, r.isOk());
    assertSame(error, r.error().orElseThrow());
    assertSame(error, assertThrows(PermissionDeniedException.class, r::secret));
  }
}
