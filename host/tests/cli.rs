//! `flytewasm render` and `flytewasm plugin inspect` as a user runs them:
//! the binary, real files, exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flytewasm::testkit;
use flytewasm_proto::flyteidl::admin::TaskSpec;
use flytewasm_proto::flyteidl::core::{Identifier, TaskTemplate};
use prost::Message;
use serde_json::{Value, json};

fn flytewasm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flytewasm"))
        .args(args)
        .env(
            "FLYTEWASM_CACHE_DIR",
            testkit::workspace_dir().join("target/flytewasm-cache"),
        )
        .output()
        .expect("running flytewasm")
}

fn plugins_dir() -> String {
    testkit::component_path("spark")
        .parent()
        .unwrap()
        .display()
        .to_string()
}

fn render(task: &Path, extra: &[&str]) -> Output {
    let plugins = plugins_dir();
    let mut args = vec!["render", "--plugins", &plugins, "--execution", "exec1"];
    args.extend_from_slice(extra);
    let task = task.display().to_string();
    args.push(&task);
    flytewasm(&args)
}

fn spark_template(custom: Option<Value>) -> TaskTemplate {
    TaskTemplate {
        id: Some(Identifier {
            resource_type: 1,
            project: "flytesnacks".into(),
            domain: "development".into(),
            name: "my.tasks.spark_job".into(),
            version: "v1".into(),
            ..Default::default()
        }),
        ..testkit::container_task("spark", custom, "ghcr.io/example/spark:1").template
    }
}

struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Files(tempfile::tempdir().unwrap())
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A failed run: exit code 1, the message on stderr, and no panic.
fn assert_fails_with(output: &Output, message: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(message), "expected {message:?} in: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    assert!(output.stdout.is_empty(), "nothing on stdout when failing");
}

fn yaml(output: &Output) -> Value {
    assert!(output.status.success(), "stderr: {}", stderr(output));
    serde_yaml::from_slice(&output.stdout).expect("YAML on stdout")
}

