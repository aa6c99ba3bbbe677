package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.psst.v1.GetSecretRequest;
import dev.psst.v1.PutSecretRequest;
import dev.psst.v1.PutSecretResponse;
import dev.psst.v1.SecretsGrpc;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Calls that never reached the agent wait for it within their deadline, on every call. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RetryTest {
  private static SecretsGrpc.SecretsImplBase serving(String value) {
    return new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
        out.onNext(dev.psst.v1.Secret.newBuilder().setReference(request.getReference())
            .setValue(ByteString.copyFromUtf8(value)).setVersionId("7").build());
        out.onCompleted();
      }
    };
  }

  @Test
  void aMissingSocketIsWaitedForUntilTheDeadlineThenUnavailable() throws Exception {
    try (PsstClient client = PsstClient.builder().socket(FakeAgent.tempSocket()).callTimeout(Duration.ofMillis(400)).build()) {
      long started = System.nanoTime();
      UnavailableException e = assertThrows(UnavailableException.class, () -> client.get("local:a"));
      long elapsedMs = (System.nanoTime() - started) / 1_000_000;
      assertEquals(Status.Code.UNAVAILABLE, e.code());
      assertTrue(e.description().contains("could not be reached within 400 ms"), e.description());
      assertTrue(elapsedMs >= 350 && elapsedMs < 5000, "the deadline was not honoured: " + elapsedMs + " ms");
      // A per-call deadline wins over the client's.
      long quick = System.nanoTime();
      assertThrows(UnavailableException.class, () -> client.withTimeout(Duration.ofMillis(100)).health());
      assertTrue((System.nanoTime() - quick) / 1_000_000 < 2000);
    }
  }

  @Test
  void retryNoneFailsAtOnce() throws Exception {
    try (PsstClient client = PsstClient.builder().socket(FakeAgent.tempSocket()).retry(RetryPolicy.NONE).build()) {
      long started = System.nanoTime();
      assertThrows(UnavailableException.class, client::health);
      assertTrue((System.nanoTime() - started) / 1_000_000 < 2000);
    }
  }

  @Test
  void everyCallNotOnlyTheFirstWaitsForAnAgentThatComesBack() throws Exception {
    Path socket = FakeAgent.tempSocket();
    RetryPolicy policy = new RetryPolicy(10, Duration.ofMillis(20), Duration.ofMillis(100), 2.0, 0.2);
    FakeAgent first = FakeAgent.start(socket, serving("up"));
    try (PsstClient client = PsstClient.builder().socket(socket).retry(policy).build()) {
      assertEquals("up", client.get("local:a").valueAsString());
      first.close(); // removes the socket and its directory
      // The agent is down for a while (grpc's own backoff would have grown past a second by then).
      CompletableFuture<FakeAgent> again = CompletableFuture.supplyAsync(() -> {
        try {
          Thread.sleep(1500);
          Files.createDirectories(socket.getParent());
          return FakeAgent.start(socket, serving("back"));
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      });
      long started = System.nanoTime();
      Secret secret = client.get("local:a");
      long waitedMs = (System.nanoTime() - started) / 1_000_000;
      assertEquals("back", secret.valueAsString());
      assertTrue(waitedMs >= 1000 && waitedMs < 4000, "waited " + waitedMs + " ms");
      again.get(10, TimeUnit.SECONDS).close();
    }
  }

  @Test
  void unavailableFromTheAgentItselfIsThrownAtOnceAndAPutIsNeverSentTwice() throws Exception {
    AtomicInteger gets = new AtomicInteger();
    AtomicInteger puts = new AtomicInteger();
    SecretsGrpc.SecretsImplBase down = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
        gets.incrementAndGet();
        out.onError(Status.UNAVAILABLE.withDescription("backend unreachable").asRuntimeException());
      }

      @Override
      public void putSecret(PutSecretRequest request, StreamObserver<PutSecretResponse> out) {
        puts.incrementAndGet();
        out.onError(Status.UNAVAILABLE.withDescription("store busy").asRuntimeException());
      }
    };
    try (FakeAgent agent = FakeAgent.start(down); PsstClient client = agent.client()) {
      UnavailableException e = assertThrows(UnavailableException.class, () -> client.get("sm:prod/db"));
      assertEquals("backend unreachable", e.description());
      assertThrows(UnavailableException.class, () -> client.put("local:a", "v"));
      assertEquals(1, gets.get());
      assertEquals(1, puts.get());
    }
  }

  @Test
  void aReadWhoseConnectionBrokeBeforeTheAgentAnsweredIsSentAgainButAPutIsNot() throws Exception {
    Path socket = FakeAgent.tempSocket();
    AtomicInteger gets = new AtomicInteger();
    AtomicInteger puts = new AtomicInteger();
    java.util.concurrent.atomic.AtomicReference<FakeAgent> dying = new java.util.concurrent.atomic.AtomicReference<>();
    // The agent dies holding the request (as a crashed agent would); a second one answers.
    SecretsGrpc.SecretsImplBase dies = new SecretsGrpc.SecretsImplBase() {
      @Override
      public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
        gets.incrementAndGet();
        new Thread(() -> dying.get().close()).start();
      }

      @Override
      public void putSecret(PutSecretRequest request, StreamObserver<PutSecretResponse> out) {
        puts.incrementAndGet();
        new Thread(() -> dying.get().close()).start();
      }
    };
    RetryPolicy policy = new RetryPolicy(10, Duration.ofMillis(20), Duration.ofMillis(100), 2.0, 0.2);
    dying.set(FakeAgent.start(socket, dies));
    try (PsstClient client = PsstClient.builder().socket(socket).retry(policy).build()) {
      CompletableFuture<FakeAgent> again = CompletableFuture.supplyAsync(() -> {
        try {
          Thread.sleep(1000);
          Files.createDirectories(socket.getParent());
          return FakeAgent.start(socket, serving("again"));
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      });
      assertEquals("again", client.get("local:a").valueAsString());
      assertEquals(1, gets.get());
      again.get(10, TimeUnit.SECONDS).close();
      Files.createDirectories(socket.getParent());
      dying.set(FakeAgent.start(socket, dies));
      PsstException e = assertThrows(PsstException.class, () -> client.put("local:a", "v"));
      assertTrue(e.code() == Status.Code.UNAVAILABLE || e.code() == Status.Code.CANCELLED, e.toString());
      assertEquals(1, puts.get());
    } finally {
      dying.get().close();
    }
  }
}
