//! The MPI plugin in the wasm runtime, against the test vectors of Flyte's
//! own plugin (reference/flyte-operators.md §A.5, MPI).
//! The component is `target/plugins/mpi.wasm` from `just build-plugins`.

use flytewasm::config::HostConfig;
use flytewasm::executor::TaskRequest;
use flytewasm::runtime::Plugin;
use flytewasm::testkit::{self, kubeflow};
use flytewasm_proto::flyteidl::core::resources::ResourceName::{Cpu, Gpu, Memory};
use serde_json::{Value, json};

fn plugin() -> Plugin {
    testkit::plugin("mpi")
}

/// Flyte's MPI fixture: the common one without the GPU.
fn task(version: i32, custom: Value) -> TaskRequest {
    kubeflow::with_task_resources(
        kubeflow::task("mpi", version, custom),
        &[(Cpu, "100m"), (Memory, "512Mi")],
        &[(Cpu, "1000m"), (Memory, "1Gi")],
    )
}

fn build(version: i32, custom: Value) -> Result<Value, String> {
    kubeflow::build(&plugin(), &task(version, custom), &HostConfig::default())
        .map_err(|e| e.to_string())
}

/// The same task with no resources of its own: Flyte's fixture has them as
/// execution overrides, which a role's own replace.
fn build_bare(version: i32, custom: Value) -> Value {
    let request = kubeflow::with_task_resources(task(version, custom), &[], &[]);
    kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap()
}

/// A container's resources as k8s writes them.
fn k8s(cpu: (&str, &str), memory: (&str, &str)) -> Value {
    json!({ "requests": { "cpu": cpu.0, "memory": memory.0 }, "limits": { "cpu": cpu.1, "memory": memory.1 } })
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
    for role in ["Launcher", "Worker"] {
        // Every container exactly the task's resources.
        assert_eq!(
            container(&job, role)["resources"],
            k8s(("100m", "1000m"), ("512Mi", "1Gi")),
            "{role}"
        );
        kubeflow::assert_execution_metadata(
            &job["spec"]["mpiReplicaSpecs"][role]["template"],
            role,
        );
    }
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
    // §A.5 MPI 3: workers are needed; a launcher is raised to one.
    let err = build(0, json!({ "numLauncherReplicas": 1 })).unwrap_err();
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
    let job = build(0, json!({ "numWorkers": 1, "numLauncherReplicas": 1 })).unwrap();
    assert_eq!(
        (replicas(&job, "Launcher"), replicas(&job, "Worker")),
        (1, 1)
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
        let job = build_bare(
            1,
            json!({ "launcherReplicas": launcher, "workerReplicas": worker, "slots": 1 }),
        );
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
        assert_eq!(container(&job, "Worker")["image"], "image://");
        // Each container exactly its role's resources.
        assert_eq!(
            container(&job, "Launcher")["resources"],
            k8s(("250m", "500m"), ("250Mi", "500Mi"))
        );
        assert_eq!(
            container(&job, "Worker")["resources"],
            k8s(("1024m", "2048m"), ("1Gi", "2Gi"))
        );
    }
    let job = build(1, json!({ "workerReplicas": worker })).unwrap();
    assert_eq!(replicas(&job, "Launcher"), 1);
    assert_eq!(
        container(&job, "Launcher")["args"],
        json!(["test-args"]),
        "the launcher runs the task's command line"
    );
    // §A.5 MPI 5: the worker still runs its own command.
    assert_eq!(
        container(&job, "Worker")["args"],
        json!(["/usr/sbin/sshd", "/.sshd_config"])
    );
    assert!(
        build(1, json!({ "launcherReplicas": { "replicas": 1 } }))
            .unwrap_err()
            .contains("number of workers")
    );
}

// §A.3.6 v1: the launcher is forced to one replica, whatever it asks.
#[test]
fn v1_launcher_is_forced_to_one() {
    for launcher in [
        json!({ "replicas": 3 }),
        json!({ "common": { "replicas": 2 } }),
        json!({}),
    ] {
        let job = build(
            1,
            json!({ "launcherReplicas": launcher, "workerReplicas": { "replicas": 2 } }),
        )
        .unwrap();
        assert_eq!(replicas(&job, "Launcher"), 1, "{launcher}");
    }
}

