// Original file: proto/psst/v1/psst.proto


export interface BatchGetSecretsRequest {
  'references'?: (string)[];
}

export interface BatchGetSecretsRequest__Output {
  'references': (string)[];
}
