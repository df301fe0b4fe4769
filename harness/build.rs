//! Compiles `proto/etcd.proto` (the part of etcd's v3 API the etcd adapter
//! uses) with tonic/prost and the vendored `protoc`, like the workspace's
//! root build.rs: no system `protoc` needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc: PathBuf = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let proto = PathBuf::from("proto/etcd.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(config, &[proto], &[PathBuf::from("proto"), include])?;
    Ok(())
}
