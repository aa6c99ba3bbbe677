//! The one type that holds secret bytes.
//!
//! `SecretValue` zeroizes its buffer when dropped and prints a redaction in `Debug` and
//! `Display`, so a value can be passed around, logged by accident or put in an error without
//! leaking. Nothing else in the agent owns plaintext.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use zeroize::Zeroizing;

/// Secret bytes: wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// The plaintext. Call sites are the few places that must see it: crypto, JSON key
    /// extraction, and the reply encoder.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Shares the value as `Bytes` without copying it: the buffer is zeroized when the last
    /// `Bytes` and the last `Arc` are gone.
    pub fn share(self: &Arc<Self>) -> Bytes {
        Bytes::from_owner(Shared(Arc::clone(self)))
    }
}

struct Shared(Arc<SecretValue>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.expose()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted {} bytes>)", self.0.len())
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_bytes() {
        let value = SecretValue::from_slice(b"correct horse");
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted 13 bytes>)");
        assert_eq!(format!("{value}"), "<redacted 13 bytes>");
        assert_eq!(value.expose(), b"correct horse");
    }

    #[test]
    fn shared_bytes_outlive_the_arc() {
        let value = Arc::new(SecretValue::from_slice(b"abc"));
        let shared = value.share();
        drop(value);
        assert_eq!(&shared[..], b"abc");
    }
}
