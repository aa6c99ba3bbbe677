package dev.psst.client;

import com.google.protobuf.Timestamp;
import java.time.Instant;

final class Timestamps {
  private Timestamps() {}

  static Instant toInstant(Timestamp t) {
    return Instant.ofEpochSecond(t.getSeconds(), t.getNanos());
  }
}
