//! `just bench`: N concurrent Spark tasks (default 1,000; `FLYTEWASM_BENCH_TASKS`)
//! through launch → success on the embedded sandbox, in one host process.
//! Reports wall time, peak RSS (this process, which also holds the sandbox
//! and its objects) and API requests per task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flytewasm::cluster::Cluster;
use flytewasm::config::HostConfig;
use flytewasm::executor::drive::{Outcome, run_to_completion};
use flytewasm::executor::{EndWrites, Executor, TaskRequest, Tasks};
use flytewasm::sandbox::{Sandbox, SandboxConfig};
use flytewasm::testkit;

fn main() {
    let tasks: usize = std::env::var("FLYTEWASM_BENCH_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let plugin = testkit::plugin("spark");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sandbox = Sandbox::start(SandboxConfig { step: Duration::from_millis(200), ..Default::default() }).await.unwrap();
        let engine = Tasks::with_end_writes(Executor::new(Arc::new(Cluster::new(sandbox.client().unwrap())), Arc::new(HostConfig::default())), EndWrites::Inline);
        let requests: Vec<TaskRequest> = (0..tasks).map(|i| testkit::spark_task("bench", &format!("bench-{i}"))).collect();
        let rss_before = testkit::peak_rss_kib("self");
        let started = Instant::now();
        let runs = requests.iter().map(|r| run_to_completion(&engine, &plugin, r, |_, _| {}, std::future::pending()));
        let outcomes = futures::future::join_all(runs).await;
        let wall = started.elapsed();
        let succeeded = outcomes.iter().filter(|o| matches!(o, Ok(Outcome::Succeeded(_)))).count();
        let counts = sandbox.faults().request_counts();
        let total: u64 = counts.values().sum();
        println!("{tasks} Spark tasks, launch → success, on the sandbox (3 simulated steps of 200 ms each)");
        println!("  succeeded          {succeeded}/{tasks}");
        println!("  wall time          {:.2} s (a single task's floor is ~0.6 s)", wall.as_secs_f64());
        println!("  peak RSS           {} MiB (before the tasks: {} MiB; host and sandbox share the process)", testkit::peak_rss_kib("self") / 1024, rss_before / 1024);
        println!("  API requests/task  {:.2}  {counts:?}", total as f64 / tasks as f64);
    });
}
