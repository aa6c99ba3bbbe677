//! AWS Secrets Manager (`sm:` references).
//!
//! `SecretString` and `SecretBinary`; `?stage=` and `?version=` selectors, and `AWSCURRENT` sent
//! explicitly when neither is given (Secrets Manager's default is the same, but some emulators
//! serve a stale version without it). A secret can be named by name, full ARN or partial ARN:
//! the answer carries the secret's name, which the cache uses to keep one entry for all three and
//! the policy uses to check the grant on the real name. Batches of current versions go out as
//! `BatchGetSecretValue` (20 ids a call); listings use `ListSecrets` with a name filter; writes
//! are `PutSecretValue`, or `CreateSecret` for a secret that does not exist yet.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::SystemTime,
};

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_secretsmanager::{
    primitives::Blob,
    types::{Filter, FilterNameStringType},
    Client,
};
use tokio::sync::OnceCell;

mod arn;

use self::arn::{names_same_secret, partial_arn};
use super::{
    aws::{self, classify, list_pages, system_time, AwsConfig, AwsService, AwsSettings},
    registry::{self, BackendSettings, BackendType, BuildContext, Dev, DevContext, Registered},
};
use crate::backend::guard::CallGuard;
use crate::{
    backend::{
        AwsMetadata, Backend, BackendError, Fetched, Listed, ValueShape, VersionState, Written,
    },
    reference::{BackendKind, SecretRef, Selector},
    secret::SecretValue,
};

/// `sm:`, in the registry.
pub(crate) const KIND: BackendKind = BackendKind::new(&TYPE);
static TYPE: Registered = Registered(&SmType);

/// Secrets Manager as a backend type. Its names and ARNs: `arn.rs`.
#[derive(Debug, PartialEq)]
pub(crate) struct SmType;

impl AwsService for SmType {
    const SERVICE: &'static str = "Secrets Manager";
    const RATE_LIMIT: u32 = crate::config::DEFAULT_SM_RATE_LIMIT;

    fn build(settings: AwsSettings, _context: &BuildContext) -> Arc<dyn Backend> {
        Arc::new(SecretsManager::new(settings))
    }
}

impl BackendType for SmType {
    fn prefix(&self) -> &'static str {
        "sm"
    }

    fn check_name(&self, name: &str) -> Result<(), &'static str> {
        arn::check_name(name)
    }

    fn accepts(&self, selector: &Selector) -> bool {
        matches!(selector, Selector::Version(_) | Selector::Stage(_))
    }

    fn selectors_help(&self) -> &'static str {
        "version=ID or stage=NAME"
    }

    /// For an ARN, the secret name inside it (without a full ARN's random `-XXXXXX` suffix); the
    /// core checks the name Secrets Manager reports as well, so a misread ARN cannot widen a grant.
    fn policy_name<'a>(&self, name: &'a str) -> &'a str {
        arn::policy_name(name)
    }

    fn reads_under_iam_role(&self) -> bool {
        true
    }

    fn same_secret(&self, event_name: &str, name: &str) -> bool {
        arn::may_be_same(event_name, name)
    }

    fn parse(&self, table: toml::Value) -> Result<Arc<dyn BackendSettings>, String> {
        registry::parse_table::<AwsConfig<SmType>>(table)
    }

    fn dev(&self, context: &DevContext<'_>) -> Dev {
        aws::dev(context, AwsConfig::<SmType>::dev)
    }
}

/// The stage Secrets Manager calls current.
pub(crate) const CURRENT_STAGE: &str = "AWSCURRENT";
/// The stage of a version being rotated in.
pub(crate) const PENDING_STAGE: &str = "AWSPENDING";
/// Secrets Manager's limit on ids per `BatchGetSecretValue` call.
const BATCH_MAX: usize = 20;
const SERVICE: &str = "Secrets Manager";

pub(crate) struct SecretsManager {
    settings: AwsSettings,
    client: OnceCell<Client>,
    guard: Arc<CallGuard>,
    // Spellings of a secret → its full ARN, learned from Secrets Manager's own answers: the name
    // a GetSecretValue by name resolved to, and the partial form of every full ARN seen. Only
    // answers teach it, so a bare name never maps to another account's secret. A NOT_FOUND for
    // an ARN unlearns every spelling of it: a secret deleted and created again under its name has
    // a new ARN, which the next read by name learns.
    aliases: RwLock<HashMap<String, String>>,
}

impl SecretsManager {
    pub(crate) fn new(settings: AwsSettings) -> Self {
        Self::with_guard(settings.clone(), settings.guard())
    }

    fn with_guard(settings: AwsSettings, guard: Arc<CallGuard>) -> Self {
        Self {
            guard,
            settings,
            client: OnceCell::new(),
            aliases: RwLock::new(HashMap::new()),
        }
    }

