// Original file: proto/psst/v1/psst.proto


export interface EcsWorkload {
  'cluster'?: (string);
  'taskArn'?: (string);
  'taskFamily'?: (string);
  'taskRevision'?: (string);
  'containerName'?: (string);
}

export interface EcsWorkload__Output {
  'cluster': (string);
  'taskArn': (string);
  'taskFamily': (string);
  'taskRevision': (string);
  'containerName': (string);
}
