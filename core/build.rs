//! Compiles `proto/chat.proto` once, for everyone: messages, the client (always, without
//! transport, so it also builds for wasm32), the server stubs (with the `server` feature), and
//! the encoded descriptor set that gRPC reflection serves.

use std::path::PathBuf;

use prost::Message as _;
use prost_build::{Service, ServiceGenerator};

/// tonic generates `ChatClient::new(inner)` and `ChatClient::connect(dst)` on every client,
/// which collide with the RPCs `New` and `Connect`. Only the Rust method names change;
/// the wire paths (`/chat.Chat/New`, `/chat.Chat/Connect`) come from the proto names and stay.
struct RenameClashingMethods(Box<dyn ServiceGenerator>);

impl ServiceGenerator for RenameClashingMethods {
    fn generate(&mut self, mut service: Service, buf: &mut String) {
        for method in &mut service.methods {
            if matches!(method.name.as_str(), "new" | "connect") {
                method.name = format!("{}_chat", method.name);
            }
        }
        self.0.generate(service, buf);
    }

    fn finalize(&mut self, buf: &mut String) {
        self.0.finalize(buf);
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        self.0.finalize_package(package, buf);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let descriptors = protox::compile(["chat.proto"], [&proto_dir])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("chat_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    let with_server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    let services = tonic_prost_build::configure()
        .build_client(true)
        .build_transport(false)
        .build_server(with_server)
        .codec_path("crate::codec::ChatCodec")
        .service_generator();

    prost_build::Config::new()
        .service_generator(Box::new(RenameClashingMethods(services)))
        .compile_fds(descriptors)?;
    Ok(())
}
