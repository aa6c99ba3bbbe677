// Original file: proto/psst/v1/psst.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp';
import type { CacheInfo as _psst_v1_CacheInfo, CacheInfo__Output as _psst_v1_CacheInfo__Output } from '../../psst/v1/CacheInfo';

export interface Secret {
  /**
   * The reference as asked for, in canonical form.
   */
  'reference'?: (string);
  /**
   * The value: the whole secret, or the JSON key's value when the reference names one.
   */
  'value'?: (Buffer | Uint8Array | string);
  /**
   * The backend's id of the version served.
   */
  'versionId'?: (string);
  /**
   * Stages or labels attached to that version (e.g. AWSCURRENT), where the backend has them.
   */
  'stages'?: (string)[];
  /**
   * When the backend created this version, where it says.
   */
  'createdAt'?: (_google_protobuf_Timestamp | null);
  'cache'?: (_psst_v1_CacheInfo | null);
}

export interface Secret__Output {
  /**
   * The reference as asked for, in canonical form.
   */
  'reference': (string);
  /**
   * The value: the whole secret, or the JSON key's value when the reference names one.
   */
  'value': (Buffer);
  /**
   * The backend's id of the version served.
   */
  'versionId': (string);
  /**
   * Stages or labels attached to that version (e.g. AWSCURRENT), where the backend has them.
   */
  'stages': (string)[];
  /**
   * When the backend created this version, where it says.
   */
  'createdAt': (_google_protobuf_Timestamp__Output | null);
  'cache': (_psst_v1_CacheInfo__Output | null);
}
