//! A live plugin directory: files appear, change, break and disappear while
//! the registry is watching, and the snapshot callers resolve against always
//! holds a complete, valid set. Plugin variants come from `just
//! build-plugins` (built from source: `spark-next` reports another version,
//! `wit-next` targets a future contract).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flytewasm::config::HostConfig;
use flytewasm::registry::{LivePlugins, Options, PluginState, PluginStatus};
use flytewasm::runtime::Tier;
use flytewasm::testkit;

fn component(name: &str) -> Vec<u8> {
    std::fs::read(testkit::component_path(name)).unwrap()
}

/// Publish the safe way: write beside, then rename into place.
fn publish(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn live(dir: &Path, options: Options) -> Arc<LivePlugins> {
    LivePlugins::load(testkit::runtime().clone(), dir, options, None).unwrap()
}

/// Wait (bounded) until the current snapshot satisfies `done`.
fn eventually(live: &LivePlugins, what: &str, done: impl Fn(&[PluginStatus]) -> bool) {
    // Generous: a Cranelift compile in a debug build beside other tests takes a while.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = live.current().status();
        if done(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened; status: {status:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn serving_version(live: &LivePlugins) -> Option<String> {
    live.current()
        .find("spark", 0)
        .map(|p| p.info().version.clone())
}

fn failure_of<'a>(status: &'a [PluginStatus], file: &str) -> Option<&'a str> {
    status
        .iter()
        .find(|s| s.file.file_name().unwrap() == file && s.last_error.is_some())
        .and_then(|s| s.last_error.as_deref())
}

fn dir_with_spark() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    publish(&path, "spark.wasm", &component("spark"));
    (dir, path)
}

#[test]
fn a_new_version_replaces_the_old_and_old_tasks_can_keep_theirs() {
    let (_dir, dir) = dir_with_spark();
    let live = live(&dir, Options::default());
    let _watching = live.watch().unwrap();
    let old = live.current().find("spark", 0).unwrap().clone();
    // A caller holding the old snapshot keeps it for the whole call.
    let in_flight = live.current();

    publish(&dir, "spark.wasm", &component("spark-next"));
    eventually(&live, "the new version serves", |_| {
        serving_version(&live).as_deref() == Some("0.1.0-next")
    });
    assert_eq!(in_flight.find("spark", 0).unwrap().digest(), old.digest());
    let current = live.current();
    let new = current.find("spark", 0).unwrap();
    assert_ne!(new.digest(), old.digest());
    // Pinned: the build that created the task; else the newest.
    assert_eq!(
        current
            .for_task("spark", old.digest(), true)
            .unwrap()
            .digest(),
        old.digest()
    );
    assert_eq!(
        current
            .for_task("spark", old.digest(), false)
            .unwrap()
            .digest(),
        new.digest()
    );
    let status = current.status();
    assert!(
        status
            .iter()
            .any(|s| s.state == PluginState::Retired && s.digest.as_deref() == Some(old.digest()))
    );
}

#[test]
fn broken_files_are_refused_and_the_previous_version_serves() {
    let (_dir, dir) = dir_with_spark();
    let live = live(&dir, Options::default());
    let _watching = live.watch().unwrap();

    publish(&dir, "spark.wasm", b"\0asm but not really a component");
    eventually(&live, "the corrupt file is refused", |s| {
        failure_of(s, "spark.wasm").is_some_and(|e| e.contains("not a valid WebAssembly component"))
    });
    assert_eq!(serving_version(&live).as_deref(), Some("0.1.0"));

    publish(&dir, "next.wasm", &component("wit-next"));
    eventually(
        &live,
        "the future-contract plugin is refused by name",
        |s| failure_of(s, "next.wasm").is_some_and(|e| e.contains("flytewasm:plugin/host@0.2.0")),
    );
    assert_eq!(live.current().plugins().len(), 1);

    // Fixing the file is picked up.
    publish(&dir, "spark.wasm", &component("spark-next"));
    eventually(&live, "the fixed file serves", |_| {
        serving_version(&live).as_deref() == Some("0.1.0-next")
    });
    assert!(failure_of(&live.current().status(), "spark.wasm").is_none());
}

#[test]
fn a_file_written_slowly_is_never_loaded_half_written() {
    let (_dir, dir) = dir_with_spark();
    let live = live(&dir, Options::default());
    let _watching = live.watch().unwrap();

    let bytes = component("spark-next");
    let mut file = std::fs::File::create(dir.join("spark.wasm")).unwrap();
    for chunk in bytes.chunks(bytes.len() / 20 + 1) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(40));
        let status = live.current().status();
        assert!(
            failure_of(&status, "spark.wasm").is_none(),
            "a partial file was read: {status:#?}"
        );
        assert_eq!(
            serving_version(&live).as_deref(),
            Some("0.1.0"),
            "swapped before the write ended"
        );
    }
    drop(file);
    eventually(&live, "the finished file serves", |_| {
        serving_version(&live).as_deref() == Some("0.1.0-next")
    });
    assert!(failure_of(&live.current().status(), "spark.wasm").is_none());
}

