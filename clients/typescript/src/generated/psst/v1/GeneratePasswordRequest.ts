// Original file: proto/psst/v1/psst.proto

import type { GeneratorOptions as _psst_v1_GeneratorOptions, GeneratorOptions__Output as _psst_v1_GeneratorOptions__Output } from '../../psst/v1/GeneratorOptions';

export interface GeneratePasswordRequest {
  'options'?: (_psst_v1_GeneratorOptions | null);
}

export interface GeneratePasswordRequest__Output {
  'options': (_psst_v1_GeneratorOptions__Output | null);
}
