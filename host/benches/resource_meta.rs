//! `just bench`: what signing `resource_meta` costs a GetTask. In one run:
//! the MAC check alone, decoding a signed meta (MAC + JSON), and a whole in-process GetTask of a running Spark
//! task on the embedded sandbox (decode, watch-cache read, the plugin's
//! get-task-phase in a fresh wasm instance). Reports medians and the share
//! of a GetTask the MAC check is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flytewasm::agent::AgentService;
use flytewasm::cluster::Cluster;
use flytewasm::executor::{Executor, Tasks};
use flytewasm::metrics::Metrics;
use flytewasm::registry::{LivePlugins, Registry};
use flytewasm::sandbox::{Sandbox, SandboxConfig};
use flytewasm::task_service::{MetaKeys, TaskService, decode_meta};
use flytewasm::testkit;
use flytewasm_proto::flyteidl::admin::GetTaskRequest;
use flytewasm_proto::flyteidl::service::async_agent_service_server::AsyncAgentService;
use tonic::Request;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median of `rounds` batches of `per_round` calls, per call.
fn measure(rounds: usize, per_round: u32, mut call: impl FnMut()) -> Duration {
    median(
        (0..rounds)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..per_round {
                    call();
                }
                started.elapsed() / per_round
            })
            .collect(),
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = MetaKeys::ephemeral();
    let (service, meta, _sandbox) = runtime.block_on(async {
        let sandbox = Sandbox::start(SandboxConfig {
            step: Duration::from_secs(3600), // stays RUNNING-bound: SUBMITTED for the whole run
            ..Default::default()
        })
        .await
        .unwrap();
        let cluster = Cluster::new(sandbox.client().unwrap());
        let spark = testkit::plugin("spark");
        sandbox.register(flytewasm::sandbox::Kind::new(
            &spark.info().kind.api_version,
            &spark.info().kind.kind,
            &spark.info().kind.plural,
        ));
        let service = AgentService::new(TaskService::new(
            Tasks::new(Executor::new(Arc::new(cluster), Arc::default())),
            LivePlugins::fixed(Registry::from_plugins(vec![spark]).unwrap()),
            Arc::new(Metrics::default()),
            keys.clone(),
            false,
        ));
        let template = testkit::spark_task("bench", "unused").template;
        let meta = service
            .create_task(Request::new(testkit::create_request(
                template,
                "bench",
                "bench",
                0,
                &[],
            )))
            .await
            .unwrap()
            .into_inner()
            .resource_meta;
        (service, meta, sandbox)
    });
    let get = || GetTaskRequest {
        resource_meta: meta.clone(),
        ..Default::default()
    };
    // Warm the watch cache and the plugin.
    for _ in 0..50 {
        runtime
            .block_on(service.get_task(Request::new(get())))
            .unwrap();
    }

    let verify = measure(21, 2000, || {
        std::hint::black_box(keys.verify(std::hint::black_box(&meta)).unwrap());
    });
    let decode = measure(21, 500, || {
        std::hint::black_box(decode_meta(std::hint::black_box(&meta), &keys).unwrap());
    });
    let get_task = measure(21, 50, || {
        runtime
            .block_on(service.get_task(Request::new(get())))
            .unwrap();
    });
    println!("resource_meta: {} bytes, signed", meta.len());
    println!("MAC check (keyed BLAKE3)        median {:>9.2?}", verify);
    println!("decode (MAC + JSON)             median {:>9.2?}", decode);
    println!("GetTask, in process             median {:>9.2?}", get_task);
    println!(
        "the MAC check is {:.3}% of a GetTask ({:.1}% of decoding)",
        100.0 * verify.as_secs_f64() / get_task.as_secs_f64(),
        100.0 * verify.as_secs_f64() / decode.as_secs_f64()
    );
}
