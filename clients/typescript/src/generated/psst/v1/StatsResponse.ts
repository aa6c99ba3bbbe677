// Original file: proto/psst/v1/psst.proto

import type { BackendStats as _psst_v1_BackendStats, BackendStats__Output as _psst_v1_BackendStats__Output } from '../../psst/v1/BackendStats';
import type { RoleStats as _psst_v1_RoleStats, RoleStats__Output as _psst_v1_RoleStats__Output } from '../../psst/v1/RoleStats';
import type { Long } from '@grpc/proto-loader';

export interface StatsResponse {
  'cacheEntries'?: (number | string | Long);
  'cacheBytes'?: (number | string | Long);
  'cacheHits'?: (number | string | Long);
  'cacheMisses'?: (number | string | Long);
  'staleServed'?: (number | string | Long);
  'watchers'?: (number | string | Long);
  'rotationsSeen'?: (number | string | Long);
  'policyRules'?: (number);
  'backends'?: (_psst_v1_BackendStats)[];
  /**
   * Per IAM role that callers read under ([[role]] in the policy): what it costs.
   */
  'roles'?: (_psst_v1_RoleStats)[];
}

export interface StatsResponse__Output {
  'cacheEntries': (string);
  'cacheBytes': (string);
  'cacheHits': (string);
  'cacheMisses': (string);
  'staleServed': (string);
  'watchers': (string);
  'rotationsSeen': (string);
  'policyRules': (number);
  'backends': (_psst_v1_BackendStats__Output)[];
  /**
   * Per IAM role that callers read under ([[role]] in the policy): what it costs.
   */
  'roles': (_psst_v1_RoleStats__Output)[];
}
