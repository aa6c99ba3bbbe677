//! The AWS agents' request and answer shapes: which psst reference a request names, and the
//! bodies Secrets Manager's `GetSecretValue` and Parameter Store's `GetParameter` would answer,
//! as the AWS Secrets Manager Agent and the Parameters and Secrets Lambda Extension send them.
//! Pure functions: `mod.rs` does the I/O.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::{
    agent::{Error, ServedSecret},
    backend::ValueShape,
};

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Query {
    /// The psst reference to read.
    pub reference: String,
    /// `versionStage` given together with `versionId`: the version must carry it.
    pub required_stage: Option<String>,
    pub refresh_now: bool,
    /// Parameter Store's `Selector` (":3", ":live") when the name or a parameter selected one.
    pub selector: Option<String>,
}

/// A request refused before the core is asked: status and plain-text body, as the AWS agent
/// answers them ("unknown parameter: x", "missing parameter secretId").
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadRequest(pub String);

/// The prefixes psst references may start with when `[http] psst_references` is on.
const PSST_PREFIXES: [&str; 5] = ["local:", "ssm:", "sm:", "s3:", "vault:"];

fn psst_reference(id: &str, allowed: bool) -> bool {
    allowed && PSST_PREFIXES.iter().any(|p| id.starts_with(p))
}

/// `application/x-www-form-urlencoded` pairs, decoded as the AWS agent's URL parser decodes them
/// (`+` is a space).
fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k), decode(v))
    })
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

fn refresh_value(v: &str) -> Result<bool, BadRequest> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(BadRequest("invalid refreshNow value".into())),
    }
}

/// A Secrets Manager secret id (name or ARN) as a psst reference: `sm:<id>`, or the id itself
/// when it is a psst reference and those are allowed. `?` and `#` would smuggle a selector or key
/// into a bare id, and no Secrets Manager name has them.
fn secret_reference(
    id: &str,
    version_id: Option<String>,
    stage: Option<String>,
    psst_references: bool,
) -> Result<(String, Option<String>), BadRequest> {
    let own = psst_reference(id, psst_references);
    if !own && (id.contains('?') || id.contains('#')) {
        return Err(BadRequest(format!(
            "invalid secretId: '{}' has a '?' or '#'",
            id.escape_debug()
        )));
    }
    let mut reference = if own {
        id.to_owned()
    } else {
        format!("sm:{id}")
    };
    let selector = match (&version_id, &stage) {
        (Some(v), _) => Some(format!("version={v}")),
        (None, Some(s)) => Some(format!("stage={s}")),
        (None, None) => None,
    };
    if let Some(selector) = selector {
        if own && reference.contains('?') {
            return Err(BadRequest(
                "the secretId already selects a version: leave out versionId and versionStage"
                    .into(),
            ));
        }
        // The selector goes before a `#key` of a psst reference.
        match reference.find('#') {
            Some(at) => reference.insert_str(at, &format!("?{selector}")),
            None => {
                reference.push('?');
                reference.push_str(&selector);
            }
        }
    }
    let required_stage = version_id.and(stage);
    Ok((reference, required_stage))
}

/// `/secretsmanager/get?secretId=…&versionId=…&versionStage=…&refreshNow=…`.
pub(super) fn secrets_manager_query(
    query: &str,
    psst_references: bool,
) -> Result<Query, BadRequest> {
    let mut secret_id = String::new();
    let (mut version_id, mut stage, mut refresh_now) = (None, None, false);
    for (k, v) in pairs(query) {
        match k.as_str() {
            "secretId" => secret_id = v,
            "versionId" => version_id = Some(v),
            "versionStage" => stage = Some(v),
            "refreshNow" => refresh_now = refresh_value(&v)?,
            other => return Err(BadRequest(format!("unknown parameter: {other}"))),
        }
    }
    if secret_id.is_empty() {
        return Err(BadRequest("missing parameter secretId".into()));
    }
    let (reference, required_stage) =
        secret_reference(&secret_id, version_id, stage, psst_references)?;
    Ok(Query {
        reference,
        required_stage,
        refresh_now,
        selector: None,
    })
}

