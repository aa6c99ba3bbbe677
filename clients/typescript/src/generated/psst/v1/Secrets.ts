// Original file: proto/psst/v1/psst.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { BatchGetSecretsRequest as _psst_v1_BatchGetSecretsRequest, BatchGetSecretsRequest__Output as _psst_v1_BatchGetSecretsRequest__Output } from '../../psst/v1/BatchGetSecretsRequest';
import type { BatchGetSecretsResponse as _psst_v1_BatchGetSecretsResponse, BatchGetSecretsResponse__Output as _psst_v1_BatchGetSecretsResponse__Output } from '../../psst/v1/BatchGetSecretsResponse';
import type { GeneratePasswordRequest as _psst_v1_GeneratePasswordRequest, GeneratePasswordRequest__Output as _psst_v1_GeneratePasswordRequest__Output } from '../../psst/v1/GeneratePasswordRequest';
import type { GeneratePasswordResponse as _psst_v1_GeneratePasswordResponse, GeneratePasswordResponse__Output as _psst_v1_GeneratePasswordResponse__Output } from '../../psst/v1/GeneratePasswordResponse';
import type { GetSecretRequest as _psst_v1_GetSecretRequest, GetSecretRequest__Output as _psst_v1_GetSecretRequest__Output } from '../../psst/v1/GetSecretRequest';
import type { ListSecretsRequest as _psst_v1_ListSecretsRequest, ListSecretsRequest__Output as _psst_v1_ListSecretsRequest__Output } from '../../psst/v1/ListSecretsRequest';
import type { ListSecretsResponse as _psst_v1_ListSecretsResponse, ListSecretsResponse__Output as _psst_v1_ListSecretsResponse__Output } from '../../psst/v1/ListSecretsResponse';
import type { PutSecretRequest as _psst_v1_PutSecretRequest, PutSecretRequest__Output as _psst_v1_PutSecretRequest__Output } from '../../psst/v1/PutSecretRequest';
import type { PutSecretResponse as _psst_v1_PutSecretResponse, PutSecretResponse__Output as _psst_v1_PutSecretResponse__Output } from '../../psst/v1/PutSecretResponse';
import type { RotateSecretRequest as _psst_v1_RotateSecretRequest, RotateSecretRequest__Output as _psst_v1_RotateSecretRequest__Output } from '../../psst/v1/RotateSecretRequest';
import type { RotateSecretResponse as _psst_v1_RotateSecretResponse, RotateSecretResponse__Output as _psst_v1_RotateSecretResponse__Output } from '../../psst/v1/RotateSecretResponse';
import type { Secret as _psst_v1_Secret, Secret__Output as _psst_v1_Secret__Output } from '../../psst/v1/Secret';
import type { WatchEvent as _psst_v1_WatchEvent, WatchEvent__Output as _psst_v1_WatchEvent__Output } from '../../psst/v1/WatchEvent';
import type { WatchSecretsRequest as _psst_v1_WatchSecretsRequest, WatchSecretsRequest__Output as _psst_v1_WatchSecretsRequest__Output } from '../../psst/v1/WatchSecretsRequest';
import type { WhoAmIRequest as _psst_v1_WhoAmIRequest, WhoAmIRequest__Output as _psst_v1_WhoAmIRequest__Output } from '../../psst/v1/WhoAmIRequest';
import type { WhoAmIResponse as _psst_v1_WhoAmIResponse, WhoAmIResponse__Output as _psst_v1_WhoAmIResponse__Output } from '../../psst/v1/WhoAmIResponse';

/**
 * Secrets is what applications call. Every method is checked against the agent's policy for the
 * calling process before the cache or any backend is touched.
 */
