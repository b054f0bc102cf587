//! The runtime contains misbehaving plugins: a trap, a call past its
//! deadline and an allocation past the cap each give their typed error, and
//! the same plugin keeps serving the next call.

use std::time::Duration;

use flytewasm::config::HostConfig;
use flytewasm::executor::{TaskRequest, prepare};
use flytewasm::runtime::{CallError, LoadError, Plugin, Runtime, RuntimeConfig, Tier, wit};
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

/// The cap bounds what a call holds at once, not what it allocates in all:
/// far more than the cap, freed as it goes (out of order), fits.
#[test]
fn a_call_that_frees_what_it_allocates_stays_under_the_cap() {
    let runtime = strict_runtime();
    let plugin = testing_plugin(&runtime);
    build(&plugin, "churn").unwrap();
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

/// The linear memory a component's module starts with, in bytes.
fn initial_memory(component: &[u8]) -> u64 {
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::MemorySection(memories) = payload.unwrap() {
            return memories.into_iter().next().unwrap().unwrap().initial << 16;
        }
    }
    panic!("no memory section")
}

/// Plugins start with heap room (`.cargo/config.toml`): an ordinary call
/// runs in the memory its instance starts with, for a call that grows it
/// pays two page-protection changes on every fresh instance. The cap is
/// that initial memory, so a call that grew it would be out of memory.
#[test]
fn ordinary_calls_run_in_the_memory_an_instance_starts_with() {
    let path = testkit::component_path("spark");
    let initial = initial_memory(&std::fs::read(&path).unwrap());
    let runtime = Runtime::new(RuntimeConfig {
        memory_limit_bytes: initial as usize,
        ..testkit::runtime_config()
    })
    .unwrap();
    let plugin = runtime.load(&path).unwrap();
    let config = HostConfig::default();
    let ctx = testkit::spark_task("ns", "t1").task_context(&plugin, &config, testkit::fixed_now());
    let built = plugin.build_resource(&ctx).unwrap();
    let mut observed: serde_json::Value = serde_json::from_str(&built).unwrap();
    observed["status"] = json!({ "applicationState": { "state": "RUNNING" } });
    let phase = plugin
        .get_task_phase(
            &testkit::phase_context(ctx, wit::Phase::Queued, 0, ""),
            &observed.to_string(),
        )
        .unwrap();
    assert_eq!(phase.phase, wit::Phase::Running);
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
    let labels = meta["labels"].as_object().unwrap();
    let from_sources: serde_json::Map<_, _> = labels
        .iter()
        .filter(|(k, _)| !k.contains('/'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        json!(from_sources),
        json!({ "team": "ml", "made-by": "testing", "execution-id": "e1" }),
        "later sources win"
    );
    // The host's own labels: it manages the object, and which node attempt it is.
    assert_eq!(labels["app.kubernetes.io/managed-by"], "flytewasm");
    assert_eq!(labels["flytewasm.io/attempt"], "0");
    assert_eq!(
        labels["flytewasm.io/node-execution"],
        request.execution.node_label().as_str()
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

/// A runtime with `config` and an empty artifact cache of its own, so
/// nothing compiled by Cranelift is at hand.
fn runtime_without_artifacts(config: RuntimeConfig) -> (Runtime, [tempfile::TempDir; 2]) {
    let (cache, keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        precompile_key_file: Some(keys.path().join("precompile.key")),
        ..config
    })
    .unwrap();
    (runtime, [cache, keys])
}

fn artifacts_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cwasm"))
        .collect();
    names.sort();
    names
}

/// Winch's code is held to the same limits as Cranelift's: the epoch
/// deadline stops an endless loop, the memory cap an allocation, a panic is
/// a trap with its message; then the plugin is recompiled by Cranelift and
/// both builds are in the cache, one per engine.
#[test]
fn the_baseline_tier_contains_misbehaving_plugins_too() {
    let (runtime, [cache, _keys]) = runtime_without_artifacts(RuntimeConfig {
        call_timeout: Duration::from_millis(200),
        memory_limit_bytes: 16 << 20,
        ..RuntimeConfig::default()
    });
    let path = testkit::component_path("testing");
    let bytes = std::fs::read(&path).unwrap();
    let plugin = runtime
        .load_bytes_tiered(&bytes, &path, &|_| Ok(()))
        .unwrap();
    assert_eq!(plugin.tier(), Tier::Baseline);

    let err = build(&plugin, "loop").unwrap_err();
    assert!(
        matches!(err, CallError::Timeout { limit_ms: 200, .. }),
        "{err:?}"
    );
    let err = build(&plugin, "allocate").unwrap_err();
    assert!(matches!(err, CallError::OutOfMemory { .. }), "{err:?}");
    let err = build(&plugin, "panic").unwrap_err();
    assert!(
        matches!(&err, CallError::Trap { message, .. } if message.contains("asked to panic")),
        "{err:?}"
    );
    assert_still_serves(&plugin);
    assert_eq!(
        artifacts_in(cache.path()).len(),
        1,
        "Winch's build is cached"
    );

    let optimized = runtime
        .optimize(&plugin)
        .unwrap()
        .expect("a Cranelift build");
    assert_eq!(optimized.tier(), Tier::Optimized);
    assert_eq!(
        (optimized.id(), optimized.digest()),
        (plugin.id(), plugin.digest())
    );
    assert!(
        runtime.optimize(&optimized).unwrap().is_none(),
        "nothing left to do"
    );
    assert_still_serves(&optimized);
    let artifacts = artifacts_in(cache.path());
    let digest = plugin.digest().trim_start_matches("sha256:");
    assert!(
        artifacts.len() == 2 && artifacts.iter().all(|name| name.starts_with(digest)),
        "one artifact per engine: {artifacts:?}"
    );
    // Once Cranelift's build is cached, a tiered load goes straight to it.
    let again = runtime
        .load_bytes_tiered(&bytes, &path, &|_| Ok(()))
        .unwrap();
    assert_eq!(again.tier(), Tier::Optimized);
}

#[test]
fn without_the_baseline_tier_every_load_is_cranelift() {
    let (runtime, _dirs) = runtime_without_artifacts(RuntimeConfig {
        baseline_tier: false,
        ..RuntimeConfig::default()
    });
    let path = testkit::component_path("testing");
    let bytes = std::fs::read(&path).unwrap();
    let plugin = runtime
        .load_bytes_tiered(&bytes, &path, &|_| Ok(()))
        .unwrap();
    assert_eq!(plugin.tier(), Tier::Optimized);
}

#[test]
fn a_component_is_compiled_once_and_reloaded_from_the_artifact_cache() {
    let (cache, keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        precompile_key_file: Some(keys.path().join("precompile.key")),
        ..RuntimeConfig::default()
    };
    let path = testkit::component_path("testing");
    let first = Runtime::new(config.clone()).unwrap().load(&path).unwrap();
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

/// Blocking WASI calls end with the call: a sleep of an hour and a poll on
/// a far-future clock deadline both stop at the 200 ms deadline, as a
/// timeout, and the plugin serves the next call.
#[test]
fn blocking_wasi_calls_end_at_the_deadline() {
    let runtime = strict_runtime();
    let plugin = testing_plugin(&runtime);
    for behaviour in ["sleep", "poll-far"] {
        let started = std::time::Instant::now();
        let err = build(&plugin, behaviour).unwrap_err();
        assert!(
            matches!(err, CallError::Timeout { limit_ms: 200, .. }),
            "{behaviour}: {err:?}"
        );
        // Generous for a loaded machine, yet far from the hour it asked for.
        assert!(started.elapsed() < Duration::from_secs(10), "{behaviour}");
        assert_still_serves(&plugin);
    }
    let ctx =
        request("phase-sleep").task_context(&plugin, &HostConfig::default(), testkit::fixed_now());
    let ctx = testkit::phase_context(ctx, wit::Phase::Running, 0, "");
    let err = plugin.get_task_phase(&ctx, "{}").unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Timeout {
                call: "get-task-phase",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Output floods never fail the task: megabytes on stderr still build the
/// object, and a `log` loop is stopped by the deadline like any loop.
#[test]
fn output_floods_are_cut_not_fatal() {
    let object: serde_json::Value = serde_json::from_str(
        &build(&testkit::plugin("testing"), "stderr-flood").expect("a flood is not a failure"),
    )
    .unwrap();
    assert_eq!(object["kind"], "ConfigMap");
    let plugin = testing_plugin(&strict_runtime());
    let err = build(&plugin, "log-flood").unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
    assert_still_serves(&plugin);
}

/// A 20 MB phase reason and message come back cut to their bounds, with a
/// marker, far below propeller's 4 MiB message limit.
#[test]
fn a_huge_phase_answer_is_cut_to_its_bounds() {
    let plugin = testkit::plugin("testing");
    let ctx =
        request("phase-huge").task_context(&plugin, &HostConfig::default(), testkit::fixed_now());
    let ctx = testkit::phase_context(ctx, wit::Phase::Running, 0, "");
    let info = plugin.get_task_phase(&ctx, "{}").unwrap();
    use flytewasm::runtime::answer::{MAX_MESSAGE_BYTES, MAX_REASON_BYTES};
    assert!(
        info.reason.len() <= MAX_REASON_BYTES,
        "{}",
        info.reason.len()
    );
    assert!(info.reason.ends_with("bytes cut]"));
    let message = &info.error.as_ref().unwrap().message;
    assert!(message.len() <= MAX_MESSAGE_BYTES && message.ends_with("bytes cut]"));
}

/// A component that would take many pool entries (40 core instances, each
/// with a memory) is refused when it is compiled, naming the limit.
#[test]
fn a_component_with_many_instances_and_memories_is_refused() {
    let mut wat = String::from("(component\n  (core module $m (memory 1))\n");
    for _ in 0..40 {
        wat.push_str("  (core instance (instantiate $m))\n");
    }
    wat.push(')');
    let bytes = wat::parse_str(&wat).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("greedy.wasm");
    std::fs::write(&path, bytes).unwrap();
    let err = strict_runtime().load(&path).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LoadError::Compile { .. }), "{err:?}");
    assert!(
        text.contains("greedy.wasm") && (text.contains("memories") || text.contains("instances")),
        "{text}"
    );
}

/// One plugin's calls that hang cannot take another plugin's slots: with
/// 2 slots per plugin, two sleeping `testing` calls fill its share, a third
/// is refused as busy (retryable) after the wait, and `spark` is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_plugin_keeps_to_its_share_of_slots() {
    let runtime = Runtime::new(RuntimeConfig {
        call_timeout: Duration::from_secs(3),
        max_concurrent_calls: 4,
        max_calls_per_plugin: Some(2),
        slot_wait: Duration::from_millis(100),
        ..testkit::runtime_config()
    })
    .unwrap();
    let testing = testing_plugin(&runtime);
    let spark = runtime.load(&testkit::component_path("spark")).unwrap();
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let slot = testing.call_slot("build-resource", None).await.unwrap();
        let plugin = testing.clone();
        stuck.push(tokio::task::spawn_blocking(move || {
            let _slot = slot;
            build(&plugin, "sleep")
        }));
    }
    assert!(!testing.saturated(), "a full share alone is not saturation");
    // A caller with a nearer deadline (GetTask) waits only that long, and
    // its refusal is not saturation either.
    let err = testing
        .call_slot("get-task-phase", Some(Duration::from_millis(10)))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("within 10 ms"), "{err}");
    assert!(
        !testing.saturated(),
        "a short wait's refusal is not saturation"
    );
    let err = testing
        .call_slot("build-resource", None)
        .await
        .err()
        .unwrap();
    assert!(err.is_busy(), "{err:?}");
    assert!(err.to_string().contains("busy"), "{err}");
    assert!(testing.saturated(), "calls are being refused");

    let slot = spark
        .call_slot("build-resource", None)
        .await
        .expect("spark has its own share");
    assert!(!spark.saturated());
    let task = testkit::spark_task("tests", "spark-1");
    let ctx = task.task_context(&spark, &HostConfig::default(), testkit::fixed_now());
    let built = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        spark.build_resource(&ctx)
    })
    .await
    .unwrap();
    assert!(built.is_ok(), "{built:?}");
    for call in stuck {
        assert!(matches!(
            call.await.unwrap(),
            Err(CallError::Timeout { .. })
        ));
    }
    // The timed-out calls gave their slots back.
    let again = testing.call_slot("build-resource", None).await;
    assert!(again.is_ok(), "{:?}", again.err());
}

