//! The article's own store: KMS-encrypted objects in S3 (`s3:BUCKET/KEY` references).
//!
//! Two object formats are read, told apart by their first bytes:
//!
//! * **Envelope** (what psst writes): AES-256-GCM under a fresh 256-bit data key per version,
//!   from KMS `GenerateDataKey`; only the KMS-wrapped data key is stored. The KMS encryption
//!   context `{"psst:bucket": BUCKET, "psst:key": KEY}` binds the data key to the object's
//!   place, and the same place is the cipher's associated data, so an object copied to another
//!   key or bucket does not decrypt. Layout:
//!
//!   ```text
//!   "PSS3" | format (1 byte, 1) | wrapped key length (u16 BE) | wrapped data key
//!          | nonce (12 bytes) | ciphertext + GCM tag
//!   ```
//!
//! * **KMS** (the article's script): the object is the raw `CiphertextBlob` of `aws kms encrypt`,
//!   base64-decoded and put with `aws s3api put-object`; it is read with KMS `Decrypt`. KMS
//!   ciphertext never starts with "PSS3" (AWS blobs start with a version byte; the letters are
//!   not a key id either), so the formats cannot be confused.
//!
//! S3 object versions are secret versions: `?version=ID` reads one, the version id is what
//! watchers compare (the ETag in a bucket without versioning). Plaintext data keys live in
//! zeroizing buffers for the length of one call and are never cached.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Key, Nonce,
};
use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_kms::types::DataKeySpec;
use aws_smithy_types::Blob;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use super::{
    aws::{self, classify, list_pages, system_time, AwsConfig, AwsService, AwsSettings},
    registry::{self, BackendSettings, BackendType, BuildContext, Dev, DevContext, Registered},
};
use crate::backend::guard::CallGuard;
use crate::config::AwsBackendConfig;
use crate::{
    backend::{Backend, BackendError, Fetched, Listed, VersionState, Written},
    reference::{BackendKind, SecretRef, Selector},
    secret::SecretValue,
};

/// `s3:`, in the registry.
pub(crate) const KIND: BackendKind = BackendKind::new(&TYPE);
static TYPE: Registered = Registered(&S3Type);

/// KMS-encrypted objects in S3 (the article's own store) as a backend type; `kms_key_id` is the
/// key writes encrypt under.
#[derive(Debug, PartialEq)]
pub(crate) struct S3Type;

impl AwsService for S3Type {
    const SERVICE: &'static str = "S3";
    const RATE_LIMIT: u32 = crate::config::DEFAULT_S3_RATE_LIMIT;

    fn build(settings: AwsSettings, context: &BuildContext) -> Arc<dyn Backend> {
        Arc::new(S3Store::new(settings, context.max_value_bytes))
    }
}

impl BackendType for S3Type {
    fn prefix(&self) -> &'static str {
        "s3"
    }

    fn check_name(&self, name: &str) -> Result<(), &'static str> {
        let Some((bucket, key)) = name.split_once('/') else {
            return Err("must be BUCKET/KEY");
        };
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'));
        if !bucket_ok {
            return Err("has an invalid bucket name (3-63 lowercase letters, digits, '-', '.')");
        }
        if key.is_empty() {
            return Err("has an empty object key");
        }
        Ok(())
    }

    fn accepts(&self, selector: &Selector) -> bool {
        matches!(selector, Selector::Version(_))
    }

    fn selectors_help(&self) -> &'static str {
        "version=ID"
    }

    fn reads_under_iam_role(&self) -> bool {
        true
    }

    fn parse(&self, table: toml::Value) -> Result<Arc<dyn BackendSettings>, String> {
        registry::parse_table::<AwsConfig<S3Type>>(table)
    }

    // Writes to s3: need a key: PSST_S3_KMS_KEY_ID names it in dev mode.
    fn dev(&self, context: &DevContext<'_>) -> Dev {
        aws::dev(context, |keys| {
            AwsConfig::<S3Type>::dev(AwsBackendConfig {
                kms_key_id: context.var(&["PSST_S3_KMS_KEY_ID"]),
                ..keys
            })
        })
    }
}