#[test]
fn a_removed_file_takes_no_new_tasks_but_answers_for_its_own() {
    let (_dir, dir) = dir_with_spark();
    let live = live(&dir, Options::default());
    let _watching = live.watch().unwrap();
    let digest = live.current().find("spark", 0).unwrap().digest().to_owned();

    std::fs::remove_file(dir.join("spark.wasm")).unwrap();
    eventually(&live, "the task type is gone", |_| {
        live.current().find("spark", 0).is_none()
    });
    let current = live.current();
    assert!(
        current
            .resolve("spark", 0)
            .unwrap_err()
            .to_string()
            .contains("no plugin serves task type `spark`")
    );
    assert_eq!(
        current.for_task("spark", &digest, false).unwrap().digest(),
        digest
    );
}

#[test]
fn the_allow_list_refuses_unlisted_digests() {
    let (_dir, dir) = dir_with_spark();
    let spark = testkit::plugin("spark");
    let options = Options {
        allow_list: Some([("spark".to_owned(), vec![spark.digest().to_owned()])].into()),
        ..Options::default()
    };
    let live = live(&dir, options);
    assert_eq!(serving_version(&live).as_deref(), Some("0.1.0"));
    publish(&dir, "spark.wasm", &component("spark-next"));
    live.reload().unwrap();
    let status = live.current().status();
    let error = failure_of(&status, "spark.wasm").expect("refused");
    assert!(error.contains("not on the allow-list"), "{error}");
    assert_eq!(serving_version(&live).as_deref(), Some("0.1.0"));
    // Checked on the digest before anything is compiled: bytes that are
    // not even a component are refused for not being listed.
    publish(&dir, "unlisted.wasm", b"\0asm\x0d\0\x01\0 anything at all");
    live.reload().unwrap();
    let status = live.current().status();
    let error = failure_of(&status, "unlisted.wasm").expect("refused");
    assert!(
        error.contains("is not on the allow-list") && !error.contains("not a valid"),
        "{error}"
    );
}

#[test]
fn two_files_claiming_one_plugin_id_are_a_conflict() {
    // Both new at start-up: no file wins by its name; both are refused.
    let (_dir, dir) = dir_with_spark();
    publish(&dir, "spark-next.wasm", &component("spark-next"));
    let live = live(&dir, Options::default());
    assert!(live.current().plugins().is_empty());
    let status = live.current().status();
    for file in ["spark.wasm", "spark-next.wasm"] {
        let error = failure_of(&status, file).expect("refused");
        assert!(
            error.contains("plugin id `spark` is claimed by")
                && error.contains("two files may not claim one id"),
            "{error}"
        );
    }
    // Nothing changed: the conflict is not loaded and reported again.
    assert!(
        live.reload().unwrap().is_empty(),
        "a conflict is reported once"
    );
    // One serving: a second file with its id is refused, and it keeps serving.
    std::fs::remove_file(dir.join("spark-next.wasm")).unwrap();
    live.reload().unwrap();
    assert_eq!(serving_version(&live).as_deref(), Some("0.1.0"));
    publish(&dir, "spark-copy.wasm", &component("spark-next"));
    live.reload().unwrap();
    assert_eq!(serving_version(&live).as_deref(), Some("0.1.0"));
    let status = live.current().status();
    let error = failure_of(&status, "spark-copy.wasm").expect("refused");
    assert!(error.contains("already served by spark.wasm"), "{error}");
}

