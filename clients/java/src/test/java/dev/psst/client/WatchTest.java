package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.Timestamp;
import dev.psst.v1.SecretsGrpc;
import dev.psst.v1.WatchEvent.Kind;
import dev.psst.v1.WatchSecretsRequest;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** watch(): folding, mapping, resume after a reconnect (known_versions), errors, close, listener. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class WatchTest {
  /** A fake agent's WatchSecrets whose calls the test drives. */
  static class WatchService extends SecretsGrpc.SecretsImplBase {
    record Call(WatchSecretsRequest request, StreamObserver<dev.psst.v1.WatchEvent> out) {}

    final List<Call> calls = new CopyOnWriteArrayList<>();

    @Override
    public synchronized void watchSecrets(WatchSecretsRequest request, StreamObserver<dev.psst.v1.WatchEvent> out) {
      calls.add(new Call(request, out));
      notifyAll();
    }

    /** The n-th call (from 1), waiting up to 10 s for it. */
    synchronized Call call(int n) throws InterruptedException {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (calls.size() < n) {
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          throw new AssertionError("no watch call #" + n + " in 10 s (" + calls.size() + " so far)");
        }
        TimeUnit.NANOSECONDS.timedWait(this, left);
      }
      return calls.get(n - 1);
    }
  }

  private static dev.psst.v1.WatchEvent ev(String reference, Kind kind, String version, String previous,
      String pending) {
    dev.psst.v1.WatchEvent.Builder b = dev.psst.v1.WatchEvent.newBuilder()
        .setReference(reference)
        .setKind(kind)
        .setPreviousVersionId(previous)
        .setPendingVersionId(pending)
        .setObservedAt(Timestamp.newBuilder().setSeconds(1_700_000_000L));
    if (version != null) {
      b.setSecret(dev.psst.v1.Secret.newBuilder()
          .setReference(reference)
          .setValue(ByteString.copyFromUtf8("value-" + version))
          .setVersionId(version));
    }
    return b.build();
  }

  private static dev.psst.v1.WatchEvent current(String reference, String version) {
    return ev(reference, Kind.CURRENT, version, "", "");
  }

  private static dev.psst.v1.WatchEvent newVersion(String reference, String version, String previous) {
    return ev(reference, Kind.NEW_VERSION, version, previous, "");
  }

  private static dev.psst.v1.WatchEvent pending(String reference, String version) {
    return ev(reference, Kind.PENDING_VERSION, null, "", version);
  }

  private static dev.psst.v1.WatchEvent deleted(String reference) {
    return ev(reference, Kind.DELETED, null, "", "");
  }

  /** What the tests check of an event. */
  private static String brief(WatchEvent e) {
    StringBuilder s = new StringBuilder().append(e.kind()).append(' ').append(e.reference());
    e.secret().ifPresent(secret -> s.append(" v").append(secret.versionId()).append('=').append(secret.valueAsString()));
    if (!e.previousVersionId().isEmpty()) {
      s.append(" prev ").append(e.previousVersionId());
    }
    if (!e.pendingVersionId().isEmpty()) {
      s.append(" pending ").append(e.pendingVersionId());
    }
    return s.toString();
  }

  private static String brief(dev.psst.v1.WatchEvent e) {
    return brief(WatchEvent.fromProto(e));
  }

  private static String nextEvent(Watch watch) throws InterruptedException {
    WatchEvent event = watch.poll(Duration.ofSeconds(10));
    assertNotNull(event, "no event in 10 s");
    return brief(event);
  }

  private static PsstClient client(Path socket) {
    return PsstClient.builder().socket(socket).build();
  }

  // --- folding, without a server -------------------------------------------------------------

  @Test
  void coalesceFoldsVersionsPerReferenceKeepingThePreviousVersionAndCurrent() {
    List<dev.psst.v1.WatchEvent> out = Watch.coalesce(List.of(
        current("local:a", "1"),
        current("local:b", "5"),
        newVersion("local:a", "2", "1"),
        newVersion("local:b", "6", "5"),
        newVersion("local:a", "3", "2")));
    assertEquals(List.of("CURRENT local:a v3=value-3", "CURRENT local:b v6=value-6"),
        out.stream().map(WatchTest::brief).toList());

    out = Watch.coalesce(List.of(
        newVersion("local:a", "4", "3"),
        newVersion("local:a", "5", "4"),
        newVersion("local:a", "6", "5")));
    assertEquals(List.of("NEW_VERSION local:a v6=value-6 prev 3"), out.stream().map(WatchTest::brief).toList());
  }

  @Test
  void coalesceDoesNotFoldOverADeletionOrAPendingVersion() {
    List<dev.psst.v1.WatchEvent> batch = List.of(
        current("local:a", "1"),
        deleted("local:a"),
        newVersion("local:a", "1", ""),
        pending("local:a", "2"),
        newVersion("local:a", "2", "1"),
        current("local:b", "1"),
        pending("local:b", "2"));
    assertEquals(batch.stream().map(WatchTest::brief).toList(),
        Watch.coalesce(batch).stream().map(WatchTest::brief).toList());
  }

  // --- against a fake agent ------------------------------------------------------------------

  @Test
  void watchSendsTheReferencesAndMapsTheEvents() throws Exception {
    WatchService service = new WatchService();
    try (FakeAgent agent = FakeAgent.start(service); PsstClient client = agent.client();
        Watch watch = client.watch("local:a", "local:b")) {
      WatchService.Call call = service.call(1);
      assertEquals(List.of("local:a", "local:b"), call.request().getReferencesList());
      assertEquals(Map.of(), call.request().getKnownVersionsMap());
      assertEquals(List.of("localhost"), agent.authorities);
      call.out().onNext(current("local:a", "1"));
      WatchEvent first = watch.poll(Duration.ofSeconds(10));
      assertNotNull(first);
      assertEquals(WatchEvent.Kind.CURRENT, first.kind());
      assertEquals("local:a", first.reference());
      assertEquals("1", first.versionId().orElseThrow());
      assertEquals("value-1", first.secret().orElseThrow().valueAsString());
      assertEquals("", first.previousVersionId());
      assertEquals(Instant.ofEpochSecond(1_700_000_000L), first.observedAt().orElseThrow());
      call.out().onNext(pending("local:a", "2"));
      call.out().onNext(current("local:b", "7"));
      assertEquals("PENDING_VERSION local:a pending 2", nextEvent(watch));
      assertEquals("CURRENT local:b v7=value-7", nextEvent(watch));
      call.out().onNext(newVersion("local:a", "2", "1"));
      call.out().onNext(deleted("local:b"));
      assertTrue(watch.hasNext());
      assertEquals("NEW_VERSION local:a v2=value-2 prev 1", brief(watch.next()));
      assertEquals("DELETED local:b", brief(watch.next()));
      assertEquals(Map.of("local:a", "2"), watch.knownVersions());
      assertNull(watch.poll(Duration.ofMillis(50)), "nothing more");
    }
  }

  @Test
  void eventsThatArrivedUnreadAreFolded() throws Exception {
    WatchService service = new WatchService();
    try (FakeAgent agent = FakeAgent.start(service); PsstClient client = agent.client();
        Watch watch = client.watch("local:a", "local:b")) {
      StreamObserver<dev.psst.v1.WatchEvent> out = service.call(1).out();
      out.onNext(current("local:a", "1"));
      out.onNext(current("local:b", "5"));
      out.onNext(newVersion("local:a", "2", "1"));
      out.onNext(newVersion("local:a", "3", "2"));
      Thread.sleep(300);
      assertEquals("CURRENT local:a v3=value-3", nextEvent(watch));
      assertEquals("CURRENT local:b v5=value-5", nextEvent(watch));
      out.onNext(newVersion("local:a", "4", "3"));
      out.onNext(newVersion("local:b", "6", "5"));
      out.onNext(newVersion("local:a", "5", "4"));
      Thread.sleep(300);
      assertEquals("NEW_VERSION local:a v5=value-5 prev 3", nextEvent(watch));
      assertEquals("NEW_VERSION local:b v6=value-6 prev 5", nextEvent(watch));
    }
  }

  @Test
  void moreEventsThanTheBufferHoldsAreAllDeliveredInOrder() throws Exception {
    WatchService service = new WatchService();
    int n = Watch.MAX_BUFFERED + 50;
    List<String> references = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      references.add("local:r" + i);
    }
    try (FakeAgent agent = FakeAgent.start(service); PsstClient client = agent.client();
        Watch watch = client.watch(references)) {
      StreamObserver<dev.psst.v1.WatchEvent> out = service.call(1).out();
      for (String reference : references) {
        out.onNext(current(reference, "1"));
      }
      Thread.sleep(300);
      for (String reference : references) {
        assertEquals("CURRENT " + reference + " v1=value-1", nextEvent(watch));
      }
    }
  }

  @Test
  void afterTheAgentRestartsTheWatchResumesWithKnownVersions() throws Exception {
    Path socket = FakeAgent.tempSocket();
    WatchService first = new WatchService();
    WatchService second = new WatchService();
    FakeAgent agent = FakeAgent.start(socket, first);
    try (PsstClient client = client(socket); Watch watch = client.watch("local:a", "local:b")) {
      StreamObserver<dev.psst.v1.WatchEvent> out = first.call(1).out();
      out.onNext(current("local:a", "1"));
      out.onNext(current("local:b", "1"));
      assertEquals("CURRENT local:a v1=value-1", nextEvent(watch));
      Thread.sleep(200); // local:b v1 has arrived, not delivered, when the agent goes away
      out.onError(Status.UNAVAILABLE.withDescription("the agent is shutting down").asRuntimeException());
      agent.close();
      assertEquals("CURRENT local:b v1=value-1", nextEvent(watch));
      CompletableFuture<String> resumed = CompletableFuture.supplyAsync(() -> {
        try {
          return nextEvent(watch);
        } catch (InterruptedException e) {
          throw new IllegalStateException(e);
        }
      });
      Thread.sleep(400); // nothing listens for a while: the watch retries
      Files.createDirectories(socket.getParent());
      agent = FakeAgent.start(socket, second);
      WatchService.Call call = second.call(1);
      assertEquals(List.of("local:a", "local:b"), call.request().getReferencesList());
      assertEquals(Map.of("local:a", "1", "local:b", "1"), call.request().getKnownVersionsMap());
      call.out().onNext(newVersion("local:a", "2", "1"));
      assertEquals("NEW_VERSION local:a v2=value-2 prev 1", resumed.get(10, TimeUnit.SECONDS));
    } finally {
      agent.close();
    }
  }

  @Test
  void aStreamThatEndsUnavailableOrResetResumesFromWhatWasDelivered() throws Exception {
    WatchService service = new WatchService();
    try (FakeAgent agent = FakeAgent.start(service); PsstClient client = agent.client();
        Watch watch = client.watch("local:a")) {
      StreamObserver<dev.psst.v1.WatchEvent> out = service.call(1).out();
      out.onNext(current("local:a", "1"));
      out.onNext(newVersion("local:a", "2", "1"));
      Thread.sleep(200);
      out.onError(Status.UNAVAILABLE.withDescription("the agent is shutting down").asRuntimeException());
      assertEquals("CURRENT local:a v2=value-2", nextEvent(watch));
      assertNull(watch.poll(Duration.ofMillis(300)));
      assertEquals(Map.of("local:a", "2"), service.call(2).request().getKnownVersionsMap());
      service.call(2).out().onError(Status.INTERNAL.withDescription("stream reset").asRuntimeException());
      assertNull(watch.poll(Duration.ofMillis(300)));
      assertEquals(Map.of("local:a", "2"), service.call(3).request().getKnownVersionsMap());
      service.call(3).out().onNext(newVersion("local:a", "3", "2"));
      assertEquals("NEW_VERSION local:a v3=value-3 prev 2", nextEvent(watch));
    }
  }

  @Test
  void permissionDeniedAndNotFoundEndTheWatchAfterTheEventsBeforeThem() throws Exception {
    for (Status status : List.of(Status.PERMISSION_DENIED, Status.NOT_FOUND)) {
      WatchService service = new WatchService();
      try (FakeAgent agent = FakeAgent.start(service); PsstClient client = agent.client();
          Watch watch = client.watch("local:a")) {
        StreamObserver<dev.psst.v1.WatchEvent> out = service.call(1).out();
        out.onNext(current("local:a", "1"));
        out.onError(status.withDescription("no").asRuntimeException());
        Thread.sleep(200);
        assertEquals("CURRENT local:a v1=value-1", nextEvent(watch));
        PsstException error = assertThrows(PsstException.class, watch::hasNext);
        Class<? extends PsstException> expected = status == Status.PERMISSION_DENIED
            ? PermissionDeniedException.class : NotFoundException.class;
        assertTrue(expected.isInstance(error), "expected a " + expected.getSimpleName() + ", got " + error);
        assertEquals("no", error.description());
        assertFalse(watch.hasNext());
        assertTrue(watch.isClosed());
        assertThrows(NoSuchElementException.class, watch::next);
        Thread.sleep(200);
        assertEquals(1, service.calls.size(), "no reconnect after a final error");
      }
    }
  }

  @Test
  void reconnectingGivesUpAfterTheWindowWithUnavailable() throws Exception {
    WatchService service = new WatchService();
    FakeAgent agent = FakeAgent.start(service);
    try (PsstClient client = PsstClient.builder().socket(agent.socket).watchReconnect(Duration.ofMillis(300)).build();
        Watch watch = client.watch("local:a")) {
      service.call(1).out().onNext(current("local:a", "1"));
      assertEquals("CURRENT local:a v1=value-1", nextEvent(watch));
      service.call(1).out().onError(Status.UNAVAILABLE.withDescription("shutting down").asRuntimeException());
      agent.close();
      long started = System.nanoTime();
      UnavailableException error = assertThrows(UnavailableException.class, () -> watch.poll(Duration.ofSeconds(10)));
      long elapsedMs = (System.nanoTime() - started) / 1_000_000;
      assertEquals(Status.Code.UNAVAILABLE, error.code());
      assertTrue(elapsedMs >= 250 && elapsedMs < 5000, "gave up after " + elapsedMs + " ms");
      assertTrue(watch.isClosed());
    } finally {
      agent.close();
    }
  }

  @Test
  void anAgentThatIsNotUpYetIsWaitedFor() throws Exception {
    Path socket = FakeAgent.tempSocket();
    WatchService service = new WatchService();
    try (PsstClient client = client(socket)) {
      Watch watch = client.watch("local:a");
      assertNull(watch.poll(Duration.ofMillis(300)));
      CompletableFuture<String> first = CompletableFuture.supplyAsync(() -> {
        try {
          return nextEvent(watch);
        } catch (InterruptedException e) {
          throw new IllegalStateException(e);
        }
      });
      FakeAgent agent = FakeAgent.start(socket, service);
      try {
        service.call(1).out().onNext(current("local:a", "1"));
        assertEquals("CURRENT local:a v1=value-1", first.get(10, TimeUnit.SECONDS));
      } finally {
        watch.close(); // before the agent, whose shutdown waits for open calls
        agent.close();
      }
    }
  }

  @Test
  void closeEndsABlockedReaderAndClosingTheClientEndsItsWatches() throws Exception {
    WatchService service = new WatchService();
    try (FakeAgent agent = FakeAgent.start(service)) {
      PsstClient client = agent.client();
      Watch watch = client.watch("local:a");
      CompletableFuture<Boolean> blocked = CompletableFuture.supplyAsync(watch::hasNext);
      Thread.sleep(100);
      watch.close();
      assertFalse(blocked.get(5, TimeUnit.SECONDS));
      assertTrue(watch.isClosed());
      assertNull(watch.poll(Duration.ofMillis(10)));

      Watch other = client.watch("local:a");
      CompletableFuture<Boolean> waiting = CompletableFuture.supplyAsync(other::hasNext);
      Thread.sleep(100);
      client.close();
      assertFalse(waiting.get(5, TimeUnit.SECONDS));
      assertTrue(other.isClosed());
    }
  }

  @Test
  void theListenerGetsTheEventsThenTheError() throws Exception {
    WatchService service = new WatchService();
    BlockingQueue<Object> got = new LinkedBlockingQueue<>();
    try (FakeAgent agent = FakeAgent.start(service); PsstClient client = agent.client()) {
      Watch watch = client.watch(List.of("local:a"), new WatchListener() {
        @Override
        public void onEvent(WatchEvent event) {
          got.add(brief(event));
        }

        @Override
        public void onError(PsstException error) {
          got.add(error);
        }
      });
      StreamObserver<dev.psst.v1.WatchEvent> out = service.call(1).out();
      out.onNext(current("local:a", "1"));
      assertEquals("CURRENT local:a v1=value-1", got.poll(10, TimeUnit.SECONDS));
      out.onNext(newVersion("local:a", "2", "1"));
      assertEquals("NEW_VERSION local:a v2=value-2 prev 1", got.poll(10, TimeUnit.SECONDS));
      out.onError(Status.PERMISSION_DENIED.withDescription("revoked").asRuntimeException());
      Object last = got.poll(10, TimeUnit.SECONDS);
      assertInstanceOf(PermissionDeniedException.class, last);
      Thread.sleep(100);
      assertTrue(watch.isClosed());

      Watch closed = client.watch(List.of("local:a"), e -> got.add(brief(e)));
      service.call(2);
      closed.close();
      Thread.sleep(100);
      assertTrue(got.isEmpty(), "nothing after close: " + got);
    }
  }

  @Test
  void watchEventsNeverPrintTheValue() {
    String value = "hunter2-watch-secret";
    WatchEvent event = new WatchEvent("local:a", WatchEvent.Kind.NEW_VERSION,
        new Secret("local:a", value.getBytes(StandardCharsets.UTF_8), "2", List.of(), null, null),
        "1", "", Instant.EPOCH);
    String text = event.toString();
    assertFalse(text.contains(value), text);
    assertTrue(text.contains("NEW_VERSION") && text.contains("redacted") && text.contains("previousVersionId=1"), text);
    assertEquals(value, event.secret().orElseThrow().valueAsString());
  }
}
