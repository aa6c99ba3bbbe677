// Original file: proto/psst/v1/psst.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { InvalidateCacheRequest as _psst_v1_InvalidateCacheRequest, InvalidateCacheRequest__Output as _psst_v1_InvalidateCacheRequest__Output } from '../../psst/v1/InvalidateCacheRequest';
import type { InvalidateCacheResponse as _psst_v1_InvalidateCacheResponse, InvalidateCacheResponse__Output as _psst_v1_InvalidateCacheResponse__Output } from '../../psst/v1/InvalidateCacheResponse';
import type { ReloadPolicyRequest as _psst_v1_ReloadPolicyRequest, ReloadPolicyRequest__Output as _psst_v1_ReloadPolicyRequest__Output } from '../../psst/v1/ReloadPolicyRequest';
import type { ReloadPolicyResponse as _psst_v1_ReloadPolicyResponse, ReloadPolicyResponse__Output as _psst_v1_ReloadPolicyResponse__Output } from '../../psst/v1/ReloadPolicyResponse';
import type { StatsRequest as _psst_v1_StatsRequest, StatsRequest__Output as _psst_v1_StatsRequest__Output } from '../../psst/v1/StatsRequest';
import type { StatsResponse as _psst_v1_StatsResponse, StatsResponse__Output as _psst_v1_StatsResponse__Output } from '../../psst/v1/StatsResponse';

/**
 * Admin is for operators: every method needs the `admin` grant.
 */
export interface AdminClient extends grpc.Client {
  /**
   * Drops cached values: one reference, or every reference under a prefix.
   */
  InvalidateCache(argument: _psst_v1_InvalidateCacheRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_InvalidateCacheResponse__Output>): grpc.ClientUnaryCall;
  InvalidateCache(argument: _psst_v1_InvalidateCacheRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_InvalidateCacheResponse__Output>): grpc.ClientUnaryCall;
  InvalidateCache(argument: _psst_v1_InvalidateCacheRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_InvalidateCacheResponse__Output>): grpc.ClientUnaryCall;
  InvalidateCache(argument: _psst_v1_InvalidateCacheRequest, callback: grpc.requestCallback<_psst_v1_InvalidateCacheResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Drops cached values: one reference, or every reference under a prefix.
   */
  invalidateCache(argument: _psst_v1_InvalidateCacheRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_InvalidateCacheResponse__Output>): grpc.ClientUnaryCall;
  invalidateCache(argument: _psst_v1_InvalidateCacheRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_InvalidateCacheResponse__Output>): grpc.ClientUnaryCall;
  invalidateCache(argument: _psst_v1_InvalidateCacheRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_InvalidateCacheResponse__Output>): grpc.ClientUnaryCall;
  invalidateCache(argument: _psst_v1_InvalidateCacheRequest, callback: grpc.requestCallback<_psst_v1_InvalidateCacheResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Reloads the policy file now (as SIGHUP does). A broken file is an error and changes nothing.
   */
  ReloadPolicy(argument: _psst_v1_ReloadPolicyRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_ReloadPolicyResponse__Output>): grpc.ClientUnaryCall;
  ReloadPolicy(argument: _psst_v1_ReloadPolicyRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_ReloadPolicyResponse__Output>): grpc.ClientUnaryCall;
  ReloadPolicy(argument: _psst_v1_ReloadPolicyRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_ReloadPolicyResponse__Output>): grpc.ClientUnaryCall;
  ReloadPolicy(argument: _psst_v1_ReloadPolicyRequest, callback: grpc.requestCallback<_psst_v1_ReloadPolicyResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Reloads the policy file now (as SIGHUP does). A broken file is an error and changes nothing.
   */
  reloadPolicy(argument: _psst_v1_ReloadPolicyRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_ReloadPolicyResponse__Output>): grpc.ClientUnaryCall;
  reloadPolicy(argument: _psst_v1_ReloadPolicyRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_ReloadPolicyResponse__Output>): grpc.ClientUnaryCall;
  reloadPolicy(argument: _psst_v1_ReloadPolicyRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_ReloadPolicyResponse__Output>): grpc.ClientUnaryCall;
  reloadPolicy(argument: _psst_v1_ReloadPolicyRequest, callback: grpc.requestCallback<_psst_v1_ReloadPolicyResponse__Output>): grpc.ClientUnaryCall;
  
  Stats(argument: _psst_v1_StatsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  Stats(argument: _psst_v1_StatsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  Stats(argument: _psst_v1_StatsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  Stats(argument: _psst_v1_StatsRequest, callback: grpc.requestCallback<_psst_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  stats(argument: _psst_v1_StatsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  stats(argument: _psst_v1_StatsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_psst_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  stats(argument: _psst_v1_StatsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_psst_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  stats(argument: _psst_v1_StatsRequest, callback: grpc.requestCallback<_psst_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  
}

/**
 * Admin is for operators: every method needs the `admin` grant.
 */
export interface AdminHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Drops cached values: one reference, or every reference under a prefix.
   */
  InvalidateCache: grpc.handleUnaryCall<_psst_v1_InvalidateCacheRequest__Output, _psst_v1_InvalidateCacheResponse>;
  
  /**
   * Reloads the policy file now (as SIGHUP does). A broken file is an error and changes nothing.
   */
  ReloadPolicy: grpc.handleUnaryCall<_psst_v1_ReloadPolicyRequest__Output, _psst_v1_ReloadPolicyResponse>;
  
  Stats: grpc.handleUnaryCall<_psst_v1_StatsRequest__Output, _psst_v1_StatsResponse>;
  
}

export interface AdminDefinition extends grpc.ServiceDefinition {
  InvalidateCache: MethodDefinition<_psst_v1_InvalidateCacheRequest, _psst_v1_InvalidateCacheResponse, _psst_v1_InvalidateCacheRequest__Output, _psst_v1_InvalidateCacheResponse__Output>
  ReloadPolicy: MethodDefinition<_psst_v1_ReloadPolicyRequest, _psst_v1_ReloadPolicyResponse, _psst_v1_ReloadPolicyRequest__Output, _psst_v1_ReloadPolicyResponse__Output>
  Stats: MethodDefinition<_psst_v1_StatsRequest, _psst_v1_StatsResponse, _psst_v1_StatsRequest__Output, _psst_v1_StatsResponse__Output>
}
