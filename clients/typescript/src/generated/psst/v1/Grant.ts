// Original file: proto/psst/v1/psst.proto


export interface Grant {
  /**
   * "read", "list" or "write".
   */
  'operation'?: (string);
  /**
   * Reference patterns (globs) the operation is granted on.
   */
  'patterns'?: (string)[];
}

export interface Grant__Output {
  /**
   * "read", "list" or "write".
   */
  'operation': (string);
  /**
   * Reference patterns (globs) the operation is granted on.
   */
  'patterns': (string)[];
}
