// Original file: proto/psst/v1/psst.proto


export interface WhoAmIRequest {
}

export interface WhoAmIRequest__Output {
}
