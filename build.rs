//! Compiles `proto/*.proto` into Rust with tonic/prost.
//!
//! No system `protoc` is needed: the `protoc-bin-vendored` crate ships the
//! compiler binary for the common platforms, so a fresh machine with only the
//! Rust toolchain can build the workspace.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc: PathBuf = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    let protos = [
        PathBuf::from("proto/kv.proto"),
        PathBuf::from("proto/paxos.proto"),
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    tonic_prost_build::configure().compile_with_config(
        config,
        &protos,
        &[PathBuf::from("proto"), include],
    )?;
    Ok(())
}
