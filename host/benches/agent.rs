//! `just bench`: GetTask requests per second on one `flytewasm serve`
//! process with 1,000 Spark tasks in flight on a `flytewasm sandbox`
//! process (each answer: resource_meta decoded, the object read from the
//! watch cache, the plugin's get-task-phase run in a fresh wasm instance),
//! and the server's CPU time per GetTask. Beside it, in the same run and
//! with the same client, flytekit's own agent server (`pyflyte serve
//! agent`) with a trivial agent that answers RUNNING at once. The servers
//! run as processes, one after the other on the same cores; the sandbox
//! keeps running beside flytewasm's, so the figures are the server's own.
//!
//! `FLYTEWASM_BENCH_TASKS` (default 1,000), `FLYTEWASM_BENCH_SECONDS`
//! (default 10) and `FLYTEWASM_BENCH_CONCURRENCY` (default 64) tune it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flytewasm::testkit;

mod support;
use flytewasm_proto::flyteidl::admin::{
    CreateTaskRequest, GetTaskRequest, TaskCategory, TaskExecutionMetadata,
};
use flytewasm_proto::flyteidl::core::{
    NodeExecutionIdentifier, TaskExecutionIdentifier, WorkflowExecutionIdentifier,
};
use flytewasm_proto::flyteidl::service::async_agent_service_client::AsyncAgentServiceClient;
use futures::StreamExt;
use tonic::transport::Channel;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let tasks = setting("FLYTEWASM_BENCH_TASKS", 1000) as usize;
    let seconds = setting("FLYTEWASM_BENCH_SECONDS", 10);
    let concurrency = setting("FLYTEWASM_BENCH_CONCURRENCY", 64) as usize;
    let root = testkit::workspace_dir();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let bin = env!("CARGO_BIN_EXE_flytewasm");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("sandbox.kubeconfig");
    let sandbox = Server::start(
        Command::new(bin)
            .args(["sandbox", "--port", "0", "--plugins"])
            .arg(root.join("target/plugins"))
            .arg("--kubeconfig")
            .arg(&kubeconfig),
        |line| line.contains("serving at ").then(String::new),
    );
    let config = support::host_config(dir.path());
    let ours = Server::start(&mut support::serve(&config, &kubeconfig), |line| {
        line.split_once("agent and connector gRPC on ")
            .map(|(_, rest)| rest.split(';').next().unwrap().trim().to_owned())
    });
    let flytewasm = runtime.block_on(measure(&ours, tasks, seconds, concurrency));
    let flytewasm_rss = ours.stop();
    sandbox.stop();

    let port = free_port();
    let python = Server::start(
        Command::new(root.join(".venv/bin/pyflyte"))
            .args(["serve", "agent", "--port", &port.to_string()])
            .args(["--prometheus_port", &free_port().to_string()])
            .args(["--worker", "10", "--modules", "trivial_agent"])
            .env("PYTHONPATH", root.join("host/benches"))
            .env("PYTHONUNBUFFERED", "1"),
        |line| {
            line.contains("Starting the agent service")
                .then(|| format!("127.0.0.1:{port}"))
        },
    );
    let flytekit = runtime.block_on(measure(&python, tasks, seconds, concurrency));
    let flytekit_rss = python.stop();

    println!(
        "GetTask throughput, {tasks} tasks in flight, {concurrency} concurrent calls for {seconds} s, one server process each"
    );
    println!(
        "  flytewasm serve (Spark plugin in wasm; sandbox process)  {:>9.0} req/s   p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}  CPU {:>5.0} µs/GetTask  peak RSS {} MiB",
        flytewasm.rps(),
        flytewasm.percentile(0.50),
        flytewasm.percentile(0.99),
        flytewasm.errors,
        flytewasm.cpu_per_call_us(),
        flytewasm_rss / 1024
    );
    println!(
        "  pyflyte serve agent (trivial agent, no cluster)          {:>9.0} req/s   p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}  CPU {:>5.0} µs/GetTask  peak RSS {} MiB",
        flytekit.rps(),
        flytekit.percentile(0.50),
        flytekit.percentile(0.99),
        flytekit.errors,
        flytekit.cpu_per_call_us(),
        flytekit_rss / 1024
    );
    println!(
        "  ratio flytewasm / flytekit                               {:>9.2}x (goal ≥ 5x)",
        flytewasm.rps() / flytekit.rps()
    );
}

