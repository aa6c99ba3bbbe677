// Original file: proto/psst/v1/psst.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp';

export interface PutSecretResponse {
  /**
   * The new version, as a reference with a version selector.
   */
  'reference'?: (string);
  'versionId'?: (string);
  'createdAt'?: (_google_protobuf_Timestamp | null);
}

export interface PutSecretResponse__Output {
  /**
   * The new version, as a reference with a version selector.
   */
  'reference': (string);
  'versionId': (string);
  'createdAt': (_google_protobuf_Timestamp__Output | null);
}
