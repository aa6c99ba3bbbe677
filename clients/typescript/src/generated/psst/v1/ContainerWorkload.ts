// Original file: proto/psst/v1/psst.proto


export interface ContainerWorkload {
  /**
   * Without Docker's leading '/'.
   */
  'name'?: (string);
  'image'?: (string);
  'labels'?: ({[key: string]: string});
}

export interface ContainerWorkload__Output {
  /**
   * Without Docker's leading '/'.
   */
  'name': (string);
  'image': (string);
  'labels': ({[key: string]: string});
}
