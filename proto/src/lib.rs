//! The `psst.v1` API: messages, the `Secrets` client and server, and the encoded descriptor set
//! that the agent serves through gRPC reflection.
//!
//! `Secret` and `PutSecretRequest` carry secret values, so their `Debug` is written by hand and
//! prints `value: <redacted N bytes>` instead of the bytes.
#![forbid(unsafe_code)]

pub mod v1 {
    #![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
    include!(concat!(env!("OUT_DIR"), "/psst.v1.rs"));

    /// The encoded `FileDescriptorSet` of `psst/v1/psst.proto` (with its imports).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/psst_descriptor.bin"));

    /// Fully qualified service names, as gRPC and reflection spell them.
    pub const SECRETS_SERVICE: &str = "psst.v1.Secrets";
    pub const ADMIN_SERVICE: &str = "psst.v1.Admin";

    struct Redacted(usize);

    impl std::fmt::Debug for Redacted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "<redacted {} bytes>", self.0)
        }
    }

    impl std::fmt::Debug for Secret {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Secret")
                .field("reference", &self.reference)
                .field("value", &Redacted(self.value.len()))
                .field("version_id", &self.version_id)
                .field("stages", &self.stages)
                .field("created_at", &self.created_at)
                .field("cache", &self.cache)
                .finish()
        }
    }

    impl std::fmt::Debug for GeneratePasswordResponse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("GeneratePasswordResponse")
                .field("value", &Redacted(self.value.len()))
                .finish()
        }
    }

    impl std::fmt::Debug for PutSecretRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PutSecretRequest")
                .field("reference", &self.reference)
                .field("value", &Redacted(self.value.len()))
                .finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1::*;

    #[test]
    fn debug_never_prints_values() {
        let secret = Secret {
            reference: "local:a".into(),
            value: bytes::Bytes::from_static(b"hunter2-value"),
            ..Default::default()
        };
        let put = PutSecretRequest {
            reference: "local:a".into(),
            value: bytes::Bytes::from_static(b"hunter2-value"),
        };
        let batch = BatchGetSecretsResponse {
            results: vec![BatchGetResult {
                reference: "local:a".into(),
                result: Some(batch_get_result::Result::Secret(secret.clone())),
            }],
        };
        let generated = GeneratePasswordResponse {
            value: bytes::Bytes::from_static(b"hunter2-value"),
        };
        for printed in [
            format!("{generated:?}"),
            format!("{secret:?}"),
            format!("{put:?}"),
            format!("{batch:?}"),
            format!("{secret:#?}"),
        ] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("<redacted 13 bytes>"), "{printed}");
        }
    }

    #[test]
    fn descriptor_set_names_the_service() {
        let fds = <prost_types::FileDescriptorSet as prost::Message>::decode(FILE_DESCRIPTOR_SET)
            .unwrap();
        let file = fds.file.iter().find(|f| f.package() == "psst.v1").unwrap();
        assert_eq!(file.service[0].name(), "Secrets");
    }
}
