//! What the benchmarks that run `flytewasm serve` as a process share.

use std::path::{Path, PathBuf};
use std::process::Command;

use flytewasm::testkit;

/// A host config in `dir` that signs resource_meta with a fixed key.
pub fn host_config(dir: &Path) -> PathBuf {
    let keys = dir.join("keys.yaml");
    std::fs::write(
        &keys,
        "signing-key: k1\nkeys:\n  k1: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
    )
    .unwrap();
    let config = dir.join("host.yaml");
    let text = format!("security:\n  resource-meta-keys: {}\n", keys.display());
    std::fs::write(&config, text).unwrap();
    config
}

/// `flytewasm serve` on free loopback ports, with `config`, the built
/// plugins and the tests' compile cache, on the cluster in `kubeconfig`.
/// The plugins are compiled into that cache first (once per bench): a `serve` that found it
/// cold would serve on Winch's code while Cranelift compiles beside the
/// measurement (a fifth fewer GetTasks, and the compiler's memory in its
/// peak RSS).
pub fn serve(config: &Path, kubeconfig: &Path) -> Command {
    let root = testkit::workspace_dir();
    static COMPILED: std::sync::Once = std::sync::Once::new();
    COMPILED.call_once(|| {
        for entry in std::fs::read_dir(root.join("target/plugins")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "wasm") {
                testkit::runtime().load(&path).unwrap();
            }
        }
    });
    let mut command = Command::new(env!("CARGO_BIN_EXE_flytewasm"));
    command
        .args(["serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--config")
        .arg(config)
        .arg("--plugins")
        .arg(root.join("target/plugins"))
        .env("KUBECONFIG", kubeconfig)
        .env("FLYTEWASM_CACHE_DIR", root.join("target/flytewasm-cache"))
        .env(
            "FLYTEWASM_PRECOMPILE_KEY",
            root.join("target/flytewasm-test-keys/precompile.key"),
        )
        .env("FLYTEWASM_LOG", "warn");
    command
}
