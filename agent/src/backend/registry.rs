//! The backend registry: what the agent knows about each backend *type*, in one place.
//!
//! A backend type ([`BackendType`]) says which reference prefix it serves, which names and
//! selectors it accepts, how the policy names its secrets, how its `[[backend]]` table is read,
//! whether dev mode turns it on, and how it is built. [`REGISTRY`] lists the types compiled
//! into this agent (each behind its Cargo feature); every list of backends, every message that
//! names them and every help text is generated from it. Adding a backend: its folder under
//! `backend/`, one line in [`REGISTRY`] (ARCHITECTURE.md has the recipe).

use std::{
    any::Any,
    fmt,
    hash::{Hash, Hasher},
    path::Path,
    sync::Arc,
    time::Duration,
};

use super::Backend;
use crate::reference::Selector;

/// The backend types compiled in, in the order lists and messages name them.
pub(crate) static REGISTRY: &[BackendKind] = &[
    #[cfg(feature = "local")]
    super::local::KIND,
    #[cfg(feature = "ssm")]
    super::ssm::KIND,
    #[cfg(feature = "sm")]
    super::sm::KIND,
    #[cfg(feature = "s3")]
    super::s3::KIND,
    #[cfg(feature = "vault")]
    super::vault::KIND,
];

/// One backend type: the rules and the construction of the backends a reference prefix names.
pub trait BackendType: Sync + 'static {
    /// The reference prefix, also the `type` of its `[[backend]]` table.
    fn prefix(&self) -> &'static str;

    /// Why `name` is not a name of this backend (the rest of "NAME {why}"), if it is not. The
    /// name is not empty.
    fn check_name(&self, name: &str) -> Result<(), &'static str>;

    /// Whether a listing prefix (the start of a name) may be asked for; the same form as
    /// `check_name`. Backends whose names are paths refuse `.` and `..` segments here.
    fn check_list_prefix(&self, _prefix: &str) -> Result<(), &'static str> {
        Ok(())
    }

    /// Whether a reference of this backend may carry `selector` (default: a numbered
    /// `version=N`, versions counting from 1).
    fn accepts(&self, selector: &Selector) -> bool {
        matches!(selector, Selector::Version(v) if is_positive_integer(v))
    }

    /// The selectors it accepts, for messages: e.g. "version=N or label=NAME".
    fn selectors_help(&self) -> &'static str {
        "version=N"
    }

    /// The name policy patterns are matched against, for a name of this backend (default:
    /// the name itself).
    fn policy_name<'a>(&self, name: &'a str) -> &'a str {
        name
    }

    /// Whether reads can be made under an assumed IAM role (`[[role]]` in the policy).
    fn reads_under_iam_role(&self) -> bool {
        false
    }

    /// Whether a change event's `event_name` names the secret `name` (both of this backend).
    /// Generous on purpose: a false match costs one re-read.
    fn same_secret(&self, event_name: &str, name: &str) -> bool {
        event_name == name
    }

    /// Reads its `[[backend]]` table, without the `type` key: the serde message on failure.
    fn parse(&self, table: toml::Value) -> Result<Arc<dyn BackendSettings>, String>;

    /// Whether `psstd --dev` serves it, and with which settings.
    fn dev(&self, context: &DevContext<'_>) -> Dev;
}

/// A backend type's settings, read from its `[[backend]]` table.
pub trait BackendSettings: DynEq + Any + fmt::Debug + Send + Sync {
    /// How long its values stay fresh in the cache.
    fn ttl(&self) -> Duration;

    /// Every problem with the settings, each message without the `backend `x`: ` in front.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }

    /// Builds the backend. Nothing may be sent to a remote service yet.
    fn build(&self, context: &BuildContext) -> anyhow::Result<Arc<dyn Backend>>;
}

/// What building a backend may need from the rest of the config.
pub struct BuildContext {
    /// `limits.max_value_bytes`.
    pub max_value_bytes: usize,
}

/// What dev mode hands a backend type to decide whether to serve it.
pub struct DevContext<'a> {
    pub state_dir: &'a Path,
    /// The environment, passed in so that tests can give their own.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The TTL dev mode gives every backend.
    pub ttl: Duration,
}

impl DevContext<'_> {
    /// The first of `names` set to a non-empty value.
    pub fn var(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find_map(|n| (self.env)(n).filter(|v| !v.is_empty()))
    }
}

