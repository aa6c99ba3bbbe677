package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.Timestamp;
import dev.psst.v1.BatchGetResult;
import dev.psst.v1.BatchGetSecretsRequest;
import dev.psst.v1.BatchGetSecretsResponse;
import dev.psst.v1.Caller;
import dev.psst.v1.Error;
import dev.psst.v1.GetSecretRequest;
import dev.psst.v1.Grant;
import dev.psst.v1.ListSecretsRequest;
import dev.psst.v1.ListSecretsResponse;
import dev.psst.v1.PutSecretRequest;
import dev.psst.v1.PutSecretResponse;
import dev.psst.v1.SecretsGrpc;
import dev.psst.v1.WhoAmIRequest;
import dev.psst.v1.WhoAmIResponse;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** The wrapper against a fake agent: what goes on the wire and how answers are mapped. */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class FakeAgentTest {
  private static Timestamp ts(long seconds) {
    return Timestamp.newBuilder().setSeconds(seconds).setNanos(500_000_000).build();
  }

  private static <T> void reply(StreamObserver<T> out, T message) {
    out.onNext(message);
    out.onCompleted();
  }

  @Test
  void everyCallSendsLocalhostAsAuthorityNotTheSocketPath() throws Exception {
    SecretsGrpc.SecretsImplBase impl = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void listSecrets(ListSecretsRequest request, StreamObserver<ListSecretsResponse> out) {
        reply(out, ListSecretsResponse.getDefaultInstance());
      }
    };
    try (FakeAgent agent = FakeAgent.start(impl); PsstClient client = agent.client()) {
      client.health();
      client.list("local:");
      assertEquals(2, agent.authorities.size());
      assertEquals(Set.of("localhost"), Set.copyOf(agent.authorities));
    }
  }

  @Test
  void getMapsTheMessage() throws Exception {
    byte[] bytes = {0, 1, 2, (byte) 250, (byte) 255};
    AtomicReference<String> asked = new AtomicReference<>();
    SecretsGrpc.SecretsImplBase impl = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
        asked.set(request.getReference());
        reply(out, dev.psst.v1.Secret.newBuilder()
            .setReference("sm:prod/db#password")
            .setValue(ByteString.copyFrom(bytes))
            .setVersionId("abc")
            .addStages("AWSCURRENT")
            .setCreatedAt(ts(1_700_000_000))
            .setCache(dev.psst.v1.CacheInfo.newBuilder().setHit(true).setStale(true)
                .setFetchedAt(ts(1_700_000_100)).setExpiresAt(ts(1_700_000_400)))
            .build());
      }
    };
    try (FakeAgent agent = FakeAgent.start(impl); PsstClient client = agent.client()) {
      Secret s = client.get("sm:prod/db#password");
      assertEquals("sm:prod/db#password", asked.get());
      assertArrayEquals(bytes, s.value());
      assertEquals("sm:prod/db#password", s.reference());
      assertEquals("abc", s.versionId());
      assertEquals(List.of("AWSCURRENT"), s.stages());
      assertEquals(Instant.ofEpochSecond(1_700_000_000, 500_000_000), s.createdAt().orElseThrow());
      assertEquals(new CacheInfo(true, true, Instant.ofEpochSecond(1_700_000_100, 500_000_000),
          Instant.ofEpochSecond(1_700_000_400, 500_000_000)), s.cache());
    }
  }

  @Test
  void getWithoutTimestampsLeavesThemEmpty() throws Exception {
    SecretsGrpc.SecretsImplBase impl = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
        reply(out, dev.psst.v1.Secret.newBuilder().setReference("local:a")
            .setValue(ByteString.copyFromUtf8("x")).setVersionId("1").build());
      }
    };
    try (FakeAgent agent = FakeAgent.start(impl); PsstClient client = agent.client()) {
      Secret s = client.get("local:a");
      assertTrue(s.createdAt().isEmpty());
      assertEquals(new CacheInfo(false, false, null, null), s.cache());
    }
  }

  static Stream<Arguments> statuses() {
    return Stream.of(
        Arguments.of(Status.NOT_FOUND, NotFoundException.class),
        Arguments.of(Status.PERMISSION_DENIED, PermissionDeniedException.class),
        Arguments.of(Status.INVALID_ARGUMENT, InvalidArgumentException.class),
        Arguments.of(Status.UNAUTHENTICATED, UnauthenticatedException.class),
        Arguments.of(Status.FAILED_PRECONDITION, FailedPreconditionException.class),
        Arguments.of(Status.RESOURCE_EXHAUSTED, ResourceExhaustedException.class));
  }

  @ParameterizedTest
  @MethodSource("statuses")
  void aStatusFromTheAgentBecomesItsException(Status status, Class<? extends PsstException> type) throws Exception {
    SecretsGrpc.SecretsImplBase impl = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
        out.onError(status.withDescription("agent message").asRuntimeException());
      }
    };
    try (FakeAgent agent = FakeAgent.start(impl); PsstClient client = agent.client()) {
      PsstException e = assertThrows(type, () -> client.get("local:a"));
      assertEquals(status.getCode(), e.code());
      assertEquals("agent message", e.description());
    }
  }

  @Test
  void batchGetKeepsOrderAndMapsPerItemErrors() throws Exception {
    SecretsGrpc.SecretsImplBase impl = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void batchGetSecrets(BatchGetSecretsRequest request, StreamObserver<BatchGetSecretsResponse> out) {
        assertEquals(List.of("local:a", "local:b", "local:c"), request.getReferencesList());
        reply(out, BatchGetSecretsResponse.newBuilder()
            .addResults(BatchGetResult.newBuilder().setReference("local:a").setSecret(dev.psst.v1.Secret.newBuilder()
                .setReference("local:a").setValue(ByteString.copyFromUtf8("A")).setVersionId("1")))
            .addResults(BatchGetResult.newBuilder().setReference("local:b")
                .setError(Error.newBuilder().setCode(7).setMessage("no")))
            .addResults(BatchGetResult.newBuilder().setReference("local:c"))
            .build());
      }
    };
    try (FakeAgent agent = FakeAgent.start(impl); PsstClient client = agent.client()) {
      List<BatchResult> results = client.batchGet("local:a", "local:b", "local:c");
      assertEquals(3, results.size());
      assertEquals("A", results.get(0).secret().valueAsString());
      assertFalse(results.get(1).isOk());
      PsstException b = results.get(1).error().orElseThrow();
      assertInstanceOf(PermissionDeniedException.class, b);
      assertEquals("local:b", b.reference());
      assertEquals("no", b.description());
      assertEquals(Status.Code.INTERNAL, results.get(2).error().orElseThrow().code());
      assertEquals("local:c", results.get(2).reference());
    }
  }

  @Test
  void listPutAndWhoAmIMapTheirMessages() throws Exception {
    AtomicReference<PutSecretRequest> put = new AtomicReference<>();
    SecretsGrpc.SecretsImplBase impl = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void listSecrets(ListSecretsRequest request, StreamObserver<ListSecretsResponse> out) {
        reply(out, ListSecretsResponse.newBuilder().addSecrets(dev.psst.v1.SecretMetadata.newBuilder()
            .setReference(request.getPrefix() + "x").setVersionId("4").setUpdatedAt(ts(10))).build());
      }

      @Override
      public void putSecret(PutSecretRequest request, StreamObserver<PutSecretResponse> out) {
        put.set(request);
        reply(out, PutSecretResponse.newBuilder().setReference(request.getReference() + "?version=2")
            .setVersionId("2").setCreatedAt(ts(20)).build());
      }

      @Override
      public void whoAmI(WhoAmIRequest request, StreamObserver<WhoAmIResponse> out) {
        reply(out, WhoAmIResponse.newBuilder()
            .setCaller(Caller.newBuilder().setUid(1000).setUser("app").setIdentitySource("process"))
            .addGrants(Grant.newBuilder().setOperation("read").addPatterns("local:demo/**"))
            .addMatchedRules("apps").build());
      }
    };
    try (FakeAgent agent = FakeAgent.start(impl); PsstClient client = agent.client()) {
      assertEquals(List.of(new SecretMetadata("local:demo/x", "4", Instant.ofEpochSecond(10, 500_000_000))),
          client.list("local:demo/"));
      PutResult written = client.put("local:demo/y", "täst");
      assertEquals(new PutResult("local:demo/y?version=2", "2", Instant.ofEpochSecond(20, 500_000_000)), written);
      assertEquals("local:demo/y", put.get().getReference());
      assertArrayEquals("täst".getBytes(StandardCharsets.UTF_8), put.get().getValue().toByteArray());
      client.put("local:demo/z", new byte[] {1, 2, 3});
      assertArrayEquals(new byte[] {1, 2, 3}, put.get().getValue().toByteArray());
      Identity me = client.whoAmI();
      assertEquals(1000, me.caller().uid());
      assertEquals("app", me.caller().user());
      assertEquals("process", me.caller().identitySource());
      assertEquals(List.of(new Identity.Grant("read", List.of("local:demo/**"))), me.grants());
      assertEquals(List.of("apps"), me.matchedRules());
    }
  }

  @Test
  void theCallTimeoutGivesDeadlineExceeded() throws Exception {
    SecretsGrpc.SecretsImplBase silent = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
        // never answers
      }
    };
    try (FakeAgent agent = FakeAgent.start(silent);
        PsstClient client = PsstClient.builder().socket(agent.socket).callTimeout(Duration.ofMillis(200)).build()) {
      PsstException e = assertThrows(PsstException.class, () -> client.get("local:a"));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
    }
  }

  @Test
  void callsAfterCloseFailWithCancelled() throws Exception {
    try (FakeAgent agent = FakeAgent.start(new SecretsGrpc.SecretsImplBase() {})) {
      PsstClient client = agent.client();
      client.health();
      client.close();
      client.close();
      assertEquals(Status.Code.CANCELLED, assertThrows(PsstException.class, client::health).code());
    }
  }
}
