//! `just bench`: hot swap. The time from a new plugin file landing in the
//! watched directory (renamed into place) to the first call served by the
//! new version — for a sealed `.cwasm` (deserialized), a `.wasm` compiled
//! by Winch first (then the time until Cranelift's build serves), and a
//! `.wasm` compiled by Cranelift only; no artifact cache. Under load, two
//! threads call the plugin's get-task-phase in a loop, each call on the
//! snapshot current at its start.
//! Then 100 swaps under that load, counting failed calls (goal: 0), and 3
//! tiered `.wasm` swaps under it. Last, what a call costs on each tier's code.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use flytewasm::config::HostConfig;
use flytewasm::registry::{LivePlugins, Options};
use flytewasm::runtime::{Runtime, RuntimeConfig, Tier, wit};
use flytewasm::testkit;

const OBSERVED: &str = r#"{"apiVersion":"sparkoperator.k8s.io/v1beta2","kind":"SparkApplication",
  "metadata":{"name":"bench","namespace":"bench","creationTimestamp":"2026-01-01T00:00:00Z"},
  "status":{"applicationState":{"state":"RUNNING"},"driverInfo":{"podName":"bench-driver"}}}"#;

fn main() {
    let scratch = tempfile::tempdir().unwrap();
    // No artifact cache: every `.wasm` swap really compiles.
    let runtime = Runtime::new(RuntimeConfig {
        precompile_key_file: Some(scratch.path().join("precompile.key")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let cranelift_only = Runtime::new(RuntimeConfig {
        precompile_key_file: Some(scratch.path().join("precompile.key")),
        baseline_tier: false,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let wasm = [
        std::fs::read(testkit::component_path("spark")).unwrap(),
        std::fs::read(testkit::component_path("spark-next")).unwrap(),
    ];
    let cwasm: Vec<Vec<u8>> = wasm
        .iter()
        .map(|v| runtime.precompile(v).unwrap())
        .collect();
    let digests: Vec<String> = wasm
        .iter()
        .map(|v| flytewasm::runtime::precompiled::digest_of(v))
        .collect();

    // The load step alone, for comparison with the whole path.
    let file = scratch.path().join("alone.cwasm");
    std::fs::write(&file, &cwasm[1]).unwrap();
    let alone: Vec<Duration> = (0..20)
        .map(|_| {
            let started = Instant::now();
            runtime.load(&file).unwrap();
            started.elapsed()
        })
        .collect();

    // Each swap: (to the first call on the new version, to Cranelift's code serving it).
    let swaps =
        |runtime: &Runtime, name: &str, versions: &[Vec<u8>], count: usize, callers: usize| {
            let dir = tempfile::tempdir_in(scratch.path()).unwrap();
            publish(dir.path(), name, &versions[0]);
            let live =
                LivePlugins::load(runtime.clone(), dir.path(), Options::default(), None).unwrap();
            wait_for(&live, &digests[0], Tier::Optimized, Instant::now());
            let _watching = live.watch().unwrap();
            let load = Load::start(&live, callers);
            let latencies: Vec<(Duration, Duration)> = (0..count)
                .map(|i| {
                    let next = (i + 1) % 2;
                    let landed = publish(dir.path(), name, &versions[next]);
                    let serving = wait_for(&live, &digests[next], Tier::Baseline, landed);
                    let optimized = wait_for(&live, &digests[next], Tier::Optimized, landed);
                    (serving, optimized)
                })
                .collect();
            (latencies, load.stop())
        };
    let first =
        |samples: Vec<(Duration, Duration)>| samples.iter().map(|s| s.0).collect::<Vec<_>>();
    let (quiet_cwasm, _) = swaps(&runtime, "spark.cwasm", &cwasm, 20, 0);
    let (quiet_tiered, _) = swaps(&runtime, "spark.wasm", &wasm, 3, 0);
    let (quiet_wasm, _) = swaps(&cranelift_only, "spark.wasm", &wasm, 3, 0);
    let (loaded_cwasm, (calls, failed)) = swaps(&runtime, "spark.cwasm", &cwasm, 100, 2);
    let (loaded_tiered, (tiered_calls, tiered_failed)) = swaps(&runtime, "spark.wasm", &wasm, 3, 2);

    println!(
        "Hot swap: a file renamed into the watched directory → the first call on the new version"
    );
    report("load step alone (.cwasm)", &alone, "");
    report(
        ".cwasm (sealed, deserialized)",
        &first(quiet_cwasm),
        "goal ≤ 5 ms",
    );
    report(
        ".wasm, Winch first (no cache)",
        &first(quiet_tiered.clone()),
        "goal ≤ 300 ms",
    );
    let optimized: Vec<Duration> = quiet_tiered.iter().map(|s| s.1).collect();
    report(
        "  … then Cranelift's build",
        &optimized,
        "(in the background)",
    );
    report(".wasm, Cranelift only (no cache)", &first(quiet_wasm), "");
    report(".cwasm, 2 threads calling", &first(loaded_cwasm), "");
    println!("  during those 100 swaps: {calls} get-task-phase calls, {failed} failed (goal: 0)");
    report(".wasm Winch first, 2 calling", &first(loaded_tiered), "");
    println!(
        "  during those 3 swaps (each to Winch, then Cranelift): {tiered_calls} calls, {tiered_failed} failed (goal: 0)"
    );

    // A call's cost on each tier's code: a fresh instance per call, as served.
    let spark = &wasm[0];
    let path = Path::new("spark.wasm");
    let winch = runtime.load_bytes_tiered(spark, path, &|_| Ok(())).unwrap();
    let cranelift = cranelift_only.load_bytes(spark, path, &|_| Ok(())).unwrap();
    assert_eq!(
        (winch.tier(), cranelift.tier()),
        (Tier::Baseline, Tier::Optimized)
    );
    println!("Call cost by tier (spark, mean of 300 calls, fresh instance each):");
    let request = testkit::spark_task("bench", "bench");
    let config = HostConfig::default();
    let mut means = Vec::new();
    for plugin in [&cranelift, &winch] {
        let task = request.task_context(plugin, &config, SystemTime::now());
        let ctx = testkit::phase_context(task.clone(), wit::Phase::Queued, 0, "");
        let build = mean_of(300, || drop(plugin.build_resource(&task).unwrap()));
        let phase = mean_of(300, || drop(plugin.get_task_phase(&ctx, OBSERVED).unwrap()));
        means.push((build, phase));
    }
    for ((name, (build, phase)), base) in
        ["Cranelift", "Winch"].iter().zip(&means).zip([means[0]; 2])
    {
        println!(
            "  {name:<10} build-resource {:>8.1} µs ({:.2}×)   get-task-phase {:>8.1} µs ({:.2}×)",
            build * 1e6,
            build / base.0,
            phase * 1e6,
            phase / base.1
        );
    }
}

/// Mean seconds per run of `f`, after a few warm-up runs.
fn mean_of(runs: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..runs {
        f();
    }
    started.elapsed().as_secs_f64() / f64::from(runs)
}

fn report(what: &str, samples: &[Duration], goal: &str) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "  {what:<32} median {:>8.2} ms   max {:>8.2} ms   ({} swaps) {goal}",
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms.len()
    );
}

/// Write beside, rename into place; returns when it landed.
fn publish(dir: &Path, name: &str, bytes: &[u8]) -> Instant {
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    Instant::now()
}

/// Poll until a call would be served by `digest`, on `tier`'s code or
/// (for the baseline) any.
fn wait_for(live: &LivePlugins, digest: &str, tier: Tier, since: Instant) -> Duration {
    loop {
        if live
            .current()
            .find("spark", 0)
            .is_some_and(|p| p.digest() == digest && (tier == Tier::Baseline || p.tier() == tier))
        {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the swap never happened"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Threads calling the plugin in a loop.
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(live: &Arc<LivePlugins>, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let config = HostConfig::default();
        let threads = (0..threads)
            .map(|_| {
                let (live, stop, calls, failed) =
                    (live.clone(), stop.clone(), calls.clone(), failed.clone());
                let request = testkit::spark_task("bench", "bench");
                let config = config.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let registry = live.current();
                        let ok = registry.find("spark", 0).is_some_and(|plugin| {
                            let task = request.task_context(plugin, &config, SystemTime::now());
                            let ctx = testkit::phase_context(task, wit::Phase::Queued, 0, "");
                            plugin.get_task_phase(&ctx, OBSERVED).is_ok()
                        });
                        calls.fetch_add(1, Ordering::Relaxed);
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            calls,
            failed,
            threads,
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        (
            self.calls.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
