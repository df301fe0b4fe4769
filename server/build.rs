//! Compiles the etcd v3 API subset of `harness/proto/etcd.proto` (the one
//! definition the harness's etcd adapter uses too) for the side-by-side
//! benchmark `examples/loadgen`; the library and the server binary do not
//! include it. Uses the vendored `protoc`, like the workspace's other
//! build scripts: no system `protoc` needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc: PathBuf = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let dir = PathBuf::from("../harness/proto");
    let proto = dir.join("etcd.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(config, &[proto], &[dir, include])?;
    Ok(())
}
