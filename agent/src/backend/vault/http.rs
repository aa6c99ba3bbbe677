//! Vault's HTTP API as the backend uses it: one request, its answer read into a zeroizing
//! buffer, and HTTP statuses mapped onto `BackendError`.

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    header::{HeaderValue, CONTENT_TYPE},
    Method, Request, StatusCode,
};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use crate::{backend::BackendError, secret::SecretValue};

/// The largest answer read from Vault: a KV secret is at most ~1 MiB by default.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How much of Vault's own error text goes into a message.
const MAX_ERROR_CHARS: usize = 300;

/// Path segments are sent percent-encoded, keeping only the unreserved characters as they are.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `segments` joined with '/', each one percent-encoded.
pub(super) fn encode_path<'a>(segments: impl IntoIterator<Item = &'a str>) -> String {
    segments
        .into_iter()
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// An answer: the status and the body, wiped when dropped (it may hold secret values).
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Zeroizing<Vec<u8>>,
}

/// The connection to one Vault server.
pub(super) struct VaultHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    address: String,
    namespace: Option<HeaderValue>,
    timeout: Duration,
}

impl VaultHttp {
    /// No network call: the TLS roots are loaded, nothing is connected.
    pub(super) fn new(
        address: &str,
        namespace: Option<&str>,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let tls = rustls::ClientConfig::builder();
        let tls = match ca_file {
            Some(path) => {
                use rustls::pki_types::{pem::PemObject, CertificateDer};
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
                for cert in certs {
                    let cert =
                        cert.map_err(|e| format!("ca_file {} is not PEM: {e}", path.display()))?;
                    roots.add(cert).map_err(|e| {
                        format!(
                            "ca_file {} holds an unusable certificate: {e}",
                            path.display()
                        )
                    })?;
                }
                if roots.is_empty() {
                    return Err(format!("ca_file {} holds no certificate", path.display()));
                }
                tls.with_root_certificates(roots)
            }
            None => match tls.with_native_roots() {
                Ok(tls) => tls,
                // Plain HTTP needs no roots; HTTPS without any cannot work.
                Err(e) if address.starts_with("https://") => {
                    return Err(format!(
                        "no system CA certificates to verify {address}: {e}"
                    ))
                }
                Err(_) => rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty()),
            },
        };
        let tls = tls.with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let namespace = namespace
            .map(|n| {
                HeaderValue::from_str(n)
                    .map_err(|_| format!("namespace '{n}' is not a header value"))
            })
            .transpose()?;
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            address: address.trim_end_matches('/').to_owned(),
            namespace,
            timeout,
        })
    }

    /// Sends one request to `/v1/{path}` (path already encoded, query included).
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&Arc<SecretValue>>,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Reply, BackendError> {
        let uri = format!("{}/v1/{path}", self.address);
        let mut request = Request::builder().method(method).uri(&uri);
        if let Some(token) = token {
            // The header shares the token's own buffer (no copy left unwiped when it is dropped).
            let mut value = HeaderValue::from_maybe_shared(token.share()).map_err(|_| {
                BackendError::AgentDenied(
                    "the agent's Vault token holds characters a header cannot carry".into(),
                )
            })?;
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace.clone());
        }
        let body = match body {
            // The body (a value being written, a secret id) is wiped when hyper lets go of it.
            Some(bytes) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from_owner(Wiped(bytes)))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .map_err(|e| BackendError::Internal(format!("building a Vault request: {e}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                BackendError::Unavailable(format!(
                    "cannot reach Vault at {}: {}",
                    self.address,
                    crate::backend::error_chain(&e)
                ))
            })?;
            let status = response.status();
            let mut body = response.into_body();
            // The frames are kept until the answer is whole, then copied once into a buffer of
            // the exact size (a growing Vec would leave unwiped copies behind as it moved).
            let mut frames = Vec::new();
            let mut length = 0;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    BackendError::Unavailable(format!("Vault's answer broke off: {e}"))
                })?;
                if let Ok(data) = frame.into_data() {
                    length += data.len();
                    frames.push(data);
                    if length > MAX_BODY_BYTES {
                        wipe(frames);
                        return Err(BackendError::Internal(format!(
                            "Vault's answer is larger than {MAX_BODY_BYTES} bytes"
                        )));
                    }
                }
            }
            let mut buffer = Zeroizing::new(Vec::with_capacity(length));
            for data in &frames {
                buffer.extend_from_slice(data);
            }
            wipe(frames);
            Ok(Reply {
                status,
                body: buffer,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Unavailable(format!(
                "Vault at {} did not answer within {:?}",
                self.address, self.timeout
            ))),
        }
    }
}

