// Original file: proto/psst/v1/psst.proto


export interface WatchSecretsRequest {
  'references'?: (string)[];
  /**
   * Resuming: reference → the version id the caller already has. Its first event is sent only
   * when the current version differs, so a reconnecting watcher never sees a version twice.
   */
  'knownVersions'?: ({[key: string]: string});
}

export interface WatchSecretsRequest__Output {
  'references': (string)[];
  /**
   * Resuming: reference → the version id the caller already has. Its first event is sent only
   * when the current version differs, so a reconnecting watcher never sees a version twice.
   */
  'knownVersions': ({[key: string]: string});
}
