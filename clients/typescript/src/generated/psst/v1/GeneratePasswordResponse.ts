// Original file: proto/psst/v1/psst.proto


export interface GeneratePasswordResponse {
  'value'?: (Buffer | Uint8Array | string);
}

export interface GeneratePasswordResponse__Output {
  'value': (Buffer);
}
