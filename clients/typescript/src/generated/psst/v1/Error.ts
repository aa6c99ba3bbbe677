// Original file: proto/psst/v1/psst.proto


/**
 * Error is a per-item failure inside a batch: a gRPC status code and message.
 */
export interface Error {
  /**
   * A google.rpc.Code value, e.g. 5 NOT_FOUND, 7 PERMISSION_DENIED.
   */
  'code'?: (number);
  'message'?: (string);
}

/**
 * Error is a per-item failure inside a batch: a gRPC status code and message.
 */
export interface Error__Output {
  /**
   * A google.rpc.Code value, e.g. 5 NOT_FOUND, 7 PERMISSION_DENIED.
   */
  'code': (number);
  'message': (string);
}
