//! How the agent logs in to Vault, and keeps its token alive.
//!
//! A token comes from the environment, from a file (re-read when the file changes, so Vault
//! Agent or an operator can replace it), or from an AppRole login. Logging in is lazy: the first
//! request does it, so the agent starts while Vault is down. A token with a lease is renewed at
//! two thirds of it; an AppRole token whose renewal is refused, or whose lease is capped by its
//! max TTL, is replaced by logging in again.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use hyper::Method;
use serde::Deserialize;
use tokio::sync::{Mutex, Notify};
use zeroize::{Zeroize, Zeroizing};

use super::http::{classify, encode_path, vault_errors, Reply, VaultHttp};
use crate::{backend::BackendError, secret::SecretValue};

/// After a failed renewal, the next try waits at least this long.
const RENEW_RETRY: Duration = Duration::from_secs(1);
/// A refused AppRole token younger than this is not replaced: the refusal is the Vault policy's
/// answer for that path, and logging in again for every such request would only load Vault.
const RELOGIN_MIN_AGE: Duration = Duration::from_secs(10);

/// Where the agent's token comes from.
#[derive(Debug)]
pub(crate) enum Login {
    /// VAULT_TOKEN / BAO_TOKEN, read when the agent started.
    Token(SecretValue),
    TokenFile(PathBuf),
    AppRole {
        mount: String,
        role_id: String,
        secret_id_file: PathBuf,
    },
}

/// The token in use and what Vault said about its lease.
struct Session {
    token: Arc<SecretValue>,
    /// The token file's modification time when it was read.
    file_stamp: Option<SystemTime>,
    renewable: bool,
    /// Zero: the token does not expire (a root token), or its lease is unknown.
    lease: Duration,
    /// The lease the token was issued with; a renewal granting less has hit the max TTL.
    issued_lease: Duration,
    since: Instant,
    /// When the token was obtained.
    obtained: Instant,
    /// No earlier renewal attempt than this (after a failure).
    not_before: Option<Instant>,
    /// Renewal is over for this token (refused, or not renewable).
    renewal_over: bool,
}

impl Session {
    fn new(token: Arc<SecretValue>, lease: Duration, renewable: bool) -> Self {
        Self {
            token,
            file_stamp: None,
            renewable,
            lease,
            issued_lease: lease,
            since: Instant::now(),
            obtained: Instant::now(),
            not_before: None,
            renewal_over: false,
        }
    }

    fn due(&self) -> Option<Instant> {
        if self.lease.is_zero() || self.renewal_over {
            return None;
        }
        let due = self.since + self.lease * 2 / 3;
        Some(self.not_before.map_or(due, |n| n.max(due)))
    }

    fn expired(&self) -> bool {
        !self.lease.is_zero() && Instant::now() >= self.since + self.lease
    }
}

pub(super) struct Auth {
    login: Login,
    session: Mutex<Option<Session>>,
    /// Told when a new token is in use, so the renewer looks at its lease.
    pub changed: Arc<Notify>,
}

impl Auth {
    pub(super) fn new(login: Login) -> Self {
        Self {
            login,
            session: Mutex::new(None),
            changed: Arc::new(Notify::new()),
        }
    }

    pub(super) fn can_log_in_again(&self) -> bool {
        matches!(self.login, Login::AppRole { .. })
    }

    /// The token to send, logging in first when there is none yet or it is out of date.
    pub(super) async fn token(&self, http: &VaultHttp) -> Result<Arc<SecretValue>, BackendError> {
        // Held across the login, so concurrent first requests log in once.
        let mut session = self.session.lock().await;
        if let Some(current) = session.as_ref() {
            if !self.outdated(current) {
                return Ok(Arc::clone(&current.token));
            }
        }
        let fresh = self.log_in(http).await?;
        let token = Arc::clone(&fresh.token);
        *session = Some(fresh);
        self.changed.notify_one();
        Ok(token)
    }

