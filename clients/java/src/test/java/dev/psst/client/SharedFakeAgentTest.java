package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;

/**
 * The shared peer-uid scenario of tests/conformance/with-fake-agent: a socket file owned by this
 * runner's uid but served by a throwaway user. The client refuses it with its default expected
 * uid (the file's owner: only SO_PEERCRED shows the impostor) and with PSST_EXPECTED_UID set to
 * the runner's uid, and the fake agent receives nothing; expecting the fake user's uid, it
 * connects and sends (the control).
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class SharedFakeAgentTest {
  private static Path socket;
  private static Path received;
  private static int fakeUid;

  @BeforeAll
  static void requireFakeAgent() {
    String s = System.getenv("PSST_FAKE_SOCKET");
    if (s == null && System.getenv("PSST_REQUIRE_FAKE_AGENT") != null) {
      fail("PSST_FAKE_SOCKET is not set: run under tests/conformance/with-fake-agent (PSST_REQUIRE_FAKE_AGENT is set)");
    }
    Assumptions.assumeTrue(s != null, "PSST_FAKE_SOCKET is not set: run under tests/conformance/with-fake-agent (as root)");
    socket = Path.of(s);
    received = Path.of(System.getenv("PSST_FAKE_RECEIVED"));
    fakeUid = Integer.parseInt(System.getenv("PSST_FAKE_UID"));
  }

  private static long received() throws Exception {
    return Long.parseLong(Files.readString(received).trim());
  }

  private static PsstClient client(Map<String, String> environment) {
    return PsstClient.builder().socket(socket).environment(environment).callTimeout(Duration.ofSeconds(3)).build();
  }

  @Test
  @Order(1)
  void theDefaultExpectedUidTheSocketFilesOwnerRefusesTheImpostor() throws Exception {
    int self = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
    try (PsstClient client = PsstClient.builder().socket(socket).environment(Map.of()).callTimeout(Duration.ofSeconds(10)).build()) {
      long started = System.nanoTime();
      UntrustedAgentException e = assertThrows(UntrustedAgentException.class, () -> client.put("local:a", "secret value"));
      assertEquals("UNAUTHENTICATED", e.codeName());
      assertTrue(e.description().contains("runs as uid " + fakeUid), e.description());
      assertTrue(e.description().contains("not the expected uid " + self), e.description());
      assertTrue(System.nanoTime() - started < TimeUnit.SECONDS.toNanos(3), "the refusal waited for the deadline");
    }
    assertEquals(0, received(), "the fake agent received bytes");
  }

  @Test
  @Order(2)
  void anExpectedUidFromTheEnvironmentRefusesTheImpostor() throws Exception {
    int self = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
    try (PsstClient client = client(Map.of("PSST_EXPECTED_UID", Integer.toString(self)))) {
      assertThrows(UntrustedAgentException.class, () -> client.put("local:a", "secret value"));
    }
    assertEquals(0, received(), "the fake agent received bytes");
  }

  /** Last: what it sends stays in the fake agent's count. */
  @Test
  @Order(3)
  void expectingTheFakeUsersUidConnectsAndSends() throws Exception {
    try (PsstClient client = client(Map.of("PSST_EXPECTED_UID", Integer.toString(fakeUid)))) {
      // The fake agent never answers: the call runs into its deadline, but it was sent.
      PsstException e = assertThrows(PsstException.class, () -> client.get("local:a"));
      assertTrue(!(e instanceof UntrustedAgentException), e.toString());
    }
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (received() == 0) {
      assertTrue(System.nanoTime() < until, "the control sent nothing: the test could not fail");
      Thread.sleep(20);
    }
  }
}
