// Original file: proto/psst/v1/psst.proto

import type { Long } from '@grpc/proto-loader';

export interface BackendStats {
  'backend'?: (string);
  'calls'?: (number | string | Long);
  'errors'?: (number | string | Long);
}

export interface BackendStats__Output {
  'backend': (string);
  'calls': (string);
  'errors': (string);
}
