//! `psst.v1.Secrets`.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};

use psst_proto::v1::{
    self as pb, batch_get_result, secrets_server::Secrets, BatchGetSecretsRequest,
    BatchGetSecretsResponse, GetSecretRequest, ListSecretsRequest, ListSecretsResponse,
    PutSecretRequest, PutSecretResponse, WhoAmIRequest, WhoAmIResponse,
};
use tonic::{Request, Response, Status};

use super::{caller, code, timestamp};
use crate::{
    agent::{Agent, EventKind, ServedSecret, WatchEvent},
    cache::CachedSecret,
    identity::Caller,
    rotation::generate::{self, GeneratorOptions},
    secret::SecretValue,
};

/// `GetSecret`, for tonic's handler and for the inline path of `server/mod.rs` alike.
pub(crate) async fn get_secret(
    agent: &Agent,
    caller: &Caller,
    reference: String,
) -> Result<pb::Secret, Status> {
    let served = agent.get(caller, &reference).await?;
    Ok(to_proto(&reference, served))
}

pub(crate) struct SecretsApi {
    agent: Arc<Agent>,
}

impl SecretsApi {
    pub(crate) fn new(agent: Arc<Agent>) -> Self {
        Self { agent }
    }
}

#[tonic::async_trait]
impl Secrets for SecretsApi {
    type WatchSecretsStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

