package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.psst.v1.Grant;
import dev.psst.v1.WhoAmIResponse;
import io.grpc.health.v1.HealthCheckResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * What the conformance scenarios do not cover, against the same live agent: health, whoAmI, put,
 * and the :authority the agent's HTTP/2 server accepts. Writes only under local:scratch/, which
 * the conformance policy lets the runner write but not read or list, so the scenarios are unaffected.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class LiveAgentTest {
  private static PsstClient client;

  @BeforeAll
  static void connect() {
    ConformanceTest.requireAgent("PSST_CONFORMANCE", ConformanceTest.SKIP);
    client = PsstClient.create();
  }

  @AfterAll
  static void close() {
    if (client != null) {
      client.close();
    }
  }

  @Test
  void healthIsServing() {
    assertEquals(HealthCheckResponse.ServingStatus.SERVING, client.health());
  }

  @Test
  void whoAmINamesThisProcessAndTheConformanceRule() throws Exception {
    Identity me = client.whoAmI();
    int uid = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
    assertEquals(uid, me.caller().uid());
    assertEquals(ProcessHandle.current().pid(), me.caller().pid());
    assertEquals(List.of("conformance runner"), me.matchedRules());
    Identity.Grant read = me.grants().stream().filter(g -> g.operation().equals("read")).findFirst().orElseThrow();
    // The grants the conformance agent's policy gives: the one rule in scenarios.json.
    JsonObject spec =
        JsonParser.parseString(Files.readString(Path.of(System.getenv("PSST_CONFORMANCE"))))
            .getAsJsonObject();
    List<String> want = new ArrayList<>();
    spec.getAsJsonObject("policy")
        .getAsJsonObject("allow")
        .getAsJsonArray("read")
        .forEach(p -> want.add(p.getAsString()));
    assertFalse(want.isEmpty());
    assertEquals(want, read.patterns());
  }

  @Test
  void putWritesNewVersionsAndReadingThemBackIsDenied() {
    String reference = "local:scratch/java-" + ProcessHandle.current().pid();
    PutResult first = client.put(reference, "one");
    assertEquals("1", first.versionId());
    assertEquals(reference + "?version=1", first.reference());
    assertNotNull(first.createdAt());
    PutResult second = client.put(reference, "two".getBytes(StandardCharsets.UTF_8));
    assertEquals("2", second.versionId());
    assertThrows(PermissionDeniedException.class, () -> client.get(reference));
  }

  @Test
  void aPutWithASelectorIsInvalidArgument() {
    assertThrows(InvalidArgumentException.class, () -> client.put("local:scratch/x?version=1", "v"));
  }

  @Test
  void theAgentAlsoAnswersWithTheSocketPathAsAuthority() {
    // The agent's h2 is patched (third_party/h2/PSST-PATCH.md) to ignore an :authority that does
    // not parse, so that stock gRPC tools reach it; agents before that reset the stream, which is
    // why the client sends "localhost". If the agent goes back to refusing it, this test says so.
    try (PsstClient other = PsstClient.builder().retry(RetryPolicy.NONE).authority(client.socket().toString()).build()) {
      assertEquals(HealthCheckResponse.ServingStatus.SERVING, other.health());
    }
  }
}
