// Original file: proto/psst/v1/psst.proto

import type { Caller as _psst_v1_Caller, Caller__Output as _psst_v1_Caller__Output } from '../../psst/v1/Caller';
import type { Grant as _psst_v1_Grant, Grant__Output as _psst_v1_Grant__Output } from '../../psst/v1/Grant';
import type { AwsRole as _psst_v1_AwsRole, AwsRole__Output as _psst_v1_AwsRole__Output } from '../../psst/v1/AwsRole';

export interface WhoAmIResponse {
  'caller'?: (_psst_v1_Caller | null);
  /**
   * What the policy grants this caller, by operation.
   */
  'grants'?: (_psst_v1_Grant)[];
  /**
   * Names of the policy rules that matched the caller.
   */
  'matchedRules'?: (string)[];
  /**
   * The IAM role this caller reads AWS (ssm:, sm:, s3:) under; unset when it reads them with
   * the agent's own credentials.
   */
  'awsRole'?: (_psst_v1_AwsRole | null);
}

export interface WhoAmIResponse__Output {
  'caller': (_psst_v1_Caller__Output | null);
  /**
   * What the policy grants this caller, by operation.
   */
  'grants': (_psst_v1_Grant__Output)[];
  /**
   * Names of the policy rules that matched the caller.
   */
  'matchedRules': (string)[];
  /**
   * The IAM role this caller reads AWS (ssm:, sm:, s3:) under; unset when it reads them with
   * the agent's own credentials.
   */
  'awsRole': (_psst_v1_AwsRole__Output | null);
}
