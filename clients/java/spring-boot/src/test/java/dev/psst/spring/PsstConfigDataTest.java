package dev.psst.spring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.psst.client.PermissionDeniedException;
import dev.psst.client.Source;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.springframework.boot.WebApplicationType;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.builder.SpringApplicationBuilder;
import org.springframework.boot.context.properties.ConfigurationProperties;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.context.event.EventListener;

/**
 * A minimal Spring Boot app started against the live agent of tests/conformance/with-agent:
 * {@code spring.config.import=psst:} puts a Secrets Manager secret (seeded with boto3 in the AWS
 * emulator) into the Environment; a rotation done with boto3 ($PSST_AWS_PUT) reaches the
 * Environment and publishes a PsstSecretRotatedEvent; a reference the policy denies stops the
 * app from starting.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class PsstConfigDataTest {
  /** Readable and watchable by the conformance runner (the `policy` in tests/conformance/scenarios.json). */
  private static final String REFERENCE = "sm:conf/source/db";

  @BeforeAll
  static void requireAgent() {
    boolean present = System.getenv("PSST_SOCKET") != null && System.getenv("PSST_AWS_PUT") != null;
    if (!present && System.getenv("PSST_REQUIRE_AGENT") != null) {
      fail("PSST_SOCKET and PSST_AWS_PUT are not set: run under tests/conformance/with-agent (PSST_REQUIRE_AGENT is set)");
    }
    Assumptions.assumeTrue(present, "run under tests/conformance/with-agent (see ../test.sh)");
  }

  @SpringBootApplication
  @EnableConfigurationProperties(App.Db.class)
  static class App {
    final BlockingQueue<PsstSecretRotatedEvent> rotations = new LinkedBlockingQueue<>();

    @EventListener
    void rotated(PsstSecretRotatedEvent event) {
      rotations.add(event);
    }

    @ConfigurationProperties("db")
    record Db(String password) {}
  }

  private static ConfigurableApplicationContext start(String reference) {
    return new SpringApplicationBuilder(App.class)
        .web(WebApplicationType.NONE)
        .run("--spring.config.import=psst:", "--psst.secrets.[db.password]=" + reference);
  }

  private static void awsPut(String value) throws Exception {
    List<String> argv = new ArrayList<>(List.of(System.getenv("PSST_AWS_PUT"), REFERENCE, value));
    assertEquals(0, new ProcessBuilder(argv).inheritIO().start().waitFor(), "PSST_AWS_PUT failed");
  }

  @Test
  void theSecretIsAPropertyAndARotationReachesTheEnvironmentAndPublishesAnEvent() throws Exception {
    String before = "spring-" + System.nanoTime();
    awsPut(before);
    try (ConfigurableApplicationContext context = start(REFERENCE)) {
      Source source = context.getBean(Source.class);
      // The agent's cache may still hold the value seeded earlier for a moment: wait for ours.
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
      while (!before.equals(context.getEnvironment().getProperty("db.password"))) {
        assertTrue(System.nanoTime() < until, "the Environment never showed the seeded value");
        Thread.sleep(50);
      }
      assertEquals(before, context.getBean(App.Db.class).password());
      App app = context.getBean(App.class);
      app.rotations.clear();
      String after = "spring-rotated-" + System.nanoTime();
      awsPut(after);
      PsstSecretRotatedEvent event;
      do {
        event = app.rotations.poll(15, TimeUnit.SECONDS);
        assertNotNull(event, "no PsstSecretRotatedEvent within 15 s");
      } while (!source.get(REFERENCE).versionId().equals(event.versionId())
          || !after.equals(context.getEnvironment().getProperty("db.password")));
      assertEquals("db.password", event.property());
      assertEquals(REFERENCE, event.reference());
      assertFalse(event.toString().contains(after), "the event shows the value");
      assertEquals(after, context.getEnvironment().getProperty("db.password"));
    }
  }

  @Test
  void aReferenceThePolicyDeniesStopsTheAppFromStarting() {
    Throwable e = assertThrows(Throwable.class, () -> start("local:forbidden/x").close());
    while (e != null && !(e instanceof PermissionDeniedException)) {
      e = e.getCause();
    }
    assertNotNull(e, "expected a PermissionDeniedException among the causes");
  }
}
