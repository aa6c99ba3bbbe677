// Original file: proto/psst/v1/psst.proto


export interface GetSecretRequest {
  /**
   * For example "local:demo/db-password" or "sm:prod/db#password".
   */
  'reference'?: (string);
}

export interface GetSecretRequest__Output {
  /**
   * For example "local:demo/db-password" or "sm:prod/db#password".
   */
  'reference': (string);
}