/// Path style: `<prefix><secretId>?versionId=…&versionStage=…&refreshNow=…`.
pub(super) fn path_query(
    path: &str,
    query: &str,
    prefix: &str,
    psst_references: bool,
) -> Result<Query, BadRequest> {
    let id = match path.get(prefix.len()..) {
        Some(id) if !id.is_empty() => decode_path(id),
        _ => return Err(BadRequest("missing secret ID".into())),
    };
    let (mut version_id, mut stage, mut refresh_now) = (None, None, false);
    for (k, v) in pairs(query) {
        match k.as_str() {
            "versionId" => version_id = Some(v),
            "versionStage" => stage = Some(v),
            "refreshNow" => refresh_now = refresh_value(&v)?,
            other => return Err(BadRequest(format!("unknown parameter: {other}"))),
        }
    }
    let (reference, required_stage) = secret_reference(&id, version_id, stage, psst_references)?;
    Ok(Query {
        reference,
        required_stage,
        refresh_now,
        selector: None,
    })
}

fn decode_path(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `/systemsmanager/parameters/get?name=…[:version|:label]&version=…&label=…&withDecryption=…`.
/// Parameter Store decrypts `SecureString`s for psst always; `withDecryption` is checked and
/// otherwise has no effect (README: what differs).
pub(super) fn parameter_query(query: &str, psst_references: bool) -> Result<Query, BadRequest> {
    let mut name = String::new();
    let (mut version, mut label) = (None, None);
    for (k, v) in pairs(query) {
        match k.as_str() {
            "name" => name = v,
            "version" => version = Some(v),
            "label" => label = Some(v),
            "withDecryption" => {
                if !matches!(v.to_ascii_lowercase().as_str(), "true" | "false") {
                    return Err(BadRequest("invalid withDecryption value".into()));
                }
            }
            other => return Err(BadRequest(format!("unknown parameter: {other}"))),
        }
    }
    if name.is_empty() {
        return Err(BadRequest("missing parameter name".into()));
    }
    if psst_reference(&name, psst_references) && !name.starts_with("ssm:") {
        if version.is_some() || label.is_some() {
            return Err(BadRequest(
                "version and label select Parameter Store versions: give them in the reference"
                    .into(),
            ));
        }
        return Ok(Query {
            reference: name,
            required_stage: None,
            refresh_now: false,
            selector: None,
        });
    }
    let name = name.strip_prefix("ssm:").unwrap_or(&name).to_owned();
    if name.contains('?') || name.contains('#') {
        return Err(BadRequest(format!(
            "invalid name: '{}' has a '?' or '#'",
            name.escape_debug()
        )));
    }
    // `name:3` or `name:live`, as Parameter Store's own GetParameter takes them. An ARN's own
    // colons come before `parameter/`.
    let base_start = if name.starts_with("arn:") {
        name.find(":parameter/").map_or(name.len(), |at| at + 1)
    } else {
        0
    };
    let (base, suffix) = match name[base_start..].rfind(':') {
        Some(at) => (
            name[..base_start + at].to_owned(),
            Some(name[base_start + at + 1..].to_owned()),
        ),
        None => (name.clone(), None),
    };
    let selected = match (suffix, version, label) {
        (Some(s), None, None) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(("version", s))
        }
        (Some(s), None, None) if !s.is_empty() => Some(("label", s)),
        (Some(_), _, _) => {
            return Err(BadRequest(
                "the name already selects a version or label: leave out version and label".into(),
            ))
        }
        (None, Some(_), Some(_)) => {
            return Err(BadRequest("give version or label, not both".into()))
        }
        (None, Some(v), None) => Some(("version", v)),
        (None, None, Some(l)) => Some(("label", l)),
        (None, None, None) => None,
    };
    let (reference, selector) = match selected {
        Some((kind, value)) => (
            format!("ssm:{base}?{kind}={value}"),
            Some(format!(":{value}")),
        ),
        None => (format!("ssm:{base}"), None),
    };
    Ok(Query {
        reference,
        required_stage: None,
        refresh_now: false,
        selector,
    })
}

/// Seconds since the epoch with their fraction, as the AWS agent writes `CreatedDate` (its
/// `TimestampSecondsWithFrac<String>`: the shortest decimal that reads back as the same `f64`).
fn seconds_text(t: SystemTime) -> String {
    seconds(t).to_string()
}

fn seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// A JSON string, as serde_json writes it: most values need no escaping, and are copied whole
/// (the check has no early exit, so it compiles to a vector loop).
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    let plain = text.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("a string serializes");
    }
}

