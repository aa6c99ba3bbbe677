//! Compiles `psst/v1/psst.proto` with protox (no system `protoc`) and writes the descriptor set
//! that the agent serves through gRPC reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=psst");
    let fds = protox::compile(["psst/v1/psst.proto"], ["."])?;
    std::fs::write(
        out.join("psst_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::ApiCodec")
        .bytes(".psst.v1")
        .skip_debug([
            ".psst.v1.Secret",
            ".psst.v1.PutSecretRequest",
            ".psst.v1.GeneratePasswordResponse",
        ])
        .compile_fds(fds)?;
    Ok(())
}
