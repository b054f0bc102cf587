//! The `{{id}}` plugin in the wasm runtime (the component from
//! `just build-plugins`), as the host runs it in production.

use flytewasm::config::HostConfig;
use flytewasm::executor::TaskRequest;
use flytewasm::runtime::{Plugin, wit};
use flytewasm::testkit;
use serde_json::{Value, json};

fn plugin() -> Plugin {
    testkit::plugin("{{id}}")
}

const TASK_TYPE: &str = "{{task_type}}";

fn request(custom: Value) -> TaskRequest {
    testkit::container_task(TASK_TYPE, Some(custom), "ghcr.io/example/app:1")
}

fn context(plugin: &Plugin, custom: Value) -> wit::TaskContext {
    request(custom).task_context(plugin, &HostConfig::default(), testkit::fixed_now())
}

#[test]
fn builds_the_object_from_the_task() {
    let plugin = plugin();
    let ctx = context(&plugin, json!({ "replicas": 3 }));
    let object: Value = serde_json::from_str(&plugin.build_resource(&ctx).unwrap()).unwrap();
    assert_eq!(object["kind"], "{{Message}}");
    assert_eq!(object["spec"]["replicas"], 3);
    let container = &object["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/example/app:1");
}

#[test]
fn a_wrong_field_is_a_bad_task_naming_it() {
    let plugin = plugin();
    let ctx = context(&plugin, json!({ "replicas": "three" }));
    let err = plugin.build_resource(&ctx).unwrap_err();
    let message = err.to_string();
    assert!(err.is_bad_task(), "{message}");
    assert!(
        message.contains("TaskTemplate.custom.replicas"),
        "{message}"
    );
}

#[test]
fn status_maps_to_phases() {
    let plugin = plugin();
    let ctx = testkit::phase_context(context(&plugin, json!({})), wit::Phase::Queued, 0, "");
    for (phase, expected) in [
        ("", wit::Phase::Queued),
        ("Running", wit::Phase::Running),
        ("Succeeded", wit::Phase::Success),
        ("Failed", wit::Phase::RetryableFailure),
    ] {
        let observed = json!({ "status": { "phase": phase } }).to_string();
        let info = plugin.get_task_phase(&ctx, &observed).unwrap();
        assert_eq!(info.phase, expected, "{phase}");
    }
}
