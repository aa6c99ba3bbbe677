// Original file: proto/psst/v1/psst.proto

import type { Secret as _psst_v1_Secret, Secret__Output as _psst_v1_Secret__Output } from '../../psst/v1/Secret';
import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp';

// Original file: proto/psst/v1/psst.proto

export const _psst_v1_WatchEvent_Kind = {
  KIND_UNSPECIFIED: 'KIND_UNSPECIFIED',
  /**
   * The state when the watch starts (or resumes with a different version).
   */
  CURRENT: 'CURRENT',
  /**
   * A new version became current; secret holds it, previous_version_id the one it replaced.
   */
  NEW_VERSION: 'NEW_VERSION',
  /**
   * A version is staged but not current yet (Secrets Manager AWSPENDING: rotation started).
   */
  PENDING_VERSION: 'PENDING_VERSION',
  /**
   * The secret no longer exists.
   */
  DELETED: 'DELETED',
} as const;

export type _psst_v1_WatchEvent_Kind =
  | 'KIND_UNSPECIFIED'
  | 0
  /**
   * The state when the watch starts (or resumes with a different version).
   */
  | 'CURRENT'
  | 1
  /**
   * A new version became current; secret holds it, previous_version_id the one it replaced.
   */
  | 'NEW_VERSION'
  | 2
  /**
   * A version is staged but not current yet (Secrets Manager AWSPENDING: rotation started).
   */
  | 'PENDING_VERSION'
  | 3
  /**
   * The secret no longer exists.
   */
  | 'DELETED'
  | 4

export type _psst_v1_WatchEvent_Kind__Output = typeof _psst_v1_WatchEvent_Kind[keyof typeof _psst_v1_WatchEvent_Kind]

export interface WatchEvent {
  'reference'?: (string);
  'kind'?: (_psst_v1_WatchEvent_Kind);
  'secret'?: (_psst_v1_Secret | null);
  'previousVersionId'?: (string);
  'pendingVersionId'?: (string);
  'observedAt'?: (_google_protobuf_Timestamp | null);
}

export interface WatchEvent__Output {
  'reference': (string);
  'kind': (_psst_v1_WatchEvent_Kind__Output);
  'secret': (_psst_v1_Secret__Output | null);
  'previousVersionId': (string);
  'pendingVersionId': (string);
  'observedAt': (_google_protobuf_Timestamp__Output | null);
}
