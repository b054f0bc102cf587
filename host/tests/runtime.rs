//! The runtime contains misbehaving plugins: a trap, a call past its
//! deadline and an allocation past the cap each give their typed error, and
//! the same plugin keeps serving the next call.

use std::time::Duration;

use flytewasm::config::HostConfig;
use flytewasm::executor::{TaskRequest, prepare};
use flytewasm::runtime::{CallError, LoadError, Plugin, Runtime, RuntimeConfig, wit};
use flytewasm::testkit;
use flytewasm_proto::flyteidl::core::TaskTemplate;
use serde_json::json;

fn request(behaviour: &str) -> TaskRequest {
    TaskRequest {
        template: TaskTemplate {
            r#type: "testing".into(),
            custom: Some(serde_json::from_value(json!({ "behaviour": behaviour })).unwrap()),
            ..Default::default()
        },
        namespace: "tests".into(),
        name: Some("t1".into()),
        ..Default::default()
    }
}

/// A runtime with small limits, so the bad calls fail fast.
fn strict_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        call_timeout: Duration::from_millis(200),
        memory_limit_bytes: 16 << 20,
        ..testkit::runtime_config()
    })
    .unwrap()
}

fn testing_plugin(runtime: &Runtime) -> Plugin {
    runtime.load(&testkit::component_path("testing")).unwrap()
}

fn build(plugin: &Plugin, behaviour: &str) -> Result<String, CallError> {
    let ctx = request(behaviour).task_context(plugin, &HostConfig::default(), testkit::fixed_now());
    plugin.build_resource(&ctx)
}

fn assert_still_serves(plugin: &Plugin) {
    let object: serde_json::Value =
        serde_json::from_str(&build(plugin, "ok").expect("the next call works")).unwrap();
    assert_eq!(object["kind"], "ConfigMap");
}

#[test]
fn a_panic_is_a_trap_with_the_panic_message() {
    let runtime = strict_runtime();
    let plugin = testing_plugin(&runtime);
    let err = build(&plugin, "panic").unwrap_err();
    let CallError::Trap {
        plugin: id,
        call,
        message,
    } = &err
    else {
        panic!("expected a trap, got {err:?}")
    };
    assert_eq!((id.as_str(), *call), ("testing", "build-resource"));
    assert!(
        message.contains("the testing plugin was asked to panic"),
        "{message}"
    );
    assert!(
        err.to_string()
            .starts_with("plugin `testing` crashed in build-resource"),
        "{err}"
    );
    assert_still_serves(&plugin);
}

#[test]
fn an_endless_call_is_stopped_at_its_deadline() {
    let runtime = strict_runtime();
    let plugin = testing_plugin(&runtime);
    let err = build(&plugin, "loop").unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Timeout {
                limit_ms: 200,
                call: "build-resource",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("deadline"), "{err}");
    assert_still_serves(&plugin);
}

#[test]
fn an_allocation_past_the_cap_is_out_of_memory() {
    let runtime = strict_runtime();
    let plugin = testing_plugin(&runtime);
    let err = build(&plugin, "allocate").unwrap_err();
    assert!(
        matches!(err, CallError::OutOfMemory { limit_bytes, .. } if limit_bytes == 16 << 20),
        "{err:?}"
    );
    assert_still_serves(&plugin);
}

#[test]
fn a_bad_task_is_the_users_error_not_a_crash() {
    let plugin = testkit::plugin("testing");
    let err = build(&plugin, "bad-task").unwrap_err();
    assert!(err.is_bad_task());
    assert_eq!(
        err.to_string(),
        "TaskTemplate.custom.behaviour: `bad-task` is not allowed"
    );
}

