//! AWS Systems Manager Parameter Store (`ssm:` references).
//!
//! `String`, `StringList` and `SecureString` parameters, always read `WithDecryption`. Selectors
//! become Parameter Store's own: `?version=3` → `name:3`, `?label=live` → `name:live`. Batches go
//! out as `GetParameters` calls of at most 10 names; listings use `DescribeParameters` (metadata
//! only, never values); writes are `PutParameter` with `Overwrite` as a `SecureString`.

use std::{sync::Arc, time::SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ssm::{
    types::{Parameter, ParameterStringFilter, ParameterType},
    Client,
};
use tokio::sync::OnceCell;

use super::{
    aws::{self, classify, list_pages, system_time, AwsConfig, AwsService, AwsSettings},
    registry::{
        self, is_positive_integer, BackendSettings, BackendType, BuildContext, Dev, DevContext,
        Registered,
    },
};
use crate::backend::guard::CallGuard;
use crate::{
    backend::{
        AwsMetadata, Backend, BackendError, Fetched, Listed, ValueShape, VersionState, Written,
    },
    reference::{BackendKind, SecretRef, Selector},
    secret::SecretValue,
};

/// `ssm:`, in the registry.
pub(crate) const KIND: BackendKind = BackendKind::new(&TYPE);
static TYPE: Registered = Registered(&SsmType);

/// Parameter Store as a backend type.
#[derive(Debug, PartialEq)]
pub(crate) struct SsmType;

impl AwsService for SsmType {
    const SERVICE: &'static str = "Parameter Store";
    const RATE_LIMIT: u32 = crate::config::DEFAULT_SSM_RATE_LIMIT;

    fn build(settings: AwsSettings, _context: &BuildContext) -> Arc<dyn Backend> {
        Arc::new(ParameterStore::new(settings))
    }
}

impl BackendType for SsmType {
    fn prefix(&self) -> &'static str {
        "ssm"
    }

    fn check_name(&self, name: &str) -> Result<(), &'static str> {
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        {
            return Err("may only use letters, digits, '-', '_', '.' and '/'");
        }
        if name.contains('/') && !name.starts_with('/') {
            return Err("is hierarchical, so it must start with '/'");
        }
        if name.contains("//") || (name.len() > 1 && name.ends_with('/')) {
            return Err("has an empty path segment");
        }
        Ok(())
    }

    fn accepts(&self, selector: &Selector) -> bool {
        match selector {
            Selector::Version(v) => is_positive_integer(v),
            Selector::Label(_) => true,
            Selector::Stage(_) => false,
        }
    }

    fn selectors_help(&self) -> &'static str {
        "version=N or label=NAME"
    }

    fn reads_under_iam_role(&self) -> bool {
        true
    }

    // Events name hierarchical parameters with or without their leading '/'.
    fn same_secret(&self, event_name: &str, name: &str) -> bool {
        event_name.trim_start_matches('/') == name.trim_start_matches('/')
    }

    fn parse(&self, table: toml::Value) -> Result<Arc<dyn BackendSettings>, String> {
        registry::parse_table::<AwsConfig<SsmType>>(table)
    }

    fn dev(&self, context: &DevContext<'_>) -> Dev {
        aws::dev(context, AwsConfig::<SsmType>::dev)
    }
}

/// Parameter Store's own limit on names per `GetParameters` call.
const GET_PARAMETERS_MAX: usize = 10;
const SERVICE: &str = "Parameter Store";

pub(crate) struct ParameterStore {
    settings: AwsSettings,
    client: OnceCell<Client>,
    guard: Arc<CallGuard>,
}

impl ParameterStore {
    pub(crate) fn new(settings: AwsSettings) -> Self {
        Self {
            guard: settings.guard(),
            settings,
            client: OnceCell::new(),
        }
    }

    fn with_guard(settings: AwsSettings, guard: Arc<CallGuard>) -> Self {
        Self {
            guard,
            settings,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async { Client::new(&self.settings.sdk_config().await) })
            .await
    }

    async fn get_parameters(&self, references: &[SecretRef]) -> Vec<Result<Fetched, BackendError>> {
        let client = self.client().await;
        let names: Vec<String> = references.iter().map(parameter_name).collect();
        let output = self
            .guard
            .call(|| async {
                client
                    .get_parameters()
                    .set_names(Some(names.clone()))
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, "a batch of parameters", e))
            })
            .await;
        let mut parameters = match output {
            Ok(output) => output.parameters.unwrap_or_default(),
            // One failed call fails each of its items the same way.
            Err(e) => return references.iter().map(|_| Err(e.clone())).collect(),
        };
        references
            .iter()
            .zip(&names)
            .map(|(reference, asked)| {
                // The answer names the parameter, and its selector when one was asked.
                let position = parameters.iter().position(|p| {
                    let selector = p.selector.as_deref().unwrap_or("");
                    format!("{}{selector}", p.name.as_deref().unwrap_or("")) == *asked
                        || (reference.selector().is_none()
                            && p.name.as_deref() == Some(reference.name()))
                });
                match position {
                    Some(i) => fetched(reference, parameters.swap_remove(i)),
                    None => Err(BackendError::NotFound(format!(
                        "parameter {reference} not found"
                    ))),
                }
            })
            .collect()
    }
}

