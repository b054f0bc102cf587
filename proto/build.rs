//! Generates Rust types for flyteidl (Flyte 1) and, with the `grpc`
//! feature, flyteidl2's connector protocol (Flyte 2) from the
//! FileDescriptorSet that `just setup` extracts from the pinned PyPI
//! `flyteidl` and `flyteidl2` wheels (`scripts/flyteidl_descriptors.py`). No third-party .proto file is
//! committed: a build without the descriptor set fails and says why.

use std::{env, fs, path::PathBuf};

/// The services the host serves: Flyte 1's agent protocol and Flyte 2's
/// connector protocol. Flyte's admin services are left out.
const SERVED: [&str; 2] = [
    "flyteidl/service/agent.proto",
    "flyteidl2/connector/service.proto",
];

fn main() {
    let descriptors = descriptor_set_path();
    println!("cargo:rerun-if-changed={}", descriptors.display());
    println!("cargo:rerun-if-env-changed=FLYTEIDL_DESCRIPTORS");
    let bytes = fs::read(&descriptors).unwrap_or_else(|err| {
        panic!(
            "cannot read the flyteidl descriptor set at {}: {err}\n\
             run `just setup` (it extracts it from the pinned flyteidl wheel), \
             or point FLYTEIDL_DESCRIPTORS at one",
            descriptors.display()
        )
    });
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());

    let mut fds = <prost_types::FileDescriptorSet as prost::Message>::decode(bytes.as_slice())
        .expect("the flyteidl descriptor set is not a valid FileDescriptorSet; rerun `just setup`");

    let mut config = prost_build::Config::new();
    if env::var_os("CARGO_FEATURE_GRPC").is_none() {
        // Plugins read Flyte 1's types only (a Flyte 2 TaskTemplate reaches
        // them re-read as Flyte 1's, the same field numbers).
        fds.file
            .retain(|file| !file.name().starts_with("flyteidl2/"));
    } else {
        for file in &mut fds.file {
            if !SERVED.contains(&file.name()) {
                file.service.clear();
            }
        }
        config.service_generator(
            tonic_prost_build::configure()
                .build_server(true)
                .build_client(true)
                .service_generator(),
        );
    }
    config
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .include_file("mod.rs")
        .compile_fds(fds)
        .expect("generating flyteidl types");

    own_schemas(&out);

    // proto3 JSON mapping (both name styles accepted, unknown keys ignored, as Flyte's jsonpb does).
    let mut serde_files = Vec::new();
    pbjson_build::Builder::new()
        .register_descriptors(&bytes)
        .expect("registering descriptors")
        .ignore_unknown_fields()
        .out_dir(&out)
        .build(&[".flyteidl", ".google.api"])
        .expect("generating proto3 JSON mapping");
    for entry in fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(package) = name.strip_suffix(".serde.rs") {
            serde_files.push(package.to_owned());
        }
    }
    // Each package's serde impls live beside its prost types.
    for package in serde_files {
        let types = out.join(format!("{package}.rs"));
        let mut text = fs::read_to_string(&types).unwrap();
        let include = format!("\ninclude!(\"{package}.serde.rs\");\n");
        if !text.contains(&include) {
            text.push_str(&include);
            fs::write(&types, text).unwrap();
        }
    }
}

/// flytewasm's own custom-config schemas (`proto/flytewasm/**`), parsed
/// with protox (no protoc needed), with the same JSON mapping.
fn own_schemas(out: &std::path::Path) {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    // Every schema under proto/flytewasm/ (`just new-plugin` adds one).
    let mut files = Vec::new();
    find_protos(&manifest, &manifest.join("flytewasm"), &mut files);
    files.sort();
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("flytewasm").display()
    );
    for file in &files {
        println!("cargo:rerun-if-changed={}", manifest.join(file).display());
    }
    let fds = protox::compile(&files, [&manifest]).unwrap_or_else(|err| panic!("{err:?}"));
    let bytes = prost::Message::encode_to_vec(&fds);
    prost_build::Config::new()
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .include_file("own.rs")
        .compile_fds(fds)
        .expect("generating flytewasm's schemas");
    pbjson_build::Builder::new()
        .register_descriptors(&bytes)
        .expect("registering descriptors")
        .ignore_unknown_fields()
        .out_dir(out)
        .build(&[".flytewasm"])
        .expect("generating flytewasm's JSON mapping");
}

/// `.proto` files under `dir`, relative to `root`.
fn find_protos(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            find_protos(root, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            let relative = path.strip_prefix(root).unwrap();
            out.push(relative.to_string_lossy().into_owned());
        }
    }
}

fn descriptor_set_path() -> PathBuf {
    if let Ok(path) = env::var("FLYTEIDL_DESCRIPTORS") {
        return PathBuf::from(path);
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    manifest.join("../.flyteidl/flyteidl.fds.bin")
}