const MAGIC: &[u8; 4] = b"PSS3";
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
/// The encryption context keys that bind a data key to its object.
pub(crate) const CONTEXT_BUCKET: &str = "psst:bucket";
pub(crate) const CONTEXT_KEY: &str = "psst:key";
/// What an envelope adds to a value, at most: header, a KMS-wrapped key, nonce and tag.
const ENVELOPE_OVERHEAD: usize = 4 + 1 + 2 + 1024 + NONCE_LEN + 16;

/// How an object's bytes are to be read.
#[derive(Debug, PartialEq, Eq)]
enum Format<'a> {
    Envelope {
        /// Everything before the nonce: authenticated with the value.
        header: &'a [u8],
        wrapped_key: &'a [u8],
        nonce: &'a [u8],
        sealed: &'a [u8],
    },
    Kms(&'a [u8]),
}

fn parse(object: &[u8]) -> Result<Format<'_>, String> {
    if !object.starts_with(MAGIC) {
        return Ok(Format::Kms(object));
    }
    let rest = &object[MAGIC.len()..];
    let (&format, rest) = rest.split_first().ok_or("it ends after its header")?;
    if format != FORMAT_V1 {
        return Err(format!("unknown psst envelope format {format}"));
    }
    if rest.len() < 2 {
        return Err("it ends after its header".into());
    }
    let key_len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let rest = &rest[2..];
    if key_len == 0 || rest.len() < key_len + NONCE_LEN + 16 {
        return Err("it is shorter than its header says".into());
    }
    let header_len = MAGIC.len() + 1 + 2 + key_len;
    Ok(Format::Envelope {
        header: &object[..header_len],
        wrapped_key: &rest[..key_len],
        nonce: &rest[key_len..key_len + NONCE_LEN],
        sealed: &rest[key_len + NONCE_LEN..],
    })
}

/// The associated data of an envelope: its header and the object's place.
fn aad(header: &[u8], bucket: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + bucket.len() + key.len() + 1);
    aad.extend_from_slice(header);
    aad.extend_from_slice(bucket.as_bytes());
    aad.push(b'/');
    aad.extend_from_slice(key.as_bytes());
    aad
}

fn context(bucket: &str, key: &str) -> HashMap<String, String> {
    HashMap::from([
        (CONTEXT_BUCKET.to_owned(), bucket.to_owned()),
        (CONTEXT_KEY.to_owned(), key.to_owned()),
    ])
}

/// Splits `BUCKET/KEY` (the reference parser has checked both parts).
fn split(name: &str) -> Result<(&str, &str), BackendError> {
    name.split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| BackendError::InvalidArgument(format!("s3:{name} is not s3:BUCKET/KEY")))
}

/// An object's version id, or its ETag where the bucket keeps no versions.
fn version_of(version_id: Option<&str>, etag: Option<&str>) -> String {
    match version_id {
        Some(v) if !v.is_empty() && v != "null" => v.to_owned(),
        _ => etag.unwrap_or_default().trim_matches('"').to_owned(),
    }
}

struct Clients {
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
}

pub(crate) struct S3Store {
    settings: AwsSettings,
    clients: OnceCell<Clients>,
    s3_guard: Arc<CallGuard>,
    kms_guard: Arc<CallGuard>,
    max_object_bytes: usize,
}