#[test]
fn renders_a_spark_task_from_protobuf_json_and_task_spec() {
    let files = Files::new();
    let template = spark_template(Some(
        json!({ "mainApplicationFile": "local:///app.py", "sparkConf": { "spark.executor.instances": "2" } }),
    ));
    let pb = files.write("task.pb", &template.encode_to_vec());
    let json_file = files.write(
        "task.json",
        serde_json::to_string(&template).unwrap().as_bytes(),
    );
    let spec = files.write(
        "task_1.pb",
        &TaskSpec {
            template: Some(template),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    for task in [&pb, &json_file, &spec] {
        let object = yaml(&render(task, &[]));
        assert_eq!(object["kind"], "SparkApplication", "{}", task.display());
        assert_eq!(object["metadata"]["name"], "exec1-n0-0");
        assert_eq!(object["metadata"]["namespace"], "flytesnacks-development");
        assert_eq!(
            object["metadata"]["labels"]["task-name"],
            "my.tasks.spark_job"
        );
        assert_eq!(object["spec"]["executor"]["instances"], 2);
        assert_eq!(
            object["spec"]["arguments"][2],
            "s3://flyte-data/metadata/flytesnacks-development-exec1/n0/data/inputs.pb"
        );
    }
}

#[test]
fn name_namespace_and_config_flags_shape_the_object() {
    let files = Files::new();
    let task = files.write(
        "task.pb",
        &spark_template(Some(json!({ "mainClass": "org.Example" }))).encode_to_vec(),
    );
    let config = files.write(
        "config.yaml",
        b"k8s:\n  inject-finalizer: true\n  default-labels: { team: data }\nplugins:\n  spark:\n    spark-config-default: { spark.ui.enabled: 'false' }\n",
    );
    let object = yaml(&render(
        &task,
        &[
            "--namespace",
            "ml",
            "--name",
            "MyJob_1",
            "--config",
            &config.display().to_string(),
        ],
    ));
    assert_eq!(object["metadata"]["name"], "my-job-1", "made DNS-1123");
    assert_eq!(object["metadata"]["namespace"], "ml");
    assert_eq!(
        object["metadata"]["finalizers"],
        json!(["flyte.org/finalizer-k8s"])
    );
    assert_eq!(object["metadata"]["labels"]["team"], "data");
    assert_eq!(object["spec"]["sparkConf"]["spark.ui.enabled"], "false");
    assert_eq!(object["spec"]["mainClass"], "org.Example");
}

#[test]
fn a_task_with_no_custom_fails_naming_it() {
    let files = Files::new();
    let task = files.write("task.pb", &spark_template(None).encode_to_vec());
    assert_fails_with(
        &render(&task, &[]),
        "task type `spark` needs its configuration in TaskTemplate.custom",
    );
}

#[test]
fn a_task_with_neither_application_file_nor_class_fails() {
    let files = Files::new();
    let task = files.write(
        "task.pb",
        &spark_template(Some(json!({ "sparkConf": { "a": "b" } }))).encode_to_vec(),
    );
    assert_fails_with(
        &render(&task, &[]),
        "either mainApplicationFile or mainClass must be set",
    );
}

#[test]
fn a_wrong_typed_field_fails_naming_the_field() {
    let files = Files::new();
    let template = spark_template(Some(
        json!({ "mainClass": "x", "sparkConf": { "spark.executor.instances": 3 } }),
    ));
    let task = files.write("task.pb", &template.encode_to_vec());
    assert_fails_with(&render(&task, &[]), "TaskTemplate.custom.sparkConf");
}

#[test]
fn a_truncated_protobuf_fails_cleanly() {
    let files = Files::new();
    let bytes = spark_template(Some(json!({ "mainClass": "x" }))).encode_to_vec();
    let task = files.write("task.pb", &bytes[..bytes.len() / 2]);
    assert_fails_with(
        &render(&task, &[]),
        "is neither a TaskTemplate nor a TaskSpec protobuf",
    );
}

#[test]
fn invalid_json_fails_cleanly() {
    let files = Files::new();
    let task = files.write("task.json", b"{\"type\": \"spark\", \"custom\": ");
    assert_fails_with(
        &render(&task, &[]),
        "is not a TaskTemplate or TaskSpec in protobuf JSON",
    );
}

#[test]
fn a_task_type_no_plugin_serves_is_named() {
    let files = Files::new();
    let task = files.write(
        "op_task.pb",
        &TaskTemplate {
            r#type: "example_operator".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    assert_fails_with(
        &render(&task, &[]),
        "no plugin serves task type `example_operator` (version 0)",
    );
}

#[test]
fn a_missing_file_and_a_bad_config_are_reported() {
    assert_fails_with(
        &render(Path::new("/nonexistent/task.pb"), &[]),
        "cannot read /nonexistent/task.pb",
    );
    let files = Files::new();
    let task = files.write(
        "task.pb",
        &spark_template(Some(json!({ "mainClass": "x" }))).encode_to_vec(),
    );
    let config = files.write("config.yaml", b"k8s: [not, a, map]\n");
    assert_fails_with(
        &render(&task, &["--config", &config.display().to_string()]),
        "invalid config file",
    );
}

#[test]
fn inspect_shows_identity_kind_digest_and_imports() {
    let path = testkit::component_path("spark").display().to_string();
    let output = flytewasm(&["plugin", "inspect", &path]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    for expected in [
        "id:            spark",
        "contract:      flytewasm:plugin@0.1.0",
        "digest:        sha256:",
        "  - spark (version 0)",
        "creates:       sparkoperator.k8s.io/v1beta2 SparkApplication (sparkapplications)",
        "  - wasi:cli/environment@0.2.6",
        "capabilities:  none (no filesystem, sockets or http imports)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn inspect_of_a_broken_file_fails_cleanly() {
    let files = Files::new();
    let file = files.write("x.wasm", b"not wasm at all");
    assert_fails_with(
        &flytewasm(&["plugin", "inspect", &file.display().to_string()]),
        "x.wasm is not a valid WebAssembly component",
    );
}

#[test]
fn compile_seals_a_precompiled_plugin_only_this_host_loads() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host.key");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("runtime:\n  precompile-key-file: {}\n", key.display()),
    )
    .unwrap();
    let (config, out) = (
        config.display().to_string(),
        dir.path().join("spark.cwasm").display().to_string(),
    );
    let spark = testkit::component_path("spark").display().to_string();
    let compiled = flytewasm(&["plugin", "compile", &spark, "-o", &out, "--config", &config]);
    assert!(compiled.status.success(), "{}", stderr(&compiled));
    assert!(String::from_utf8_lossy(&compiled.stdout).contains("spark 0.1.0"));

    // The same key loads it, with the digest of the component it came from.
    let runtime = flytewasm::runtime::Runtime::new(flytewasm::runtime::RuntimeConfig {
        precompile_key_file: Some(key.clone()),
        ..Default::default()
    })
    .unwrap();
    let plugin = runtime.load(Path::new(&out)).unwrap();
    assert_eq!(plugin.digest(), testkit::plugin("spark").digest());

    // Another host (another key) refuses it, and says what to do.
    let inspected = flytewasm(&["plugin", "inspect", &out]);
    assert_fails_with(&inspected, "was not compiled by this host");
    assert_fails_with(&inspected, "flytewasm plugin compile");

    // Compiling something that is not a plugin fails cleanly.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let junk = junk.display().to_string();
    let failed = flytewasm(&["plugin", "compile", &junk, "-o", &out, "--config", &config]);
    assert_fails_with(&failed, "not a valid WebAssembly component");
}
