package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The shared resilience and Source scenarios (tests/conformance/restart-scenarios.json and
 * source-scenarios.json; tests/conformance/README.md defines every call and step), run through
 * this client against the live agent of tests/conformance/with-agent.
 */
class ResilienceConformanceTest {
  private static JsonObject load(String variable) throws IOException {
    ConformanceTest.requireAgent(variable, variable + " is not set: run under tests/conformance/with-agent (see test.sh)");
    return JsonParser.parseString(Files.readString(Path.of(System.getenv(variable)))).getAsJsonObject();
  }

  @TestFactory
  Stream<DynamicTest> restartScenarios() throws IOException {
    List<DynamicTest> tests = new ArrayList<>();
    for (JsonElement e : load("PSST_CONFORMANCE_RESTART").getAsJsonArray("scenarios")) {
      JsonObject s = e.getAsJsonObject();
      String call = s.get("call").getAsString();
      tests.add(DynamicTest.dynamicTest(s.get("name").getAsString(), () -> {
        switch (call) {
          case "restart" -> restart(s);
          case "give_up" -> giveUp(s);
          default -> fail("unknown call \"" + call + "\": teach this runner about it");
        }
      }));
    }
    assertFalse(tests.isEmpty());
    return tests.stream();
  }

  @TestFactory
  Stream<DynamicTest> sourceScenarios() throws IOException {
    List<DynamicTest> tests = new ArrayList<>();
    for (JsonElement e : load("PSST_CONFORMANCE_SOURCE").getAsJsonArray("scenarios")) {
      JsonObject s = e.getAsJsonObject();
      tests.add(DynamicTest.dynamicTest(s.get("name").getAsString(), () -> source(s)));
    }
    assertFalse(tests.isEmpty());
    return tests.stream();
  }

  /** Runs one of with-agent's commands and waits for it. */
  static void run(String variable, String... args) throws IOException, InterruptedException {
    String command = System.getenv(variable);
    assertNotNull(command, variable + " is not set: run under tests/conformance/with-agent");
    List<String> argv = new ArrayList<>(List.of(command));
    argv.addAll(List.of(args));
    int status = new ProcessBuilder(argv).inheritIO().start().waitFor();
    assertEquals(0, status, variable + " " + String.join(" ", args) + " failed");
  }

  private static void eventually(Duration within, BooleanSupplier check, String what) throws InterruptedException {
    long until = System.nanoTime() + within.toNanos();
    while (!check.getAsBoolean()) {
      assertTrue(System.nanoTime() < until, what + ": not within " + within);
      Thread.sleep(20);
    }
  }

  /** The next value-carrying event within {@code within}. */
  private static WatchEvent nextValue(Watch watch, Duration within, String where) throws InterruptedException {
    long until = System.nanoTime() + within.toNanos();
    for (;;) {
      long left = until - System.nanoTime();
      assertTrue(left > 0, where + ": no event within " + within);
      WatchEvent event = watch.poll(Duration.ofNanos(left));
      assertFalse(watch.isClosed(), where + ": the watch ended");
      if (event != null && event.secret().isPresent()) {
        return event;
      }
    }
  }

  private static void assertEvent(WatchEvent event, JsonObject expect, String where) {
    if (expect.has("kind")) {
      assertEquals(expect.get("kind").getAsString(), event.kind().name(), where + ": kind");
    }
    if (expect.has("value")) {
      assertEquals(expect.get("value").getAsString(), event.secret().orElseThrow().valueAsString(), where + ": value");
    }
    if (expect.has("version_id")) {
      assertEquals(expect.get("version_id").getAsString(), event.versionId().orElseThrow(), where + ": version_id");
    }
    if (expect.has("previous_version_id")) {
      assertEquals(expect.get("previous_version_id").getAsString(), event.previousVersionId(), where + ": previous_version_id");
    }
  }