impl S3Store {
    /// `max_value_bytes` bounds what is read: an object larger than a value can be plus the
    /// envelope is refused before its body is read.
    pub(crate) fn new(settings: AwsSettings, max_value_bytes: usize) -> Self {
        let kms_settings = AwsSettings {
            service: "KMS",
            ..settings.clone()
        };
        Self {
            s3_guard: settings.guard(),
            kms_guard: kms_settings.guard(),
            settings,
            clients: OnceCell::new(),
            max_object_bytes: max_value_bytes + ENVELOPE_OVERHEAD,
        }
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| async {
                let sdk = self.settings.sdk_config().await;
                // An endpoint override (an emulator, a VPC endpoint) is addressed by path: its
                // host name cannot take the bucket as a subdomain.
                let s3 = aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(sdk.endpoint_url().is_some())
                    .build();
                Clients {
                    s3: aws_sdk_s3::Client::from_conf(s3),
                    kms: aws_sdk_kms::Client::new(&sdk),
                }
            })
            .await
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        what: &str,
    ) -> Result<(bytes::Bytes, String, Option<SystemTime>), BackendError> {
        let clients = self.clients().await;
        let output = self
            .s3_guard
            .call(|| async {
                clients
                    .s3
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .set_version_id(version.map(str::to_owned))
                    .send()
                    .await
                    .map_err(|e| classify("S3", what, e))
            })
            .await?;
        let too_large = |length: usize| {
            BackendError::InvalidArgument(format!(
                "{what} is {length} bytes, more than a secret may be here ({} bytes)",
                self.max_object_bytes
            ))
        };
        // Refused before the body is read when S3 says how long it is, and after in any case.
        let length = output.content_length.unwrap_or(0).max(0) as usize;
        if length > self.max_object_bytes {
            return Err(too_large(length));
        }
        let version_id = version_of(output.version_id.as_deref(), output.e_tag.as_deref());
        let modified = output.last_modified.as_ref().and_then(system_time);
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| BackendError::Unavailable(format!("reading {what} from S3: {e}")))?
            .into_bytes();
        if body.len() > self.max_object_bytes {
            return Err(too_large(body.len()));
        }
        Ok((body, version_id, modified))
    }

    /// KMS Decrypt; an encryption context only for envelopes (the article's objects have none).
    async fn decrypt(
        &self,
        ciphertext: &[u8],
        context: Option<HashMap<String, String>>,
        what: &str,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let clients = self.clients().await;
        let output = self
            .kms_guard
            .call(|| async {
                clients
                    .kms
                    .decrypt()
                    .ciphertext_blob(Blob::new(ciphertext))
                    .set_encryption_context(context.clone())
                    .send()
                    .await
                    .map_err(|e| classify("KMS", what, e))
            })
            .await
            .map_err(|e| match e {
                BackendError::Corrupt(_) => BackendError::Corrupt(format!(
                    "{what} does not decrypt: KMS rejects its ciphertext for this place (tampered, \
                     or copied here from another object)"
                )),
                other => other,
            })?;
        let plaintext = output.plaintext.ok_or_else(|| {
            BackendError::Internal(format!("KMS returned no plaintext for {what}"))
        })?;
        Ok(Zeroizing::new(plaintext.into_inner()))
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        object: &[u8],
    ) -> Result<SecretValue, BackendError> {
        let what = format!("s3:{bucket}/{key}");
        let corrupt = |why: &str| BackendError::Corrupt(format!("{what} cannot be read: {why}"));
        match parse(object).map_err(|why| corrupt(&why))? {
            Format::Kms(ciphertext) => {
                if ciphertext.is_empty() {
                    return Err(corrupt("the object is empty"));
                }
                let mut plaintext = self.decrypt(ciphertext, None, &what).await?;
                Ok(SecretValue::new(std::mem::take(&mut *plaintext)))
            }
            Format::Envelope {
                header,
                wrapped_key,
                nonce,
                sealed,
            } => {
                let data_key = self
                    .decrypt(wrapped_key, Some(context(bucket, key)), &what)
                    .await?;
                if data_key.len() != KEY_LEN {
                    return Err(corrupt("its data key is not an AES-256 key"));
                }
                let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key));
                let value = cipher
                    .decrypt(
                        Nonce::from_slice(nonce),
                        Payload {
                            msg: sealed,
                            aad: &aad(header, bucket, key),
                        },
                    )
                    .map_err(|_| {
                        corrupt("the value does not authenticate (tampered, or copied from another object)")
                    })?;
                Ok(SecretValue::new(value))
            }
        }
    }

    /// Seals `value` for `bucket/key` under a fresh data key.
    async fn seal(
        &self,
        bucket: &str,
        key: &str,
        value: &SecretValue,
    ) -> Result<Vec<u8>, BackendError> {
        let what = format!("s3:{bucket}/{key}");
        let key_id = self.settings.kms_key_id.as_deref().ok_or_else(|| {
            BackendError::AgentDenied(
                "the s3 backend has no kms_key_id: writes need a KMS key to encrypt under (set \
                 kms_key_id in its [[backend]])"
                    .into(),
            )
        })?;
        let clients = self.clients().await;
        let output = self
            .kms_guard
            .call(|| async {
                clients
                    .kms
                    .generate_data_key()
                    .key_id(key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .set_encryption_context(Some(context(bucket, key)))
                    .send()
                    .await
                    .map_err(|e| classify("KMS", &what, e))
            })
            .await?;
        let data_key = Zeroizing::new(
            output
                .plaintext
                .ok_or_else(|| BackendError::Internal("KMS returned no data key".into()))?
                .into_inner(),
        );
        let wrapped = output
            .ciphertext_blob
            .ok_or_else(|| BackendError::Internal("KMS returned no wrapped data key".into()))?
            .into_inner();
        if data_key.len() != KEY_LEN || wrapped.is_empty() || wrapped.len() > 1024 {
            return Err(BackendError::Internal(
                "KMS returned a data key of an unexpected size".into(),
            ));
        }
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| BackendError::Internal(format!("os rng: {e}")))?;
        let mut out = Vec::with_capacity(ENVELOPE_OVERHEAD + value.len());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_V1);
        out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
        out.extend_from_slice(&wrapped);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key));
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.expose(),
                    aad: &aad(&out, bucket, key),
                },
            )
            .map_err(|_| BackendError::Internal("sealing the value failed".into()))?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

