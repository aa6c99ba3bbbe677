// Original file: proto/psst/v1/psst.proto


export interface RotateSecretResponse {
  /**
   * The new current version, as a reference with a version selector.
   */
  'reference'?: (string);
  'versionId'?: (string);
  'previousVersionId'?: (string);
  /**
   * True when the backend runs the rotation itself (a Secrets Manager rotation Lambda): the new
   * version appears when the Lambda finishes, and watchers see it then.
   */
  'delegated'?: (boolean);
}

export interface RotateSecretResponse__Output {
  /**
   * The new current version, as a reference with a version selector.
   */
  'reference': (string);
  'versionId': (string);
  'previousVersionId': (string);
  /**
   * True when the backend runs the rotation itself (a Secrets Manager rotation Lambda): the new
   * version appears when the Lambda finishes, and watchers see it then.
   */
  'delegated': (boolean);
}