    /// Current and pending version ids, from DescribeSecret (no value is read).
    async fn version_state(&self, id: &str) -> Result<VersionState, BackendError> {
        let described = match self.describe(id).await {
            Ok(described) => described,
            Err(BackendError::NotFound(_)) => return Ok(VersionState::default()),
            Err(e) => return Err(e),
        };
        if described.deleted_date.is_some() {
            return Ok(VersionState::default());
        }
        let stages = described.version_ids_to_stages.unwrap_or_default();
        let with_stage = |stage: &str| {
            stages
                .iter()
                .find(|(_, s)| s.iter().any(|x| x == stage))
                .map(|(id, _)| id.clone())
        };
        let current = with_stage(CURRENT_STAGE);
        let pending = with_stage(PENDING_STAGE).filter(|p| Some(p) != current.as_ref());
        Ok(VersionState { current, pending })
    }

    async fn describe(
        &self,
        id: &str,
    ) -> Result<
        aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput,
        BackendError,
    > {
        let client = self.client().await;
        let what = format!("secret sm:{id}");
        self.guard
            .call(|| async {
                client
                    .describe_secret()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await
    }

    fn learn(&self, asked: &str, arn: Option<&str>) {
        let Some(arn) = arn else { return };
        let mut aliases = self.aliases.write().unwrap_or_else(|p| p.into_inner());
        if asked != arn {
            aliases.insert(asked.to_owned(), arn.to_owned());
        }
        if let Some(partial) = partial_arn(arn) {
            aliases.insert(partial.to_owned(), arn.to_owned());
        }
    }

    /// Forgets every spelling learned for `arn`, which Secrets Manager no longer knows.
    fn forget(&self, arn: &str) {
        let mut aliases = self.aliases.write().unwrap_or_else(|p| p.into_inner());
        let before = aliases.len();
        aliases.retain(|_, known| known != arn);
        if aliases.len() != before {
            tracing::debug!(
                forgotten = before - aliases.len(),
                "a secret's ARN is gone: its names will be looked up again"
            );
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async { Client::new(&self.settings.sdk_config().await) })
            .await
    }

    /// Current versions of up to `BATCH_MAX` secrets in one call.
    async fn batch_current(&self, references: &[SecretRef]) -> Vec<Result<Fetched, BackendError>> {
        let client = self.client().await;
        let ids: Vec<String> = references.iter().map(|r| r.name().to_owned()).collect();
        let output = self
            .guard
            .call(|| async {
                client
                    .batch_get_secret_value()
                    .set_secret_id_list(Some(ids.clone()))
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, "a batch of secrets", e))
            })
            .await;
        let output = match output {
            Ok(output) => output,
            Err(e) => return references.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut values = output.secret_values.unwrap_or_default();
        let errors = output.errors.unwrap_or_default();
        references
            .iter()
            .map(|reference| {
                let id = reference.name();
                if let Some(i) = values
                    .iter()
                    .position(|v| names_same_secret(id, v.name.as_deref(), v.arn.as_deref()))
                {
                    let v = values.swap_remove(i);
                    self.learn(id, v.arn.as_deref());
                    return fetched(
                        reference,
                        v.secret_string,
                        v.secret_binary,
                        v.version_id,
                        v.version_stages,
                        v.created_date.as_ref().and_then(system_time),
                        v.name,
                        v.arn,
                    );
                }
                let error = match errors.iter().find(|e| e.secret_id.as_deref() == Some(id)) {
                    Some(e) => super::aws::classify_code(
                        SERVICE,
                        &format!("secret {reference}"),
                        e.error_code.as_deref().unwrap_or("Unknown"),
                        e.message.as_deref().unwrap_or(""),
                    ),
                    None => BackendError::NotFound(format!("secret {reference} not found")),
                };
                if matches!(error, BackendError::NotFound(_)) {
                    self.forget(id);
                }
                Err(error)
            })
            .collect()
    }
}

#[async_trait]
impl Backend for SecretsManager {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn circuits(&self) -> Vec<(&'static str, crate::backend::guard::CircuitState)> {
        vec![(self.guard.service(), self.guard.circuit_state())]
    }

