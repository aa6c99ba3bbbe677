package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

class ConfigTest {
  @Test
  void socketComesFromTheEnvironmentElseTheDefault() {
    assertEquals("PSST_SOCKET", PsstClient.SOCKET_ENV);
    assertEquals(Path.of("/run/psst/psst.sock"), PsstClient.socketPath(Map.of()));
    assertEquals(Path.of("/run/psst/psst.sock"), PsstClient.socketPath(Map.of("PSST_SOCKET", "")));
    assertEquals(Path.of("/tmp/a.sock"), PsstClient.socketPath(Map.of("PSST_SOCKET", "/tmp/a.sock")));
    assertEquals(Path.of("rel.sock").toAbsolutePath(), PsstClient.socketPath(Map.of("PSST_SOCKET", "rel.sock")));
  }

  @Test
  void theBuilderUsesTheEnvironmentUnlessGivenASocket() {
    try (PsstClient fromEnv = PsstClient.builder().environment(Map.of("PSST_SOCKET", "/tmp/from-env.sock")).build();
        PsstClient fallback = PsstClient.builder().environment(Map.of()).build();
        PsstClient explicit = PsstClient.builder().environment(Map.of("PSST_SOCKET", "/tmp/from-env.sock"))
            .socket("/tmp/explicit.sock").build()) {
      assertEquals(Path.of("/tmp/from-env.sock"), fromEnv.socket());
      assertEquals(Path.of("/run/psst/psst.sock"), fallback.socket());
      assertEquals(Path.of("/tmp/explicit.sock"), explicit.socket());
      assertTrue(explicit.toString().contains("/tmp/explicit.sock"));
    }
  }

  @Test
  void backoffGrowsExponentiallyIsCappedAndJittersWithinBounds() {
    RetryPolicy flat = new RetryPolicy(10, Duration.ofMillis(100), Duration.ofSeconds(1), 2.0, 0.0);
    List<Long> delays = IntStream.rangeClosed(1, 6).mapToObj(a -> flat.delay(a, () -> 0.5).toMillis()).toList();
    assertEquals(List.of(100L, 200L, 400L, 800L, 1000L, 1000L), delays);
    RetryPolicy jittered = new RetryPolicy(10, Duration.ofMillis(100), Duration.ofSeconds(1), 2.0, 0.5);
    assertEquals(50, jittered.delay(1, () -> 0.0).toMillis());
    assertEquals(150, jittered.delay(1, () -> 1.0).toMillis());
    for (int i = 0; i < 200; i++) {
      long d = jittered.delay(3, ThreadLocalRandom.current()::nextDouble).toMillis();
      assertTrue(d >= 200 && d <= 600, Long.toString(d));
    }
  }

  @Test
  void retryPolicyIsValidated() {
    assertEquals(10, RetryPolicy.DEFAULT.maxAttempts());
    assertEquals(1, RetryPolicy.NONE.maxAttempts());
    assertThrows(IllegalArgumentException.class, () -> new RetryPolicy(0, Duration.ZERO, Duration.ZERO, 2, 0));
    assertThrows(IllegalArgumentException.class,
        () -> new RetryPolicy(3, Duration.ofMillis(10), Duration.ofMillis(5), 2, 0));
    assertThrows(IllegalArgumentException.class, () -> new RetryPolicy(3, Duration.ZERO, Duration.ZERO, 0.5, 0));
    assertThrows(IllegalArgumentException.class, () -> new RetryPolicy(3, Duration.ZERO, Duration.ZERO, 2, 1.5));
    assertThrows(IllegalArgumentException.class, () -> PsstClient.builder().callTimeout(Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> PsstClient.builder().watchMaxBackoff(Duration.ofSeconds(31)));
  }

  @Test
  void expectedUidComesFromTheBuilderThenTheEnvironment() {
    assertEquals(java.util.OptionalInt.empty(), PeerCheck.configured(null, Map.of()));
    assertEquals(java.util.OptionalInt.of(7), PeerCheck.configured(7, Map.of("PSST_EXPECTED_UID", "5")));
    assertEquals(null, PeerCheck.configured(-1, Map.of("PSST_EXPECTED_UID", "5")));
    assertEquals(java.util.OptionalInt.of(5), PeerCheck.configured(null, Map.of("PSST_EXPECTED_UID", "5")));
    assertEquals(null, PeerCheck.configured(null, Map.of("PSST_EXPECTED_UID", "off")));
    assertThrows(IllegalArgumentException.class, () -> PeerCheck.configured(null, Map.of("PSST_EXPECTED_UID", "psst")));
  }
}
