// Original file: proto/psst/v1/psst.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp';

export interface CacheInfo {
  /**
   * True when the value came from the agent's cache without a backend call for this request.
   */
  'hit'?: (boolean);
  /**
   * True when the value is past its TTL and served because the backend could not be reached.
   */
  'stale'?: (boolean);
  'fetchedAt'?: (_google_protobuf_Timestamp | null);
  'expiresAt'?: (_google_protobuf_Timestamp | null);
}

export interface CacheInfo__Output {
  /**
   * True when the value came from the agent's cache without a backend call for this request.
   */
  'hit': (boolean);
  /**
   * True when the value is past its TTL and served because the backend could not be reached.
   */
  'stale': (boolean);
  'fetchedAt': (_google_protobuf_Timestamp__Output | null);
  'expiresAt': (_google_protobuf_Timestamp__Output | null);
}
