//! Secret references: the one textual form that names a secret everywhere (CLI, clients, policy,
//! config).
//!
//! ```text
//! BACKEND:NAME[?SELECTOR][#KEY]
//!
//! local:demo/db-password             the current version in the local store
//! local:demo/db-password?version=3   version 3
//! ssm:/prod/db/password?label=live   the Parameter Store version labelled "live"
//! sm:prod/db#password                key "password" of the JSON value of prod/db
//! sm:prod/db?stage=AWSPREVIOUS#user  key "user" of the previous version
//! s3:my-bucket/prod/db               object prod/db in bucket my-bucket
//! vault:secret/prod/db#password      field "password" of KV v2 secret prod/db on mount "secret"
//! ```
//!
//! `?` and `#` never appear in a name, so the form has one reading. A selector is exactly one
//! of `version=`, `stage=` or `label=`, and each backend accepts only the ones it has.
//! Parsing is strict and `Display` prints the canonical form, which parses back to the same value.

use std::{fmt, str::FromStr, sync::Arc};

use crate::backend::aws::role::AssumedRole;

/// Longest reference accepted, in bytes. Secrets Manager ARNs are the longest real names.
pub const MAX_REFERENCE_LEN: usize = 2048;

/// The backend a reference names: a handle on its type in the registry
/// (`backend/registry.rs`), which holds each backend's name and selector rules.
pub use crate::backend::registry::BackendKind;

/// Which version of a secret a reference asks for. None means the current one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    Version(String),
    Stage(String),
    Label(String),
}

impl Selector {
    fn parse(text: &str) -> Result<Self, ReferenceError> {
        let (kind, value) = text.split_once('=').ok_or_else(|| {
            ReferenceError::new(format!(
                "selector '{text}' must be version=, stage= or label="
            ))
        })?;
        if value.is_empty()
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(ReferenceError::new(format!(
                "selector value '{value}' must be non-empty letters, digits, '-', '_' or '.'"
            )));
        }
        let value = value.to_owned();
        match kind {
            "version" => Ok(Self::Version(value)),
            "stage" => Ok(Self::Stage(value)),
            "label" => Ok(Self::Label(value)),
            other => Err(ReferenceError::new(format!(
                "unknown selector '{other}': expected version, stage or label"
            ))),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(v) => write!(f, "version={v}"),
            Self::Stage(s) => write!(f, "stage={s}"),
            Self::Label(l) => write!(f, "label={l}"),
        }
    }
}

/// A parsed reference. Construct it with `parse` (or `FromStr`); every instance is valid.
///
/// As a cache key it also says whose read it is: `read_as` an assumed IAM role (see
/// `backend/aws/role/`), so equal keys are equal secrets read with equal IAM permissions. The
/// role is never part of the text form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef {
    backend: BackendKind,
    name: String,
    selector: Option<Selector>,
    key: Option<String>,
    role: Option<Arc<AssumedRole>>,
}

/// Why a reference was rejected. The message names the problem, never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference: {0}")]
pub struct ReferenceError(String);

impl ReferenceError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl SecretRef {
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::new("empty reference"));
        }
        if text.len() > MAX_REFERENCE_LEN {
            return Err(ReferenceError::new(format!(
                "longer than {MAX_REFERENCE_LEN} bytes"
            )));
        }
        // Printable ASCII (almost every reference) has neither; otherwise, look closer.
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            if let Some(c) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
                return Err(ReferenceError::new(format!(
                    "contains whitespace or a control character ({c:?})"
                )));
            }
        }
        let (prefix, rest) = split_at_byte(text, b':').ok_or_else(|| {
            ReferenceError::new(format!(
                "'{text}' has no backend prefix: write BACKEND:NAME, e.g. local:{text}"
            ))
        })?;
        let backend = kind_of(prefix)?;
        let (head, key) = match split_at_byte(rest, b'#') {
            Some((head, "")) => {
                return Err(ReferenceError::new(format!(
                    "empty key after '#' in '{head}#'"
                )))
            }
            Some((head, key)) => (head, Some(key.to_owned())),
            None => (rest, None),
        };
        let (name, selector) = match split_at_byte(head, b'?') {
            Some((name, selector)) => (name, Some(Selector::parse(selector)?)),
            None => (head, None),
        };
        validate_name(backend, name)?;
        if let Some(selector) = &selector {
            if !backend.ty().accepts(selector) {
                return Err(ReferenceError::new(format!(
                    "selector '{selector}' does not apply to {backend}: it takes {}",
                    backend.ty().selectors_help()
                )));
            }
        }
        Ok(Self {
            backend,
            name: name.to_owned(),
            selector,
            key,
            role: None,
        })
    }

    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn selector(&self) -> Option<&Selector> {
        self.selector.as_ref()
    }

    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The name policy patterns are matched against. Access is granted per secret: versions
    /// and JSON keys of a readable secret are readable. For a Secrets Manager ARN it is the
    /// secret name inside the ARN (without a full ARN's random `-XXXXXX` suffix); the core
    /// checks the name the backend reports as well, so a misread ARN cannot widen a grant.
    pub fn policy_name(&self) -> &str {
        self.backend.ty().policy_name(&self.name)
    }

    /// The same reference with the backend's own name for the secret (a cache key for the
    /// name an ARN resolved to). `name` comes from the backend, not from a caller.
    pub fn with_name(&self, name: impl Into<String>) -> SecretRef {
        SecretRef {
            name: name.into(),
            ..self.clone()
        }
    }

    /// The reference without its `#key`: one cache entry serves every key of a value.
    pub fn without_key(&self) -> SecretRef {
        SecretRef {
            key: None,
            ..self.clone()
        }
    }

    /// This reference, read under `role` (None: as the agent), without a copy.
    pub fn with_role(mut self, role: Option<Arc<AssumedRole>>) -> SecretRef {
        self.role = role;
        self
    }

    /// The same reference read under `role` (None: as the agent).
    pub fn read_as(&self, role: Option<Arc<AssumedRole>>) -> SecretRef {
        SecretRef {
            role,
            ..self.clone()
        }
    }

    /// The IAM role this reference is read under, if any.
    pub fn role(&self) -> Option<&Arc<AssumedRole>> {
        self.role.as_ref()
    }

    /// The same secret at the given version.
    pub fn at_version(&self, version: impl Into<String>) -> SecretRef {
        SecretRef {
            selector: Some(Selector::Version(version.into())),
            key: None,
            ..self.clone()
        }
    }
}

