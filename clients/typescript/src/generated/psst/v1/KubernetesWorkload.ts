// Original file: proto/psst/v1/psst.proto


export interface KubernetesWorkload {
  'namespace'?: (string);
  'serviceAccount'?: (string);
  'podName'?: (string);
  'podUid'?: (string);
  'labels'?: ({[key: string]: string});
  /**
   * Empty when the caller's container id is not in the pod's status.
   */
  'containerName'?: (string);
  'containerImage'?: (string);
  /**
   * The image with its digest, where the pod status has it.
   */
  'containerImageId'?: (string);
}

export interface KubernetesWorkload__Output {
  'namespace': (string);
  'serviceAccount': (string);
  'podName': (string);
  'podUid': (string);
  'labels': ({[key: string]: string});
  /**
   * Empty when the caller's container id is not in the pod's status.
   */
  'containerName': (string);
  'containerImage': (string);
  /**
   * The image with its digest, where the pod status has it.
   */
  'containerImageId': (string);
}