#[async_trait]
impl Backend for S3Store {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn circuits(&self) -> Vec<(&'static str, crate::backend::guard::CircuitState)> {
        vec![
            (self.s3_guard.service(), self.s3_guard.circuit_state()),
            (self.kms_guard.service(), self.kms_guard.circuit_state()),
        ]
    }

    fn under_role(&self, credentials: SharedCredentialsProvider) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(Self {
            settings: self.settings.under_role(credentials),
            clients: OnceCell::new(),
            s3_guard: Arc::clone(&self.s3_guard),
            kms_guard: Arc::clone(&self.kms_guard),
            max_object_bytes: self.max_object_bytes,
        }))
    }

    async fn fetch(&self, reference: &SecretRef) -> Result<Fetched, BackendError> {
        let (bucket, key) = split(reference.name())?;
        let version = match reference.selector() {
            None => None,
            Some(Selector::Version(v)) => Some(v.as_str()),
            Some(other) => {
                return Err(BackendError::InvalidArgument(format!(
                    "s3: references select versions only (?version=ID), not {other:?}"
                )))
            }
        };
        let what = format!("s3:{}", reference.name());
        let (object, version_id, created_at) = self.get_object(bucket, key, version, &what).await?;
        let value = self.open(bucket, key, &object).await?;
        Ok(Fetched {
            value,
            version_id,
            stages: Vec::new(),
            created_at,
            canonical_name: None,
            alias: None,
            aws: None,
        })
    }

    async fn versions(&self, reference: &SecretRef) -> Result<VersionState, BackendError> {
        let (bucket, key) = split(reference.name())?;
        let clients = self.clients().await;
        let what = format!("s3:{}", reference.name());
        let head = self
            .s3_guard
            .call(|| async {
                clients
                    .s3
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| classify("S3", &what, e))
            })
            .await;
        match head {
            Ok(head) => Ok(VersionState {
                current: Some(version_of(
                    head.version_id.as_deref(),
                    head.e_tag.as_deref(),
                )),
                pending: None,
            }),
            Err(BackendError::NotFound(_)) => Ok(VersionState::default()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let Some((bucket, key_prefix)) = prefix.split_once('/').filter(|(b, _)| !b.is_empty())
        else {
            return Err(BackendError::InvalidArgument(format!(
                "s3: listings name a bucket: s3:BUCKET/[PREFIX], got s3:{prefix}"
            )));
        };
        let clients = self.clients().await;
        let what = format!("objects under s3:{prefix}");
        // A page is continued from a key marker and, within that key, a version marker.
        list_pages(|markers: Option<(String, Option<String>)>| {
            let (key_marker, version_marker) = markers.unzip();
            let request = clients
                .s3
                .list_object_versions()
                .bucket(bucket)
                .prefix(key_prefix)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker.flatten());
            let what = &what;
            async move {
                let page = self
                    .s3_guard
                    .call(|| async {
                        request
                            .clone()
                            .send()
                            .await
                            .map_err(|e| classify("S3", what, e))
                    })
                    .await?;
                // The latest version of each key; a key whose latest is a delete marker is gone,
                // and a key ending in '/' is a "folder" placeholder.
                let entries = page
                    .versions
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|v| {
                        let key = v
                            .key
                            .filter(|k| v.is_latest == Some(true) && !k.ends_with('/'))?;
                        Some(Listed {
                            name: format!("{bucket}/{key}"),
                            version_id: version_of(v.version_id.as_deref(), v.e_tag.as_deref()),
                            updated_at: v.last_modified.as_ref().and_then(system_time),
                        })
                    })
                    .collect();
                let next = match (page.is_truncated, page.next_key_marker) {
                    (Some(true), Some(key)) => Some((key, page.next_version_id_marker)),
                    _ => None,
                };
                Ok((entries, next))
            }
        })
        .await
    }

    async fn put(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        let (bucket, key) = split(name)?;
        let object = self.seal(bucket, key, &value).await?;
        let clients = self.clients().await;
        let what = format!("s3:{name}");
        let output = self
            .s3_guard
            .call_write(|| async {
                clients
                    .s3
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_type("application/octet-stream")
                    .body(aws_sdk_s3::primitives::ByteStream::from(object.clone()))
                    .send()
                    .await
                    .map_err(|e| classify("S3", &what, e))
            })
            .await?;
        Ok(Written {
            version_id: version_of(output.version_id.as_deref(), output.e_tag.as_deref()),
            created_at: Some(SystemTime::now()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_names_and_selectors_say_what_is_wrong() {
        crate::backend::registry::assert_rejected(&[
            ("s3:bucket", "BUCKET/KEY"),
            ("s3:Bucket/key", "invalid bucket"),
            ("s3:bucket/", "empty object key"),
        ]);
    }

    fn envelope(wrapped: &[u8], sealed: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(FORMAT_V1);
        out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
        out.extend_from_slice(wrapped);
        out.extend_from_slice(&[7u8; NONCE_LEN]);
        out.extend_from_slice(sealed);
        out
    }

    #[test]
    fn tells_envelopes_from_kms_ciphertext() {
        let object = envelope(b"wrapped-key", &[9u8; 20]);
        match parse(&object).unwrap() {
            Format::Envelope {
                header,
                wrapped_key,
                nonce,
                sealed,
            } => {
                assert_eq!(header.len(), 4 + 1 + 2 + 11);
                assert_eq!(wrapped_key, b"wrapped-key");
                assert_eq!(nonce, &[7u8; NONCE_LEN]);
                assert_eq!(sealed, &[9u8; 20]);
            }
            other => panic!("{other:?}"),
        }
        // AWS KMS blobs start with a version byte; moto's with a key id.
        for blob in [&[1u8, 2, 2, 0, 120][..], b"8c7f0a2e-...."] {
            assert_eq!(parse(blob).unwrap(), Format::Kms(blob));
        }
    }

    #[test]
    fn refuses_broken_envelopes() {
        let mut short = envelope(b"wrapped-key", &[9u8; 20]);
        short.truncate(20);
        assert!(parse(&short).unwrap_err().contains("shorter"));
        let mut future = envelope(b"k", &[9u8; 20]);
        future[4] = 9;
        assert!(parse(&future).unwrap_err().contains("format 9"));
        assert!(parse(b"PSS3").is_err());
        assert!(parse(b"PSS3\x01\x00").is_err());
        let zero_key = envelope(b"", &[9u8; 20]);
        assert!(parse(&zero_key).is_err());
    }

    #[test]
    fn the_place_is_authenticated() {
        assert_ne!(aad(b"h", "a", "b/c"), aad(b"h", "a", "b/d"));
        assert_ne!(aad(b"h", "a", "b/c"), aad(b"h", "b", "b/c"));
        assert_ne!(aad(b"h", "a", "b"), aad(b"i", "a", "b"));
        let context = context("bucket", "prod/db");
        assert_eq!(context[CONTEXT_BUCKET], "bucket");
        assert_eq!(context[CONTEXT_KEY], "prod/db");
    }

    #[test]
    fn versions_are_version_ids_or_etags() {
        assert_eq!(version_of(Some("3HL4kqtJ"), Some("\"abc\"")), "3HL4kqtJ");
        assert_eq!(version_of(Some("null"), Some("\"abc\"")), "abc");
        assert_eq!(version_of(None, Some("\"abc\"")), "abc");
    }
}
