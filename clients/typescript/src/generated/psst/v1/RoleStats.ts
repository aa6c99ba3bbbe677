// Original file: proto/psst/v1/psst.proto

import type { Long } from '@grpc/proto-loader';

export interface RoleStats {
  'roleArn'?: (string);
  /**
   * Live sessions: one per caller identity reading under the role.
   */
  'sessions'?: (number | string | Long);
  /**
   * STS AssumeRole calls (attempts) made for the role, and how many failed.
   */
  'assumeCalls'?: (number | string | Long);
  'assumeFailures'?: (number | string | Long);
  /**
   * Backend calls made under the role, and how many failed.
   */
  'backendCalls'?: (number | string | Long);
  'backendErrors'?: (number | string | Long);
  /**
   * Cache entries held for reads under the role, and their bytes.
   */
  'cacheEntries'?: (number | string | Long);
  'cacheBytes'?: (number | string | Long);
}

export interface RoleStats__Output {
  'roleArn': (string);
  /**
   * Live sessions: one per caller identity reading under the role.
   */
  'sessions': (string);
  /**
   * STS AssumeRole calls (attempts) made for the role, and how many failed.
   */
  'assumeCalls': (string);
  'assumeFailures': (string);
  /**
   * Backend calls made under the role, and how many failed.
   */
  'backendCalls': (string);
  'backendErrors': (string);
  /**
   * Cache entries held for reads under the role, and their bytes.
   */
  'cacheEntries': (string);
  'cacheBytes': (string);
}
