// Original file: proto/psst/v1/psst.proto


export interface ReloadPolicyResponse {
  'rules'?: (number);
}

export interface ReloadPolicyResponse__Output {
  'rules': (number);
}
