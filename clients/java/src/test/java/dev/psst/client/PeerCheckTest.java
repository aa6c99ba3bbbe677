package dev.psst.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Who serves the socket (issue #14, item 4): an agent run by another user is refused on the
 * kernel's word (SO_PEERCRED of the connection) before anything is sent. The impostor is a real
 * gRPC server (FakeAgent's main) run as a user made for the test with useradd and runuser, and
 * removed afterwards; the same client with the check off gets the impostor's value, so the
 * refusal is the check's doing. Needs root.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class PeerCheckTest {
  private static final String USER = "psstjava" + ProcessHandle.current().pid();
  private static int uid;
  private static Path dir;
  private static Path classpath;
  private static final List<Process> impostors = new ArrayList<>();

  @BeforeAll
  static void setUp() throws Exception {
    Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "needs root (useradd, runuser)");
    assertEquals(0, new ProcessBuilder("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER)
        .inheritIO().start().waitFor());
    Process id = new ProcessBuilder("id", "-u", USER).start();
    uid = Integer.parseInt(new String(id.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim());
    // A shared directory like /tmp: sticky and writable by all, so the other user can bind in it.
    dir = Files.createTempDirectory("psst-peer-");
    sticky(dir);
    // The other user cannot read this user's Maven repository: a readable copy of the classpath.
    classpath = Files.createTempDirectory("psst-peer-cp-");
    int i = 0;
    for (String entry : System.getProperty("surefire.test.class.path", System.getProperty("java.class.path")).split(File.pathSeparator)) {
      Path from = Path.of(entry);
      if (!Files.exists(from)) {
        continue;
      }
      Path to = classpath.resolve(i++ + "-" + from.getFileName());
      if (Files.isDirectory(from)) {
        try (Stream<Path> files = Files.walk(from)) {
          for (Path f : (Iterable<Path>) files::iterator) {
            Path target = to.resolve(from.relativize(f).toString());
            if (Files.isDirectory(f)) {
              Files.createDirectories(target);
            } else {
              Files.copy(f, target);
            }
          }
        }
      } else {
        Files.copy(from, to);
      }
    }
    assertEquals(0, new ProcessBuilder("chmod", "-R", "a+rX", classpath.toString()).start().waitFor());
  }

  @AfterAll
  static void tearDown() throws Exception {
    for (Process p : impostors) {
      p.destroy();
      p.waitFor(10, TimeUnit.SECONDS);
    }
    if (uid != 0) {
      new ProcessBuilder("userdel", USER).inheritIO().start().waitFor();
    }
    for (Path p : new Path[] {dir, classpath}) {
      if (p != null) {
        try (Stream<Path> files = Files.walk(p)) {
          files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
      }
    }
  }

  private static void sticky(Path d) throws Exception {
    assertEquals(0, new ProcessBuilder("chmod", "1777", d.toString()).start().waitFor());
  }

  private static Process impostor(Path socket) throws IOException {
    String cp;
    try (Stream<Path> entries = Files.list(classpath)) {
      cp = String.join(File.pathSeparator, entries.map(Path::toString).sorted().toList());
    }
    Process p = new ProcessBuilder("runuser", "-u", USER, "--", Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", cp, "dev.psst.client.FakeAgent", socket.toString(), "stolen")
        .redirectError(ProcessBuilder.Redirect.INHERIT).start();
    impostors.add(p);
    BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
    assertEquals("ready", out.readLine(), "the impostor did not start");
    return p;
  }

  private static void stop(Process p) throws InterruptedException {
    p.destroy();
    p.waitFor(10, TimeUnit.SECONDS);
  }

  @Test
  void anExpectedUidRefusesAnAgentRunByAnotherUserAtOnce() throws Exception {
    Path socket = dir.resolve("expected.sock");
    Process impostor = impostor(socket);
    try (PsstClient client = PsstClient.builder().socket(socket).expectedUid(0).callTimeout(Duration.ofSeconds(5)).build()) {
      long started = System.nanoTime();
      UntrustedAgentException e = assertThrows(UntrustedAgentException.class, () -> client.get("local:a"));
      assertTrue(e.description().contains("runs as uid " + uid + " (pid "), e.description());
      assertTrue(e.description().contains("not the expected uid 0"), e.description());
      assertTrue(System.nanoTime() - started < TimeUnit.SECONDS.toNanos(3), "the refusal waited for the deadline");
    }
    // The same client without the check talks to the impostor: the refusal above was the check's.
    try (PsstClient unchecked = PsstClient.builder().socket(socket).expectedUid(-1).build()) {
      assertEquals("stolen", unchecked.get("local:a").valueAsString());
    }
    stop(impostor);
  }

  @Test
  void theOwnerFirstSeenIsPinnedSoAnImpostorTakingOverLaterIsRefused() throws Exception {
    Path socket = dir.resolve("pinned.sock");
    try (PsstClient client = PsstClient.builder().socket(socket).environment(java.util.Map.of())
        .callTimeout(Duration.ofSeconds(5)).build()) {
      FakeAgent real = FakeAgent.start(socket, new RetryTestAgent("real"));
      assertEquals("real", client.get("local:a").valueAsString());
      real.close(); // removes the socket and its directory
      Files.createDirectories(dir);
      sticky(dir);
      Process impostor = impostor(socket);
      UntrustedAgentException e = assertThrows(UntrustedAgentException.class, () -> client.get("local:a"));
      assertTrue(e.description().contains("runs as uid " + uid), e.description());
      stop(impostor);
    }
  }

  /** Serves one value. */
  private static final class RetryTestAgent extends dev.psst.v1.SecretsGrpc.SecretsImplBase {
    private final String value;

    RetryTestAgent(String value) {
      this.value = value;
    }

    @Override
    public void getSecret(dev.psst.v1.GetSecretRequest request, io.grpc.stub.StreamObserver<dev.psst.v1.Secret> out) {
      out.onNext(dev.psst.v1.Secret.newBuilder().setReference(request.getReference())
          .setValue(com.google.protobuf.ByteString.copyFromUtf8(value)).setVersionId("1").build());
      out.onCompleted();
    }
  }
}
