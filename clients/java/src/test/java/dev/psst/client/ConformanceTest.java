package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The shared conformance scenarios (tests/conformance/scenarios.json, and the watch scenarios in
 * watch-scenarios.json), run through this client against a live agent started by
 * tests/conformance/with-agent, which sets PSST_CONFORMANCE, PSST_CONFORMANCE_WATCH,
 * PSST_RESTART_AGENT and PSST_SOCKET. One dynamic test per scenario.
 */
class ConformanceTest {
  static final String SKIP = "PSST_CONFORMANCE is not set: run under tests/conformance/with-agent (see test.sh)";
  static final String SKIP_WATCH =
      "PSST_CONFORMANCE_WATCH is not set: run under tests/conformance/with-agent (see test.sh)";
  /**
   * Skips without a live agent (a plain `mvn test`); fails instead when PSST_REQUIRE_AGENT is set
   * (test.sh sets it), so the scenarios can never be skipped silently.
   */
  static void requireAgent(String variable, String why) {
    String value = System.getenv(variable);
    boolean present = value != null && !value.isEmpty();
    if (!present && System.getenv("PSST_REQUIRE_AGENT") != null) {
      fail(why + " (PSST_REQUIRE_AGENT is set)");
    }
    Assumptions.assumeTrue(present, why);
  }

  /** How long an expect_event (or expect_error) step waits. */
  private static final Duration WATCH_STEP = Duration.ofSeconds(10);

  private static final Map<String, Class<? extends PsstException>> SUBCLASS = Map.of(
      "INVALID_ARGUMENT", InvalidArgumentException.class,
      "PERMISSION_DENIED", PermissionDeniedException.class,
      "NOT_FOUND", NotFoundException.class,
      "UNAVAILABLE", UnavailableException.class,
      "UNAUTHENTICATED", UnauthenticatedException.class,
      "FAILED_PRECONDITION", FailedPreconditionException.class,
      "RESOURCE_EXHAUSTED", ResourceExhaustedException.class);

  private static PsstClient client;

  @AfterAll
  static void closeClient() {
    if (client != null) {
      client.close();
    }
  }

  @TestFactory
  Stream<DynamicTest> scenarios() throws IOException {
    String file = System.getenv("PSST_CONFORMANCE");
    requireAgent("PSST_CONFORMANCE", SKIP);
    JsonObject spec = JsonParser.parseString(Files.readString(Path.of(file))).getAsJsonObject();
    JsonArray scenarios = spec.getAsJsonArray("scenarios");
    assertNotNull(scenarios, "the scenario file has no scenarios array");
    assertFalse(scenarios.isEmpty(), "the scenario file has no scenarios");
    client = PsstClient.create();
    List<DynamicTest> tests = new ArrayList<>();
    for (JsonElement element : scenarios) {
      JsonObject scenario = element.getAsJsonObject();
      String name = scenario.get("name").getAsString();
      tests.add(DynamicTest.dynamicTest(name, () -> run(scenario)));
    }
    return tests.stream();
  }

  @TestFactory
  Stream<DynamicTest> watchScenarios() throws IOException {
    String file = System.getenv("PSST_CONFORMANCE_WATCH");
    requireAgent("PSST_CONFORMANCE_WATCH", SKIP_WATCH);
    JsonObject spec = JsonParser.parseString(Files.readString(Path.of(file))).getAsJsonObject();
    JsonArray scenarios = spec.getAsJsonArray("scenarios");
    assertNotNull(scenarios, "the watch scenario file has no scenarios array");
    assertFalse(scenarios.isEmpty(), "the watch scenario file has no scenarios");
    List<DynamicTest> tests = new ArrayList<>();
    for (JsonElement element : scenarios) {
      JsonObject scenario = element.getAsJsonObject();
      String name = scenario.get("name").getAsString();
      tests.add(DynamicTest.dynamicTest(name, () -> runWatch(scenario)));
    }
    return tests.stream();
  }

