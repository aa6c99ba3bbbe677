// Original file: proto/psst/v1/psst.proto


export interface ReloadPolicyRequest {
}

export interface ReloadPolicyRequest__Output {
}
