// Original file: proto/psst/v1/psst.proto


/**
 * Caller is the calling process as the kernel and /proc describe it.
 */
export interface Caller {
  'uid'?: (number);
  'gid'?: (number);
  /**
   * 0 when the caller's process is not visible to the agent (another PID namespace).
   */
  'pid'?: (number);
  'user'?: (string);
  'group'?: (string);
  'supplementaryGids'?: (number)[];
  'executable'?: (string);
  'cgroup'?: (string);
  'containerId'?: (string);
  'podUid'?: (string);
  'systemdUnit'?: (string);
  /**
   * "process" when identified from /proc, "uid" when only uid and gid are known.
   */
  'identitySource'?: (string);
}

/**
 * Caller is the calling process as the kernel and /proc describe it.
 */
export interface Caller__Output {
  'uid': (number);
  'gid': (number);
  /**
   * 0 when the caller's process is not visible to the agent (another PID namespace).
   */
  'pid': (number);
  'user': (string);
  'group': (string);
  'supplementaryGids': (number)[];
  'executable': (string);
  'cgroup': (string);
  'containerId': (string);
  'podUid': (string);
  'systemdUnit': (string);
  /**
   * "process" when identified from /proc, "uid" when only uid and gid are known.
   */
  'identitySource': (string);
}
