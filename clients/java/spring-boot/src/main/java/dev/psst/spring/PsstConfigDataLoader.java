package dev.psst.spring;

import dev.psst.client.PsstClient;
import dev.psst.client.Secret;
import dev.psst.client.Source;
import dev.psst.client.SourceListener;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.springframework.boot.context.config.ConfigData;
import org.springframework.boot.context.config.ConfigDataLoader;
import org.springframework.boot.context.config.ConfigDataLoaderContext;
import org.springframework.context.ApplicationEvent;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.context.event.ContextClosedEvent;

/**
 * Loads the secrets named by {@code psst.secrets.*} into a property source that reads a psst
 * {@link Source}: the values are fetched once at startup (the app does not start when the agent
 * refuses one), then kept current by a watch, so {@code Environment.getProperty} and every
 * {@code @ConfigurationProperties} binding made after a rotation see the new value. On each
 * rotation a {@link PsstSecretRotatedEvent} is published, for beans that hold a value (a
 * connection pool) to renew it. The client and the Source are beans ({@code psstClient},
 * {@code psstSource}), closed when the context closes.
 */
public final class PsstConfigDataLoader implements ConfigDataLoader<PsstConfigDataResource> {
  @Override
  public ConfigData load(ConfigDataLoaderContext context, PsstConfigDataResource resource) {
    PsstClient.Builder builder = PsstClient.builder();
    if (resource.socket() != null) {
      builder.socket(resource.socket());
    }
    PsstClient client = builder.build();
    Source source;
    try {
      source = client.source(List.copyOf(Set.copyOf(resource.secrets().values())));
    } catch (RuntimeException e) {
      client.close();
      throw e;
    }
    // Beans once the context exists, so that the context closes them and hears of rotations.
    context.getBootstrapContext().addCloseListener(event -> {
      ConfigurableApplicationContext app = event.getApplicationContext();
      app.getBeanFactory().registerSingleton("psstClient", client);
      app.getBeanFactory().registerSingleton("psstSource", source);
      app.addApplicationListener((ApplicationEvent e) -> {
        if (e instanceof ContextClosedEvent) {
          source.close();
          client.close();
        }
      });
      Map<String, List<String>> byReference = resource.secrets().entrySet().stream().collect(
          Collectors.groupingBy(Map.Entry::getValue, Collectors.mapping(Map.Entry::getKey, Collectors.toList())));
      source.addListener(new SourceListener() {
        @Override
        public void onUpdate(String reference, Secret secret) {
          for (String property : byReference.getOrDefault(reference, List.of())) {
            app.publishEvent(new PsstSecretRotatedEvent(app, property, reference, secret.versionId()));
          }
        }
      });
    });
    return new ConfigData(List.of(new PsstPropertySource(source, resource.secrets())));
  }
}
