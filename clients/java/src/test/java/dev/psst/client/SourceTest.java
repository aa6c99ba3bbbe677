package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.psst.v1.GetSecretRequest;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Source against a fake agent: the first fetch, resuming the watch from what it fetched, updates,
 * and a denied watch and an outage that never replace a value.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SourceTest {
  private static dev.psst.v1.Secret secret(String reference, String version) {
    return dev.psst.v1.Secret.newBuilder().setReference(reference).setVersionId(version)
        .setValue(ByteString.copyFromUtf8("value-" + version)).build();
  }

  /** Serves version 1 of every reference but local:denied, and records watch calls. */
  static final class Agent extends WatchTest.WatchService {
    @Override
    public void getSecret(GetSecretRequest request, StreamObserver<dev.psst.v1.Secret> out) {
      if (request.getReference().equals("local:denied")) {
        out.onError(Status.PERMISSION_DENIED.withDescription("denied").asRuntimeException());
        return;
      }
      out.onNext(secret(request.getReference(), "1"));
      out.onCompleted();
    }
  }

  private static void until(BooleanSupplier check, String what) throws InterruptedException {
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!check.getAsBoolean()) {
      assertTrue(System.nanoTime() < end, what + ": not within 10 s");
      Thread.sleep(10);
    }
  }

  @Test
  void fetchesOnceResumesFromWhatItFetchedAndKeepsValuesThroughErrorsAndOutages() throws Exception {
    Agent service = new Agent();
    FakeAgent agent = FakeAgent.start(service);
    BlockingQueue<String> updates = new LinkedBlockingQueue<>();
    List<WatchStatus> statuses = new CopyOnWriteArrayList<>();
    try (PsstClient client = agent.client(); Source source = client.source("local:a", "local:b")) {
      source.addListener(new SourceListener() {
        @Override
        public void onUpdate(String reference, Secret s) {
          updates.add(reference + "=" + s.valueAsString());
        }

        @Override
        public void onStatus(WatchStatus status) {
          statuses.add(status);
        }
      });
      assertEquals("value-1", source.get("local:a").valueAsString());
      assertThrows(IllegalArgumentException.class, () -> source.get("local:other"));
      WatchTest.WatchService.Call first = service.call(1);
      assertEquals(Map.of("local:a", "1", "local:b", "1"), first.request().getKnownVersionsMap());

      first.out().onNext(dev.psst.v1.WatchEvent.newBuilder().setReference("local:a")
          .setKind(dev.psst.v1.WatchEvent.Kind.NEW_VERSION).setSecret(secret("local:a", "2")).setPreviousVersionId("1").build());
      assertEquals("local:a=value-2", updates.poll(10, TimeUnit.SECONDS));
      assertEquals("value-2", source.get("local:a").valueAsString());

      // A policy reload takes the watch grant away: the values stay, the status says why, and
      // the Source watches again, from the versions it has.
      first.out().onError(Status.PERMISSION_DENIED.withDescription("no").asRuntimeException());
      until(() -> statuses.stream().anyMatch(s -> s.error() instanceof PermissionDeniedException), "the denied status");
      assertEquals("value-2", source.get("local:a").valueAsString());
      assertEquals(Map.of("local:a", "2", "local:b", "1"), service.call(2).request().getKnownVersionsMap());

      // The agent goes away: still the last values, and the status says unreachable.
      agent.close();
      until(() -> source.status() != null && !source.status().reachable(), "unreachable");
      assertEquals("value-2", source.get("local:a").valueAsString());
      assertEquals("value-1", source.get("local:b").valueAsString());
    } finally {
      agent.close();
    }
  }

  @Test
  void openingFailsWithTheAgentsErrorWhenAReferenceIsRefused() throws Exception {
    try (FakeAgent agent = FakeAgent.start(new Agent()); PsstClient client = agent.client()) {
      assertThrows(PermissionDeniedException.class, () -> client.source("local:a", "local:denied"));
    }
  }

  @Test
  void closingTheClientClosesItsSourcesWhichKeepTheirValues() throws Exception {
    try (FakeAgent agent = FakeAgent.start(new Agent())) {
      PsstClient client = agent.client();
      Source source = client.source("local:a");
      client.close();
      until(source::isClosed, "the Source closed");
      assertEquals("value-1", source.get("local:a").valueAsString());
    }
  }
}
