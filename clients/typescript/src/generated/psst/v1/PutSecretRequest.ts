// Original file: proto/psst/v1/psst.proto


export interface PutSecretRequest {
  /**
   * A reference without selector or key, e.g. "local:demo/db-password".
   */
  'reference'?: (string);
  'value'?: (Buffer | Uint8Array | string);
}

export interface PutSecretRequest__Output {
  /**
   * A reference without selector or key, e.g. "local:demo/db-password".
   */
  'reference': (string);
  'value': (Buffer);
}
