package dev.psst.spring;

import dev.psst.client.Source;
import java.util.Map;
import org.springframework.core.env.EnumerablePropertySource;

/**
 * Property name → the current value of its psst reference, read from the {@link Source}'s memory
 * on every lookup (so it is current after a rotation). The values are UTF-8 text.
 */
final class PsstPropertySource extends EnumerablePropertySource<Source> {
  private final Map<String, String> secrets;

  PsstPropertySource(Source source, Map<String, String> secrets) {
    super("psst", source);
    this.secrets = Map.copyOf(secrets);
  }

  @Override
  public String[] getPropertyNames() {
    return secrets.keySet().toArray(String[]::new);
  }

  @Override
  public Object getProperty(String name) {
    String reference = secrets.get(name);
    return reference == null ? null : getSource().get(reference).valueAsString();
  }
}
