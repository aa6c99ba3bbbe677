// Sequential cached gets with the Java client (clients/java), for bench/clients/run: prints the
// p50 and p99 in microseconds. Run as a single source file on the client's class path. The JIT
// gets N calls of warm-up (the other languages get N/10). The builder exposes no channel options,
// so there are no knobs to try here (BENCHMARKS.md).
import dev.psst.client.PsstClient;
import java.util.Arrays;

public class Bench {
  public static void main(String[] args) {
    String socket = null;
    int n = 5000;
    String ref = "local:bench/db-password";
    for (int i = 0; i < args.length; i += 2) {
      switch (args[i]) {
        case "--socket" -> socket = args[i + 1];
        case "--n" -> n = Integer.parseInt(args[i + 1]);
        case "--ref" -> ref = args[i + 1];
        default -> throw new IllegalArgumentException(args[i]);
      }
    }
    try (PsstClient client = PsstClient.builder().socket(socket).build()) {
      for (int i = 0; i < n; i++) {
        client.get(ref);
      }
      double[] samples = new double[n];
      for (int i = 0; i < n; i++) {
        long started = System.nanoTime();
        client.get(ref);
        samples[i] = (System.nanoTime() - started) / 1000.0;
      }
      Arrays.sort(samples);
      System.out.printf("%.1f %.1f%n", samples[n / 2], samples[n * 99 / 100]);
    }
  }
}