struct Wiped(Zeroizing<Vec<u8>>);

/// Zeroizes received frames this side holds alone.
fn wipe(frames: Vec<Bytes>) {
    for data in frames {
        if let Ok(mut data) = data.try_into_mut() {
            data.as_mut().zeroize();
        }
    }
}

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// Vault's own explanation from an error answer (`{"errors": [...]}`), shortened. Vault's error
/// texts name paths and causes, not values.
pub(super) fn vault_errors(body: &[u8]) -> String {
    let mut text = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors.join("; "))
        .unwrap_or_default();
    if text.chars().count() > MAX_ERROR_CHARS {
        text = text.chars().take(MAX_ERROR_CHARS).collect::<String>() + "…";
    }
    text
}

/// Maps an error status onto the agent's error kinds. `what` names the secret or the call.
pub(super) fn classify(status: StatusCode, body: &[u8], what: &str) -> BackendError {
    let errors = vault_errors(body);
    let detail = if errors.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {errors}", status.as_u16())
    };
    match status.as_u16() {
        404 => BackendError::NotFound(format!("{what} not found")),
        401 | 403 => BackendError::AgentDenied(format!(
            "Vault refused the agent's token (permission denied) for {what}: check the token is \
             valid and its policy grants this path ({detail})"
        )),
        400 | 405 | 413 | 422 => BackendError::InvalidArgument(format!(
            "Vault rejected the request for {what} ({detail})"
        )),
        429 => BackendError::Throttled(format!("Vault rate-limited the agent ({detail})")),
        503 if errors.contains("sealed") => {
            BackendError::Unavailable(format!("Vault is sealed ({detail})"))
        }
        // 412: a performance standby has not caught up yet; worth asking again.
        412 | 500..=599 => BackendError::Unavailable(format!("Vault failed for {what} ({detail})")),
        _ => BackendError::Internal(format!(
            "unexpected answer from Vault for {what} ({detail})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let kind = |status: u16, body: &str| {
            classify(
                StatusCode::from_u16(status).unwrap(),
                body.as_bytes(),
                "vault:secret/a",
            )
        };
        assert!(matches!(
            kind(404, "{\"errors\":[]}"),
            BackendError::NotFound(_)
        ));
        let denied = kind(403, "{\"errors\":[\"permission denied\"]}");
        assert!(matches!(denied, BackendError::AgentDenied(_)));
        let denied = denied.to_string();
        assert!(denied.contains("agent's token"), "{denied}");
        assert!(denied.contains("permission denied"), "{denied}");
        assert!(matches!(kind(400, "{}"), BackendError::InvalidArgument(_)));
        assert!(matches!(kind(429, ""), BackendError::Throttled(_)));
        assert!(matches!(kind(500, "oops"), BackendError::Unavailable(_)));
        let sealed = kind(503, "{\"errors\":[\"Vault is sealed\"]}");
        assert!(
            matches!(&sealed, BackendError::Unavailable(m) if m.contains("sealed")),
            "{sealed}"
        );
        assert!(matches!(kind(302, ""), BackendError::Internal(_)));
        assert!(sealed.is_transient() && !kind(403, "").is_transient());
    }

    #[test]
    fn long_error_texts_are_cut() {
        let body = format!("{{\"errors\":[\"{}\"]}}", "x".repeat(1000));
        assert_eq!(
            vault_errors(body.as_bytes()).chars().count(),
            MAX_ERROR_CHARS + 1
        );
        assert_eq!(vault_errors(b"not json"), "");
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            encode_path(["secret", "data", "app", "db"]),
            "secret/data/app/db"
        );
        assert_eq!(
            encode_path(["a b", "x%y", "ü", "k.v-1_~"]),
            "a%20b/x%25y/%C3%BC/k.v-1_~"
        );
    }

    #[test]
    fn https_with_a_missing_ca_file_is_refused_at_startup() {
        let err = VaultHttp::new(
            "https://vault.invalid:8200",
            None,
            Some(Path::new("/nonexistent/ca.pem")),
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(err.contains("cannot read ca_file"), "{err}");
    }
}
