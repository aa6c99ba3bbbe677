//! The AWS agents' HTTP API: a second front door to the core, for apps written against the AWS
//! Secrets Manager Agent or the AWS Parameters and Secrets Lambda Extension.
//!
//! HTTP/1.1 (hyper's `server::conn::http1`) on the agent's Unix socket, told from gRPC by the
//! connection preface (`server/mod.rs`), and optionally on a TCP listener (`tcp.rs`) that requires
//! the AWS agent's SSRF token and identifies the caller by the kernel's socket tables. Every
//! request goes through the same `Agent::get` as gRPC's `GetSecret`: identity → policy → cache →
//! audit; the connection's admission permit bounds its requests as it bounds gRPC streams.
//!
//! Checks in the AWS agent's order: connection limit (429, per uid), then the token and the forwarding
//! header (403, 400; TCP only, `/ping` exempt), then the method (405), then the route (404).
//! Bodies and errors are the AWS agent's (`aws.rs`).

mod aws;
pub mod prefixed;
pub mod tcp;

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{watch, OnceCell},
};
use zeroize::Zeroizing;

use crate::{
    admission::ConnectionPermit,
    agent::Error,
    config::HttpConfig,
    identity::{Frontend, IdentityError, PeerCred},
    server::{self, Shared},
    transport::ConnectedCaller,
};

pub use tcp::TcpPeer;

/// The largest request head taken (request line and headers): a reference is at most 2 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// What every HTTP connection shares: settings and the token the TCP listener requires.
pub struct HttpShared {
    /// Whether the Unix socket answers HTTP/1.1 too (`[http] unix`).
    pub unix: bool,
    pub path_prefix: String,
    /// Connections a uid may have open before its requests get 429. A per-caller bound (the AWS
    /// agent counts everyone together, so one caller past it would starve the rest), read from
    /// the uid's admission share (`agent/src/admission.rs`), which counts its connections.
    pub max_conn: usize,
    pub psst_references: bool,
    pub token: Option<Token>,
}

impl HttpShared {
    pub fn new(config: &HttpConfig, token: Option<Token>) -> Self {
        Self {
            unix: config.unix,
            path_prefix: config.path_prefix.clone(),
            max_conn: config.max_conn,
            psst_references: config.psst_references,
            token,
        }
    }
}

/// The SSRF token and the headers that may carry it.
pub struct Token {
    headers: Vec<http::HeaderName>,
    value: Zeroizing<Vec<u8>>,
}

impl Token {
    /// The token as the AWS agent finds it: `token_file` if set, else the first of
    /// `ssrf_env_variables` that is set, whose value may be `file://PATH`.
    pub fn load(config: &HttpConfig) -> Result<Self, String> {
        Self::load_with(config, |name| std::env::var(name).ok())
    }

