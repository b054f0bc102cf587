//! `just bench`: the agent path as propeller drives it. In one run:
//!
//! 1. CreateTask latency (p50, p99) on the embedded sandbox with every
//!    write taking 2 s, beside the same with no injected latency: the
//!    answer is bounded by `tasks.create-answer-within-ms`, not by the API.
//! 2. `resource_meta` bytes for a task whose pod template is 100 KB, beside
//!    a minimal task, and beside what the whole task weighs (what version 1
//!    of the layout carried), and the compressed task on the object.
//! 3. `flytewasm serve`'s resident memory with 10,000 foreign objects of the
//!    kind in 1,000 watched namespaces, beside the same with none (a
//!    `flytewasm sandbox` process holds them, so the figure is the host's).
//! 4. `serve`'s resident memory with `FLYTEWASM_BENCH_LIVE_TASKS` (100,000)
//!    Spark tasks in flight beside 1,000: the bytes each live task costs,
//!    and the API requests each task cost (the sandbox counts them).
//! 5. The same tasks over three sharded replicas (round robin): each
//!    replica's memory and cached objects.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flytewasm::agent::AgentService;
use flytewasm::cluster::Cluster;
use flytewasm::executor::{Executor, Tasks};
use flytewasm::metrics::Metrics;
use flytewasm::registry::{LivePlugins, Registry};
use flytewasm::sandbox::{Sandbox, SandboxConfig};
use flytewasm::task_service::{MetaKeys, TaskService};
use flytewasm::testkit;

mod support;
use flytewasm_proto::flyteidl::admin::{CreateTaskRequest, GetTaskRequest};
use flytewasm_proto::flyteidl::core::{K8sPod, TaskTemplate, task_template::Target};
use flytewasm_proto::flyteidl::service::async_agent_service_client::AsyncAgentServiceClient;
use flytewasm_proto::flyteidl::service::async_agent_service_server::AsyncAgentService;
use futures::StreamExt;
use kube::api::{DynamicObject, PostParams};
use serde_json::json;
use tonic::Request;

fn create(template: TaskTemplate, namespace: &str, execution: &str) -> CreateTaskRequest {
    let fate = [("sandbox.flytewasm.io/outcome", "run-forever")];
    testkit::create_request(template, namespace, execution, 0, &fate)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn service(sandbox: &Sandbox, keys: &MetaKeys) -> AgentService {
    let cluster = Cluster::new(sandbox.client().unwrap());
    AgentService::new(TaskService::new(
        Tasks::new(Executor::new(Arc::new(cluster), Arc::default())),
        LivePlugins::fixed(Registry::from_plugins(vec![testkit::plugin("spark")]).unwrap()),
        Arc::new(Metrics::default()),
        keys.clone(),
        false,
    ))
}

/// CreateTask latencies of `count` tasks, sorted.
async fn create_latencies(sandbox: &Sandbox, label: &str, count: usize) -> Vec<Duration> {
    let service = service(sandbox, &MetaKeys::ephemeral());
    let template = testkit::spark_task("bench", "unused").template;
    let mut took = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        service
            .create_task(Request::new(create(
                template.clone(),
                "bench",
                &format!("{label}-{i}"),
            )))
            .await
            .unwrap();
        took.push(started.elapsed());
    }
    took.sort();
    took
}

/// A Spark task whose pod template is about `bytes` long.
fn big_pod_task(bytes: usize) -> TaskTemplate {
    let env: Vec<_> = (0..bytes / 100)
        .map(|i| json!({ "name": format!("SETTING_{i:05}"), "value": format!("{:x}", md5ish(i)).repeat(4) }))
        .collect();
    let pod = json!({ "containers": [{ "name": "primary", "image": "spark:3.5", "env": env }] });
    let mut template = testkit::spark_task("bench", "unused").template;
    template
        .config
        .insert("primary_container_name".into(), "primary".into());
    template.target = Some(Target::K8sPod(K8sPod {
        pod_spec: Some(serde_json::from_value(pod).unwrap()),
        ..Default::default()
    }));
    template
}