/// A server process and the gRPC address it printed.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(command: &mut Command, address: impl Fn(&str) -> Option<String>) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("starting {command:?}: {err} (run `just setup` and `just build-plugins`)")
            });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{command:?} exited before it was serving"))
                .unwrap();
            if let Some(address) = address(&line) {
                break address;
            }
        };
        // Keep reading so the process never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, address }
    }

    /// Stop it; its peak RSS in KiB.
    fn stop(mut self) -> u64 {
        let rss = testkit::peak_rss_kib(&self.child.id().to_string());
        let _ = self.child.kill();
        let _ = self.child.wait();
        rss
    }
}

struct Measured {
    latencies_ms: Vec<f64>,
    errors: u64,
    elapsed: Duration,
    /// The server's CPU time (user + system) over the GetTask calls.
    cpu: Duration,
}

impl Measured {
    fn cpu_per_call_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.latencies_ms.len().max(1) as f64
    }

    fn rps(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
            .get(((sorted.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// Create `tasks` long-running tasks, then call GetTask on them round-robin
/// from `concurrency` callers for `seconds`.
async fn measure(server: &Server, tasks: usize, seconds: u64, concurrency: usize) -> Measured {
    let channel = connect(&server.address).await;
    let metas: Vec<Vec<u8>> = futures::stream::iter(0..tasks)
        .map(|i| {
            let mut client = AsyncAgentServiceClient::new(channel.clone());
            async move {
                client
                    .create_task(create_request(i))
                    .await
                    .unwrap_or_else(|status| panic!("CreateTask on {i}: {status}"))
                    .into_inner()
                    .resource_meta
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let metas = Arc::new(metas);
    let category = TaskCategory {
        name: "spark".into(),
        version: 0,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cpu_before = cpu_time(server.child.id());
    let callers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (metas, stop, errors) = (metas.clone(), stop.clone(), errors.clone());
            let mut client = AsyncAgentServiceClient::new(channel.clone());
            let category = category.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut next = worker;
                while !stop.load(Ordering::Relaxed) {
                    let request = GetTaskRequest {
                        resource_meta: metas[next % metas.len()].clone(),
                        task_category: Some(category.clone()),
                        ..Default::default()
                    };
                    next += concurrency;
                    let sent = Instant::now();
                    match client.get_task(request).await {
                        Ok(_) => latencies.push(sent.elapsed().as_secs_f64() * 1000.0),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let cpu = cpu_time(server.child.id()).saturating_sub(cpu_before);
    let mut latencies_ms = Vec::new();
    for caller in callers {
        latencies_ms.extend(caller.await.unwrap());
    }
    Measured {
        latencies_ms,
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        cpu,
    }
}

/// User + system CPU time of a process so far (/proc/PID/stat, in clock
/// ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses) come the state, then 10
    // counters, then utime and stime.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

async fn connect(address: &str) -> Channel {
    let endpoint = Channel::from_shared(format!("http://{address}")).unwrap();
    for _ in 0..200 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {address}");
}

/// A long-running Spark task (the sandbox keeps it RUNNING).
fn create_request(i: usize) -> CreateTaskRequest {
    CreateTaskRequest {
        template: Some(testkit::spark_task("bench", "unused").template),
        output_prefix: format!("s3://bench/{i}"),
        task_execution_metadata: Some(TaskExecutionMetadata {
            task_execution_id: Some(TaskExecutionIdentifier {
                node_execution_id: Some(NodeExecutionIdentifier {
                    node_id: "n0".into(),
                    execution_id: Some(WorkflowExecutionIdentifier {
                        project: "bench".into(),
                        domain: "development".into(),
                        name: format!("bench{i}"),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            namespace: "bench".into(),
            annotations: [(
                "sandbox.flytewasm.io/outcome".to_owned(),
                "run-forever".to_owned(),
            )]
            .into(),
            ..Default::default()
        }),
        inputs: None,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
