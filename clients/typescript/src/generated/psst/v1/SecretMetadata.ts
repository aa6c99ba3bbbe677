// Original file: proto/psst/v1/psst.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp';

export interface SecretMetadata {
  'reference'?: (string);
  /**
   * The id of the current version.
   */
  'versionId'?: (string);
  'updatedAt'?: (_google_protobuf_Timestamp | null);
}

export interface SecretMetadata__Output {
  'reference': (string);
  /**
   * The id of the current version.
   */
  'versionId': (string);
  'updatedAt': (_google_protobuf_Timestamp__Output | null);
}