  private static void restart(JsonObject s) throws Exception {
    String ref = s.get("watch").getAsString();
    String get = s.get("get").getAsString();
    List<WatchStatus> statuses = new CopyOnWriteArrayList<>();
    ExecutorService pool = Executors.newCachedThreadPool();
    try (PsstClient client = PsstClient.create(); Watch watch = client.watch(List.of(ref)).onStatus(statuses::add)) {
      WatchEvent current = nextValue(watch, Duration.ofSeconds(10), "current");
      assertEquals(WatchEvent.Kind.CURRENT, current.kind());
      assertEvent(current, s.getAsJsonObject("expect_current"), "current");
      // The reader keeps reading while the agent is down: an error would end the watch.
      Future<WatchEvent> after = pool.submit(() -> nextValue(watch, Duration.ofSeconds(s.get("down_seconds").getAsInt() + 30), "after"));
      run("PSST_STOP_AGENT");
      long t0 = System.nanoTime();
      PsstClient patient = client.withTimeout(Duration.ofSeconds(s.get("get_deadline_seconds").getAsInt()));
      List<Future<Secret>> getters = new ArrayList<>();
      for (int i = 0; i < s.get("getters").getAsInt(); i++) {
        getters.add(pool.submit(() -> patient.get(get)));
      }
      int shortSeconds = s.get("short_get_deadline_seconds").getAsInt();
      long shortStarted = System.nanoTime();
      PsstException shortError = assertThrows(PsstException.class, () -> client.withTimeout(Duration.ofSeconds(shortSeconds)).get(get));
      List<String> allowed = new ArrayList<>();
      s.getAsJsonArray("expect_short_get_error").forEach(c -> allowed.add(c.getAsString()));
      assertTrue(allowed.contains(shortError.codeName()), "short get: " + shortError);
      assertTrue(System.nanoTime() - shortStarted <= TimeUnit.SECONDS.toNanos(shortSeconds + 2), "the short get overran its deadline");
      eventually(Duration.ofNanos(TimeUnit.SECONDS.toNanos(10) - (System.nanoTime() - t0)),
          () -> statuses.stream().anyMatch(st -> !st.reachable()), "status: unreachable");
      assertFalse(watch.isClosed(), "the watch ended while the agent was down");
      long downNanos = TimeUnit.SECONDS.toNanos(s.get("down_seconds").getAsInt()) - (System.nanoTime() - t0);
      if (downNanos > 0) {
        TimeUnit.NANOSECONDS.sleep(downNanos);
      }
      run("PSST_START_AGENT");
      for (Future<Secret> getter : getters) {
        assertEquals(s.getAsJsonObject("expect_get").get("value").getAsString(), getter.get().valueAsString(), "getter");
      }
      client.put(ref, s.get("put_after").getAsString());
      assertEvent(after.get(15, TimeUnit.SECONDS), s.getAsJsonObject("expect_after"), "after the restart");
      assertTrue(statuses.get(statuses.size() - 1).reachable(), "status: reachable again");
    } finally {
      pool.shutdownNow();
    }
  }

  private static void giveUp(JsonObject s) throws Exception {
    String ref = s.get("watch").getAsString();
    int within = s.get("expect_error_within_seconds").getAsInt();
    try (PsstClient client = PsstClient.builder()
            .watchReconnect(Duration.ofSeconds(s.get("give_up_after_seconds").getAsInt())).build();
        Watch watch = client.watch(ref)) {
      assertEvent(nextValue(watch, Duration.ofSeconds(10), "current"), s.getAsJsonObject("expect_current"), "current");
      long started = System.nanoTime();
      CompletableFuture<Void> restarting = CompletableFuture.runAsync(() -> {
        try {
          run("PSST_RESTART_AGENT", s.get("down_seconds").getAsString());
        } catch (IOException | InterruptedException e) {
          throw new RuntimeException(e);
        }
      });
      PsstException error = assertThrows(PsstException.class, () -> {
        while (watch.poll(Duration.ofSeconds(within)) != null || !watch.isClosed()) {
          assertTrue(System.nanoTime() - started < TimeUnit.SECONDS.toNanos(within), "no error within " + within + " s");
        }
      });
      assertEquals(s.get("expect_error").getAsString(), error.codeName(), error.getMessage());
      assertTrue(System.nanoTime() - started <= TimeUnit.SECONDS.toNanos(within));
      restarting.get(60, TimeUnit.SECONDS);
    }
  }

  private static void source(JsonObject s) throws Exception {
    assertEquals("source", s.get("call").getAsString());
    String ref = s.get("reference").getAsString();
    BlockingQueue<String> updates = new LinkedBlockingQueue<>();
    Source src = null;
    try (PsstClient client = PsstClient.create()) {
      int i = 0;
      for (JsonElement e : s.getAsJsonArray("steps")) {
        JsonObject step = e.getAsJsonObject();
        String where = "step " + ++i + " " + step;
        if (step.has("expect_open_error")) {
          PsstException error = assertThrows(PsstException.class, () -> client.source(ref).close(), where);
          assertEquals(step.get("expect_open_error").getAsString(), error.codeName(), where);
          continue;
        }
        if (src == null) {
          src = client.source(ref).addListener(new SourceListener() {
            @Override
            public void onUpdate(String reference, Secret secret) {
              if (reference.equals(ref)) {
                updates.add(secret.valueAsString());
              }
            }
          });
        }
        Source opened = src;
        if (step.has("expect_value")) {
          assertEquals(step.get("expect_value").getAsString(), opened.get(ref).valueAsString(), where);
        } else if (step.has("aws_put")) {
          run("PSST_AWS_PUT", ref, step.get("aws_put").getAsString());
        } else if (step.has("expect_update")) {
          String want = step.get("expect_update").getAsString();
          long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
          for (;;) {
            String got = updates.poll(Math.max(0, until - System.nanoTime()), TimeUnit.NANOSECONDS);
            assertNotNull(got, where + ": no update within 15 s");
            if (got.equals(want)) {
              break;
            }
          }
        } else if (step.has("stop_agent")) {
          run("PSST_STOP_AGENT");
        } else if (step.has("start_agent")) {
          run("PSST_START_AGENT");
        } else if (step.has("expect_unreachable")) {
          eventually(Duration.ofSeconds(10), () -> opened.status() != null && !opened.status().reachable(), where);
          assertFalse(opened.isClosed());
        } else {
          fail(where + ": unknown step: teach this runner about it");
        }
      }
    } finally {
      if (src != null) {
        src.close();
      }
    }
  }
}