export interface SecretsClient extends grpc.Client {
  /**
   * Returns one result per reference, in order: a bad item does not fail the batch.
   */
  BatchGetSecrets(argument: _psst_v1_BatchGetSecretsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_BatchGetSecretsResponse__Output>): grpc.ClientUnaryCall;
  BatchGetSecrets(argument: _psst_v1_BatchGetSecretsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_BatchGetSecretsResponse__Output>): grpc.ClientUnaryCall;
  BatchGetSecrets(argument: _psst_v1_BatchGetSecretsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_BatchGetSecretsResponse__Output>): grpc.ClientUnaryCall;
  BatchGetSecrets(argument: _psst_v1_BatchGetSecretsRequest, callback: grpc.requestCallback<_psst_v1_BatchGetSecretsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Returns one result per reference, in order: a bad item does not fail the batch.
   */
  batchGetSecrets(argument: _psst_v1_BatchGetSecretsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_BatchGetSecretsResponse__Output>): grpc.ClientUnaryCall;
  batchGetSecrets(argument: _psst_v1_BatchGetSecretsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_BatchGetSecretsResponse__Output>): grpc.ClientUnaryCall;
  batchGetSecrets(argument: _psst_v1_BatchGetSecretsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_BatchGetSecretsResponse__Output>): grpc.ClientUnaryCall;
  batchGetSecrets(argument: _psst_v1_BatchGetSecretsRequest, callback: grpc.requestCallback<_psst_v1_BatchGetSecretsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Generates a random value from the OS CSPRNG. Nothing is stored.
   */
  GeneratePassword(argument: _psst_v1_GeneratePasswordRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_GeneratePasswordResponse__Output>): grpc.ClientUnaryCall;
  GeneratePassword(argument: _psst_v1_GeneratePasswordRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_GeneratePasswordResponse__Output>): grpc.ClientUnaryCall;
  GeneratePassword(argument: _psst_v1_GeneratePasswordRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_GeneratePasswordResponse__Output>): grpc.ClientUnaryCall;
  GeneratePassword(argument: _psst_v1_GeneratePasswordRequest, callback: grpc.requestCallback<_psst_v1_GeneratePasswordResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Generates a random value from the OS CSPRNG. Nothing is stored.
   */
  generatePassword(argument: _psst_v1_GeneratePasswordRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_GeneratePasswordResponse__Output>): grpc.ClientUnaryCall;
  generatePassword(argument: _psst_v1_GeneratePasswordRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_GeneratePasswordResponse__Output>): grpc.ClientUnaryCall;
  generatePassword(argument: _psst_v1_GeneratePasswordRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_GeneratePasswordResponse__Output>): grpc.ClientUnaryCall;
  generatePassword(argument: _psst_v1_GeneratePasswordRequest, callback: grpc.requestCallback<_psst_v1_GeneratePasswordResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Returns one secret. Denied callers get PERMISSION_DENIED whether or not the secret exists.
   */
  GetSecret(argument: _psst_v1_GetSecretRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_Secret__Output>): grpc.ClientUnaryCall;
  GetSecret(argument: _psst_v1_GetSecretRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_Secret__Output>): grpc.ClientUnaryCall;
  GetSecret(argument: _psst_v1_GetSecretRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_Secret__Output>): grpc.ClientUnaryCall;
  GetSecret(argument: _psst_v1_GetSecretRequest, callback: grpc.requestCallback<_psst_v1_Secret__Output>): grpc.ClientUnaryCall;
  /**
   * Returns one secret. Denied callers get PERMISSION_DENIED whether or not the secret exists.
   */
  getSecret(argument: _psst_v1_GetSecretRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_Secret__Output>): grpc.ClientUnaryCall;
  getSecret(argument: _psst_v1_GetSecretRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_Secret__Output>): grpc.ClientUnaryCall;
  getSecret(argument: _psst_v1_GetSecretRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_Secret__Output>): grpc.ClientUnaryCall;
  getSecret(argument: _psst_v1_GetSecretRequest, callback: grpc.requestCallback<_psst_v1_Secret__Output>): grpc.ClientUnaryCall;
  
  /**
   * Lists the references under a prefix that the caller may list. Metadata only, never values.
   */
  ListSecrets(argument: _psst_v1_ListSecretsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_ListSecretsResponse__Output>): grpc.ClientUnaryCall;
  ListSecrets(argument: _psst_v1_ListSecretsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_ListSecretsResponse__Output>): grpc.ClientUnaryCall;
  ListSecrets(argument: _psst_v1_ListSecretsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_ListSecretsResponse__Output>): grpc.ClientUnaryCall;
  ListSecrets(argument: _psst_v1_ListSecretsRequest, callback: grpc.requestCallback<_psst_v1_ListSecretsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Lists the references under a prefix that the caller may list. Metadata only, never values.
   */
  listSecrets(argument: _psst_v1_ListSecretsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_ListSecretsResponse__Output>): grpc.ClientUnaryCall;
  listSecrets(argument: _psst_v1_ListSecretsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_ListSecretsResponse__Output>): grpc.ClientUnaryCall;
  listSecrets(argument: _psst_v1_ListSecretsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_ListSecretsResponse__Output>): grpc.ClientUnaryCall;
  listSecrets(argument: _psst_v1_ListSecretsRequest, callback: grpc.requestCallback<_psst_v1_ListSecretsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Writes a new version of a secret.
   */
  PutSecret(argument: _psst_v1_PutSecretRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_PutSecretResponse__Output>): grpc.ClientUnaryCall;
  PutSecret(argument: _psst_v1_PutSecretRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_PutSecretResponse__Output>): grpc.ClientUnaryCall;
  PutSecret(argument: _psst_v1_PutSecretRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_PutSecretResponse__Output>): grpc.ClientUnaryCall;
  PutSecret(argument: _psst_v1_PutSecretRequest, callback: grpc.requestCallback<_psst_v1_PutSecretResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Writes a new version of a secret.
   */
  putSecret(argument: _psst_v1_PutSecretRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_PutSecretResponse__Output>): grpc.ClientUnaryCall;
  putSecret(argument: _psst_v1_PutSecretRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_PutSecretResponse__Output>): grpc.ClientUnaryCall;
  putSecret(argument: _psst_v1_PutSecretRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_PutSecretResponse__Output>): grpc.ClientUnaryCall;
  putSecret(argument: _psst_v1_PutSecretRequest, callback: grpc.requestCallback<_psst_v1_PutSecretResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Makes a newly generated value the current version (or starts the backend's own rotation).
   */
  RotateSecret(argument: _psst_v1_RotateSecretRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_RotateSecretResponse__Output>): grpc.ClientUnaryCall;
  RotateSecret(argument: _psst_v1_RotateSecretRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_RotateSecretResponse__Output>): grpc.ClientUnaryCall;
  RotateSecret(argument: _psst_v1_RotateSecretRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_RotateSecretResponse__Output>): grpc.ClientUnaryCall;
  RotateSecret(argument: _psst_v1_RotateSecretRequest, callback: grpc.requestCallback<_psst_v1_RotateSecretResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Makes a newly generated value the current version (or starts the backend's own rotation).
   */
  rotateSecret(argument: _psst_v1_RotateSecretRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_RotateSecretResponse__Output>): grpc.ClientUnaryCall;
  rotateSecret(argument: _psst_v1_RotateSecretRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_RotateSecretResponse__Output>): grpc.ClientUnaryCall;
  rotateSecret(argument: _psst_v1_RotateSecretRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_RotateSecretResponse__Output>): grpc.ClientUnaryCall;
  rotateSecret(argument: _psst_v1_RotateSecretRequest, callback: grpc.requestCallback<_psst_v1_RotateSecretResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Streams, per reference, the current secret first, then one event per change (a new
   * version, a pending version, a deletion). A slow reader gets the newest state, never a
   * backlog. Ends with PERMISSION_DENIED when a policy reload takes the grant away, and with
   * UNAVAILABLE when the agent shuts down (reconnect and pass known_versions to resume).
   */
  WatchSecrets(argument: _psst_v1_WatchSecretsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_psst_v1_WatchEvent__Output>;
  WatchSecrets(argument: _psst_v1_WatchSecretsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_psst_v1_WatchEvent__Output>;
  /**
   * Streams, per reference, the current secret first, then one event per change (a new
   * version, a pending version, a deletion). A slow reader gets the newest state, never a
   * backlog. Ends with PERMISSION_DENIED when a policy reload takes the grant away, and with
   * UNAVAILABLE when the agent shuts down (reconnect and pass known_versions to resume).
   */
  watchSecrets(argument: _psst_v1_WatchSecretsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_psst_v1_WatchEvent__Output>;
  watchSecrets(argument: _psst_v1_WatchSecretsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_psst_v1_WatchEvent__Output>;
  
  /**
   * Says how the agent sees the caller and what the policy grants it.
   */
  WhoAmI(argument: _psst_v1_WhoAmIRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_WhoAmIResponse__Output>): grpc.ClientUnaryCall;
  WhoAmI(argument: _psst_v1_WhoAmIRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_WhoAmIResponse__Output>): grpc.ClientUnaryCall;
  WhoAmI(argument: _psst_v1_WhoAmIRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_WhoAmIResponse__Output>): grpc.ClientUnaryCall;
  WhoAmI(argument: _psst_v1_WhoAmIRequest, callback: grpc.requestCallback<_psst_v1_WhoAmIResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Says how the agent sees the caller and what the policy grants it.
   */
  whoAmI(argument: _psst_v1_WhoAmIRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_WhoAmIResponse__Output>): grpc.ClientUnaryCall;
  whoAmI(argument: _psst_v1_WhoAmIRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_WhoAmIResponse__Output>): grpc.ClientUnaryCall;
  whoAmI(argument: _psst_v1_WhoAmIRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_WhoAmIResponse__Output>): grpc.ClientUnaryCall;
  whoAmI(argument: _psst_v1_WhoAmIRequest, callback: grpc.requestCallback<_psst_v1_WhoAmIResponse__Output>): grpc.ClientUnaryCall;
  
}

/**
 * Secrets is what applications call. Every method is checked against the agent's policy for the
 * calling process before the cache or any backend is touched.
 */
export interface SecretsHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Returns one result per reference, in order: a bad item does not fail the batch.
   */
  BatchGetSecrets: grpc.handleUnaryCall<_psst_v1_BatchGetSecretsRequest__Output, _psst_v1_BatchGetSecretsResponse>;
  
  /**
   * Generates a random value from the OS CSPRNG. Nothing is stored.
   */
  GeneratePassword: grpc.handleUnaryCall<_psst_v1_GeneratePasswordRequest__Output, _psst_v1_GeneratePasswordResponse>;
  
  /**
   * Returns one secret. Denied callers get PERMISSION_DENIED whether or not the secret exists.
   */
  GetSecret: grpc.handleUnaryCall<_psst_v1_GetSecretRequest__Output, _psst_v1_Secret>;
  
  /**
   * Lists the references under a prefix that the caller may list. Metadata only, never values.
   */
  ListSecrets: grpc.handleUnaryCall<_psst_v1_ListSecretsRequest__Output, _psst_v1_ListSecretsResponse>;
  
  /**
   * Writes a new version of a secret.
   */
  PutSecret: grpc.handleUnaryCall<_psst_v1_PutSecretRequest__Output, _psst_v1_PutSecretResponse>;
  
  /**
   * Makes a newly generated value the current version (or starts the backend's own rotation).
   */
  RotateSecret: grpc.handleUnaryCall<_psst_v1_RotateSecretRequest__Output, _psst_v1_RotateSecretResponse>;
  
  /**
   * Streams, per reference, the current secret first, then one event per change (a new
   * version, a pending version, a deletion). A slow reader gets the newest state, never a
   * backlog. Ends with PERMISSION_DENIED when a policy reload takes the grant away, and with
   * UNAVAILABLE when the agent shuts down (reconnect and pass known_versions to resume).
   */
  WatchSecrets: grpc.handleServerStreamingCall<_psst_v1_WatchSecretsRequest__Output, _psst_v1_WatchEvent>;
  
  /**
   * Says how the agent sees the caller and what the policy grants it.
   */
  WhoAmI: grpc.handleUnaryCall<_psst_v1_WhoAmIRequest__Output, _psst_v1_WhoAmIResponse>;
  
}

export interface SecretsDefinition extends grpc.ServiceDefinition {
  BatchGetSecrets: MethodDefinition<_psst_v1_BatchGetSecretsRequest, _psst_v1_BatchGetSecretsResponse, _psst_v1_BatchGetSecretsRequest__Output, _psst_v1_BatchGetSecretsResponse__Output>
  GeneratePassword: MethodDefinition<_psst_v1_GeneratePasswordRequest, _psst_v1_GeneratePasswordResponse, _psst_v1_GeneratePasswordRequest__Output, _psst_v1_GeneratePasswordResponse__Output>
  GetSecret: MethodDefinition<_psst_v1_GetSecretRequest, _psst_v1_Secret, _psst_v1_GetSecretRequest__Output, _psst_v1_Secret__Output>
  ListSecrets: MethodDefinition<_psst_v1_ListSecretsRequest, _psst_v1_ListSecretsResponse, _psst_v1_ListSecretsRequest__Output, _psst_v1_ListSecretsResponse__Output>
  PutSecret: MethodDefinition<_psst_v1_PutSecretRequest, _psst_v1_PutSecretResponse, _psst_v1_PutSecretRequest__Output, _psst_v1_PutSecretResponse__Output>
  RotateSecret: MethodDefinition<_psst_v1_RotateSecretRequest, _psst_v1_RotateSecretResponse, _psst_v1_RotateSecretRequest__Output, _psst_v1_RotateSecretResponse__Output>
  WatchSecrets: MethodDefinition<_psst_v1_WatchSecretsRequest, _psst_v1_WatchEvent, _psst_v1_WatchSecretsRequest__Output, _psst_v1_WatchEvent__Output>
  WhoAmI: MethodDefinition<_psst_v1_WhoAmIRequest, _psst_v1_WhoAmIResponse, _psst_v1_WhoAmIRequest__Output, _psst_v1_WhoAmIResponse__Output>
}
