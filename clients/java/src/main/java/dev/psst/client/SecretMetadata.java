package dev.psst.client;

import java.time.Instant;

/**
 * A listed secret: metadata only, never the value.
 *
 * @param reference the secret's reference
 * @param versionId the id of the current version
 * @param updatedAt when the current version was written, or null
 */
public record SecretMetadata(String reference, String versionId, Instant updatedAt) {}
