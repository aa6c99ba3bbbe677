package dev.psst.spring;

import java.util.List;
import java.util.Map;
import org.springframework.boot.context.config.ConfigDataLocation;
import org.springframework.boot.context.config.ConfigDataLocationNotFoundException;
import org.springframework.boot.context.config.ConfigDataLocationResolver;
import org.springframework.boot.context.config.ConfigDataLocationResolverContext;
import org.springframework.boot.context.properties.bind.Bindable;
import org.springframework.boot.context.properties.bind.Binder;

/**
 * Resolves {@code spring.config.import=psst:} (or {@code optional:psst:}) from the properties
 * read so far:
 *
 * <pre>
 * spring.config.import=psst:
 * psst.socket=/run/psst/psst.sock                              # optional
 * psst.secrets.[spring.datasource.password]=sm:prod/db#password
 * </pre>
 *
 * Property names go in brackets because they contain dots (Spring's map-key syntax).
 */
public final class PsstConfigDataLocationResolver implements ConfigDataLocationResolver<PsstConfigDataResource> {
  static final String PREFIX = "psst:";

  @Override
  public boolean isResolvable(ConfigDataLocationResolverContext context, ConfigDataLocation location) {
    return location.hasPrefix(PREFIX);
  }

  @Override
  public List<PsstConfigDataResource> resolve(ConfigDataLocationResolverContext context, ConfigDataLocation location) {
    if (!location.getNonPrefixedValue(PREFIX).isEmpty()) {
      throw new IllegalArgumentException("psst: takes no value (" + location
          + "): name the secrets with psst.secrets.[property]=reference");
    }
    Binder binder = context.getBinder();
    Map<String, String> secrets = binder.bind("psst.secrets", Bindable.mapOf(String.class, String.class)).orElse(Map.of());
    if (secrets.isEmpty()) {
      throw new ConfigDataLocationNotFoundException(location, "no psst.secrets.[property]=reference is set", null);
    }
    String socket = binder.bind("psst.socket", String.class).orElse(null);
    return List.of(new PsstConfigDataResource(socket, secrets, location.isOptional()));
  }
}
