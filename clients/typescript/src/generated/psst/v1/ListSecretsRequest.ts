// Original file: proto/psst/v1/psst.proto


export interface ListSecretsRequest {
  /**
   * A reference prefix such as "local:demo/" or "ssm:/prod/". "local:" lists the whole backend.
   */
  'prefix'?: (string);
}

export interface ListSecretsRequest__Output {
  /**
   * A reference prefix such as "local:demo/" or "ssm:/prod/". "local:" lists the whole backend.
   */
  'prefix': (string);
}