/// The compile cache holds native code, so it is sealed like a `.cwasm`: a
/// well-formed artifact planted under a plugin's name — another plugin's,
/// sealed with the right key, or a bare wasmtime artifact — is refused
/// before it is deserialized, and the real plugin is compiled instead.
#[test]
fn a_planted_cache_artifact_is_refused_before_it_is_deserialized() {
    let (cache, keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        precompile_key_file: Some(keys.path().join("precompile.key")),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config.clone()).unwrap();
    let testing_path = testkit::component_path("testing");
    runtime.load(&testing_path).unwrap();
    let artifact = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|ext| ext == "cwasm"))
        .expect("the testing plugin's artifact");
    // Spark's code, sealed with this host's key, under testing's name.
    let spark_sealed = runtime
        .precompile(&std::fs::read(testkit::component_path("spark")).unwrap())
        .unwrap();
    // The same without the seal: a bare, well-formed wasmtime artifact.
    let header_len = u32::from_le_bytes(spark_sealed[16..20].try_into().unwrap()) as usize;
    let bare = spark_sealed[20 + header_len..spark_sealed.len() - 32].to_vec();
    for planted in [spark_sealed, bare] {
        std::fs::write(&artifact, &planted).unwrap();
        let plugin = Runtime::new(config.clone())
            .unwrap()
            .load(&testing_path)
            .unwrap();
        assert_eq!(plugin.id(), "testing", "the planted artifact was used");
        assert_still_serves(&plugin);
        assert_ne!(std::fs::read(&artifact).unwrap(), planted, "replaced");
    }
}