/// Whether dev mode serves a backend type.
pub enum Dev {
    On(Arc<dyn BackendSettings>),
    /// Off, and why, in words that say how to turn it on.
    Off(String),
}

/// Equality across `dyn BackendSettings`, for `Config`'s `PartialEq`.
pub trait DynEq {
    fn dyn_eq(&self, other: &dyn Any) -> bool;
}

impl<T: PartialEq + Any> DynEq for T {
    fn dyn_eq(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

/// A registered backend type. `KIND` constants of the backends hold one each; its address is
/// the backend's identity.
pub struct Registered(pub &'static dyn BackendType);

/// The backend a reference names, by its prefix: a handle on a registered [`BackendType`].
/// Copy, compared and hashed as the address of its registration.
#[derive(Clone, Copy)]
pub struct BackendKind(&'static Registered);

impl BackendKind {
    /// Declares a kind (a backend's `KIND` constant): `registration` must be a `static`.
    pub const fn new(registration: &'static Registered) -> Self {
        Self(registration)
    }

    /// Every backend compiled in, in registry order.
    pub fn all() -> impl Iterator<Item = BackendKind> {
        REGISTRY.iter().copied()
    }

    /// The kind a prefix names, if one is compiled in.
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        Self::all().find(|k| k.prefix() == prefix)
    }

    /// The prefixes compiled in, for messages: "local, ssm, sm, s3, vault".
    pub fn prefixes() -> String {
        Self::all()
            .map(|k| k.prefix())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn prefix(self) -> &'static str {
        self.0 .0.prefix()
    }

    /// The backend type's rules.
    pub fn ty(self) -> &'static dyn BackendType {
        self.0 .0
    }

    /// Whether reads of this backend can be made under an assumed IAM role (`[[role]]`).
    pub fn reads_under_iam_role(self) -> bool {
        self.0 .0.reads_under_iam_role()
    }

    fn position(self) -> usize {
        REGISTRY
            .iter()
            .position(|k| *k == self)
            .unwrap_or(usize::MAX)
    }
}

impl PartialEq for BackendKind {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for BackendKind {}

impl Hash for BackendKind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0, state);
    }
}

/// Registry order (not on any request's path).
impl Ord for BackendKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.position().cmp(&other.position())
    }
}

impl PartialOrd for BackendKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

impl fmt::Debug for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// Reads a backend's settings struct from its table: the serde message on failure.
pub(crate) fn parse_table<T: serde::de::DeserializeOwned + BackendSettings>(
    table: toml::Value,
) -> Result<Arc<dyn BackendSettings>, String> {
    T::deserialize(table)
        .map(|settings| Arc::new(settings) as Arc<dyn BackendSettings>)
        .map_err(|e| e.message().to_owned())
}

/// Refuses `.` and `..` segments: for backends whose names are paths.
pub(crate) fn no_dot_segments(name: &str) -> Result<(), &'static str> {
    if name.split('/').any(|s| s == "." || s == "..") {
        return Err("may not contain '.' or '..' segments");
    }
    Ok(())
}

/// A positive decimal integer without leading zeros: the `version=` of numbered backends.
pub(crate) fn is_positive_integer(v: &str) -> bool {
    v.parse::<u64>().is_ok_and(|n| n > 0) && !v.starts_with('0')
}

/// For a backend's tests: each reference is rejected with a message that contains its text.
#[cfg(test)]
pub(crate) fn assert_rejected(cases: &[(&str, &str)]) {
    for (text, says) in cases {
        let err = crate::reference::SecretRef::parse(text)
            .expect_err(text)
            .to_string();
        assert!(err.contains(says), "{text:?}: {err}");
        assert!(err.starts_with("invalid reference: "), "{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_and_found_by_prefix() {
        let all: Vec<BackendKind> = BackendKind::all().collect();
        for (i, a) in all.iter().enumerate() {
            assert_eq!(BackendKind::from_prefix(a.prefix()), Some(*a));
            for b in &all[i + 1..] {
                assert_ne!(a, b);
                assert_ne!(a.prefix(), b.prefix());
                assert!(a < b, "registry order");
            }
        }
        assert_eq!(BackendKind::from_prefix("gcp"), None);
    }
}
