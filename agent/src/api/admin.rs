//! `psst.v1.Admin`: for operators, behind the `admin` grant.

use std::sync::Arc;

use psst_proto::v1::{self as pb, admin_server::Admin};
use tonic::{Request, Response, Status};

use super::caller;
use crate::agent::Agent;

pub(crate) struct AdminApi {
    agent: Arc<Agent>,
}

impl AdminApi {
    pub(crate) fn new(agent: Arc<Agent>) -> Self {
        Self { agent }
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn invalidate_cache(
        &self,
        request: Request<pb::InvalidateCacheRequest>,
    ) -> Result<Response<pb::InvalidateCacheResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let invalidated = self
            .agent
            .invalidate(caller, &r.reference, &r.prefix)
            .await?;
        Ok(Response::new(pb::InvalidateCacheResponse { invalidated }))
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let stats = self.agent.stats(caller(&request)?)?;
        Ok(Response::new(pb::StatsResponse {
            cache_entries: stats.cache_entries,
            cache_bytes: stats.cache_bytes,
            cache_hits: stats.cache_hits,
            cache_misses: stats.cache_misses,
            stale_served: stats.stale_served,
            watchers: stats.watchers,
            rotations_seen: stats.rotations_seen,
            policy_rules: stats.policy_rules,
            backends: stats
                .backends
                .into_iter()
                .map(|(kind, calls, errors)| pb::BackendStats {
                    backend: kind.prefix().to_owned(),
                    calls,
                    errors,
                })
                .collect(),
            roles: stats
                .roles
                .into_iter()
                .map(|r| pb::RoleStats {
                    role_arn: r.arn,
                    sessions: r.sessions,
                    assume_calls: r.assume_calls,
                    assume_failures: r.assume_failures,
                    backend_calls: r.backend_calls,
                    backend_errors: r.backend_errors,
                    cache_entries: r.cache_entries,
                    cache_bytes: r.cache_bytes,
                })
                .collect(),
        }))
    }

    async fn reload_policy(
        &self,
        request: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::ReloadPolicyResponse>, Status> {
        let rules = self.agent.reload_policy(caller(&request)?)?;
        Ok(Response::new(pb::ReloadPolicyResponse {
            rules: rules as u32,
        }))
    }
}
