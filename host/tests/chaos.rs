//! Cluster faults lose nothing: many Spark task lifecycles at once — some
//! succeed, some fail, some are aborted at a random moment — while the
//! sandbox answers with 5xx and 429 bursts, conflicts on writes, dropped
//! watch streams and slow responses. At the end every task has ended the
//! way it should, exactly once; every aborted task's object is gone; no
//! object still carries our finalizer.
//!
//! `FLYTEWASM_CHAOS_TASKS` sets the number of lifecycles (100 by default,
//! as `just test` runs it; `just chaos` runs 1,000) and
//! `FLYTEWASM_CHAOS_SEED` replays a run (each run prints its seed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flytewasm::cluster::Cluster;
use flytewasm::config::HostConfig;
use flytewasm::executor::drive::{Outcome, run_to_completion};
use flytewasm::executor::{EndWrites, Executor, PhaseEvent, TaskRequest, Tasks};
use flytewasm::sandbox::{Faults, Sandbox, SandboxConfig};
use flytewasm::testkit;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::json;

const NS: &str = "chaos";
const FINALIZER: &str = "flyte.org/finalizer-k8s";

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    })
}

/// What a task is meant to do.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Succeed,
    Fail,
    /// Aborted this long after launch (it may have ended by then).
    Abort(Duration),
}

/// The faults injected besides error answers (which the sandbox counts).
#[derive(Default)]
struct Injected {
    watch_drops: u64,
    latency_changes: u64,
}

