package dev.psst.spring;

import org.springframework.context.ApplicationEvent;

/**
 * A secret loaded through {@code spring.config.import=psst:} has a new value: the Environment
 * already answers it. Beans that hold the old value (a connection pool, a client) renew it here.
 * Never carries the value.
 */
public final class PsstSecretRotatedEvent extends ApplicationEvent {
  private static final long serialVersionUID = 1L;

  private final String property;
  private final String reference;
  private final String versionId;

  public PsstSecretRotatedEvent(Object source, String property, String reference, String versionId) {
    super(source);
    this.property = property;
    this.reference = reference;
    this.versionId = versionId;
  }

  /** The Spring property, e.g. {@code spring.datasource.password}. */
  public String property() {
    return property;
  }

  /** The psst reference it comes from. */
  public String reference() {
    return reference;
  }

  /** The version now current. */
  public String versionId() {
    return versionId;
  }

  @Override
  public String toString() {
    return "PsstSecretRotatedEvent[property=" + property + ", reference=" + reference + ", versionId=" + versionId + "]";
  }
}