    pub fn load_with(
        config: &HttpConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| format!("cannot read the SSRF token file {path}: {e}"))
        };
        let value = match &config.token_file {
            Some(file) => read(&file.display().to_string())?,
            None => {
                let found = config
                    .ssrf_env_variables
                    .iter()
                    .find_map(|name| env(name).filter(|v| !v.is_empty()))
                    .ok_or_else(|| {
                        format!(
                            "http.tcp_listen needs an SSRF token: set one of {} (or http.token_file)",
                            config.ssrf_env_variables.join(", ")
                        )
                    })?;
                match found.strip_prefix("file://") {
                    Some(path) => read(path)?,
                    None => found,
                }
            }
        };
        if value.is_empty() {
            return Err("the SSRF token is empty".into());
        }
        let headers = config
            .ssrf_headers
            .iter()
            .map(|h| http::HeaderName::from_bytes(h.as_bytes()).map_err(|e| format!("{h}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            headers,
            value: Zeroizing::new(value.into_bytes()),
        })
    }

    /// Whether one of the token headers carries the token (compared in constant time).
    fn admits(&self, headers: &HeaderMap) -> bool {
        self.headers.iter().any(|name| {
            headers
                .get_all(name)
                .iter()
                .any(|v| constant_time_eq(v.as_bytes(), &self.value))
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who is on the other end, as far as the transport knows before asking `/proc`.
pub enum Peer {
    Unix(PeerCred),
    Tcp(TcpPeer),
}

/// One HTTP connection's state, shared by its requests.
struct Connection {
    shared: Arc<Shared>,
    http: Arc<HttpShared>,
    frontend: Frontend,
    peer: Peer,
    /// Identified at the first request that needs a caller (a `/ping` does not).
    caller: OnceCell<ConnectedCaller>,
    permit: ConnectionPermit,
}

/// Serves HTTP/1.1 on one admitted connection until the client closes it, its request head
/// times out (`connections.handshake_timeout`, per request: a trickled head is cut), it
/// outlives `connections.max_age`, or the agent stops.
pub async fn serve<IO>(
    io: IO,
    peer: Peer,
    permit: ConnectionPermit,
    shared: Arc<Shared>,
    frontend: Frontend,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(http) = shared.http.clone() else {
        return;
    };
    let settings = shared.settings;
    let connection = Arc::new(Connection {
        shared,
        http,
        frontend,
        peer,
        caller: OnceCell::new(),
        permit,
    });
    let service = service_fn(move |request: Request<Incoming>| {
        let connection = Arc::clone(&connection);
        async move { Ok::<_, Infallible>(connection.handle(request).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.handshake_timeout)
        .max_buf_size(MAX_HEAD.max(8192))
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let age = tokio::time::sleep(settings.max_age);
    let mut age = std::pin::pin!(age);
    let mut going_away = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, frontend = frontend.as_str(), "HTTP/1.1 connection ended with an error");
                }
                return;
            }
            () = &mut age, if !going_away => {
                going_away = true;
                conn.as_mut().graceful_shutdown();
            }
            changed = stop.changed(), if !going_away => {
                if changed.is_err() || *stop.borrow() {
                    going_away = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The routes, for metrics labels.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Ping,
    SecretsManager,
    Path,
    Parameters,
    Unknown,
}

impl Route {
    fn of(path: &str, prefix: &str) -> Self {
        match path {
            "/ping" => Self::Ping,
            "/secretsmanager/get" => Self::SecretsManager,
            "/systemsmanager/parameters/get" => Self::Parameters,
            p if p.starts_with(prefix) => Self::Path,
            _ => Self::Unknown,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::SecretsManager => "secretsmanager_get",
            Self::Path => "path",
            Self::Parameters => "parameters_get",
            Self::Unknown => "unknown",
        }
    }
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

impl Connection {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let route = Route::of(request.uri().path(), &self.http.path_prefix);
        let response = self.answer(route, &request).await;
        self.shared.agent.metrics().http_request(
            self.frontend,
            route.as_str(),
            response.status().as_u16(),
        );
        response
    }

    async fn answer(&self, route: Route, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        // The AWS agent lets two health checks past a full house.
        let limit = match route {
            Route::Ping => self.http.max_conn + 2,
            _ => self.http.max_conn,
        };
        if self.permit.uid_connections() > limit {
            return reply(429, "Connection limit exceeded");
        }
        if route != Route::Ping {
            let headers = request.headers();
            if headers.contains_key("x-forwarded-for") {
                return reply(400, "Forwarded");
            }
            if self.frontend == Frontend::HttpTcp
                && !self.http.token.as_ref().is_some_and(|t| t.admits(headers))
            {
                return reply(403, "Bad Token");
            }
        }
        if request.method() != Method::GET {
            return reply(405, "Not allowed");
        }
        let query = request.uri().query().unwrap_or("");
        let psst_references = self.http.psst_references;
        let (api, parsed) = match route {
            Route::Ping => return reply(200, "healthy"),
            Route::Unknown => return reply(404, "Not found"),
            Route::SecretsManager => (
                aws::Api::SecretsManager,
                aws::secrets_manager_query(query, psst_references),
            ),
            Route::Path => (
                aws::Api::SecretsManager,
                aws::path_query(
                    request.uri().path(),
                    query,
                    &self.http.path_prefix,
                    psst_references,
                ),
            ),
            Route::Parameters => (
                aws::Api::ParameterStore,
                aws::parameter_query(query, psst_references),
            ),
        };
        let query = match parsed {
            Ok(query) => query,
            Err(aws::BadRequest(message)) => return reply(400, message),
        };
        let caller = self.caller().await;
        let caller = match caller.as_ref() {
            Ok(caller) => caller,
            Err(e) => {
                let (status, body) = aws::error_body(api, &Error::Unauthenticated(e.to_string()));
                return reply(status, body);
            }
        };
        let _request = match self.permit.request() {
            Ok(permit) => permit,
            Err(refusal) => {
                return reply(
                    429,
                    aws::typed_error("ThrottlingException", &refusal.to_string()),
                )
            }
        };
        let agent = &self.shared.agent;
        let served = if query.refresh_now {
            agent.get_refreshed(caller, &query.reference).await
        } else {
            agent.get(caller, &query.reference).await
        };
        let served = served.and_then(|served| match &query.required_stage {
            Some(stage) if !served.secret.stages.iter().any(|s| s == stage) => Err(
                Error::NotFound(format!("{} does not carry stage {stage}", query.reference)),
            ),
            _ => Ok(served),
        });
        let body = match (&served, api) {
            (Ok(served), aws::Api::SecretsManager) => Ok(aws::secret_value_body(&query, served)),
            (Ok(served), aws::Api::ParameterStore) => aws::parameter_body(&query, served)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{} is not text, so it cannot be read as a parameter",
                        query.reference
                    ))
                }),
            (Err(e), _) => Err(e.clone()),
        };
        match body {
            Ok(body) => {
                let mut response = reply(200, body);
                // The value must not be kept by anything between the app and the agent.
                response.headers_mut().insert(
                    header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                );
                response
            }
            Err(e) => {
                if matches!(
                    e,
                    Error::FailedPrecondition(_)
                        | Error::Internal(_)
                        | Error::DataLoss(_)
                        | Error::Unimplemented(_)
                ) {
                    tracing::warn!(error = %e, frontend = self.frontend.as_str(), "HTTP request failed inside the agent");
                }
                let (status, body) = aws::error_body(api, &e);
                reply(status, body)
            }
        }
    }

    /// The caller, identified once per connection (bounded by `identity.timeout`).
    async fn caller(&self) -> &ConnectedCaller {
        self.caller
            .get_or_init(|| async {
                let timeout = self.shared.identity_timeout;
                let credentials = match &self.peer {
                    Peer::Unix(peer) => Ok(peer.clone()),
                    Peer::Tcp(peer) => tokio::time::timeout(timeout, peer.credentials())
                        .await
                        .unwrap_or(Err(IdentityError::TimedOut(timeout))),
                };
                let caller = match credentials {
                    Ok(peer) => server::resolve(&self.shared, peer).await,
                    Err(e) => {
                        tracing::warn!(error = %e, frontend = self.frontend.as_str(), "connection from an unidentified caller");
                        Err(e)
                    }
                };
                Arc::new(caller.map(|mut caller| {
                    caller.via = self.frontend;
                    caller
                }))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_first_variable_set_or_a_file() {
        let config = HttpConfig::default();
        let env = |name: &str| (name == "AWS_SESSION_TOKEN").then(|| "tok".to_owned());
        let token = Token::load_with(&config, env).unwrap();
        let mut headers = HeaderMap::new();
        assert!(!token.admits(&headers));
        headers.insert("x-vault-token", "tok".parse().unwrap());
        assert!(token.admits(&headers));
        headers.insert("x-vault-token", "tok2".parse().unwrap());
        assert!(!token.admits(&headers));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = format!("file://{}", file.display());
        let token =
            Token::load_with(&config, |n| (n == "AWS_TOKEN").then(|| path.clone())).unwrap();
        headers.insert(
            "x-aws-parameters-secrets-token",
            "from-file".parse().unwrap(),
        );
        assert!(token.admits(&headers));

        let missing = Token::load_with(&config, |_| None).err().unwrap();
        assert!(missing.contains("AWS_TOKEN"), "{missing}");
    }

    #[test]
    fn routes() {
        assert!(Route::of("/v1/x", "/v1/") == Route::Path);
        assert!(Route::of("/v2/x", "/v1/") == Route::Unknown);
        assert!(Route::of("/ping", "/") == Route::Ping);
    }
}