fn push_field(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    out.extend_from_slice(name.as_bytes());
    match value {
        Some(value) => push_json_str(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// The body the AWS agent answers `GetSecretValue` with: `ARN`, `Name`, `VersionId`,
/// `SecretString` or `SecretBinary`, `VersionStages` (when there are any), `CreatedDate`, in its
/// order and formats. A value from a backend without AWS metadata: `ARN` null, `Name` the
/// reference as asked, the backend's version and stages.
pub(super) fn secret_value_body(query: &Query, served: &ServedSecret) -> Vec<u8> {
    let secret = &served.secret;
    let aws = secret.aws.as_deref();
    let bytes = served.value.expose();
    let text = std::str::from_utf8(bytes).ok();
    // Secrets Manager says how it holds the value; a `#key` selection is always text.
    let binary = match aws.map(|a| &a.shape) {
        Some(ValueShape::SecretBinary) if served.reference.key().is_none() => true,
        _ => text.is_none(),
    };
    // Sized for the whole body at once: a buffer grown on the way would be copied and wiped.
    let mut out = Vec::with_capacity(256 + bytes.len() * 2 + secret.version_id.len());
    let arn = aws.map(|a| a.arn.as_str()).filter(|a| !a.is_empty());
    push_field(&mut out, "{\"ARN\":", arn);
    let name = aws.map_or(query.reference.as_str(), |a| a.name.as_str());
    push_field(&mut out, ",\"Name\":", Some(name));
    let version = Some(secret.version_id.as_str()).filter(|v| !v.is_empty());
    push_field(&mut out, ",\"VersionId\":", version);
    match text.filter(|_| !binary) {
        Some(text) => push_field(&mut out, ",\"SecretString\":", Some(text)),
        None => {
            let encoded = aws_smithy_types::base64::encode(bytes);
            push_field(&mut out, ",\"SecretBinary\":", Some(&encoded));
        }
    }
    if !secret.stages.is_empty() {
        out.extend_from_slice(b",\"VersionStages\":[");
        for (i, stage) in secret.stages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(&mut out, stage);
        }
        out.push(b']');
    }
    let created = secret.created_at.map(seconds_text);
    push_field(&mut out, ",\"CreatedDate\":", created.as_deref());
    out.push(b'}');
    out
}

#[derive(Serialize)]
struct ParameterBody<'a> {
    #[serde(rename = "Parameter")]
    parameter: Parameter<'a>,
}

/// Parameter Store's `Parameter`, fields in the service's (alphabetical) order.
#[derive(Serialize)]
struct Parameter<'a> {
    #[serde(rename = "ARN", skip_serializing_if = "Option::is_none")]
    arn: Option<&'a str>,
    #[serde(rename = "DataType")]
    data_type: &'a str,
    #[serde(rename = "LastModifiedDate", skip_serializing_if = "Option::is_none")]
    last_modified_date: Option<f64>,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Selector", skip_serializing_if = "Option::is_none")]
    selector: Option<&'a str>,
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Value")]
    value: &'a str,
    #[serde(rename = "Version")]
    version: i64,
}

/// The body the Lambda extension answers `GetParameter` with. A value from another backend is
/// shown as a `SecureString` named by its reference, with version 0 unless the backend numbers
/// its versions. A value that is not UTF-8 cannot be a parameter: None.
pub(super) fn parameter_body(query: &Query, served: &ServedSecret) -> Option<Vec<u8>> {
    let secret = &served.secret;
    let aws = secret.aws.as_deref();
    let value = std::str::from_utf8(served.value.expose()).ok()?;
    let (kind, data_type) = match aws.map(|a| &a.shape) {
        Some(ValueShape::Parameter { kind, data_type }) => (kind.as_str(), data_type.as_str()),
        _ => ("SecureString", "text"),
    };
    let body = ParameterBody {
        parameter: Parameter {
            arn: aws.map(|a| a.arn.as_str()).filter(|a| !a.is_empty()),
            data_type,
            last_modified_date: secret.created_at.map(seconds),
            name: aws.map_or(query.reference.as_str(), |a| a.name.as_str()),
            selector: query.selector.as_deref(),
            kind,
            value,
            version: secret.version_id.parse().unwrap_or(0),
        },
    };
    let mut out = Vec::with_capacity(256 + value.len() * 2);
    serde_json::to_writer(&mut out, &body).expect("a body of strings serializes");
    Some(out)
}

/// Which API's error vocabulary an answer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Api {
    SecretsManager,
    ParameterStore,
}

