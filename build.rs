//! Generates the etcd v3 gRPC server (and a client for our own tools) from `proto/`.
//!
//! protox parses the .proto files in pure Rust, so building etcdshim needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/rpc.proto", "proto/kv.proto", "proto/auth.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