    fn under_role(&self, credentials: SharedCredentialsProvider) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(Self::with_guard(
            self.settings.under_role(credentials),
            Arc::clone(&self.guard),
        )))
    }

    fn cache_key(&self, reference: &SecretRef) -> Option<SecretRef> {
        let aliases = self.aliases.read().unwrap_or_else(|p| p.into_inner());
        aliases
            .get(reference.name())
            .map(|arn| reference.with_name(arn.clone()))
    }

    async fn fetch(&self, reference: &SecretRef) -> Result<Fetched, BackendError> {
        let client = self.client().await;
        let (version_id, stage) = match reference.selector() {
            Some(Selector::Version(v)) => (Some(v.clone()), None),
            Some(Selector::Stage(s)) => (None, Some(s.clone())),
            _ => (None, Some(CURRENT_STAGE.to_owned())),
        };
        let what = format!("secret {reference}");
        let output = self
            .guard
            .call(|| async {
                client
                    .get_secret_value()
                    .secret_id(reference.name())
                    .set_version_id(version_id.clone())
                    .set_version_stage(stage.clone())
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await
            .inspect_err(|e| {
                if matches!(e, BackendError::NotFound(_)) {
                    self.forget(reference.name());
                }
            })?;
        self.learn(reference.name(), output.arn.as_deref());
        fetched(
            reference,
            output.secret_string,
            output.secret_binary,
            output.version_id,
            output.version_stages,
            output.created_date.as_ref().and_then(system_time),
            output.name,
            output.arn,
        )
    }

    async fn fetch_many(&self, references: &[SecretRef]) -> Vec<Result<Fetched, BackendError>> {
        // BatchGetSecretValue serves current versions only: selected versions go one by one.
        let (current, selected): (Vec<usize>, Vec<usize>) =
            (0..references.len()).partition(|i| references[*i].selector().is_none());
        let current_refs: Vec<SecretRef> = current.iter().map(|i| references[*i].clone()).collect();
        let batches = futures::future::join_all(
            current_refs
                .chunks(BATCH_MAX)
                .map(|c| self.batch_current(c)),
        );
        let singles =
            futures::future::join_all(selected.iter().map(|i| self.fetch(&references[*i])));
        let (batches, singles) = futures::join!(batches, singles);
        let mut results: Vec<Option<Result<Fetched, BackendError>>> =
            (0..references.len()).map(|_| None).collect();
        for (i, r) in current.into_iter().zip(batches.into_iter().flatten()) {
            results[i] = Some(r);
        }
        for (i, r) in selected.into_iter().zip(singles) {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(BackendError::Internal("missing batch result".into())))
            })
            .collect()
    }

    async fn versions(&self, reference: &SecretRef) -> Result<VersionState, BackendError> {
        self.version_state(reference.name()).await
    }

    fn has_pending_versions(&self) -> bool {
        true
    }

    async fn start_managed_rotation(&self, name: &str) -> Result<bool, BackendError> {
        let described = self.describe(name).await?;
        if described.rotation_enabled != Some(true) || described.rotation_lambda_arn.is_none() {
            return Ok(false);
        }
        let client = self.client().await;
        let what = format!("secret sm:{name}");
        self.guard
            .call_write(|| async {
                client
                    .rotate_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await?;
        Ok(true)
    }

    /// Stages the value as AWSPENDING, then moves AWSCURRENT to it (Secrets Manager moves
    /// AWSPREVIOUS to the old version), then clears AWSPENDING: the same stage dance as a rotation
    /// Lambda, so tools watching stages see a rotation.
    async fn rotate(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        let client = self.client().await;
        let what = format!("secret sm:{name}");
        let old = self.version_state(name).await?;
        let Some(old_current) = old.current else {
            return Err(BackendError::NotFound(format!(
                "secret sm:{name} not found"
            )));
        };
        let text = std::str::from_utf8(value.expose()).ok();
        let staged = self
            .guard
            .call_write(|| async {
                let request = client
                    .put_secret_value()
                    .secret_id(name)
                    .version_stages(PENDING_STAGE);
                let request = match text {
                    Some(t) => request.secret_string(t),
                    None => request.secret_binary(Blob::new(value.expose().to_vec())),
                };
                request
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await?;
        let new_version = staged.version_id.ok_or_else(|| {
            BackendError::Internal(format!("{SERVICE} returned no version id for {what}"))
        })?;
        self.guard
            .call_write(|| async {
                client
                    .update_secret_version_stage()
                    .secret_id(name)
                    .version_stage(CURRENT_STAGE)
                    .move_to_version_id(&new_version)
                    .remove_from_version_id(&old_current)
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await?;
        self.guard
            .call_write(|| async {
                client
                    .update_secret_version_stage()
                    .secret_id(name)
                    .version_stage(PENDING_STAGE)
                    .remove_from_version_id(&new_version)
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await?;
        Ok(Written {
            version_id: new_version,
            created_at: Some(SystemTime::now()),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let client = self.client().await;
        let filter = match prefix {
            "" => None,
            _ => Some(vec![Filter::builder()
                .key(FilterNameStringType::Name)
                .values(prefix)
                .build()]),
        };
        let what = format!("secrets under {prefix}");
        list_pages(|token| {
            let request = client
                .list_secrets()
                .max_results(100)
                .set_next_token(token)
                .set_filters(filter.clone());
            let what = &what;
            async move {
                let page = self
                    .guard
                    .call(|| async {
                        request
                            .clone()
                            .send()
                            .await
                            .map_err(|e| classify(SERVICE, what, e))
                    })
                    .await?;
                let entries = page
                    .secret_list
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|entry| {
                        // The service's name filter ignores case; prefixes here do not.
                        let name = entry.name.filter(|n| n.starts_with(prefix))?;
                        let version_id = entry
                            .secret_versions_to_stages
                            .unwrap_or_default()
                            .into_iter()
                            .find(|(_, stages)| stages.iter().any(|s| s == CURRENT_STAGE))
                            .map(|(id, _)| id)
                            .unwrap_or_default();
                        Some(Listed {
                            name,
                            version_id,
                            updated_at: entry.last_changed_date.as_ref().and_then(system_time),
                        })
                    })
                    .collect();
                Ok((entries, page.next_token.filter(|t| !t.is_empty())))
            }
        })
        .await
    }

    async fn put(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        let client = self.client().await;
        let what = format!("secret sm:{name}");
        // Text goes in SecretString (what most tools read); anything else in SecretBinary.
        let text = std::str::from_utf8(value.expose()).ok();
        let binary = || Blob::new(value.expose().to_vec());
        let put = self
            .guard
            .call_write(|| async {
                let request = client.put_secret_value().secret_id(name);
                let request = match text {
                    Some(t) => request.secret_string(t),
                    None => request.secret_binary(binary()),
                };
                request
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await;
        let version_id = match put {
            Ok(output) => output.version_id,
            Err(BackendError::NotFound(_)) => {
                let created = self
                    .guard
                    .call_write(|| async {
                        let request = client
                            .create_secret()
                            .name(name)
                            .set_kms_key_id(self.settings.kms_key_id.clone());
                        let request = match text {
                            Some(t) => request.secret_string(t),
                            None => request.secret_binary(binary()),
                        };
                        request
                            .send()
                            .await
                            .map_err(|e| classify(SERVICE, &what, e))
                    })
                    .await?;
                created.version_id
            }
            Err(e) => return Err(e),
        };
        Ok(Written {
            version_id: version_id.unwrap_or_default(),
            created_at: Some(SystemTime::now()),
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn fetched(
    reference: &SecretRef,
    secret_string: Option<String>,
    secret_binary: Option<Blob>,
    version_id: Option<String>,
    stages: Option<Vec<String>>,
    created_at: Option<SystemTime>,
    name: Option<String>,
    arn: Option<String>,
) -> Result<Fetched, BackendError> {
    let (value, shape) = match (secret_string, secret_binary) {
        // Move the bytes into the zeroizing type without another copy.
        (Some(text), _) => (
            SecretValue::new(text.into_bytes()),
            ValueShape::SecretString,
        ),
        (None, Some(blob)) => (
            SecretValue::new(blob.into_inner()),
            ValueShape::SecretBinary,
        ),
        (None, None) => {
            return Err(BackendError::NotFound(format!(
                "secret {reference} has no value in that version"
            )))
        }
    };
    let aws = Box::new(AwsMetadata {
        arn: arn.clone().unwrap_or_default(),
        name: name.clone().unwrap_or_else(|| reference.name().to_owned()),
        shape,
    });
    Ok(Fetched {
        value,
        version_id: version_id.unwrap_or_default(),
        stages: stages.unwrap_or_default(),
        created_at,
        canonical_name: name.filter(|n| n != reference.name()),
        alias: arn.filter(|a| a != reference.name()),
        aws: Some(aws),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_arn_no_longer_keys_its_names() {
        let sm = SecretsManager::new(AwsSettings::new(
            SERVICE,
            &crate::config::AwsBackendConfig::default(),
            1,
        ));
        let old = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";
        let other = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-ZyXwVu";
        sm.learn("prod/db", Some(old));
        sm.learn("prod/api", Some(other));
        let by_name = SecretRef::parse("sm:prod/db").unwrap();
        assert_eq!(sm.cache_key(&by_name).unwrap().name(), old);
        sm.forget(old);
        assert!(sm.cache_key(&by_name).is_none(), "looked up by name again");
        assert!(sm
            .cache_key(&SecretRef::parse(&format!("sm:{}", &old[..old.len() - 7])).unwrap())
            .is_none());
        assert!(sm
            .cache_key(&SecretRef::parse("sm:prod/api").unwrap())
            .is_some());
        // The recreated secret's ARN is learned from the next answer by name.
        let new = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-QwErTy";
        sm.learn("prod/db", Some(new));
        assert_eq!(sm.cache_key(&by_name).unwrap().name(), new);
    }
}
