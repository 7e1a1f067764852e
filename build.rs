//! Generates the etcd v3 gRPC server (and a client for our own tools) from `proto/`.
//!
//! protox parses the .proto files in pure Rust, so building etcdshim needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/rpc.proto", "proto/kv.proto", "proto/auth.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // sqlx::migrate! embeds migrations/ at compile time; a new migration must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let descriptors = protox::compile(protos, ["proto"])?;
    // Kept for gRPC reflection, so grpcurl can list and call the services.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("etcd_descriptors.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".")
        // A buffer sized once per message: src/proto/codec.rs says why.
        .codec_path("crate::proto::codec::SizedCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
