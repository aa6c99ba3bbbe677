package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SecretTest {
  private static final String VALUE = "hunter2-super-secret";

  private static Secret secret() {
    return new Secret("local:demo/db-password", VALUE.getBytes(StandardCharsets.UTF_8), "3",
        List.of("AWSCURRENT"), Instant.EPOCH, new CacheInfo(true, false, null, null));
  }

  @Test
  void valueIsReadableOnPurpose() {
    Secret s = secret();
    assertEquals(VALUE, s.valueAsString());
    assertArrayEquals(VALUE.getBytes(StandardCharsets.UTF_8), s.value());
    assertEquals(VALUE.length(), s.size());
    assertEquals("local:demo/db-password", s.reference());
    assertEquals("3", s.versionId());
    assertEquals(List.of("AWSCURRENT"), s.stages());
    assertEquals(Instant.EPOCH, s.createdAt().orElseThrow());
    assertTrue(s.cache().hit());
  }

  @Test
  void valueIsACopyBothWays() {
    byte[] given = VALUE.getBytes(StandardCharsets.UTF_8);
    Secret s = new Secret("local:a", given, "1", List.of(), null, null);
    given[0] = 'X';
    byte[] read = s.value();
    read[1] = 'Y';
    assertEquals(VALUE, s.valueAsString());
    assertTrue(s.createdAt().isEmpty());
  }

  @Test
  void toStringRedactsTheValue() {
    Secret s = secret();
    for (String text : List.of(s.toString(), String.valueOf(s), "" + s, String.format("%s", s),
        List.of(s).toString(), Map.of("k", s).toString(), BatchResult.ok("local:a", s).toString())) {
      assertFalse(text.contains(VALUE), text);
      assertTrue(text.contains("redacted"), text);
    }
    assertTrue(s.toString().contains("local:demo/db-password"));
    assertTrue(s.toString().contains("<redacted " + VALUE.length() + " bytes>"));
  }

  @Test
  void destroyZeroesTheValue() {
    Secret s = secret();
    assertFalse(s.isDestroyed());
    s.destroy();
    assertTrue(s.isDestroyed());
    assertThrows(IllegalStateException.class, s::value);
    assertThrows(IllegalStateException.class, s::valueAsString);
    assertFalse(s.toString().contains(VALUE));
  }

  @Test
  void binaryValuesSurviveAsBytes() {
    byte[] bytes = {0, (byte) 255, 1, (byte) 128, 10};
    Secret s = new Secret("local:bin", bytes, "1", null, null, null);
    assertArrayEquals(bytes, s.value());
  }
}