    /// Forgets `refused`, so that the next request logs in again. True when logging in again
    /// can help: AppRole, and a token old enough to have been revoked since it was obtained.
    pub(super) async fn forget(&self, refused: &Arc<SecretValue>) -> bool {
        if !self.can_log_in_again() {
            return false;
        }
        let mut session = self.session.lock().await;
        match session.as_ref() {
            Some(current) if Arc::ptr_eq(&current.token, refused) => {
                if current.obtained.elapsed() < RELOGIN_MIN_AGE {
                    return false;
                }
                *session = None;
                true
            }
            // Another request already replaced it.
            Some(_) => true,
            None => true,
        }
    }

    fn outdated(&self, session: &Session) -> bool {
        match &self.login {
            Login::Token(_) => false,
            Login::TokenFile(path) => file_stamp(path) != session.file_stamp,
            Login::AppRole { .. } => session.expired(),
        }
    }

    async fn log_in(&self, http: &VaultHttp) -> Result<Session, BackendError> {
        match &self.login {
            Login::Token(token) => describe(http, Arc::new(token.clone())).await,
            Login::TokenFile(path) => {
                let stamp = file_stamp(path);
                let token = read_secret_file(path, "token_file")?;
                let mut session = describe(http, Arc::new(token)).await?;
                session.file_stamp = stamp;
                Ok(session)
            }
            Login::AppRole {
                mount,
                role_id,
                secret_id_file,
            } => approle_login(http, mount, role_id, secret_id_file).await,
        }
    }

    /// When the token in use should be renewed next; None when it needs no renewal.
    pub(super) async fn next_renewal(&self) -> Option<Instant> {
        self.session.lock().await.as_ref().and_then(Session::due)
    }

    /// Renews the token if it is due: `renew-self`, or for AppRole a new login when renewal is
    /// refused, impossible or capped by the token's max TTL.
    pub(super) async fn renew(&self, http: &VaultHttp) {
        let (token, renewable, capped) = {
            let session = self.session.lock().await;
            let Some(current) = session.as_ref() else {
                return;
            };
            if current.due().is_none_or(|due| due > Instant::now()) {
                return;
            }
            (
                Arc::clone(&current.token),
                current.renewable,
                current.lease < current.issued_lease,
            )
        };
        let approle = self.can_log_in_again();
        let mut failure = None;
        if renewable && !(approle && capped) {
            match renew_self(http, &token).await {
                Ok((lease, renewable)) => {
                    let mut session = self.session.lock().await;
                    if let Some(current) = session.as_mut() {
                        if Arc::ptr_eq(&current.token, &token) {
                            tracing::debug!(lease = ?lease, "renewed the agent's Vault token");
                            current.lease = lease;
                            current.renewable = renewable;
                            current.since = Instant::now();
                            current.not_before = None;
                            if lease < current.issued_lease && !approle {
                                // Capped by the token's max TTL: its end is fixed now, and
                                // renewing again cannot move it (nor should it spin).
                                tracing::warn!(
                                    lease = ?lease,
                                    "the agent's Vault token reached its max TTL; replace it before it expires"
                                );
                                current.renewal_over = true;
                            }
                        }
                    }
                    return;
                }
                Err(e) => failure = Some(e),
            }
        }
        if approle {
            match self.log_in(http).await {
                Ok(fresh) => {
                    let mut session = self.session.lock().await;
                    if session
                        .as_ref()
                        .is_none_or(|current| Arc::ptr_eq(&current.token, &token))
                    {
                        tracing::info!(
                            "logged in to Vault again (AppRole) before the token expired"
                        );
                        *session = Some(fresh);
                    }
                    return;
                }
                Err(e) => failure = Some(e),
            }
        }
        let mut session = self.session.lock().await;
        let Some(current) = session.as_mut() else {
            return;
        };
        if !Arc::ptr_eq(&current.token, &token) {
            return;
        }
        match failure {
            Some(e) if e.is_transient() => {
                tracing::warn!(error = %e, "renewing the agent's Vault token failed; trying again");
                let left =
                    (current.since + current.lease).saturating_duration_since(Instant::now());
                current.not_before = Some(Instant::now() + RENEW_RETRY.max(left / 4));
            }
            Some(e) => {
                tracing::warn!(error = %e, "the agent's Vault token cannot be renewed; it will expire");
                current.renewal_over = true;
            }
            None => current.renewal_over = true,
        }
    }
}