#[test]
fn precompiled_plugins_load_only_with_this_hosts_seal() {
    let (_dir, dir) = dir_with_spark();
    std::fs::remove_file(dir.join("spark.wasm")).unwrap();
    let runtime = testkit::runtime();
    let sealed = runtime.precompile(&component("spark-next")).unwrap();
    publish(&dir, "spark.cwasm", &sealed);
    let live = live(&dir, Options::default());
    let plugin = live.current().find("spark", 0).unwrap().clone();
    assert_eq!(plugin.info().version, "0.1.0-next");
    // Its identity is the component it was compiled from.
    assert_eq!(plugin.digest(), testkit::plugin("spark-next").digest());

    let mut tampered = sealed.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    publish(&dir, "spark.cwasm", &tampered);
    live.reload().unwrap();
    let status = live.current().status();
    let error = failure_of(&status, "spark.cwasm").expect("refused");
    assert!(error.contains("seal does not match"), "{error}");
    assert_eq!(serving_version(&live).as_deref(), Some("0.1.0-next"));
}

#[test]
fn a_plugin_that_fails_at_start_up_does_not_stop_the_others() {
    let (_dir, dir) = dir_with_spark();
    publish(&dir, "broken.wasm", b"not a component at all");
    publish(&dir, "next.wasm", &component("wit-next"));
    let live = live(&dir, Options::default());
    assert_eq!(serving_version(&live).as_deref(), Some("0.1.0"));
    let status = live.current().status();
    assert!(failure_of(&status, "broken.wasm").is_some());
    assert!(failure_of(&status, "next.wasm").is_some_and(|e| e.contains("@0.2.0")));
    assert_eq!(
        status
            .iter()
            .filter(|s| s.state == PluginState::Failed)
            .count(),
        2
    );
}

/// A component no Cranelift build is cached for serves at once on Winch's
/// code; the optimizing thread then swaps Cranelift's build in while two
/// threads call the plugin, and no call fails. The next version comes in
/// the same way, and tasks pinned to the old one keep its Cranelift build.
#[test]
fn a_new_component_serves_on_winch_then_on_cranelift_without_a_failed_call() {
    let (cache, keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let runtime = flytewasm::runtime::Runtime::new(flytewasm::runtime::RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        precompile_key_file: Some(keys.path().join("precompile.key")),
        ..flytewasm::runtime::RuntimeConfig::default()
    })
    .unwrap();
    let (_dir, dir) = dir_with_spark();
    let live = LivePlugins::load(runtime, &dir, Options::default(), None).unwrap();
    let first = live.current().find("spark", 0).unwrap().clone();
    assert_eq!(first.tier(), Tier::Baseline);

    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (live, stop) = (live.clone(), stop.clone());
            std::thread::spawn(move || {
                let request = testkit::spark_task("tiers", "tiers");
                let (mut calls, mut tiers) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let plugin = live.current().find("spark", 0).unwrap().clone();
                    let task =
                        request.task_context(&plugin, &HostConfig::default(), testkit::fixed_now());
                    plugin.build_resource(&task).unwrap_or_else(|err| {
                        panic!("a call failed on {:?}: {err}", plugin.tier())
                    });
                    calls += 1;
                    if tiers.last() != Some(&plugin.tier()) {
                        tiers.push(plugin.tier());
                    }
                }
                (calls, tiers)
            })
        })
        .collect();
    eventually(&live, "Cranelift's build serves", |status| {
        status.iter().any(|s| s.tier == Some(Tier::Optimized))
    });
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let (calls, tiers) = caller.join().unwrap();
        assert!(calls > 0);
        assert_eq!(tiers.last(), Some(&Tier::Optimized), "{tiers:?}");
    }
    let optimized = live.current().find("spark", 0).unwrap().clone();
    assert_eq!(
        (optimized.digest(), optimized.path()),
        (first.digest(), first.path())
    );

    let _watching = live.watch().unwrap();
    publish(&dir, "spark.wasm", &component("spark-next"));
    eventually(
        &live,
        "the new version serves on Cranelift's code",
        |status| {
            status.iter().any(|s| {
                s.state == PluginState::Serving
                    && s.version.as_deref() == Some("0.1.0-next")
                    && s.tier == Some(Tier::Optimized)
            })
        },
    );
    let current = live.current();
    let pinned = current.for_task("spark", first.digest(), true).unwrap();
    assert_eq!(pinned.tier(), Tier::Optimized);
}