#[async_trait]
impl Backend for ParameterStore {
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

    async fn fetch(&self, reference: &SecretRef) -> Result<Fetched, BackendError> {
        let client = self.client().await;
        let name = parameter_name(reference);
        let what = format!("parameter {reference}");
        let output = self
            .guard
            .call(|| async {
                client
                    .get_parameter()
                    .name(&name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await?;
        let parameter = output.parameter.ok_or_else(|| {
            BackendError::Internal(format!("{SERVICE} returned no parameter for {reference}"))
        })?;
        fetched(reference, parameter)
    }

    async fn fetch_many(&self, references: &[SecretRef]) -> Vec<Result<Fetched, BackendError>> {
        let chunks = references
            .chunks(GET_PARAMETERS_MAX)
            .map(|chunk| self.get_parameters(chunk));
        futures::future::join_all(chunks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn versions(&self, reference: &SecretRef) -> Result<VersionState, BackendError> {
        let client = self.client().await;
        let filter = ParameterStringFilter::builder()
            .key("Name")
            .option("Equals")
            .values(reference.name())
            .build()
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        let what = format!("parameter {reference}");
        let page = self
            .guard
            .call(|| async {
                client
                    .describe_parameters()
                    .parameter_filters(filter.clone())
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await?;
        let current = page
            .parameters
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.name.as_deref() == Some(reference.name()))
            .map(|p| p.version.to_string());
        Ok(VersionState {
            current,
            pending: None,
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let client = self.client().await;
        let filter = match prefix {
            "" => None,
            _ => Some(vec![ParameterStringFilter::builder()
                .key("Name")
                .option("BeginsWith")
                .values(prefix)
                .build()
                .map_err(|e| BackendError::Internal(e.to_string()))?]),
        };
        let what = format!("parameters under {prefix}");
        list_pages(|token| {
            let request = client
                .describe_parameters()
                .max_results(50)
                .set_next_token(token)
                .set_parameter_filters(filter.clone());
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
                    .parameters
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| {
                        let name = p.name.filter(|n| n.starts_with(prefix))?;
                        Some(Listed {
                            name,
                            version_id: p.version.to_string(),
                            updated_at: p.last_modified_date.as_ref().and_then(system_time),
                        })
                    })
                    .collect();
                Ok((entries, page.next_token.filter(|t| !t.is_empty())))
            }
        })
        .await
    }

    async fn put(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        let text = std::str::from_utf8(value.expose()).map_err(|_| {
            BackendError::InvalidArgument(
                "Parameter Store values are text: this value is not UTF-8".into(),
            )
        })?;
        let client = self.client().await;
        let what = format!("parameter ssm:{name}");
        let output = self
            .guard
            .call_write(|| async {
                client
                    .put_parameter()
                    .name(name)
                    .value(text)
                    .r#type(ParameterType::SecureString)
                    .set_key_id(self.settings.kms_key_id.clone())
                    .overwrite(true)
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &what, e))
            })
            .await?;
        Ok(Written {
            version_id: output.version.to_string(),
            created_at: Some(SystemTime::now()),
        })
    }
}

/// The name as Parameter Store takes it: `name`, `name:VERSION` or `name:LABEL`.
fn parameter_name(reference: &SecretRef) -> String {
    match reference.selector() {
        Some(Selector::Version(v) | Selector::Label(v)) => format!("{}:{v}", reference.name()),
        _ => reference.name().to_owned(),
    }
}

fn fetched(reference: &SecretRef, mut parameter: Parameter) -> Result<Fetched, BackendError> {
    // Move the text into the zeroizing type without another copy.
    let value = parameter.value.take().ok_or_else(|| {
        BackendError::Internal(format!("{SERVICE} returned no value for {reference}"))
    })?;
    let stages = match reference.selector() {
        Some(Selector::Label(label)) => vec![label.clone()],
        _ => Vec::new(),
    };
    let aws = Box::new(AwsMetadata {
        arn: parameter.arn.take().unwrap_or_default(),
        name: parameter
            .name
            .take()
            .unwrap_or_else(|| reference.name().to_owned()),
        shape: ValueShape::Parameter {
            kind: parameter
                .r#type
                .as_ref()
                .map_or("String", |t| t.as_str())
                .to_owned(),
            data_type: parameter.data_type.take().unwrap_or_else(|| "text".into()),
        },
    });
    Ok(Fetched {
        value: SecretValue::new(value.into_bytes()),
        version_id: parameter.version.to_string(),
        stages,
        created_at: parameter.last_modified_date.as_ref().and_then(system_time),
        canonical_name: None,
        alias: None,
        aws: Some(aws),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ssm_names_and_selectors_say_what_is_wrong() {
        crate::backend::registry::assert_rejected(&[
            ("ssm:prod/db", "must start with '/'"),
            ("ssm:/prod/db?stage=x", "does not apply"),
        ]);
    }
}