impl FromStr for SecretRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.backend, self.name)?;
        if let Some(selector) = &self.selector {
            write!(f, "?{selector}")?;
        }
        if let Some(key) = &self.key {
            write!(f, "#{key}")?;
        }
        Ok(())
    }
}

/// Validates a listing prefix: `BACKEND:` followed by the start of a name.
pub fn parse_prefix(text: &str) -> Result<(BackendKind, &str), ReferenceError> {
    let (prefix, rest) = text.split_once(':').ok_or_else(|| {
        ReferenceError::new(format!(
            "prefix '{text}' has no backend: write BACKEND: or BACKEND:PATH/, e.g. local:demo/"
        ))
    })?;
    let backend = kind_of(prefix)?;
    if rest.len() > MAX_REFERENCE_LEN
        || rest
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(ReferenceError::new(format!(
            "prefix '{text}' may not contain whitespace, control characters, '?' or '#'"
        )));
    }
    backend
        .ty()
        .check_list_prefix(rest)
        .map_err(|why| ReferenceError::new(format!("prefix '{text}' {why}")))?;
    Ok((backend, rest))
}

/// The kind a reference prefix names, or the error listing the compiled-in ones.
fn kind_of(prefix: &str) -> Result<BackendKind, ReferenceError> {
    BackendKind::from_prefix(prefix).ok_or_else(|| {
        ReferenceError::new(format!(
            "unknown backend '{prefix}': expected one of {}",
            BackendKind::prefixes()
        ))
    })
}

/// `str::split_once` for an ASCII delimiter, by bytes: such a byte is never inside a multi-byte
/// character, so both sides are whole strings.
fn split_at_byte(text: &str, delimiter: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == delimiter)?;
    Some((&text[..at], &text[at + 1..]))
}

