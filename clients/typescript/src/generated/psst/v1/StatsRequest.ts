// Original file: proto/psst/v1/psst.proto


export interface StatsRequest {
}

export interface StatsRequest__Output {
}
