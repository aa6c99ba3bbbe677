//! The `psst.v1` API: messages, the `Secrets` client and server, and the encoded descriptor set
//! that the agent serves through gRPC reflection.
//!
//! `Secret` and `PutSecretRequest` carry secret values, so their `Debug` is written by hand and
//! prints `value: <redacted N bytes>` instead of the bytes.
#![forbid(unsafe_code)]

pub mod codec {
    //! The codec of the generated clients and servers: prost's, except that a message that cannot
    //! be decoded (a wrong wire type, invalid UTF-8 in a string field) is `INVALID_ARGUMENT`: it
    //! is the sender's mistake, and a retry will not fix it. tonic-prost says `INTERNAL`.

    use std::marker::PhantomData;

    use tonic::{
        codec::{BufferSettings, Codec, DecodeBuf, Decoder},
        Code, Status,
    };
    use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

    /// The encode buffer of a `WatchSecrets` stream, which lives as long as the stream: about one
    /// event of a small secret, where tonic's default is 8 KiB. A larger event grows the buffer
    /// as it needs; tonic reuses it once the event is sent. Every other message keeps tonic's
    /// default (a unary reply's buffer lives only as long as the call).
    pub const WATCH_EVENT_BUFFER: usize = 512;

    pub struct ApiCodec<T, U>(PhantomData<(T, U)>);

    impl<T, U> Default for ApiCodec<T, U> {
        fn default() -> Self {
            Self(PhantomData)
        }
    }

    impl<T, U> Codec for ApiCodec<T, U>
    where
        T: prost::Message + Send + 'static,
        U: prost::Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = ProstEncoder<T>;
        type Decoder = ApiDecoder<U>;

        fn encoder(&mut self) -> Self::Encoder {
            if std::any::TypeId::of::<T>() == std::any::TypeId::of::<crate::v1::WatchEvent>() {
                return ProstCodec::<T, U>::raw_encoder(BufferSettings::new(
                    WATCH_EVENT_BUFFER,
                    WATCH_EVENT_BUFFER,
                ));
            }
            ProstCodec::<T, U>::default().encoder()
        }

        fn decoder(&mut self) -> Self::Decoder {
            ApiDecoder(ProstCodec::<T, U>::default().decoder())
        }
    }

    pub struct ApiDecoder<U>(ProstDecoder<U>);

    impl<U: prost::Message + Default> Decoder for ApiDecoder<U> {
        type Item = U;
        type Error = Status;

        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
            self.0.decode(buf).map_err(|status| match status.code() {
                Code::Internal => Status::invalid_argument(format!(
                    "the message could not be decoded: {}",
                    status.message()
                )),
                _ => status,
            })
        }

        fn buffer_settings(&self) -> BufferSettings {
            self.0.buffer_settings()
        }
    }
}

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
