// Original file: proto/psst/v1/psst.proto

import type { KubernetesWorkload as _psst_v1_KubernetesWorkload, KubernetesWorkload__Output as _psst_v1_KubernetesWorkload__Output } from '../../psst/v1/KubernetesWorkload';
import type { EcsWorkload as _psst_v1_EcsWorkload, EcsWorkload__Output as _psst_v1_EcsWorkload__Output } from '../../psst/v1/EcsWorkload';
import type { ContainerWorkload as _psst_v1_ContainerWorkload, ContainerWorkload__Output as _psst_v1_ContainerWorkload__Output } from '../../psst/v1/ContainerWorkload';

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
  /**
   * The caller's pod, when [identity.kubernetes] is configured and found it.
   */
  'kubernetes'?: (_psst_v1_KubernetesWorkload | null);
  /**
   * The caller's ECS task, when [identity.ecs] is configured and found it.
   */
  'ecs'?: (_psst_v1_EcsWorkload | null);
  /**
   * The caller's Docker container, when [identity.docker] is configured and found it.
   */
  'container'?: (_psst_v1_ContainerWorkload | null);
  /**
   * Why a configured attestor could not say who the caller is (rules needing it do not match).
   */
  'attestationFailures'?: (string)[];
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
  /**
   * The caller's pod, when [identity.kubernetes] is configured and found it.
   */
  'kubernetes': (_psst_v1_KubernetesWorkload__Output | null);
  /**
   * The caller's ECS task, when [identity.ecs] is configured and found it.
   */
  'ecs': (_psst_v1_EcsWorkload__Output | null);
  /**
   * The caller's Docker container, when [identity.docker] is configured and found it.
   */
  'container': (_psst_v1_ContainerWorkload__Output | null);
  /**
   * Why a configured attestor could not say who the caller is (rules needing it do not match).
   */
  'attestationFailures': (string)[];
}
