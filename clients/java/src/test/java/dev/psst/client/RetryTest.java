package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.psst.v1.GetSecretRequest;
import dev.psst.v1.SecretsGrpc;
import io.grpc.Status;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(value = 30, unit = TimeUnit.SECONDS)
class RetryTest {
  private record Retry(int attempt, Duration delay, Status.Code code) {}

  @Test
  void aMissingSocketIsRetriedWithBackoffThenUnavailable() throws Exception {
    Path socket = FakeAgent.tempSocket();
    List<Retry> retries = new CopyOnWriteArrayList<>();
    RetryPolicy policy = new RetryPolicy(4, Duration.ofMillis(20), Duration.ofMillis(80), 2.0, 0.0);
    try (PsstClient client = PsstClient.builder().socket(socket).retry(policy)
        .onRetry((attempt, delay, error) -> retries.add(new Retry(attempt, delay, error.code()))).build()) {
      long started = System.nanoTime();
      UnavailableException e = assertThrows(UnavailableException.class, () -> client.get("local:a"));
      long elapsedMs = (System.nanoTime() - started) / 1_000_000;
      assertEquals(Status.Code.UNAVAILABLE, e.code());
      assertEquals("UNAVAILABLE", e.codeName());
      assertEquals(List.of(
          new Retry(1, Duration.ofMillis(20), Status.Code.UNAVAILABLE),
          new Retry(2, Duration.ofMillis(40), Status.Code.UNAVAILABLE),
          new Retry(3, Duration.ofMillis(80), Status.Code.UNAVAILABLE)), retries);
      assertTrue(elapsedMs >= 140, "gave up too early: " + elapsedMs + " ms");
      assertTrue(elapsedMs < 5000, "took too long: " + elapsedMs + " ms");
    }
  }

  @Test
  void retryNoneMakesOneTry() throws Exception {
    AtomicInteger retries = new AtomicInteger();
    try (PsstClient client = PsstClient.builder().socket(FakeAgent.tempSocket()).retry(RetryPolicy.NONE)
        .onRetry((a, d, e) -> retries.incrementAndGet()).build()) {
      assertThrows(UnavailableException.class, client::health);
      assertEquals(0, retries.get());
    }
  }

  @Test
  void anAgentThatComesUpWhileTheClientRetriesIsUsed() throws Exception {
    Path socket = FakeAgent.tempSocket();
    AtomicInteger retries = new AtomicInteger();
    RetryPolicy policy = new RetryPolicy(40, Duration.ofMillis(20), Duration.ofMillis(100), 2.0, 0.2);
    SecretsGrpc.SecretsImplBase late = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
        out.onNext(dev.psst.v1.Secret.newBuilder().setReference(request.getReference())
            .setValue(ByteString.copyFromUtf8("late")).setVersionId("7").build());
        out.onCompleted();
      }
    };
    CompletableFuture<FakeAgent> agent = CompletableFuture.supplyAsync(() -> {
      try {
        Thread.sleep(300);
        return FakeAgent.start(socket, late);
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    });
    try (PsstClient client = PsstClient.builder().socket(socket).retry(policy)
        .onRetry((a, d, e) -> retries.incrementAndGet()).build()) {
      Secret secret = client.get("local:late");
      assertEquals("late", secret.valueAsString());
      assertEquals("7", secret.versionId());
      assertTrue(retries.get() >= 2, "expected retries before the agent came up, saw " + retries.get());
    } finally {
      agent.get(10, TimeUnit.SECONDS).close();
    }
  }

  @Test
  void onceTheAgentHasAnsweredUnavailableIsThrownAtOnce() throws Exception {
    AtomicInteger calls = new AtomicInteger();
    AtomicInteger retries = new AtomicInteger();
    SecretsGrpc.SecretsImplBase down = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
        calls.incrementAndGet();
        out.onError(Status.UNAVAILABLE.withDescription("backend unreachable").asRuntimeException());
      }
    };
    try (FakeAgent agent = FakeAgent.start(down);
        PsstClient client = PsstClient.builder().socket(agent.socket)
            .retry(new RetryPolicy(10, Duration.ofMillis(1), Duration.ofMillis(1), 1, 0))
            .onRetry((a, d, e) -> retries.incrementAndGet()).build()) {
      assertEquals(HealthCheckResponse.ServingStatus.SERVING, client.health());
      UnavailableException e = assertThrows(UnavailableException.class, () -> client.get("sm:prod/db"));
      assertEquals("backend unreachable", e.description());
      assertEquals(1, calls.get());
      assertEquals(0, retries.get());
    }
  }
}
