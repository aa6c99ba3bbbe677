//! `psst.v1.Secrets`.

use std::sync::Arc;

use psst_proto::v1::{
    self as pb, batch_get_result, secrets_server::Secrets, BatchGetSecretsRequest,
    BatchGetSecretsResponse, GetSecretRequest, ListSecretsRequest, ListSecretsResponse,
    PutSecretRequest, PutSecretResponse, WhoAmIRequest, WhoAmIResponse,
};
use tonic::{Request, Response, Status};

use super::{caller, code, timestamp};
use crate::{
    agent::{Agent, ServedSecret},
    identity::Caller,
    secret::SecretValue,
};

pub struct SecretsApi {
    agent: Arc<Agent>,
}

impl SecretsApi {
    pub fn new(agent: Arc<Agent>) -> Self {
        Self { agent }
    }
}

#[tonic::async_trait]
impl Secrets for SecretsApi {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<pb::Secret>, Status> {
        let caller = caller(&request)?;
        let served = self.agent.get(caller, &request.get_ref().reference).await?;
        Ok(Response::new(to_proto(
            &request.get_ref().reference,
            served,
        )))
    }

    async fn batch_get_secrets(
        &self,
        request: Request<BatchGetSecretsRequest>,
    ) -> Result<Response<BatchGetSecretsResponse>, Status> {
        let caller = caller(&request)?;
        let references = &request.get_ref().references;
        let results = self.agent.batch_get(caller, references).await?;
        let results = references
            .iter()
            .zip(results)
            .map(|(reference, result)| pb::BatchGetResult {
                reference: reference.clone(),
                result: Some(match result {
                    Ok(served) => batch_get_result::Result::Secret(to_proto(reference, served)),
                    Err(e) => batch_get_result::Result::Error(pb::Error {
                        code: code(&e) as i32,
                        message: e.to_string(),
                    }),
                }),
            })
            .collect();
        Ok(Response::new(BatchGetSecretsResponse { results }))
    }

    async fn list_secrets(
        &self,
        request: Request<ListSecretsRequest>,
    ) -> Result<Response<ListSecretsResponse>, Status> {
        let caller = caller(&request)?;
        let listed = self.agent.list(caller, &request.get_ref().prefix).await?;
        let secrets = listed
            .into_iter()
            .map(|l| pb::SecretMetadata {
                reference: l.reference,
                version_id: l.listed.version_id,
                updated_at: l.listed.updated_at.map(timestamp),
            })
            .collect();
        Ok(Response::new(ListSecretsResponse { secrets }))
    }

    async fn put_secret(
        &self,
        request: Request<PutSecretRequest>,
    ) -> Result<Response<PutSecretResponse>, Status> {
        let caller = caller(&request)?.clone();
        let PutSecretRequest { reference, value } = request.into_inner();
        // Take the bytes into the zeroizing type at once; the request buffer is gone after this.
        let value = SecretValue::from_slice(&value);
        let (version, written) = self.agent.put(&caller, &reference, value).await?;
        Ok(Response::new(PutSecretResponse {
            reference: version.to_string(),
            version_id: written.version_id,
            created_at: written.created_at.map(timestamp),
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let caller = caller(&request)?;
        let grants = self.agent.whoami(caller);
        Ok(Response::new(WhoAmIResponse {
            caller: Some(caller_to_proto(caller)),
            grants: grants
                .patterns
                .into_iter()
                .map(|(op, patterns)| pb::Grant {
                    operation: op.as_str().to_owned(),
                    patterns,
                })
                .collect(),
            matched_rules: grants.matched_rules,
        }))
    }
}

fn to_proto(asked: &str, served: ServedSecret) -> pb::Secret {
    let secret = &served.secret;
    pb::Secret {
        // Parsing is strict and canonical (a parsed reference prints back as it was written),
        // so the text asked for is the canonical reference.
        reference: asked.to_owned(),
        value: served.value.share(),
        version_id: secret.version_id.clone(),
        stages: secret.stages.clone(),
        created_at: secret.created_at.map(timestamp),
        cache: Some(pb::CacheInfo {
            hit: served.hit,
            stale: served.stale,
            fetched_at: Some(timestamp(secret.fetched_at)),
            expires_at: Some(timestamp(secret.expires_at)),
        }),
    }
}

fn caller_to_proto(caller: &Caller) -> pb::Caller {
    pb::Caller {
        uid: caller.uid,
        gid: caller.gid,
        pid: caller.pid,
        user: caller.user.clone().unwrap_or_default(),
        group: caller.group.clone().unwrap_or_default(),
        supplementary_gids: caller.supplementary_gids.clone(),
        executable: caller.executable.clone().unwrap_or_default(),
        cgroup: caller.cgroup.clone().unwrap_or_default(),
        container_id: caller.container_id.clone().unwrap_or_default(),
        pod_uid: caller.pod_uid.clone().unwrap_or_default(),
        systemd_unit: caller.systemd_unit.clone().unwrap_or_default(),
        identity_source: caller.source.as_str().to_owned(),
    }
}