/// The key must live outside the cache, and a cache needs a key.
#[test]
fn the_precompile_key_is_kept_out_of_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let inside = RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        precompile_key_file: Some(cache.path().join("sub/precompile.key")),
        ..RuntimeConfig::default()
    };
    let err = Runtime::new(inside).err().unwrap().to_string();
    assert!(err.contains("inside runtime.cache-dir"), "{err}");
    let keyless = RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        ..RuntimeConfig::default()
    };
    let err = Runtime::new(keyless).err().unwrap().to_string();
    assert!(err.contains("needs runtime.precompile-key-file"), "{err}");
}

/// Replicas starting together race to create the key: every one starts,
/// and all end up with the same key.
#[test]
fn replicas_creating_the_key_at_once_all_start_with_one_key() {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("precompile.key");
    let started: Vec<_> = (0..16)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                flytewasm::runtime::precompiled::PrecompileKey::load_or_create(&path)
            })
        })
        .collect();
    let loaded: Vec<_> = started
        .into_iter()
        .map(|replica| replica.join().unwrap().expect("every replica starts"))
        .collect();
    assert!(
        loaded.windows(2).all(|pair| pair[0] == pair[1]),
        "one key for all"
    );
    assert_eq!(std::fs::read(&path).unwrap().len(), 32);
    let leftovers: Vec<_> = std::fs::read_dir(keys.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}
