//! The MPI plugin in the wasm runtime, against the test vectors of Flyte's
//! own plugin (reference/flyte-operators.md §A.5, MPI).
//! The component is `target/plugins/mpi.wasm` from `just build-plugins`.

use flytewasm::config::HostConfig;
use flytewasm::runtime::Plugin;
use flytewasm::testkit::{self, kubeflow};
use serde_json::{Value, json};

fn plugin() -> Plugin {
    testkit::plugin("mpi")
}

fn build(version: i32, custom: Value) -> Result<Value, String> {
    kubeflow::build(
        &plugin(),
        &kubeflow::task("mpi", version, custom),
        &HostConfig::default(),
    )
    .map_err(|e| e.to_string())
}

fn container<'a>(job: &'a Value, role: &str) -> &'a Value {
    kubeflow::container(job, "mpiReplicaSpecs", role, "mpi")
}

fn replicas(job: &Value, role: &str) -> i64 {
    job["spec"]["mpiReplicaSpecs"][role]["replicas"]
        .as_i64()
        .unwrap()
}

fn resources(cpu: (&str, &str), memory: (&str, &str)) -> Value {
    json!({ "requests": [{ "name": "CPU", "value": cpu.0 }, { "name": "MEMORY", "value": memory.0 }],
            "limits": [{ "name": "CPU", "value": cpu.1 }, { "name": "MEMORY", "value": memory.1 }] })
}

// §A.5 MPI 1–3.
#[test]
fn v0_counts_slots_and_worker_command() {
    let job = build(
        0,
        json!({ "numWorkers": 100, "numLauncherReplicas": 50, "slots": 1 }),
    )
    .unwrap();
    assert_eq!(
        (job["apiVersion"].as_str(), job["kind"].as_str()),
        (Some("kubeflow.org/v1"), Some("MPIJob"))
    );
    assert_eq!(
        (replicas(&job, "Launcher"), replicas(&job, "Worker")),
        (50, 100)
    );
    assert_eq!(job["spec"]["slotsPerWorker"], 1);
    assert_eq!(
        container(&job, "Launcher")["resources"]["requests"]["cpu"],
        "100m"
    );
    assert_eq!(container(&job, "Launcher")["args"], json!(["test-args"]));
    // Workers run `worker_spec_command`, here none: empty, not absent.
    assert_eq!(
        (
            container(&job, "Worker")["command"].clone(),
            container(&job, "Worker")["args"].clone()
        ),
        (json!([]), json!([]))
    );

    let err = build(0, json!({ "slots": 1 })).unwrap_err();
    assert!(
        err.contains("number of workers must be greater than 0"),
        "{err}"
    );
    let job = build(0, json!({ "numWorkers": 1 })).unwrap();
    assert_eq!(
        (replicas(&job, "Launcher"), replicas(&job, "Worker")),
        (1, 1),
        "the launcher is raised to one"
    );
    assert_eq!(job["spec"]["slotsPerWorker"], 0, "v0 passes slots through");

    let mut request = kubeflow::task("mpi", 0, json!({ "numWorkers": 2 }));
    request.template.config = [(
        "worker_spec_command".to_owned(),
        "/usr/sbin/sshd -De".to_owned(),
    )]
    .into();
    let job = kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap();
    assert_eq!(
        container(&job, "Worker")["args"],
        json!(["/usr/sbin/sshd", "-De"])
    );
}

// §A.5 MPI 4 and 5: a role's command becomes its container's args.
#[test]
fn v1_roles_commands_and_resources() {
    let launcher = json!({ "image": "launcher:1", "command": ["python", "launcher.py"], "resources": resources(("250m", "500m"), ("250Mi", "500Mi")) });
    let worker = json!({ "replicas": 100, "command": ["/usr/sbin/sshd", "/.sshd_config"], "resources": resources(("1024m", "2048m"), ("1Gi", "2Gi")) });
    let common = |spec: &Value| {
        let mut c = spec.clone();
        let command = c.as_object_mut().unwrap().remove("command").unwrap();
        json!({ "common": c, "command": command })
    };
    for (launcher, worker) in [
        (launcher.clone(), worker.clone()),
        (common(&launcher), common(&worker)),
    ] {
        let job = build(
            1,
            json!({ "launcherReplicas": launcher, "workerReplicas": worker, "slots": 1 }),
        )
        .unwrap();
        assert_eq!(
            (replicas(&job, "Launcher"), replicas(&job, "Worker")),
            (1, 100)
        );
        assert_eq!(job["spec"]["slotsPerWorker"], 1);
        assert_eq!(
            container(&job, "Launcher")["args"],
            json!(["python", "launcher.py"])
        );
        assert_eq!(
            container(&job, "Worker")["args"],
            json!(["/usr/sbin/sshd", "/.sshd_config"])
        );
        assert_eq!(container(&job, "Launcher")["image"], "launcher:1");
        assert_eq!(
            container(&job, "Launcher")["resources"]["limits"]["memory"],
            "500Mi"
        );
        assert_eq!(
            container(&job, "Worker")["resources"]["requests"]["cpu"],
            "1024m"
        );
    }
    let job = build(1, json!({ "workerReplicas": worker })).unwrap();
    assert_eq!(replicas(&job, "Launcher"), 1);
    assert_eq!(
        container(&job, "Launcher")["args"],
        json!(["test-args"]),
        "the launcher runs the task's command line"
    );
    assert!(
        build(1, json!({ "launcherReplicas": { "replicas": 1 } }))
            .unwrap_err()
            .contains("number of workers")
    );
}

// §G.1, fixed deliberately (see the crate docs): v1 honours `slots`.
#[test]
fn v1_slots_reach_the_job() {
    let job = build(
        1,
        json!({ "workerReplicas": { "replicas": 2 }, "slots": 2 }),
    )
    .unwrap();
    assert_eq!(job["spec"]["slotsPerWorker"], 2);
    let job = build(1, json!({ "workerReplicas": { "replicas": 2 } })).unwrap();
    assert_eq!(
        job["spec"]["slotsPerWorker"], 1,
        "unset slots: one per worker"
    );
}

// §A.5 MPI 7.
#[test]
fn conditions_map_to_phases() {
    let request = kubeflow::task(
        "mpi",
        0,
        json!({ "numWorkers": 2, "numLauncherReplicas": 1, "slots": 1 }),
    );
    let job = kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap();
    kubeflow::assert_phase_table(&plugin(), &request, &job, "mpi");
}

// §A.5 MPI 8, §G.2: workers only, no launcher link.
#[test]
fn log_links_are_the_workers_only() {
    let custom = json!({ "numWorkers": 2, "numLauncherReplicas": 1 });
    let links = kubeflow::log_links(
        &plugin(),
        &kubeflow::task("mpi", 0, custom),
        "mpi-namespace",
    );
    let uris: Vec<String> = links.into_iter().map(|(_, uri)| uri).collect();
    assert_eq!(
        uris,
        ["the-job-worker-0", "the-job-worker-1"]
            .map(|pod| kubeflow::dashboard_link("mpi-namespace", pod))
    );
}

#[test]
fn golden_v1_job() {
    let job = build(1, json!({
        "launcherReplicas": { "replicas": 1, "image": "launcher:1" },
        "workerReplicas": { "replicas": 2, "command": ["/usr/sbin/sshd", "-De"], "restartPolicy": "RESTART_POLICY_ON_FAILURE" },
        "slots": 2,
        "runPolicy": { "cleanPodPolicy": "CLEANPOD_POLICY_ALL" },
    }))
    .unwrap();
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), "v1_job", &job);
}
