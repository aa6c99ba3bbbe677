// Original file: proto/psst/v1/psst.proto

import type { BatchGetResult as _psst_v1_BatchGetResult, BatchGetResult__Output as _psst_v1_BatchGetResult__Output } from '../../psst/v1/BatchGetResult';

export interface BatchGetSecretsResponse {
  /**
   * One per requested reference, in request order.
   */
  'results'?: (_psst_v1_BatchGetResult)[];
}

export interface BatchGetSecretsResponse__Output {
  /**
   * One per requested reference, in request order.
   */
  'results': (_psst_v1_BatchGetResult__Output)[];
}
