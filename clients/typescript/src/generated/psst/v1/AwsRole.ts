// Original file: proto/psst/v1/psst.proto


/**
 * AwsRole is the IAM role a caller's AWS reads are made under, as the agent assumes it.
 */
export interface AwsRole {
  'roleArn'?: (string);
  /**
   * RoleSessionName and SourceIdentity of the session (CloudTrail shows it).
   */
  'sessionName'?: (string);
  /**
   * The session tags set on AssumeRole (for ABAC conditions), e.g. psst-uid.
   */
  'sessionTags'?: ({[key: string]: string});
  /**
   * The policy's [[role]] mapping that selected the caller.
   */
  'mapping'?: (string);
}

/**
 * AwsRole is the IAM role a caller's AWS reads are made under, as the agent assumes it.
 */
export interface AwsRole__Output {
  'roleArn': (string);
  /**
   * RoleSessionName and SourceIdentity of the session (CloudTrail shows it).
   */
  'sessionName': (string);
  /**
   * The session tags set on AssumeRole (for ABAC conditions), e.g. psst-uid.
   */
  'sessionTags': ({[key: string]: string});
  /**
   * The policy's [[role]] mapping that selected the caller.
   */
  'mapping': (string);
}