/// An error as the AWS agent relays a service error: the service's status and
/// `{"__type":"…", "message":"…"}` (its exact layout, the space included). Failures inside the
/// agent are `{"__type":"InternalFailure"}` with no message, as the AWS agent's are, so nothing
/// internal reaches the caller; unreachable backends are its `ConnectionError` (502).
pub(super) fn error_body(api: Api, error: &Error) -> (u16, String) {
    let sm = api == Api::SecretsManager;
    let (status, kind, message): (u16, &str, String) = match error {
        Error::NotFound(_) if sm => (
            400,
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret.".into(),
        ),
        Error::NotFound(m) => (400, "ParameterNotFound", m.clone()),
        Error::PermissionDenied(m) => (400, "AccessDeniedException", m.clone()),
        Error::InvalidArgument(m) if sm => (400, "InvalidParameterException", m.clone()),
        Error::InvalidArgument(m) => (400, "ValidationException", m.clone()),
        Error::ResourceExhausted(_) => (400, "ThrottlingException", "Rate exceeded".into()),
        Error::Unauthenticated(m) => (403, "UnrecognizedClientException", m.clone()),
        Error::Unavailable(_) => (502, "ConnectionError", "Read Error".into()),
        Error::FailedPrecondition(_)
        | Error::Unimplemented(_)
        | Error::DataLoss(_)
        | Error::Internal(_) => return (500, internal_failure()),
    };
    (status, typed_error(kind, &message))
}

pub(super) fn typed_error(kind: &str, message: &str) -> String {
    let message = serde_json::to_string(message).expect("a string serializes");
    format!("{{\"__type\":\"{kind}\", \"message\":{message}}}")
}