fn validate_name(backend: BackendKind, name: &str) -> Result<(), ReferenceError> {
    if name.is_empty() {
        return Err(ReferenceError::new(format!(
            "empty name after '{backend}:'"
        )));
    }
    backend
        .ty()
        .check_name(name)
        .map_err(|why| ReferenceError::new(format!("{backend} name '{name}' {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_documented_examples_parse() {
        for text in [
            "local:demo/db-password",
            "local:demo/db-password?version=3",
            "ssm:/prod/db/password",
            "ssm:/prod/db/password?label=live",
            "ssm:/prod/db/password?version=12",
            "ssm:plain-name",
            "sm:prod/db#password",
            "sm:prod/db?stage=AWSPREVIOUS#user",
            "sm:prod/db?version=a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
            "sm:arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
            "s3:my-bucket/prod/db",
            "s3:my-bucket/prod/db?version=3HL4kqtJlcpXroDTDmJ",
            "vault:secret/prod/db#password",
            "vault:secret/prod/db?version=2#password",
        ] {
            let parsed = SecretRef::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn parts_are_where_they_belong() {
        let r = SecretRef::parse("sm:prod/db?stage=AWSPREVIOUS#user").unwrap();
        assert_eq!(r.backend(), crate::backend::sm::KIND);
        assert_eq!(r.name(), "prod/db");
        assert_eq!(r.selector(), Some(&Selector::Stage("AWSPREVIOUS".into())));
        assert_eq!(r.key(), Some("user"));
        assert_eq!(r.policy_name(), "prod/db");
        let arn = SecretRef::parse(
            "sm:arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
        )
        .unwrap();
        assert_eq!(arn.policy_name(), "prod/db");
        let partial =
            SecretRef::parse("sm:arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db")
                .unwrap();
        assert_eq!(partial.policy_name(), "prod/db");
        let local = SecretRef::parse("local:a/b-123456").unwrap();
        assert_eq!(local.policy_name(), "a/b-123456", "only ARNs are rewritten");
        assert_eq!(r.without_key().to_string(), "sm:prod/db?stage=AWSPREVIOUS");
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty reference"),
            ("demo/db", "no backend prefix"),
            ("gcp:foo", "unknown backend 'gcp'"),
            ("local:", "empty name"),
            ("local:/abs", "empty path segment"),
            ("local:a//b", "empty path segment"),
            ("local:a/../b", "'..'"),
            ("local:a b", "whitespace"),
            ("local:a\u{0}b", "control character"),
            ("local:a$b", "may only use"),
            ("local:a?version=0", "does not apply"),
            ("local:a?version=x", "does not apply"),
            ("local:a?stage=AWSCURRENT", "does not apply"),
            ("local:a?version=", "must be non-empty"),
            ("local:a?vers=1", "unknown selector 'vers'"),
            ("local:a?1", "must be version="),
            ("local:a#", "empty key"),
        ] {
            let err = SecretRef::parse(text).expect_err(text).to_string();
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.starts_with("invalid reference: "), "{err}");
        }
        let long = format!("local:{}", "a".repeat(MAX_REFERENCE_LEN));
        assert!(SecretRef::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("local:").unwrap(),
            (crate::backend::local::KIND, "")
        );
        assert_eq!(
            parse_prefix("ssm:/prod/").unwrap(),
            (crate::backend::ssm::KIND, "/prod/")
        );
        assert!(parse_prefix("demo/").is_err());
        assert!(parse_prefix("local:a#b").is_err());
        for text in [
            "vault:../",
            "vault:secret/../",
            "vault:..",
            "local:./a",
            "vault:.",
        ] {
            let err = parse_prefix(text).unwrap_err().to_string();
            assert!(err.contains("'.' or '..'"), "{text}: {err}");
        }
        assert!(parse_prefix("vault:secret/a.b/").is_ok());
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-][A-Za-z0-9._-]{0,11}".prop_filter("dot segments", |s| s != "." && s != "..")
    }

    fn any_ref() -> impl Strategy<Value = SecretRef> {
        let local = (
            prop::collection::vec(segment(), 1..4),
            prop::option::of(1u32..100_000),
        )
            .prop_map(|(segments, version)| SecretRef {
                backend: crate::backend::local::KIND,
                name: segments.join("/"),
                selector: version.map(|v| Selector::Version(v.to_string())),
                key: None,
                role: None,
            });
        let sm = (
            prop::collection::vec("[A-Za-z0-9/_+=.@-]{1,12}", 1..3),
            prop::option::of(prop_oneof![
                "[A-Z]{1,12}".prop_map(Selector::Stage),
                "[a-f0-9-]{1,36}".prop_map(Selector::Version),
            ]),
            prop::option::of("[^#\\s\\p{C}][^\\s\\p{C}]{0,10}"),
        )
            .prop_map(|(parts, selector, key)| SecretRef {
                backend: crate::backend::sm::KIND,
                name: parts.concat(),
                selector,
                key,
                role: None,
            });
        let ssm = (
            prop::collection::vec(segment(), 1..4),
            prop::option::of(prop_oneof![
                (1u32..1000).prop_map(|v| Selector::Version(v.to_string())),
                "[a-z][a-z0-9_.-]{0,10}".prop_map(Selector::Label),
            ]),
        )
            .prop_map(|(segments, selector)| SecretRef {
                backend: crate::backend::ssm::KIND,
                name: format!("/{}", segments.join("/")),
                selector,
                key: None,
                role: None,
            });
        prop_oneof![local, sm, ssm]
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(r in any_ref()) {
            let text = r.to_string();
            prop_assert_eq!(SecretRef::parse(&text), Ok(r));
        }

        #[test]
        fn parse_then_format_is_canonical(text in "[a-z0-9]{1,5}:[ -~]{0,40}") {
            if let Ok(r) = SecretRef::parse(&text) {
                prop_assert_eq!(r.to_string(), text);
            }
        }

        #[test]
        fn splitting_by_bytes_is_splitting_by_characters(text in "\\PC{0,40}[:#?]?\\PC{0,40}") {
            for delimiter in [b':', b'#', b'?'] {
                prop_assert_eq!(split_at_byte(&text, delimiter), text.split_once(delimiter as char));
            }
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,80}") {
            let _ = SecretRef::parse(&text);
        }
    }
}
