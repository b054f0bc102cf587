//! Task type `testing`: creates a ConfigMap, or misbehaves as the task's
//! `custom.behaviour` asks, so host tests can check every failure is
//! contained: `panic`, `loop` (never returns), `allocate` (grows memory
//! without bound), `wrong-kind`, `not-json`, `bad-task`; `patch-on-abort`
//! patches the object instead of deleting it when aborted;
//! `fail-with-cleanup` fails while the object still runs.

use flytewasm_plugin_sdk::custom::struct_to_json;
use flytewasm_plugin_sdk::prelude::*;

struct Testing;

fn behaviour(ctx: &TaskContext) -> String {
    ctx.template
        .custom
        .as_ref()
        .map(struct_to_json)
        .and_then(|c| c["behaviour"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn misbehave(what: &str) {
    match what {
        "panic" => panic!("the testing plugin was asked to panic"),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "allocate" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        _ => {}
    }
}

impl Plugin for Testing {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "testing".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            task_types: vec![TaskType {
                name: "testing".into(),
                version: 0,
            }],
            kind: ResourceKind {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
            },
            properties: PluginProperties::default(),
        }
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        let what = behaviour(ctx);
        misbehave(&what);
        match what.as_str() {
            "wrong-kind" => Ok(json!({ "apiVersion": "v1", "kind": "Secret", "metadata": {} })),
            "not-json" => Ok(json!("just a string")),
            "bad-task" => Err(PluginError::bad_task(
                "TaskTemplate.custom.behaviour: `bad-task` is not allowed",
            )),
            _ => Ok(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "labels": { "made-by": "testing" } },
                "data": { "behaviour": what },
            })),
        }
    }

    fn get_task_phase(ctx: &PhaseContext, observed: &Value) -> Result<PhaseInfo, PluginError> {
        let what = behaviour(ctx);
        misbehave(&what);
        if what == "fail-with-cleanup" {
            // Like a pod stuck in ImagePullBackOff: failed, but still there.
            return Ok(PhaseInfo::retryable_failure(
                "ImagePullBackOff",
                "the image cannot be pulled",
            )
            .with_cleanup());
        }
        Ok(match observed["data"]["state"].as_str() {
            Some("done") => PhaseInfo::success(),
            _ => PhaseInfo::running(),
        })
    }

    /// `patch-on-abort` asks for a patch instead of a delete.
    fn on_abort(ctx: &PhaseContext, _observed: &Value) -> Result<AbortAction, PluginError> {
        Ok(match behaviour(ctx).as_str() {
            "patch-on-abort" => AbortAction::Patch(
                json!({ "metadata": { "annotations": { "aborted": "true" } } }).to_string(),
            ),
            _ => AbortAction::Delete,
        })
    }
}

export_plugin!(Testing);
