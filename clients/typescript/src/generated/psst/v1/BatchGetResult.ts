// Original file: proto/psst/v1/psst.proto

import type { Secret as _psst_v1_Secret, Secret__Output as _psst_v1_Secret__Output } from '../../psst/v1/Secret';
import type { Error as _psst_v1_Error, Error__Output as _psst_v1_Error__Output } from '../../psst/v1/Error';

export interface BatchGetResult {
  'reference'?: (string);
  'secret'?: (_psst_v1_Secret | null);
  'error'?: (_psst_v1_Error | null);
  'result'?: "secret"|"error";
}

export interface BatchGetResult__Output {
  'reference': (string);
  'secret'?: (_psst_v1_Secret__Output | null);
  'error'?: (_psst_v1_Error__Output | null);
  'result'?: "secret"|"error";
}