  /**
   * One watch scenario. The watch has a client of its own; puts go through another one, made anew
   * after a restart (as the Rust runner does), so that only the watch has to find its way back.
   */
  private static void runWatch(JsonObject s) throws Exception {
    String name = s.get("name").getAsString();
    String call = s.get("call").getAsString();
    assertEquals("watch", call, name + ": unknown call \"" + call + "\": teach this runner about it");
    String reference = s.get("reference").getAsString();
    JsonArray steps = s.getAsJsonArray("steps");
    assertNotNull(steps, name + ": no steps");
    PsstClient writer = PsstClient.create();
    try (PsstClient watcher = PsstClient.create(); Watch watch = watcher.watch(reference)) {
      for (int i = 0; i < steps.size(); i++) {
        String where = name + ": step " + (i + 1);
        JsonObject step = steps.get(i).getAsJsonObject();
        assertEquals(1, step.keySet().size(), where + ": a step has one key, got " + step.keySet());
        if (step.has("expect_event")) {
          JsonObject expect = step.getAsJsonObject("expect_event");
          onlyKeys(expect, Set.of("kind", "value", "version_id", "previous_version_id"), where);
          WatchEvent event = watch.poll(WATCH_STEP);
          assertNotNull(event, where + ": no event within " + WATCH_STEP.toSeconds() + " s");
          assertEquals(reference, event.reference(), where + ": reference");
          if (expect.has("kind")) {
            assertEquals(expect.get("kind").getAsString(), event.kind().name(), where + ": kind");
          }
          if (expect.has("value") || expect.has("version_id")) {
            assertTrue(event.secret().isPresent(), where + ": the event has no secret: " + event);
          }
          if (expect.has("value")) {
            assertEquals(expect.get("value").getAsString(), event.secret().orElseThrow().valueAsString(), where + ": value");
          }
          if (expect.has("version_id")) {
            assertEquals(expect.get("version_id").getAsString(), event.secret().orElseThrow().versionId(),
                where + ": version_id");
          }
          if (expect.has("previous_version_id")) {
            assertEquals(expect.get("previous_version_id").getAsString(), event.previousVersionId(),
                where + ": previous_version_id");
          }
        } else if (step.has("put")) {
          writer.put(reference, step.get("put").getAsString());
        } else if (step.has("restart_agent")) {
          String restart = System.getenv("PSST_RESTART_AGENT");
          assertTrue(restart != null && !restart.isEmpty(),
              where + ": PSST_RESTART_AGENT is not set: run under tests/conformance/with-agent");
          Process process = new ProcessBuilder(restart).inheritIO().start();
          assertEquals(0, process.waitFor(), where + ": " + restart + " failed");
          writer.close();
          writer = PsstClient.create();
        } else if (step.has("expect_error")) {
          JsonObject expect = new JsonObject();
          expect.add("code", step.get("expect_error"));
          PsstException error = assertThrows(PsstException.class, () -> {
            WatchEvent event = watch.poll(WATCH_STEP);
            fail(where + ": expected " + expect.get("code").getAsString() + ", got "
                + (event == null ? "nothing within " + WATCH_STEP.toSeconds() + " s" : event));
          }, where);
          assertCode(error, expect, where);
        } else {
          fail(where + ": unknown step " + step + ": teach this runner about it");
        }
      }
    } finally {
      writer.close();
    }
  }

  private static void run(JsonObject s) {
    String name = s.get("name").getAsString();
    JsonObject expect = s.getAsJsonObject("expect");
    assertNotNull(expect, name + ": no expect");
    String call = s.get("call").getAsString();
    switch (call) {
      case "get" -> {
        String reference = s.get("reference").getAsString();
        onlyKeys(expect, Set.of("value", "version_id", "code"), name);
        if (expect.has("code")) {
          assertCode(assertThrows(PsstException.class, () -> client.get(reference), name), expect, name);
        } else {
          assertSecret(client.get(reference), expect, name);
        }
      }
      case "batch_get" -> {
        List<String> references = new ArrayList<>();
        s.getAsJsonArray("references").forEach(r -> references.add(r.getAsString()));
        onlyKeys(expect, Set.of("results", "code"), name);
        if (expect.has("code")) {
          assertCode(assertThrows(PsstException.class, () -> client.batchGet(references), name), expect, name);
          return;
        }
        List<BatchResult> results = client.batchGet(references);
        JsonArray expected = expect.getAsJsonArray("results");
        assertEquals(expected.size(), results.size(), name + ": number of results");
        for (int i = 0; i < expected.size(); i++) {
          JsonObject e = expected.get(i).getAsJsonObject();
          String where = name + " [" + i + "] " + references.get(i);
          onlyKeys(e, Set.of("value", "version_id", "code"), where);
          BatchResult r = results.get(i);
          if (e.has("code")) {
            assertFalse(r.isOk(), where + ": expected " + e.get("code").getAsString() + ", got " + r);
            assertCode(r.error().orElseThrow(), e, where);
            assertEquals(references.get(i), r.error().orElseThrow().reference(), where + ": reference");
          } else {
            assertTrue(r.isOk(), where + ": expected a secret, got " + r);
            assertSecret(r.secret(), e, where);
          }
        }
      }
      case "list" -> {
        String prefix = s.get("prefix").getAsString();
        onlyKeys(expect, Set.of("references", "code"), name);
        if (expect.has("code")) {
          assertCode(assertThrows(PsstException.class, () -> client.list(prefix), name), expect, name);
          return;
        }
        List<String> expected = new ArrayList<>();
        expect.getAsJsonArray("references").forEach(r -> expected.add(r.getAsString()));
        assertEquals(expected, client.list(prefix).stream().map(SecretMetadata::reference).toList(), name);
      }
      default -> fail(name + ": unknown call \"" + call + "\": teach this runner about it");
    }
  }

  private static void onlyKeys(JsonObject expect, Set<String> allowed, String where) {
    assertFalse(expect.keySet().isEmpty(), where + ": empty expectation");
    for (String key : expect.keySet()) {
      assertTrue(allowed.contains(key), where + ": unknown expectation key \"" + key + "\"");
    }
  }

  private static void assertSecret(Secret secret, JsonObject expect, String where) {
    if (expect.has("value")) {
      assertEquals(expect.get("value").getAsString(), secret.valueAsString(), where + ": value");
    }
    if (expect.has("version_id")) {
      assertEquals(expect.get("version_id").getAsString(), secret.versionId(), where + ": version_id");
    }
  }

  private static void assertCode(PsstException error, JsonObject expect, String where) {
    String code = expect.get("code").getAsString();
    assertEquals(code, error.codeName(), where + ": code (" + error.getMessage() + ")");
    Class<? extends PsstException> type = SUBCLASS.get(code);
    if (type != null) {
      assertInstanceOf(type, error, where);
    }
  }
}
