// Original file: proto/psst/v1/psst.proto


export interface InvalidateCacheRequest {
  /**
   * One of them: a reference, or a prefix such as "sm:prod/" ("local:" for a whole backend).
   */
  'reference'?: (string);
  'prefix'?: (string);
}

export interface InvalidateCacheRequest__Output {
  /**
   * One of them: a reference, or a prefix such as "sm:prod/" ("local:" for a whole backend).
   */
  'reference': (string);
  'prefix': (string);
}