#[test]
fn a_misbehaving_phase_call_is_contained_too() {
    let runtime = strict_runtime();
    let plugin = testing_plugin(&runtime);
    let ctx =
        request("phase-panic").task_context(&plugin, &HostConfig::default(), testkit::fixed_now());
    let ctx = testkit::phase_context(ctx, wit::Phase::Running, 0, "");
    let err = plugin.get_task_phase(&ctx, "{}").unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Trap {
                call: "get-task-phase",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_object_of_another_kind_is_refused() {
    let plugin = testkit::plugin("testing");
    let err = prepare(
        &plugin,
        &HostConfig::default(),
        &request("wrong-kind"),
        testkit::fixed_now(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("v1 Secret, but the plugin declares v1 ConfigMap"),
        "{err}"
    );
    let err = prepare(
        &plugin,
        &HostConfig::default(),
        &request("not-json"),
        testkit::fixed_now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a JSON object"), "{err}");
}

#[test]
fn an_oversized_answer_is_refused() {
    let runtime = Runtime::new(RuntimeConfig {
        max_output_bytes: 64,
        ..testkit::runtime_config()
    })
    .unwrap();
    let plugin = testing_plugin(&runtime);
    let err = build(&plugin, "ok").unwrap_err();
    assert!(matches!(err, CallError::InvalidOutput { .. }), "{err:?}");
    assert!(err.to_string().contains("over the 64-byte limit"), "{err}");
}

#[test]
fn the_host_sets_name_namespace_labels_and_finalizer() {
    let plugin = testkit::plugin("testing");
    let config: HostConfig = serde_json::from_value(json!({ "k8s": {
        "inject-finalizer": true,
        "default-labels": { "team": "ml", "made-by": "platform" },
    } }))
    .unwrap();
    let mut request = request("ok");
    request.labels.insert("execution-id".into(), "e1".into());
    request.owner = Some(
        json!({ "apiVersion": "flyte.lyft.com/v1alpha1", "kind": "FlyteWorkflow", "name": "e1", "uid": "u1", "controller": true }),
    );
    let prepared = prepare(&plugin, &config, &request, testkit::fixed_now()).unwrap();
    let meta = &prepared.object["metadata"];
    assert_eq!(meta["name"], "t1");
    assert_eq!(meta["namespace"], "tests");
    assert_eq!(
        meta["labels"],
        json!({ "team": "ml", "made-by": "testing", "execution-id": "e1" }),
        "later sources win"
    );
    assert_eq!(meta["finalizers"], json!(["flyte.org/finalizer-k8s"]));
    assert_eq!(meta["ownerReferences"][0]["kind"], "FlyteWorkflow");
    assert_eq!(meta["annotations"]["flytewasm.io/plugin"], "testing");
    assert_eq!(
        meta["annotations"]["flytewasm.io/plugin-digest"],
        plugin.digest()
    );
    assert_eq!(
        meta["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "false"
    );
    assert!(plugin.digest().starts_with("sha256:") && plugin.digest().len() == 71);
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_its_name() {
    let dir = std::env::temp_dir().join(format!("flytewasm-runtime-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.wasm");
    std::fs::write(&path, b"\0asm this is not wasm").unwrap();
    let err = testkit::runtime().load(&path).err().expect("refused");
    assert!(matches!(err, LoadError::Compile { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("broken.wasm is not a valid WebAssembly component"),
        "{err}"
    );
}

#[test]
fn plugins_see_no_files_environment_or_clock() {
    // The inspect view of the Spark plugin: WASI interfaces only, none for
    // files or sockets. Linking gives them an empty context.
    let plugin = testkit::plugin("spark");
    assert!(
        plugin
            .imports()
            .iter()
            .all(|i| !i.starts_with("wasi:filesystem") && !i.starts_with("wasi:sockets"))
    );
    assert!(
        plugin
            .imports()
            .iter()
            .any(|i| i == "flytewasm:plugin/types@0.1.0")
    );
}

#[test]
fn a_component_is_compiled_once_and_reloaded_from_the_artifact_cache() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        ..RuntimeConfig::default()
    };
    let path = testkit::component_path("testing");
    let first = Runtime::new(config.clone()).unwrap().load(&path).unwrap();
    // Beside the host's precompile key.
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "cwasm"))
        .collect();
    assert_eq!(
        artifacts.len(),
        1,
        "one precompiled artifact: {artifacts:?}"
    );
    let name = artifacts[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(first.digest().trim_start_matches("sha256:")) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A restarted host loads the artifact; a damaged one is ignored and rebuilt.
    let again = Runtime::new(config.clone()).unwrap().load(&path).unwrap();
    assert_eq!(again.digest(), first.digest());
    std::fs::write(&artifacts[0], b"damaged").unwrap();
    let rebuilt = Runtime::new(config).unwrap().load(&path).unwrap();
    assert_still_serves(&rebuilt);
    assert!(
        std::fs::metadata(&artifacts[0]).unwrap().len() > 1000,
        "the damaged artifact was replaced"
    );
}