/// Inject a random fault every few milliseconds until `done`, for at most
/// `window`: then the cluster heals, and every task must still end. (Faults
/// without end would starve a watch that is rarely restarted: its queued
/// errors outpace its back-off, as a dead API server would.)
async fn inject(
    faults: &Faults,
    rng: &mut fastrand::Rng,
    done: &AtomicBool,
    window: Duration,
) -> Injected {
    let mut injected = Injected::default();
    let until = Instant::now() + window;
    while !done.load(Ordering::Relaxed) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.u64(1..8))).await;
        match rng.u8(0..10) {
            0..=5 => {
                let verb = [
                    "get", "list", "watch", "create", "update", "patch", "delete",
                ][rng.usize(0..7)];
                // A conflict is what the API says to a write on a stale object.
                let codes: &[u16] = match verb {
                    "update" | "patch" => &[409, 500, 503, 429],
                    _ => &[500, 502, 503, 429],
                };
                let code = codes[rng.usize(0..codes.len())];
                faults.fail_next(verb, code, rng.u32(1..5));
            }
            6 | 7 => {
                faults.drop_watches();
                injected.watch_drops += 1;
            }
            _ => {
                let latency = Duration::from_millis(rng.u64(0..40));
                faults.set_latency(latency);
                injected.latency_changes += 1;
            }
        }
    }
    faults.clear();
    injected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_lose_nothing() {
    let tasks = env_number("FLYTEWASM_CHAOS_TASKS").unwrap_or(100) as usize;
    let seed = env_number("FLYTEWASM_CHAOS_SEED").unwrap_or_else(|| fastrand::u64(..));
    println!("chaos: {tasks} lifecycles, seed {seed} (FLYTEWASM_CHAOS_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let sandbox = Sandbox::start(SandboxConfig {
        step: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let config: HostConfig =
        serde_json::from_value(json!({ "k8s": { "inject-finalizer": true } })).unwrap();
    let engine = Tasks::with_end_writes(
        Executor::new(
            Arc::new(Cluster::new(sandbox.client().unwrap())),
            Arc::new(config),
        ),
        EndWrites::Inline,
    );
    let plugin = testkit::plugin("spark");

    let fates: Vec<Fate> = (0..tasks)
        .map(|_| match rng.u8(0..3) {
            0 => Fate::Succeed,
            1 => Fate::Fail,
            _ => Fate::Abort(Duration::from_millis(rng.u64(0..600))),
        })
        .collect();
    let requests: Vec<TaskRequest> = fates
        .iter()
        .enumerate()
        .map(|(i, fate)| {
            let mut request = testkit::spark_task(NS, &format!("chaos-{i}"));
            // An aborted task would have succeeded or failed if left alone.
            let outcome = match fate {
                Fate::Fail => "fail",
                Fate::Abort(_) if i % 2 == 0 => "fail",
                _ => "succeed",
            };
            request
                .annotations
                .insert("sandbox.flytewasm.io/outcome".into(), outcome.into());
            request
        })
        .collect();

    let done = AtomicBool::new(false);
    let window = Duration::from_secs(10) + Duration::from_millis(10) * tasks as u32;
    let mut chaos_rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let started = Instant::now();
    let lifecycles = async {
        let runs = requests.iter().zip(&fates).map(|(request, fate)| {
            let (engine, plugin) = (&engine, &plugin);
            async move {
                let mut terminal: Vec<PhaseEvent> = Vec::new();
                let stop = async move {
                    match fate {
                        Fate::Abort(after) => tokio::time::sleep(*after).await,
                        _ => std::future::pending().await,
                    }
                };
                let outcome = tokio::time::timeout(
                    Duration::from_secs(120),
                    run_to_completion(
                        engine,
                        plugin,
                        request,
                        |_, event| {
                            if event.phase.is_terminal() {
                                terminal.push(event.clone());
                            }
                        },
                        stop,
                    ),
                )
                .await;
                (outcome, terminal)
            }
        });
        let results = futures::future::join_all(runs).await;
        done.store(true, Ordering::Relaxed);
        results
    };
    let (results, injected) = tokio::join!(
        lifecycles,
        inject(sandbox.faults(), &mut chaos_rng, &done, window)
    );
    let wall = started.elapsed();

    // Every task ended once, the way it should.
    let mut ended = Vec::new();
    for (i, ((outcome, terminal), fate)) in results.into_iter().zip(&fates).enumerate() {
        let name = format!("chaos-{i}");
        let outcome = outcome
            .unwrap_or_else(|_| panic!("{name} ({fate:?}) did not end within 2 minutes"))
            .unwrap_or_else(|err| panic!("{name} ({fate:?}) lost to a cluster error: {err}"));
        let natural = if requests[i].annotations["sandbox.flytewasm.io/outcome"] == "fail" {
            "failed"
        } else {
            "succeeded"
        };
        let got = match &outcome {
            Outcome::Succeeded(_) => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Aborted(_) => "aborted",
            Outcome::AbortedNotGone(why) => panic!("{name}: aborted, not gone: {why}"),
        };
        match fate {
            // Aborted, unless it had already ended by then.
            Fate::Abort(_) => assert!(
                got == "aborted" || got == natural,
                "{name}: aborted task ended {got}: {outcome:?}"
            ),
            _ => assert_eq!(got, natural, "{name} ({fate:?}): {outcome:?}"),
        }
        assert_eq!(
            terminal.len(),
            usize::from(got != "aborted"),
            "{name}: terminal phases reported: {terminal:?}"
        );
        ended.push((name, got));
    }

    // What is left on the cluster: no finalizer of ours; an aborted task's
    // object is gone, a finished task's object stays (Flyte keeps it).
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", "SparkApplication"),
        "sparkapplications",
    );
    let apps: Api<DynamicObject> = Api::namespaced_with(sandbox.client().unwrap(), NS, &resource);
    let mut left = BTreeMap::new();
    for app in apps.list(&ListParams::default()).await.unwrap().items {
        let finalizers = app.metadata.finalizers.unwrap_or_default();
        left.insert(app.metadata.name.unwrap(), finalizers);
    }
    let mut count = BTreeMap::<&str, u64>::new();
    for (name, got) in &ended {
        *count.entry(got).or_default() += 1;
        match left.get(name) {
            Some(_) if *got == "aborted" => {
                panic!("{name} was aborted but its object is still there")
            }
            None if *got != "aborted" => panic!("{name} ended {got} but its object is gone"),
            Some(finalizers) => assert!(
                !finalizers.iter().any(|f| f == FINALIZER),
                "{name} still has our finalizer"
            ),
            None => {}
        }
    }
    assert_eq!(
        left.len(),
        ended.iter().filter(|(_, got)| *got != "aborted").count()
    );

    let errors = sandbox.faults().errors_served();
    let error_total: u64 = errors.values().sum();
    println!(
        "chaos: {tasks} lifecycles in {:.1} s: {} succeeded, {} failed, {} aborted (objects gone); failures: 0",
        wall.as_secs_f64(),
        count.get("succeeded").unwrap_or(&0),
        count.get("failed").unwrap_or(&0),
        count.get("aborted").unwrap_or(&0),
    );
    println!(
        "chaos: faults: {} injected error answers, {} watch streams dropped, {} latency changes (0-40 ms)",
        error_total, injected.watch_drops, injected.latency_changes
    );
    println!("chaos: error answers by verb: {errors:?}");
    println!(
        "chaos: API requests: {:?}",
        sandbox.faults().request_counts()
    );
}
