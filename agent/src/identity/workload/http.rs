//! The one HTTP exchange every attestor makes: a GET, its JSON answer read up to a bound, within
//! a timeout. Over TCP (TLS verified against a given CA, or plain for a node-local agent) or over
//! a Unix socket (the Docker Engine API).

use std::{path::Path, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{header::HeaderValue, Request, StatusCode};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;

/// What a platform answered, when it did not answer with what was asked for.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("cannot reach {what}: {detail}")]
    Unreachable { what: &'static str, detail: String },
    #[error("{what} did not answer within {0:?}", timeout)]
    TimedOut {
        what: &'static str,
        timeout: Duration,
    },
    #[error("{what} answered {status}")]
    Status {
        what: &'static str,
        status: StatusCode,
    },
    #[error("{what} answered with a document that is not what its API describes: {detail}")]
    Malformed { what: &'static str, detail: String },
}

/// An HTTPS client that trusts only the CAs in `ca_file`, or a plain HTTP one.
pub(super) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    what: &'static str,
    timeout: Duration,
    max_bytes: usize,
}

impl HttpClient {
    pub(super) fn new(
        what: &'static str,
        ca_file: Option<&Path>,
        server_name: Option<&str>,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = ca_file {
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
                roots.add(cert).map_err(|e| {
                    format!("{} holds an unusable certificate: {e}", path.display())
                })?;
            }
            if roots.is_empty() {
                return Err(format!("{} holds no certificate", path.display()));
            }
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let builder = match server_name {
            Some(name) => {
                let name = ServerName::try_from(name.to_owned())
                    .map_err(|e| format!("tls_server_name '{name}': {e}"))?;
                builder.with_server_name_resolver(FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            what,
            timeout,
            max_bytes,
        })
    }

    /// GETs `url` and decodes its JSON answer.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<T, FetchError> {
        let mut request = Request::get(url);
        if let Some(token) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                FetchError::Unreachable {
                    what: self.what,
                    detail: "the token holds characters a header cannot carry".into(),
                }
            })?;
            value.set_sensitive(true);
            request = request.header(hyper::header::AUTHORIZATION, value);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| FetchError::Unreachable {
                what: self.what,
                detail: e.to_string(),
            })?;
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| FetchError::Unreachable {
                        what: self.what,
                        detail: crate::backend::error_chain(&e),
                    })?;
            read_json(self.what, response, self.max_bytes).await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FetchError::TimedOut {
                what: self.what,
                timeout: self.timeout,
            })?
    }
}

/// GETs `path` from an HTTP server on a Unix socket and decodes its JSON answer.
pub(super) async fn get_json_unix<T: DeserializeOwned>(
    what: &'static str,
    socket: &Path,
    path: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<T, FetchError> {
    let unreachable = |detail: String| FetchError::Unreachable { what, detail };
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| unreachable(format!("{}: {e}", socket.display())))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(hyper::header::HOST, "localhost")
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        read_json(what, response, max_bytes).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| FetchError::TimedOut { what, timeout })?
}

async fn read_json<T: DeserializeOwned>(
    what: &'static str,
    response: hyper::Response<hyper::body::Incoming>,
    max_bytes: usize,
) -> Result<T, FetchError> {
    let status = response.status();
    if status != StatusCode::OK {
        return Err(FetchError::Status { what, status });
    }
    let body = Limited::new(response.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| FetchError::Malformed {
            what,
            detail: format!("reading the answer: {e}"),
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| FetchError::Malformed {
        what,
        detail: e.to_string(),
    })
}
