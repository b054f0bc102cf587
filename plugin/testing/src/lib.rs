//! Task type `testing`: creates a ConfigMap, or misbehaves as the task's
//! `custom.behaviour` asks, so host tests can check every failure is
//! contained:
//! - traps: `panic`, `loop` (never returns), `allocate` (grows memory
//!   without bound), `recurse` (overflows the stack) — in `build_resource`,
//!   or in `get_task_phase` / `on_abort` with a `phase-` / `abort-` prefix;
//! - blocking and flooding: `sleep` (a WASI sleep of an hour), `poll-far`
//!   (polls a monotonic-clock deadline far in the future), `log-flood`
//!   (calls the `log` import in a loop), `stderr-flood` (prints 1 MB
//!   to stderr, then succeeds) — in `build_resource`, or with a `phase-`
//!   prefix in `get_task_phase`;
//! - bad answers: `huge` (50 MB of JSON), `phase-huge` (a 20 MB phase
//!   reason and message), `invalid-json`, `not-json`,
//!   `wrong-kind`, `cluster-scoped` (a ClusterRole), `other-namespace`;
//! - overreach: `own-metadata` (another name, owner, finalizer and
//!   Flyte's labels), `probe` (reads a file, opens a socket, reads the
//!   environment and the clock, and reports what it got in the object);
//! - `bad-task`; `patch-on-abort` patches the object instead of deleting
//!   it when aborted; `fail-with-cleanup` fails while the object still runs.
//!
//! With the `describe-traps` feature, `describe()` panics: the host must
//! refuse to load it.

use flytewasm_plugin_sdk::Exported;
use flytewasm_plugin_sdk::bindings::{self, flytewasm::plugin::types as wit};
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

/// Traps in the call `call` when `what` names one for it (`panic`,
/// `phase-panic`, `abort-panic`...).
fn misbehave_in(call: &str, what: &str) {
    match (call, what.split_once('-')) {
        ("build", _) => misbehave(what),
        (_, Some((prefix, trap))) if prefix == call => misbehave(trap),
        _ => {}
    }
}

fn misbehave(what: &str) {
    match what {
        "recurse" => {
            std::hint::black_box(recurse(u64::MAX));
        }
        "panic" => panic!("the testing plugin was asked to panic"),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
        "poll-far" => {
            // An instant far in the future on the monotonic clock, waited on.
            wasip2::clocks::monotonic_clock::subscribe_instant(u64::MAX / 2).block();
        }
        "log-flood" => loop {
            flytewasm_plugin_sdk::log(flytewasm_plugin_sdk::LogLevel::Info, &"flood ".repeat(100));
        },
        "stderr-flood" => {
            for _ in 0..10_000 {
                eprintln!("{}", "noise ".repeat(16));
            }
        }
        "churn" => {
            // Far more than the memory cap in all, a little at a time, freed
            // out of order: a call that reuses what it frees fits.
            let mut ring: Vec<Vec<u8>> = (0..64).map(|_| Vec::new()).collect();
            for i in 0..20_000usize {
                ring[(i * 7) % 64] = vec![i as u8; 1024 + (i * 131) % 31_744];
                std::hint::black_box(&ring);
            }
            // Buffers grown to 4 MiB, six times over.
            for _ in 0..6 {
                let mut grown: Vec<u8> = Vec::new();
                for step in 1..=64 {
                    grown.resize(step << 16, 1);
                }
                std::hint::black_box(&grown);
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

/// Recursion the optimizer cannot turn into a loop.
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    if depth == 0 {
        return 0;
    }
    recurse(depth - 1).wrapping_add(frame[std::hint::black_box(3)])
}

/// What a plugin gets when it reaches outside: each must be denied or meaningless.
fn probe() -> Value {
    let file = match std::fs::read_to_string("/etc/hostname") {
        Ok(text) => format!("read {} bytes", text.len()),
        Err(err) => format!("denied: {err}"),
    };
    let socket = match std::net::TcpStream::connect("127.0.0.1:80") {
        Ok(_) => "connected".to_owned(),
        Err(err) => format!("denied: {err}"),
    };
    let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({ "file": file, "socket": socket, "env": env.join(","), "clock": clock.to_string() })
}

impl Plugin for Testing {
    fn describe() -> PluginInfo {
        if cfg!(feature = "describe-traps") {
            panic!("the testing plugin's describe() was built to trap");
        }
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
        misbehave_in("build", &what);
        match what.as_str() {
            "wrong-kind" => Ok(json!({ "apiVersion": "v1", "kind": "Secret", "metadata": {} })),
            "cluster-scoped" => Ok(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": { "name": "take-over" },
                "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }],
            })),
            "own-metadata" => Ok(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "someone-elses",
                    "labels": { "execution-id": "forged", "made-by": "testing" },
                    "ownerReferences": [{ "apiVersion": "v1", "kind": "Namespace", "name": "kube-system",
                                          "uid": "forged", "controller": true }],
                    "finalizers": ["example.com/never-let-go"],
                },
                "data": { "behaviour": what },
            })),
            "other-namespace" => Ok(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "namespace": "kube-system" },
            })),
            "probe" => Ok(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {},
                "data": probe(),
            })),
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
        misbehave_in("phase", &what);
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
        let what = behaviour(ctx);
        misbehave_in("abort", &what);
        Ok(match what.as_str() {
            "patch-on-abort" => AbortAction::Patch(
                json!({ "metadata": { "annotations": { "aborted": "true" } } }).to_string(),
            ),
            _ => AbortAction::Delete,
        })
    }
}

/// The SDK's adapter, except for answers the SDK cannot produce: raw
/// strings that are too big or not JSON at all.
struct Raw;

impl bindings::Guest for Raw {
    fn describe() -> PluginInfo {
        <Exported<Testing> as bindings::Guest>::describe()
    }

    fn build_resource(ctx: wit::TaskContext) -> Result<String, PluginError> {
        let what = TaskContext::from_wit(ctx.clone()).map(|c| behaviour(&c));
        match what.as_deref() {
            Ok("huge") => {
                // 50 MB of valid JSON, built in place (a copy would not fit the memory cap).
                let mut answer = String::with_capacity((50 << 20) + 64);
                answer.push_str(r#"{"apiVersion":"v1","kind":"ConfigMap","data":{"x":""#);
                while answer.len() < 50 << 20 {
                    answer.push_str("xxxxxxxxxxxxxxxx");
                }
                answer.push_str(r#""}}"#);
                Ok(answer)
            }
            Ok("invalid-json") => {
                Ok(r#"{"apiVersion": "v1", "kind": "ConfigMap", "data": {"#.into())
            }
            _ => <Exported<Testing> as bindings::Guest>::build_resource(ctx),
        }
    }

    fn get_task_phase(ctx: wit::PhaseContext, observed: String) -> Result<PhaseInfo, PluginError> {
        let what = TaskContext::from_wit(ctx.task.clone()).map(|c| behaviour(&c));
        if matches!(what.as_deref(), Ok("phase-huge")) {
            // 20 MB of reason and of message: far past what propeller reads.
            let text = "x".repeat(20 << 20);
            let mut info = PhaseInfo::permanent_failure("Huge", text.clone());
            info.reason = text;
            return Ok(info);
        }
        <Exported<Testing> as bindings::Guest>::get_task_phase(ctx, observed)
    }

    fn on_abort(ctx: wit::PhaseContext, observed: String) -> Result<AbortAction, PluginError> {
        <Exported<Testing> as bindings::Guest>::on_abort(ctx, observed)
    }
}

bindings::__export_plugin_world!(Raw with_types_in bindings);
