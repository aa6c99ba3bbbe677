import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from './google/protobuf/Timestamp';
import type { AdminClient as _psst_v1_AdminClient, AdminDefinition as _psst_v1_AdminDefinition } from './psst/v1/Admin';
import type { AwsRole as _psst_v1_AwsRole, AwsRole__Output as _psst_v1_AwsRole__Output } from './psst/v1/AwsRole';
import type { BackendStats as _psst_v1_BackendStats, BackendStats__Output as _psst_v1_BackendStats__Output } from './psst/v1/BackendStats';
import type { BatchGetResult as _psst_v1_BatchGetResult, BatchGetResult__Output as _psst_v1_BatchGetResult__Output } from './psst/v1/BatchGetResult';
import type { BatchGetSecretsRequest as _psst_v1_BatchGetSecretsRequest, BatchGetSecretsRequest__Output as _psst_v1_BatchGetSecretsRequest__Output } from './psst/v1/BatchGetSecretsRequest';
import type { BatchGetSecretsResponse as _psst_v1_BatchGetSecretsResponse, BatchGetSecretsResponse__Output as _psst_v1_BatchGetSecretsResponse__Output } from './psst/v1/BatchGetSecretsResponse';
import type { CacheInfo as _psst_v1_CacheInfo, CacheInfo__Output as _psst_v1_CacheInfo__Output } from './psst/v1/CacheInfo';
import type { Caller as _psst_v1_Caller, Caller__Output as _psst_v1_Caller__Output } from './psst/v1/Caller';
import type { ContainerWorkload as _psst_v1_ContainerWorkload, ContainerWorkload__Output as _psst_v1_ContainerWorkload__Output } from './psst/v1/ContainerWorkload';
import type { EcsWorkload as _psst_v1_EcsWorkload, EcsWorkload__Output as _psst_v1_EcsWorkload__Output } from './psst/v1/EcsWorkload';
import type { Error as _psst_v1_Error, Error__Output as _psst_v1_Error__Output } from './psst/v1/Error';
import type { GeneratePasswordRequest as _psst_v1_GeneratePasswordRequest, GeneratePasswordRequest__Output as _psst_v1_GeneratePasswordRequest__Output } from './psst/v1/GeneratePasswordRequest';
import type { GeneratePasswordResponse as _psst_v1_GeneratePasswordResponse, GeneratePasswordResponse__Output as _psst_v1_GeneratePasswordResponse__Output } from './psst/v1/GeneratePasswordResponse';
import type { GeneratorOptions as _psst_v1_GeneratorOptions, GeneratorOptions__Output as _psst_v1_GeneratorOptions__Output } from './psst/v1/GeneratorOptions';
import type { GetSecretRequest as _psst_v1_GetSecretRequest, GetSecretRequest__Output as _psst_v1_GetSecretRequest__Output } from './psst/v1/GetSecretRequest';
import type { Grant as _psst_v1_Grant, Grant__Output as _psst_v1_Grant__Output } from './psst/v1/Grant';
import type { InvalidateCacheRequest as _psst_v1_InvalidateCacheRequest, InvalidateCacheRequest__Output as _psst_v1_InvalidateCacheRequest__Output } from './psst/v1/InvalidateCacheRequest';
import type { InvalidateCacheResponse as _psst_v1_InvalidateCacheResponse, InvalidateCacheResponse__Output as _psst_v1_InvalidateCacheResponse__Output } from './psst/v1/InvalidateCacheResponse';
import type { KubernetesWorkload as _psst_v1_KubernetesWorkload, KubernetesWorkload__Output as _psst_v1_KubernetesWorkload__Output } from './psst/v1/KubernetesWorkload';
import type { ListSecretsRequest as _psst_v1_ListSecretsRequest, ListSecretsRequest__Output as _psst_v1_ListSecretsRequest__Output } from './psst/v1/ListSecretsRequest';
import type { ListSecretsResponse as _psst_v1_ListSecretsResponse, ListSecretsResponse__Output as _psst_v1_ListSecretsResponse__Output } from './psst/v1/ListSecretsResponse';
import type { PutSecretRequest as _psst_v1_PutSecretRequest, PutSecretRequest__Output as _psst_v1_PutSecretRequest__Output } from './psst/v1/PutSecretRequest';
import type { PutSecretResponse as _psst_v1_PutSecretResponse, PutSecretResponse__Output as _psst_v1_PutSecretResponse__Output } from './psst/v1/PutSecretResponse';
import type { ReloadPolicyRequest as _psst_v1_ReloadPolicyRequest, ReloadPolicyRequest__Output as _psst_v1_ReloadPolicyRequest__Output } from './psst/v1/ReloadPolicyRequest';
import type { ReloadPolicyResponse as _psst_v1_ReloadPolicyResponse, ReloadPolicyResponse__Output as _psst_v1_ReloadPolicyResponse__Output } from './psst/v1/ReloadPolicyResponse';
import type { RoleStats as _psst_v1_RoleStats, RoleStats__Output as _psst_v1_RoleStats__Output } from './psst/v1/RoleStats';
import type { RotateSecretRequest as _psst_v1_RotateSecretRequest, RotateSecretRequest__Output as _psst_v1_RotateSecretRequest__Output } from './psst/v1/RotateSecretRequest';
import type { RotateSecretResponse as _psst_v1_RotateSecretResponse, RotateSecretResponse__Output as _psst_v1_RotateSecretResponse__Output } from './psst/v1/RotateSecretResponse';
import type { Secret as _psst_v1_Secret, Secret__Output as _psst_v1_Secret__Output } from './psst/v1/Secret';
import type { SecretMetadata as _psst_v1_SecretMetadata, SecretMetadata__Output as _psst_v1_SecretMetadata__Output } from './psst/v1/SecretMetadata';
import type { SecretsClient as _psst_v1_SecretsClient, SecretsDefinition as _psst_v1_SecretsDefinition } from './psst/v1/Secrets';
import type { StatsRequest as _psst_v1_StatsRequest, StatsRequest__Output as _psst_v1_StatsRequest__Output } from './psst/v1/StatsRequest';
import type { StatsResponse as _psst_v1_StatsResponse, StatsResponse__Output as _psst_v1_StatsResponse__Output } from './psst/v1/StatsResponse';
import type { WatchEvent as _psst_v1_WatchEvent, WatchEvent__Output as _psst_v1_WatchEvent__Output } from './psst/v1/WatchEvent';
import type { WatchSecretsRequest as _psst_v1_WatchSecretsRequest, WatchSecretsRequest__Output as _psst_v1_WatchSecretsRequest__Output } from './psst/v1/WatchSecretsRequest';
import type { WhoAmIRequest as _psst_v1_WhoAmIRequest, WhoAmIRequest__Output as _psst_v1_WhoAmIRequest__Output } from './psst/v1/WhoAmIRequest';
import type { WhoAmIResponse as _psst_v1_WhoAmIResponse, WhoAmIResponse__Output as _psst_v1_WhoAmIResponse__Output } from './psst/v1/WhoAmIResponse';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  google: {
    protobuf: {
      Timestamp: MessageTypeDefinition<_google_protobuf_Timestamp, _google_protobuf_Timestamp__Output>
    }
  }
  psst: {
    v1: {
      /**
       * Admin is for operators: every method needs the `admin` grant.
       */
      Admin: SubtypeConstructor<typeof grpc.Client, _psst_v1_AdminClient> & { service: _psst_v1_AdminDefinition }
      AwsRole: MessageTypeDefinition<_psst_v1_AwsRole, _psst_v1_AwsRole__Output>
      BackendStats: MessageTypeDefinition<_psst_v1_BackendStats, _psst_v1_BackendStats__Output>
      BatchGetResult: MessageTypeDefinition<_psst_v1_BatchGetResult, _psst_v1_BatchGetResult__Output>
      BatchGetSecretsRequest: MessageTypeDefinition<_psst_v1_BatchGetSecretsRequest, _psst_v1_BatchGetSecretsRequest__Output>
      BatchGetSecretsResponse: MessageTypeDefinition<_psst_v1_BatchGetSecretsResponse, _psst_v1_BatchGetSecretsResponse__Output>
      CacheInfo: MessageTypeDefinition<_psst_v1_CacheInfo, _psst_v1_CacheInfo__Output>
      Caller: MessageTypeDefinition<_psst_v1_Caller, _psst_v1_Caller__Output>
      ContainerWorkload: MessageTypeDefinition<_psst_v1_ContainerWorkload, _psst_v1_ContainerWorkload__Output>
      EcsWorkload: MessageTypeDefinition<_psst_v1_EcsWorkload, _psst_v1_EcsWorkload__Output>
      Error: MessageTypeDefinition<_psst_v1_Error, _psst_v1_Error__Output>
      GeneratePasswordRequest: MessageTypeDefinition<_psst_v1_GeneratePasswordRequest, _psst_v1_GeneratePasswordRequest__Output>
      GeneratePasswordResponse: MessageTypeDefinition<_psst_v1_GeneratePasswordResponse, _psst_v1_GeneratePasswordResponse__Output>
      GeneratorOptions: MessageTypeDefinition<_psst_v1_GeneratorOptions, _psst_v1_GeneratorOptions__Output>
      GetSecretRequest: MessageTypeDefinition<_psst_v1_GetSecretRequest, _psst_v1_GetSecretRequest__Output>
      Grant: MessageTypeDefinition<_psst_v1_Grant, _psst_v1_Grant__Output>
      InvalidateCacheRequest: MessageTypeDefinition<_psst_v1_InvalidateCacheRequest, _psst_v1_InvalidateCacheRequest__Output>
      InvalidateCacheResponse: MessageTypeDefinition<_psst_v1_InvalidateCacheResponse, _psst_v1_InvalidateCacheResponse__Output>
      KubernetesWorkload: MessageTypeDefinition<_psst_v1_KubernetesWorkload, _psst_v1_KubernetesWorkload__Output>
      ListSecretsRequest: MessageTypeDefinition<_psst_v1_ListSecretsRequest, _psst_v1_ListSecretsRequest__Output>
      ListSecretsResponse: MessageTypeDefinition<_psst_v1_ListSecretsResponse, _psst_v1_ListSecretsResponse__Output>
      PutSecretRequest: MessageTypeDefinition<_psst_v1_PutSecretRequest, _psst_v1_PutSecretRequest__Output>
      PutSecretResponse: MessageTypeDefinition<_psst_v1_PutSecretResponse, _psst_v1_PutSecretResponse__Output>
      ReloadPolicyRequest: MessageTypeDefinition<_psst_v1_ReloadPolicyRequest, _psst_v1_ReloadPolicyRequest__Output>
      ReloadPolicyResponse: MessageTypeDefinition<_psst_v1_ReloadPolicyResponse, _psst_v1_ReloadPolicyResponse__Output>
      RoleStats: MessageTypeDefinition<_psst_v1_RoleStats, _psst_v1_RoleStats__Output>
      RotateSecretRequest: MessageTypeDefinition<_psst_v1_RotateSecretRequest, _psst_v1_RotateSecretRequest__Output>
      RotateSecretResponse: MessageTypeDefinition<_psst_v1_RotateSecretResponse, _psst_v1_RotateSecretResponse__Output>
      Secret: MessageTypeDefinition<_psst_v1_Secret, _psst_v1_Secret__Output>
      SecretMetadata: MessageTypeDefinition<_psst_v1_SecretMetadata, _psst_v1_SecretMetadata__Output>
      /**
       * Secrets is what applications call. Every method is checked against the agent's policy for the
       * calling process before the cache or any backend is touched.
       */
      Secrets: SubtypeConstructor<typeof grpc.Client, _psst_v1_SecretsClient> & { service: _psst_v1_SecretsDefinition }
      StatsRequest: MessageTypeDefinition<_psst_v1_StatsRequest, _psst_v1_StatsRequest__Output>
      StatsResponse: MessageTypeDefinition<_psst_v1_StatsResponse, _psst_v1_StatsResponse__Output>
      WatchEvent: MessageTypeDefinition<_psst_v1_WatchEvent, _psst_v1_WatchEvent__Output>
      WatchSecretsRequest: MessageTypeDefinition<_psst_v1_WatchSecretsRequest, _psst_v1_WatchSecretsRequest__Output>
      WhoAmIRequest: MessageTypeDefinition<_psst_v1_WhoAmIRequest, _psst_v1_WhoAmIRequest__Output>
      WhoAmIResponse: MessageTypeDefinition<_psst_v1_WhoAmIResponse, _psst_v1_WhoAmIResponse__Output>
    }
  }
}