/// Incompressible-looking values, so compression is not flattered.
fn md5ish(i: usize) -> u64 {
    (i as u64 + 1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // 1. CreateTask with slow writes.
        let sandbox = Sandbox::start(SandboxConfig {
            step: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .unwrap();
        let fast = create_latencies(&sandbox, "fast", 100).await;
        sandbox.faults().set_latency(Duration::from_secs(2));
        let slow = create_latencies(&sandbox, "slow", 100).await;
        sandbox.faults().clear();
        println!("CreateTask, 100 tasks each, in process on the embedded sandbox");
        for (label, took) in [("API as is", &fast), ("every API call 2 s", &slow)] {
            println!(
                "  {label:<22} p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
                percentile(took, 0.5),
                percentile(took, 0.99),
                took.last().unwrap()
            );
        }

        // 2. resource_meta size.
        let keys = MetaKeys::ephemeral();
        let service = service(&sandbox, &keys);
        let small = testkit::spark_task("bench", "unused").template;
        let big = big_pod_task(100_000);
        let template_bytes = prost::Message::encoded_len(&big);
        for (label, template) in [("minimal Spark task", small), ("100 KB pod template", big)] {
            let meta = service
                .create_task(Request::new(create(template.clone(), "bench", &format!("size-{}", label.len()))))
                .await
                .unwrap()
                .into_inner()
                .resource_meta;
            let task = flytewasm::task_service::task_request(create(template, "bench", "x"), "bench").unwrap();
            let whole = serde_json::to_vec(&task).unwrap().len();
            let (_, annotations) = flytewasm::executor::carried::identity(&task, "bench-x").unwrap();
            let carried = annotations[flytewasm::executor::carried::CONTEXT_ANNOTATION].len();
            let failed = flytewasm::task_service::decode_meta(&meta, &keys).unwrap().failure;
            assert!(failed.is_none(), "{label}: the launch failed: {failed:?}");
            println!(
                "resource_meta for a {label:<20} {:>5} bytes (the task: {whole:>7} bytes of JSON, {carried:>6} bytes compressed on the object)",
                meta.len()
            );
        }
        println!("  (the 100 KB pod template is {template_bytes} bytes of protobuf)");
    });

    // 3. RSS with foreign objects.
    // A first run seals the plugins' compiled form in the cache (compiling
    // costs memory the runs compared below must not carry).
    serve_rss(1_000, 0, 1);
    let baseline = serve_rss(1_000, 0, 1).0[0];
    let crowded = serve_rss(1_000, 10_000, 1).0[0];
    println!(
        "flytewasm serve RSS, 1,000 namespaces watched (one task each), sandbox in another process"
    );
    println!(
        "  no foreign objects             {:>6} MiB  cached objects {}",
        baseline.0 / 1024,
        baseline.1
    );
    println!(
        "  10,000 foreign objects         {:>6} MiB  cached objects {}",
        crowded.0 / 1024,
        crowded.1
    );
    println!(
        "  ratio                          {:>6.2}x",
        crowded.0 as f64 / baseline.0 as f64
    );

    // 4. RSS per live task.
    let live: usize = std::env::var("FLYTEWASM_BENCH_LIVE_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (many, requests) = serve_rss(live, 0, 1);
    let many = many[0];
    let per_task = (many.0 - baseline.0) as f64 * 1024.0 / (live - 1_000) as f64;
    println!(
        "flytewasm serve RSS with Spark tasks in flight over 1,000 namespaces, sandbox in another process"
    );
    println!(
        "  1,000 tasks                    {:>6} MiB  cached objects {}",
        baseline.0 / 1024,
        baseline.1
    );
    println!(
        "  {live:>6} tasks                  {:>6} MiB  cached objects {}  ({:.2}x; peak {} MiB)",
        many.0 / 1024,
        many.1,
        many.0 as f64 / baseline.0 as f64,
        many.2 / 1024
    );
    println!(
        "  per live task                  {:>6.0} bytes  (100,000 tasks at this rate: {:.0} MiB)",
        per_task,
        (baseline.0 as f64 * 1024.0 + per_task * 99_000.0) / (1 << 20) as f64
    );
    println!(
        "  API requests per task          {:>6.2}  ({requests} for {live} launches and two GetTask passes; goal ≤ 2)",
        requests as f64 / live as f64
    );

    // 5. The same tasks over three sharded replicas, called round robin.
    let (sharded, _) = serve_rss(live, 0, 3);
    println!("  {live:>6} tasks over 3 sharded replicas, round robin:");
    for (i, (rss, cached, peak)) in sharded.iter().enumerate() {
        println!(
            "    replica {i}                     {:>6} MiB  cached objects {cached}  ({:.2}x one replica's; peak {} MiB)",
            rss / 1024,
            *rss as f64 / many.0 as f64,
            peak / 1024
        );
    }
}

/// Start a sandbox process with `foreign` SparkApplications not ours spread
/// over 1,000 namespaces, run `tasks` tasks spread over those namespaces
/// through `replicas` sharded `serve` processes, and report each one's RSS
/// (KiB), cached objects and peak RSS (KiB), and the requests the sandbox
/// served (the foreign objects' creates not counted).
fn serve_rss(tasks: usize, foreign: usize, replicas: usize) -> (Vec<(u64, u64, u64)>, u64) {
    let root = testkit::workspace_dir();
    let bin = env!("CARGO_BIN_EXE_flytewasm");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("sandbox.kubeconfig");
    let (mut sandbox, url) = spawn(
        Command::new(bin)
            .args([
                "sandbox",
                "--port",
                "0",
                "--step-ms",
                "3600000",
                "--plugins",
            ])
            .arg(root.join("target/plugins"))
            .arg("--kubeconfig")
            .arg(&kubeconfig),
        |line| {
            line.split_once("serving at ")
                .map(|(_, url)| url.trim().to_owned())
        },
    );
    let config = support::host_config(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let namespaces = 1000;
    runtime.block_on(async {
        let mut config = kube::Config::new(url.parse().unwrap());
        config.default_namespace = "default".into();
        let client = kube::Client::try_from(config).unwrap();
        let resource = kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(
                "sparkoperator.k8s.io",
                "v1beta2",
                "SparkApplication",
            ),
            "sparkapplications",
        );
        let bulk = "x".repeat(2_000);
        futures::future::join_all((0..foreign).map(|i| {
            let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(
                client.clone(),
                &format!("ns-{}", i % namespaces),
                &resource,
            );
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
                "metadata": { "name": format!("foreign-{i}"), "annotations": { "bulk": bulk } },
                "spec": { "mainApplicationFile": "local:///app.py" },
            }))
            .unwrap();
            async move { api.create(&PostParams::default(), &object).await.unwrap() }
        }))
        .await;
    });
    // Replica i of `replicas` caches its shard; calls go round robin.
    let servers: Vec<(Child, String, String)> = (0..replicas)
        .map(|index| {
            let (serve, printed) = spawn(
                support::serve(&config, &kubeconfig)
                    .args(["--shard-index", &index.to_string()])
                    .args(["--shard-count", &replicas.to_string()]),
                |line| {
                    line.contains("agent and connector gRPC on ")
                        .then(|| line.to_owned())
                },
            );
            let address = |after: &str, end: char| {
                let rest = printed.split_once(after).unwrap().1;
                rest.split(end).next().unwrap().trim().to_owned()
            };
            let grpc = address("agent and connector gRPC on ", ';');
            let http = address("metrics on http://", ' ');
            (serve, grpc, http)
        })
        .collect();
    let cached = runtime.block_on(async {
        let mut agents = Vec::new();
        for (_, grpc, _) in &servers {
            agents.push(
                AsyncAgentServiceClient::connect(format!("http://{grpc}"))
                    .await
                    .unwrap(),
            );
        }
        let template = testkit::spark_task("bench", "unused").template;
        // 32 calls in flight at a time, as propeller's workers make them.
        let metas: Vec<Vec<u8>> = futures::stream::iter(0..tasks)
            .map(|i| {
                let mut agent = agents[i % replicas].clone();
                let request = create(
                    template.clone(),
                    &format!("ns-{}", i % namespaces),
                    &format!("rss-{i}"),
                );
                async move {
                    agent
                        .create_task(request)
                        .await
                        .unwrap()
                        .into_inner()
                        .resource_meta
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        // GetTask opens each namespace's watch, as propeller's resync does;
        // the second pass asks each task's next replica.
        for pass in 0..2 {
            futures::stream::iter(metas.iter().enumerate())
                .for_each_concurrent(32, |(i, meta)| {
                    let mut agent = agents[(i + pass) % replicas].clone();
                    let get = GetTaskRequest {
                        resource_meta: meta.clone(),
                        ..Default::default()
                    };
                    async move {
                        agent.get_task(get).await.unwrap();
                    }
                })
                .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        servers
            .iter()
            .map(|(_, _, http)| metric(http, "flytewasm_watch_cached_objects"))
            .collect::<Vec<_>>()
    });
    let measured = servers
        .iter()
        .zip(cached)
        .map(|((serve, _, _), cached)| {
            let pid = serve.id();
            (
                testkit::rss_kib(pid),
                cached,
                testkit::peak_rss_kib(&pid.to_string()),
            )
        })
        .collect();
    let requests = api_requests(url.trim_start_matches("http://")) - foreign as u64;
    for (mut serve, _, _) in servers {
        let _ = serve.kill();
        let _ = serve.wait();
    }
    let _ = sandbox.kill();
    let _ = sandbox.wait();
    (measured, requests)
}

/// The requests a sandbox process has served, all verbs.
fn api_requests(address: &str) -> u64 {
    let page = http_get(address, "/sandbox.flytewasm.io/v1/faults");
    let body = page.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let faults: serde_json::Value = serde_json::from_str(body).unwrap();
    faults["requests"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum()
}

/// One gauge from a `/metrics` page.
fn metric(address: &str, name: &str) -> u64 {
    http_get(address, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// A whole HTTP/1.0 answer, headers and all.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    page
}

/// A process and what `found` picked out of its output.
fn spawn(command: &mut Command, found: impl Fn(&str) -> Option<String>) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("starting {command:?}: {err}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let value = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{command:?} exited early"))
            .unwrap();
        if let Some(value) = found(&line) {
            break value;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, value)
}
