// Original file: proto/psst/v1/psst.proto

import type { Long } from '@grpc/proto-loader';

export interface InvalidateCacheResponse {
  'invalidated'?: (number | string | Long);
}

export interface InvalidateCacheResponse__Output {
  'invalidated': (string);
}