// §G.20 (the operator's, not Flyte's): a worker whose container has no
// `command` is run as `sleep 365d` by training-operator, whatever its args.
// Like Flyte, the plugin leaves the command alone and puts the role's
// `command` in args; flytekit's tasks set no command, so their workers
// sleep while the launcher drives them (mpirun over the operator's kubexec).
#[test]
fn g20_a_worker_without_a_command_is_left_for_the_operator_to_rewrite() {
    let job = build(
        1,
        json!({ "launcherReplicas": { "replicas": 1 }, "workerReplicas": { "replicas": 2, "command": ["/usr/sbin/sshd", "-De"] } }),
    )
    .unwrap();
    let worker = container(&job, "Worker");
    assert!(
        worker.get("command").is_none_or(|c| c == &json!([])),
        "{worker}"
    );
    assert_eq!(worker["args"], json!(["/usr/sbin/sshd", "-De"]));
    // v0 writes the empty command out.
    let job = build(0, json!({ "numWorkers": 2 })).unwrap();
    assert_eq!(container(&job, "Worker")["command"], json!([]));
}

// §A.5 MPI 6: GPU tolerations follow each role's own resources.
#[test]
fn v1_resource_tolerations_follow_each_role() {
    let config: HostConfig = serde_json::from_value(
        json!({ "k8s": { "resource-tolerations": { "nvidia.com/gpu": [
        { "key": "nvidia.com/gpu", "value": "present", "operator": "Equal", "effect": "NoSchedule" }
    ] } } }),
    )
    .unwrap();
    let request = task(
        1,
        json!({
            "launcherReplicas": { "resources": resources(("250m", "500m"), ("250Mi", "500Mi")) },
            "workerReplicas": { "replicas": 2, "resources": { "requests": [{ "name": "GPU", "value": "1" }], "limits": [{ "name": "GPU", "value": "1" }] } },
        }),
    );
    let job = kubeflow::build(&plugin(), &request, &config).unwrap();
    let tolerations = |role: &str| {
        job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]["tolerations"].clone()
    };
    assert_eq!(tolerations("Launcher"), Value::Null);
    assert_eq!(
        tolerations("Worker"),
        json!([{ "key": "nvidia.com/gpu", "value": "present", "operator": "Equal", "effect": "NoSchedule" }])
    );
    assert_eq!(
        container(&job, "Worker")["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    // The task's own GPU would give the launcher the toleration too.
    let request = kubeflow::with_task_resources(
        task(1, json!({ "workerReplicas": { "replicas": 2 } })),
        &[(Gpu, "1")],
        &[(Gpu, "1")],
    );
    let job = kubeflow::build(&plugin(), &request, &config).unwrap();
    assert!(
        job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["tolerations"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["key"] == "nvidia.com/gpu"))
    );
}

// §A.5 MPI 9: Flyte's default (empty) properties.
#[test]
fn describes_itself_with_flytes_default_properties() {
    testkit::assert_describes(
        &plugin(),
        "mpi",
        &[("mpi", 0), ("mpi", 1)],
        ("kubeflow.org/v1", "MPIJob", "mpijobs"),
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

// §A.5 Common 3, MPI: workers 1 and a launcher give one link, worker-0's.
#[test]
fn one_worker_one_link() {
    let custom = json!({ "numWorkers": 1, "numLauncherReplicas": 1 });
    let links = kubeflow::log_links(&plugin(), &kubeflow::task("mpi", 0, custom), "ns");
    let uris: Vec<String> = links.into_iter().map(|(_, uri)| uri).collect();
    assert_eq!(uris, [kubeflow::dashboard_link("ns", "the-job-worker-0")]);
}

// §0.3.6, Kubeflow common: a dynamic link from the task's config.
#[test]
fn a_dynamic_log_link_takes_its_value_from_the_task_config() {
    let request = kubeflow::task(
        "mpi",
        0,
        json!({ "numWorkers": 1, "numLauncherReplicas": 1 }),
    );
    let uris = kubeflow::dynamic_link_uris(&plugin(), request);
    // One link a pod.
    assert_eq!(uris, ["https://some-service.com/dynamic-value"; 1]);
}

#[test]
fn golden_v1_job() {
    // The common fixture (with its GPU), as the golden file was made.
    let request = kubeflow::task(
        "mpi",
        1,
        json!({
            "launcherReplicas": { "replicas": 1, "image": "launcher:1" },
            "workerReplicas": { "replicas": 2, "command": ["/usr/sbin/sshd", "-De"], "restartPolicy": "RESTART_POLICY_ON_FAILURE" },
            "slots": 2,
            "runPolicy": { "cleanPodPolicy": "CLEANPOD_POLICY_ALL" },
        }),
    );
    let job = kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap();
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), "v1_job", &job);
}