fn file_stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A token or secret id from a file, surrounding whitespace trimmed.
fn read_secret_file(path: &Path, key: &str) -> Result<SecretValue, BackendError> {
    // Callers see which setting is at fault; the path is for the agent's log only.
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        tracing::warn!(path = %path.display(), error = %e, "cannot read the Vault {key}");
        BackendError::AgentDenied(format!("cannot read the agent's Vault {key}: {e}"))
    })?);
    let text = bytes.trim_ascii();
    if text.is_empty() {
        tracing::warn!(path = %path.display(), "the Vault {key} is empty");
        return Err(BackendError::AgentDenied(format!(
            "the agent's Vault {key} is empty"
        )));
    }
    Ok(SecretValue::from_slice(text))
}

#[derive(Deserialize)]
struct LookupBody {
    data: LookupData,
}

#[derive(Deserialize)]
struct LookupData {
    #[serde(default)]
    ttl: u64,
    /// The TTL the token was created with (or its period): what a renewal gives back.
    #[serde(default)]
    creation_ttl: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct AuthBody {
    auth: AuthData,
}

#[derive(Deserialize)]
struct AuthData {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

/// A given token's lease, from `lookup-self`. A token that may not look itself up is used
/// as it is, unrenewed: requests with it say what Vault thinks of it.
async fn describe(http: &VaultHttp, token: Arc<SecretValue>) -> Result<Session, BackendError> {
    let reply = http
        .send(Method::GET, "auth/token/lookup-self", Some(&token), None)
        .await?;
    if !reply.status.is_success() {
        let error = classify(reply.status, &reply.body, "the token lookup (lookup-self)");
        if error.is_transient() {
            return Err(error);
        }
        tracing::warn!(error = %error, "cannot look up the agent's Vault token; it will not be renewed");
        return Ok(Session::new(token, Duration::ZERO, false));
    }
    let body: LookupBody = serde_json::from_slice(&reply.body)
        .map_err(|_| BackendError::Internal("unexpected lookup-self answer".into()))?;
    let mut session = Session::new(
        token,
        Duration::from_secs(body.data.ttl),
        body.data.renewable,
    );
    session.issued_lease = session
        .issued_lease
        .max(Duration::from_secs(body.data.creation_ttl));
    Ok(session)
}

async fn renew_self(
    http: &VaultHttp,
    token: &Arc<SecretValue>,
) -> Result<(Duration, bool), BackendError> {
    let reply = http
        .send(
            Method::POST,
            "auth/token/renew-self",
            Some(token),
            Some(Zeroizing::new(b"{}".to_vec())),
        )
        .await?;
    if !reply.status.is_success() {
        return Err(classify(
            reply.status,
            &reply.body,
            "the token renewal (renew-self)",
        ));
    }
    let (token, lease, renewable) = parse_auth(&reply)?;
    drop(token);
    Ok((lease, renewable))
}

async fn approle_login(
    http: &VaultHttp,
    mount: &str,
    role_id: &str,
    secret_id_file: &Path,
) -> Result<Session, BackendError> {
    let secret_id = read_secret_file(secret_id_file, "secret_id_file")?;
    let secret_id = std::str::from_utf8(secret_id.expose()).map_err(|_| {
        BackendError::AgentDenied("the agent's Vault secret_id_file is not UTF-8".into())
    })?;
    // Serialized straight into a buffer that is wiped, sized for the worst escaping so it never reallocates (a
    // `json!` value or a growing Vec would leave copies of the secret id behind).
    #[derive(serde::Serialize)]
    struct AppRoleLogin<'a> {
        role_id: &'a str,
        secret_id: &'a str,
    }
    let mut body = Zeroizing::new(Vec::with_capacity(
        6 * (role_id.len() + secret_id.len()) + 64,
    ));
    serde_json::to_writer(&mut *body, &AppRoleLogin { role_id, secret_id })
        .map_err(|e| BackendError::Internal(e.to_string()))?;
    let path = format!("auth/{}/login", encode_path(mount.split('/')));
    let reply = http.send(Method::POST, &path, None, Some(body)).await?;
    if !reply.status.is_success() {
        return Err(match reply.status.as_u16() {
            400 | 401 | 403 => BackendError::AgentDenied(format!(
                "Vault refused the agent's AppRole login at auth/{mount} (role_id {role_id}): {}",
                vault_errors(&reply.body)
            )),
            _ => classify(
                reply.status,
                &reply.body,
                &format!("the AppRole login at auth/{mount}"),
            ),
        });
    }
    let (token, lease, renewable) = parse_auth(&reply)?;
    Ok(Session::new(Arc::new(token), lease, renewable))
}

/// The token and its lease from a login or renewal answer.
fn parse_auth(reply: &Reply) -> Result<(SecretValue, Duration, bool), BackendError> {
    let mut body: AuthBody = serde_json::from_slice(&reply.body)
        .map_err(|_| BackendError::Internal("unexpected Vault auth answer".into()))?;
    let token = SecretValue::from_slice(body.auth.client_token.as_bytes());
    body.auth.client_token.zeroize();
    Ok((
        token,
        Duration::from_secs(body.auth.lease_duration),
        body.auth.renewable,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lease() {
        let token = Arc::new(SecretValue::from_slice(b"t"));
        let session = Session::new(Arc::clone(&token), Duration::from_secs(30), true);
        let due = session.due().unwrap();
        let after = due.duration_since(session.since);
        assert_eq!(after, Duration::from_secs(20));
        assert!(!session.expired());

        let forever = Session::new(token, Duration::ZERO, false);
        assert_eq!(forever.due(), None, "a root token needs no renewal");
        assert!(!forever.expired());
    }

    #[tokio::test]
    async fn a_refused_approle_token_is_replaced_only_once_it_is_old_enough() {
        let auth = Auth::new(Login::AppRole {
            mount: "approle".into(),
            role_id: "r".into(),
            secret_id_file: "/nonexistent".into(),
        });
        let token = Arc::new(SecretValue::from_slice(b"t"));
        *auth.session.lock().await = Some(Session::new(
            Arc::clone(&token),
            Duration::from_secs(60),
            true,
        ));
        assert!(
            !auth.forget(&token).await,
            "just obtained: the refusal is policy"
        );
        assert!(auth.session.lock().await.is_some());
        auth.session.lock().await.as_mut().unwrap().obtained -= RELOGIN_MIN_AGE;
        assert!(auth.forget(&token).await);
        assert!(
            auth.session.lock().await.is_none(),
            "the next request logs in"
        );

        let static_token = Auth::new(Login::Token(SecretValue::from_slice(b"t")));
        assert!(!static_token.forget(&token).await, "nothing to log in with");
    }

    #[test]
    fn login_details_never_print_secrets() {
        let login = Login::Token(SecretValue::from_slice(b"hvs.very-secret"));
        let printed = format!("{login:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
    }

    #[test]
    fn token_files_are_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  hvs.abc\n").unwrap();
        assert_eq!(
            read_secret_file(&path, "token_file").unwrap().expose(),
            b"hvs.abc"
        );
        std::fs::write(&path, "\n").unwrap();
        let err = read_secret_file(&path, "token_file").unwrap_err();
        assert!(
            matches!(err, BackendError::AgentDenied(ref m) if m.contains("is empty")),
            "{err}"
        );
        let err = read_secret_file(&dir.path().join("none"), "token_file").unwrap_err();
        assert!(matches!(err, BackendError::AgentDenied(_)), "{err}");
    }

    #[test]
    fn auth_answers_parse() {
        let reply = Reply {
            status: hyper::StatusCode::OK,
            body: Zeroizing::new(
                br#"{"auth":{"client_token":"hvs.x","lease_duration":60,"renewable":true}}"#
                    .to_vec(),
            ),
        };
        let (token, lease, renewable) = parse_auth(&reply).unwrap();
        assert_eq!(token.expose(), b"hvs.x");
        assert_eq!(lease, Duration::from_secs(60));
        assert!(renewable);
    }
}
