// Original file: proto/psst/v1/psst.proto

import type { GeneratorOptions as _psst_v1_GeneratorOptions, GeneratorOptions__Output as _psst_v1_GeneratorOptions__Output } from '../../psst/v1/GeneratorOptions';

export interface RotateSecretRequest {
  /**
   * A reference without selector or key.
   */
  'reference'?: (string);
  'generator'?: (_psst_v1_GeneratorOptions | null);
  /**
   * For a JSON value: replace only this key and keep the others (e.g. "password").
   */
  'jsonKey'?: (string);
}

export interface RotateSecretRequest__Output {
  /**
   * A reference without selector or key.
   */
  'reference': (string);
  'generator': (_psst_v1_GeneratorOptions__Output | null);
  /**
   * For a JSON value: replace only this key and keep the others (e.g. "password").
   */
  'jsonKey': (string);
}
