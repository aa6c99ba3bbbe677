package dev.psst.spring;

import java.util.Map;
import java.util.Objects;
import org.springframework.boot.context.config.ConfigDataResource;

/**
 * What {@code spring.config.import=psst:} resolves to: the socket (null for the client's default)
 * and property name → psst reference, from {@code psst.socket} and {@code psst.secrets.*}.
 */
public final class PsstConfigDataResource extends ConfigDataResource {
  private final String socket;
  private final Map<String, String> secrets;

  PsstConfigDataResource(String socket, Map<String, String> secrets, boolean optional) {
    super(optional);
    this.socket = socket;
    this.secrets = Map.copyOf(secrets);
  }

  /** The agent's socket, or null for {@code $PSST_SOCKET}, else {@code /run/psst/psst.sock}. */
  public String socket() {
    return socket;
  }

  /** Property name → psst reference. */
  public Map<String, String> secrets() {
    return secrets;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof PsstConfigDataResource r && Objects.equals(socket, r.socket) && secrets.equals(r.secrets);
  }

  @Override
  public int hashCode() {
    return Objects.hash(socket, secrets);
  }

  @Override
  public String toString() {
    return "psst:" + secrets.keySet();
  }
}
