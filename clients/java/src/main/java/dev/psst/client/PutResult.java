package dev.psst.client;

import java.time.Instant;

/**
 * The version a {@code put} wrote.
 *
 * @param reference the new version as a reference with a version selector, e.g. {@code local:demo/db?version=2}
 * @param versionId the new version's id
 * @param createdAt when it was written, or null
 */
public record PutResult(String reference, String versionId, Instant createdAt) {}
