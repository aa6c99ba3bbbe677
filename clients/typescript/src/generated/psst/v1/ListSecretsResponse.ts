// Original file: proto/psst/v1/psst.proto

import type { SecretMetadata as _psst_v1_SecretMetadata, SecretMetadata__Output as _psst_v1_SecretMetadata__Output } from '../../psst/v1/SecretMetadata';

export interface ListSecretsResponse {
  'secrets'?: (_psst_v1_SecretMetadata)[];
}

export interface ListSecretsResponse__Output {
  'secrets': (_psst_v1_SecretMetadata__Output)[];
}