pub(super) fn internal_failure() -> String {
    "{\"__type\":\"InternalFailure\"}".to_owned()
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{
        backend::AwsMetadata, cache::CachedSecret, reference::SecretRef, secret::SecretValue,
    };

    fn served(reference: &str, value: &[u8], aws: Option<AwsMetadata>) -> ServedSecret {
        let secret = Arc::new(CachedSecret::for_test(
            SecretValue::from_slice(value),
            "v-1",
            vec!["AWSCURRENT".into()],
            Some(UNIX_EPOCH + Duration::from_millis(1_569_534_789_046)),
            aws.map(Box::new),
        ));
        ServedSecret {
            reference: SecretRef::parse(reference).unwrap(),
            value: Arc::clone(&secret.value),
            secret,
            hit: true,
            stale: false,
        }
    }

    #[test]
    fn secret_ids_become_sm_references() {
        let q = secrets_manager_query("secretId=prod%2Fdb&versionStage=AWSPREVIOUS", true).unwrap();
        assert_eq!(q.reference, "sm:prod/db?stage=AWSPREVIOUS");
        let q = secrets_manager_query(
            "secretId=a&versionId=v1&versionStage=S&refreshNow=TRUE",
            true,
        )
        .unwrap();
        assert_eq!(q.reference, "sm:a?version=v1");
        assert_eq!(q.required_stage.as_deref(), Some("S"));
        assert!(q.refresh_now);
        let q = secrets_manager_query("secretId=local:app/db%23user", true).unwrap();
        assert_eq!(q.reference, "local:app/db#user");
        let q = secrets_manager_query("secretId=local:app/db", false).unwrap();
        assert_eq!(
            q.reference, "sm:local:app/db",
            "psst references off: a plain id"
        );
        let q = path_query(
            "/v1/arn:aws:secretsmanager:us-east-1:1:secret:x-AbCdEf",
            "",
            "/v1/",
            true,
        )
        .unwrap();
        assert_eq!(
            q.reference,
            "sm:arn:aws:secretsmanager:us-east-1:1:secret:x-AbCdEf"
        );
        let q = path_query("/v1/vault:kv/app#pw", "versionId=3", "/v1/", true).unwrap();
        assert_eq!(q.reference, "vault:kv/app?version=3#pw");
    }

    #[test]
    fn bad_queries_are_refused_as_the_aws_agent_refuses_them() {
        let refused = |r: Result<Query, BadRequest>| r.unwrap_err().0;
        assert_eq!(
            refused(secrets_manager_query("versionId=1", true)),
            "missing parameter secretId"
        );
        assert_eq!(
            refused(secrets_manager_query("secretId=a&abc=1", true)),
            "unknown parameter: abc"
        );
        assert_eq!(
            refused(secrets_manager_query("secretId=a&refreshNow=123", true)),
            "invalid refreshNow value"
        );
        assert_eq!(
            refused(path_query("/v1/", "", "/v1/", true)),
            "missing secret ID"
        );
        assert!(refused(secrets_manager_query("secretId=a%3Fversion%3D1", true)).contains("'?'"));
        assert!(refused(secrets_manager_query("secretId=a%23k", true)).contains("'#'"));
        assert_eq!(
            refused(parameter_query("withDecryption=true", true)),
            "missing parameter name"
        );
        assert!(refused(parameter_query("name=/a:3&version=4", true)).contains("already selects"));
    }

    #[test]
    fn parameter_names_take_version_and_label_suffixes() {
        let q = parameter_query("name=%2Fapp%2Fdb&withDecryption=true", true).unwrap();
        assert_eq!((q.reference.as_str(), q.selector), ("ssm:/app/db", None));
        let q = parameter_query("name=/app/db:3", true).unwrap();
        assert_eq!(q.reference, "ssm:/app/db?version=3");
        assert_eq!(q.selector.as_deref(), Some(":3"));
        let q = parameter_query("name=/app/db&label=live", true).unwrap();
        assert_eq!(q.reference, "ssm:/app/db?label=live");
        assert_eq!(q.selector.as_deref(), Some(":live"));
        let q = parameter_query("name=arn:aws:ssm:us-east-1:1:parameter/app/db:2", true).unwrap();
        assert_eq!(
            q.reference,
            "ssm:arn:aws:ssm:us-east-1:1:parameter/app/db?version=2"
        );
        let q = parameter_query("name=local:app/db", true).unwrap();
        assert_eq!(q.reference, "local:app/db");
    }

    #[test]
    fn bodies_have_the_aws_agents_fields_in_its_order() {
        let aws = AwsMetadata {
            arn: "arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf".into(),
            name: "db".into(),
            shape: ValueShape::SecretString,
        };
        let q = secrets_manager_query("secretId=db", true).unwrap();
        let body = secret_value_body(&q, &served("sm:db", b"{\"pw\":\"x\"}", Some(aws.clone())));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"ARN":"arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf","Name":"db","VersionId":"v-1","SecretString":"{\"pw\":\"x\"}","VersionStages":["AWSCURRENT"],"CreatedDate":"1569534789.046"}"#
        );
        let binary = AwsMetadata {
            shape: ValueShape::SecretBinary,
            ..aws
        };
        let body = secret_value_body(&q, &served("sm:db", b"text", Some(binary)));
        assert!(String::from_utf8(body)
            .unwrap()
            .contains(r#""SecretBinary":"dGV4dA==""#));
        let q = secrets_manager_query("secretId=local:app/db", true).unwrap();
        let body = secret_value_body(&q, &served("local:app/db", &[0xff, 0], None));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"ARN":null,"Name":"local:app/db","VersionId":"v-1","SecretBinary":"/wA=","VersionStages":["AWSCURRENT"],"CreatedDate":"1569534789.046"}"#
        );
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for text in [
            "plain",
            "",
            "a \"q\" \\ b",
            "line\nbreak\ttab\u{1}",
            "é ☃ \u{7f}",
            "{\"k\":\"v\"}",
        ] {
            let mut out = Vec::new();
            push_json_str(&mut out, text);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
    }

    #[test]
    fn parameter_bodies_are_get_parameter_answers() {
        let aws = AwsMetadata {
            arn: "arn:aws:ssm:us-east-1:1:parameter/app/db".into(),
            name: "/app/db".into(),
            shape: ValueShape::Parameter {
                kind: "SecureString".into(),
                data_type: "text".into(),
            },
        };
        let q = parameter_query("name=/app/db:live", true).unwrap();
        let s = served("ssm:/app/db?label=live", b"pw", Some(aws));
        let body = parameter_body(&q, &s).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(r#"{"Parameter":{"ARN":"arn:aws:ssm:us-east-1:1:parameter/app/db","DataType":"text","LastModifiedDate":1569534789.046,"Name":"/app/db","Selector":":live","Type":"SecureString","Value":"pw","Version":0}}"#), "{text}");
        assert!(parameter_body(&q, &served("local:x", &[0xff], None)).is_none());
    }

    #[test]
    fn errors_never_carry_internal_messages() {
        let (status, body) = error_body(
            Api::SecretsManager,
            &Error::FailedPrecondition("/etc/psst/secret path".into()),
        );
        assert_eq!(
            (status, body.as_str()),
            (500, r#"{"__type":"InternalFailure"}"#)
        );
        let (status, body) = error_body(Api::SecretsManager, &Error::NotFound("x".into()));
        assert_eq!(status, 400);
        assert_eq!(
            body,
            r#"{"__type":"ResourceNotFoundException", "message":"Secrets Manager can't find the specified secret."}"#
        );
        let (_, body) = error_body(
            Api::ParameterStore,
            &Error::PermissionDenied("a \"q\"".into()),
        );
        assert_eq!(
            body,
            r#"{"__type":"AccessDeniedException", "message":"a \"q\""}"#
        );
        let (status, _) = error_body(Api::ParameterStore, &Error::Unavailable("10.0.0.1".into()));
        assert_eq!(status, 502);
    }
}
