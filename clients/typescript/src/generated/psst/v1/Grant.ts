// Original file: proto/psst/v1/psst.proto


export interface Grant {
  /**
   * "read", "list", "write", "watch", "rotate" or "admin".
   */
  'operation'?: (string);
  /**
   * Reference patterns (globs) the operation is granted on.
   */
  'patterns'?: (string)[];
}

export interface Grant__Output {
  /**
   * "read", "list", "write", "watch", "rotate" or "admin".
   */
  'operation': (string);
  /**
   * Reference patterns (globs) the operation is granted on.
   */
  'patterns': (string)[];
}