    async fn watch_secrets(
        &self,
        request: Request<pb::WatchSecretsRequest>,
    ) -> Result<Response<Self::WatchSecretsStream>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let events = self
            .agent
            .watch(&caller, &request.references, &request.known_versions)?;
        let events = events.map(|event| event.map(event_to_proto).map_err(Status::from));
        Ok(Response::new(Box::pin(events)))
    }

    async fn rotate_secret(
        &self,
        request: Request<pb::RotateSecretRequest>,
    ) -> Result<Response<pb::RotateSecretResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let options = generator_options(r.generator.as_ref());
        let json_key = Some(r.json_key.as_str()).filter(|k| !k.is_empty());
        let rotated = self
            .agent
            .rotate(caller, &r.reference, &options, json_key)
            .await?;
        Ok(Response::new(pb::RotateSecretResponse {
            reference: rotated.reference,
            version_id: rotated.version_id,
            previous_version_id: rotated.previous_version_id,
            delegated: rotated.delegated,
        }))
    }

    async fn generate_password(
        &self,
        request: Request<pb::GeneratePasswordRequest>,
    ) -> Result<Response<pb::GeneratePasswordResponse>, Status> {
        caller(&request)?;
        let options = generator_options(request.get_ref().options.as_ref());
        let value = Arc::new(self.agent.generate(&options)?);
        Ok(Response::new(pb::GeneratePasswordResponse {
            value: value.share(),
        }))
    }

    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<pb::Secret>, Status> {
        let caller = caller(&request)?;
        let reference = request.get_ref().reference.clone();
        Ok(Response::new(
            get_secret(&self.agent, caller, reference).await?,
        ))
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
        let aws_role = self
            .agent
            .aws_role(caller)
            .map(|(mapping, role)| pb::AwsRole {
                role_arn: role.arn,
                session_name: role.identity.name,
                session_tags: role.identity.tags.into_iter().collect(),
                mapping,
            });
        Ok(Response::new(WhoAmIResponse {
            aws_role,
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

/// The `Secret` a read of `asked` answers with.
pub(crate) fn to_proto(asked: &str, served: ServedSecret) -> pb::Secret {
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

/// At least the encoded length of the `Secret` that `to_proto` makes of `secret` read as `asked`
/// (with the whole value: a JSON key's value is shorter). The server's fast path
/// (`server/fast.rs`) checks it against the room the caller's flow control leaves before the
/// read is decided.
pub(crate) fn encoded_len_bound(asked: &str, secret: &CachedSecret) -> usize {
    // Every field's tag and length prefix (at most 6 bytes), the three timestamps (at most 19
    // bytes each with their own tags) and the cache info's flags: under 128 bytes in all.
    const FIXED: usize = 128;
    asked.len()
        + secret.value.len()
        + secret.version_id.len()
        + secret.stages.iter().map(|s| s.len() + 6).sum::<usize>()
        + FIXED
}

fn event_to_proto(event: WatchEvent) -> pb::WatchEvent {
    let kind = match event.kind {
        EventKind::Current => pb::watch_event::Kind::Current,
        EventKind::NewVersion => pb::watch_event::Kind::NewVersion,
        EventKind::PendingVersion => pb::watch_event::Kind::PendingVersion,
        EventKind::Deleted => pb::watch_event::Kind::Deleted,
    };
    pb::WatchEvent {
        secret: event.secret.map(|s| to_proto(&event.reference, s)),
        reference: event.reference,
        kind: kind as i32,
        previous_version_id: event.previous_version_id,
        pending_version_id: event.pending_version_id,
        observed_at: Some(timestamp(event.observed_at)),
    }
}

/// Protobuf generator options onto the generator's, with the documented defaults.
fn generator_options(options: Option<&pb::GeneratorOptions>) -> GeneratorOptions {
    let Some(o) = options else {
        return GeneratorOptions::default();
    };
    GeneratorOptions {
        length: if o.length == 0 {
            generate::DEFAULT_LENGTH
        } else {
            o.length as usize
        },
        lowercase: !o.exclude_lowercase,
        uppercase: !o.exclude_uppercase,
        numbers: !o.exclude_numbers,
        punctuation: !o.exclude_punctuation,
        space: o.include_space,
        exclude: o.exclude_characters.clone(),
        require_each: o.require_each_included_type.unwrap_or(true),
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
        kubernetes: caller
            .workload
            .kubernetes
            .as_ref()
            .map(|k| pb::KubernetesWorkload {
                namespace: k.namespace.clone(),
                service_account: k.service_account.clone(),
                pod_name: k.pod_name.clone(),
                pod_uid: k.pod_uid.clone(),
                labels: k.labels.clone().into_iter().collect(),
                container_name: k.container_name.clone().unwrap_or_default(),
                container_image: k.container_image.clone().unwrap_or_default(),
                container_image_id: k.container_image_id.clone().unwrap_or_default(),
            }),
        ecs: caller.workload.ecs.as_ref().map(|e| pb::EcsWorkload {
            cluster: e.cluster.clone(),
            task_arn: e.task_arn.clone(),
            task_family: e.task_family.clone(),
            task_revision: e.task_revision.clone(),
            container_name: e.container_name.clone(),
        }),
        container: caller
            .workload
            .container
            .as_ref()
            .map(|c| pb::ContainerWorkload {
                name: c.name.clone(),
                image: c.image.clone(),
                labels: c.labels.clone().into_iter().collect(),
            }),
        attestation_failures: caller.workload.failures.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use prost::Message;

    use super::*;
    use crate::reference::SecretRef;

    #[test]
    fn the_length_bound_holds_for_the_largest_fields() {
        // Timestamps far in the future (the longest varints), long stages and version id.
        let far = SystemTime::UNIX_EPOCH
            + Duration::from_secs(1 << 40)
            + Duration::from_nanos(999_999_999);
        let mut secret = CachedSecret::for_test(
            SecretValue::new(vec![b'v'; 70_000]),
            &"9".repeat(300),
            vec!["AWSCURRENT".into(), "x".repeat(200), String::new()],
            Some(far),
            None,
        );
        secret.fetched_at = far;
        secret.expires_at = far;
        let asked = "local:some/long/name";
        let bound = encoded_len_bound(asked, &secret);
        let secret = Arc::new(secret);
        let served = ServedSecret {
            reference: SecretRef::parse(asked).unwrap(),
            value: Arc::clone(&secret.value),
            secret,
            hit: true,
            stale: true,
        };
        let actual = to_proto(asked, served).encoded_len();
        assert!(actual <= bound, "{actual} > {bound}");
        assert!(bound - actual < 256, "a tight bound: {actual} vs {bound}");
    }
}
