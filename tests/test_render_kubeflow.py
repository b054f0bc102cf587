"""Kubeflow training-operator tasks written with the upstream
flytekitplugins-kfpytorch, -kftensorflow and -kfmpi (tests/
kubeflow_user_tasks.py), serialized by real flytekit during the test run and
rendered by `flytewasm render` with the pytorch, tensorflow and mpi plugin
components: the PyTorchJob / TFJob / MPIJob carries what Flyte's Go plugins
build (flyte v1.16.8, `flyteplugins/go/tasks/plugins/k8s/kfoperators`).

§ numbers refer to the project's reference notes on Flyte's operator
plugins (flyte-operators.md). Resource
quantities are compared by value (Go's resource.Quantity prints 1000m as
"1" and 1024Mi as "1Gi"; the value is what Flyte sets)."""

import pathlib

import pytest

from conftest import ROOT, load_module, serialize
from object_checks import INPUTS, JOB_NAME, OUTPUT_PREFIX, env, expect, match_expressions, resources, tolerations

HERE = pathlib.Path(__file__).resolve().parent
IMAGE = "ghcr.io/example/spark:3.5"  # conftest.TEST_IMAGE: the task's own image
# Where `render --execution exec1` puts the task's inputs and outputs
# (propeller's layout, as in tests/test_render_spark.py).

GPU_CONFIG = {
    "k8s": {
        "gpu-device-node-label": "gpu-node-label",
        "gpu-partition-size-node-label": "gpu-partition-size",
        "add-tolerations-for-extended-resources": ["nvidia.com/gpu"],
        "resource-tolerations": {
            "nvidia.com/gpu": [{"key": "nvidia.com/gpu", "value": "present", "operator": "Equal", "effect": "NoSchedule"}]
        },
        "enable-distributed-error-aggregation": True,
    },
    "plugins": {"pytorch": {"timeout": "2m"}, "tensorflow": {"timeout": "2m"}, "mpi": {"timeout": "2m"}},
}


@pytest.fixture(scope="module")
def tasks():
    return load_module(HERE / "kubeflow_user_tasks.py")


@pytest.fixture(scope="module")
def kubeflow_plugins():
    missing = [n for n in ("pytorch", "tensorflow", "mpi") if not (ROOT / f"target/plugins/{n}.wasm").exists()]
    if missing:
        pytest.fail(f"target/plugins/{{{','.join(missing)}}}.wasm missing: run `just build-plugins`")


@pytest.fixture
def rendered(tasks, tmp_path, render, kubeflow_plugins):
    """Serialize the named task and render it: (object, TaskTemplate)."""

    def run(name, *args, config=None):
        pb, _, template = serialize(getattr(tasks, name), tmp_path, name)
        return render(pb, *args, config=config), template

    return run


# ---------------------------------------------------------------------------
# Helpers

def the_container(replica, name):
    """The replica template's container called `name` (the operator's)."""
    containers = replica["template"]["spec"]["containers"]
    named = [c for c in containers if c["name"] == name]
    assert len(named) == 1, [c["name"] for c in containers]
    return named[0]


def assert_pyflyte_args(args, task_name):
    """The task's pyflyte-execute line with Flyte's templates rendered."""
    start = args.index("pyflyte-execute")
    line = args[start:]
    assert line[:3] == ["pyflyte-execute", "--inputs", INPUTS], args
    assert line[line.index("--output-prefix") + 1] == OUTPUT_PREFIX, args
    assert line[-4:] == ["task-module", "kubeflow_user_tasks", "task-name", task_name], args
    assert not [a for a in args if "{{" in a], args
    return start


def assert_job_metadata(job, kind, task_name):
    assert job["apiVersion"] == "kubeflow.org/v1"  # §A.1
    assert job["kind"] == kind
    meta = job["metadata"]
    assert meta["name"] == JOB_NAME
    assert meta["namespace"] == "flytesnacks-development"
    assert meta["labels"]["task-name"] == f"kubeflow_user_tasks.{task_name}"
    assert meta["labels"]["execution-id"] == "exec1"


def assert_template_metadata(replica):
    """§A.3.1 step 3: config default-annotations ∪ pod-builder ∪ execution
    labels/annotations on every replica's pod template."""
    meta = replica["template"]["metadata"]
    assert meta["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false", meta
    assert meta["labels"]["execution-id"] == "exec1", meta
    assert meta["labels"]["node-id"] == "n0", meta


def assert_flyte_env(container):
    """§0.3.7 step 2: the Flyte env vars on the primary (now operator) container."""
    variables = env(container)
    assert variables["FLYTE_INTERNAL_EXECUTION_ID"]["value"] == "exec1"
    assert variables["FLYTE_INTERNAL_TASK_NAME"]["value"].startswith("kubeflow_user_tasks.")


def assert_shm_from_pod_template(replica, container):
    """flytekit's PyTorch/Elastic pod template (§E.1 "Shared memory"): volume
    `shm` (emptyDir medium Memory) mounted at /dev/shm on the primary."""
    volumes = {v["name"]: v for v in replica["template"]["spec"].get("volumes") or []}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory"}, volumes
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
    assert mounts["/dev/shm"] == "shm", mounts


# ---------------------------------------------------------------------------
# What flytekit 1.16.31 sends (§E), checked before any plugin sees it.


def test_flytekit_serializes_the_kubeflow_custom_as_section_e_says(tasks, tmp_path):
    def custom(name):
        _, _, template = serialize(getattr(tasks, name), tmp_path, name)
        return template, _json(template.custom)

    # §E.1: PyTorch → type pytorch v1, deprecated replica fields, k8s_pod target with `primary`.
    template, c = custom("pytorch_plain")
    assert (template.type, template.task_type_version) == ("pytorch", 1)
    assert c == {"workerReplicas": {"replicas": 2, "resources": {}}, "masterReplicas": {"replicas": 1, "resources": {}}}
    assert template.WhichOneof("target") == "k8s_pod"
    assert dict(template.config) == {"primary_container_name": "primary"}
    template, c = custom("pytorch_overrides")
    assert c["masterReplicas"]["restartPolicy"] == "RESTART_POLICY_ALWAYS"
    assert c["workerReplicas"]["restartPolicy"] == "RESTART_POLICY_ON_FAILURE"
    assert {"name": "GPU", "value": "1"} in c["workerReplicas"]["resources"]["limits"]
    assert c["runPolicy"] == {
        "cleanPodPolicy": "CLEANPOD_POLICY_ALL", "backoffLimit": 3,
        "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60,
    }
    assert template.extended_resources.gpu_accelerator.device == "nvidia-tesla-t4"
    # §E.1 Elastic("2:4") → worker replicas = max, elasticConfig; maxRestarts 0 omitted.
    template, c = custom("elastic")
    assert (template.type, template.task_type_version) == ("pytorch", 1)
    assert c == {
        "workerReplicas": {"replicas": 4},
        "elasticConfig": {"rdzvBackend": "c10d", "minReplicas": 2, "maxReplicas": 4, "nprocPerNode": 2},
    }
    # §E.1: max_restarts, when not 0, is sent; nnodes=2 → min = max = 2.
    _, c = custom("elastic_restarts")
    assert c["elasticConfig"] == {
        "rdzvBackend": "c10d", "minReplicas": 2, "maxReplicas": 2, "nprocPerNode": 1, "maxRestarts": 3
    }
    # `@task(shared_memory=True)`: no plugin pod template, an extended resource instead.
    template, c = custom("pytorch_shared_memory")
    assert template.WhichOneof("target") == "container"
    assert template.extended_resources.shared_memory.mount_name == "flyte-shared-memory"
    assert template.extended_resources.shared_memory.mount_path == "/dev/shm"
    # §E.2: TfJob → type tensorflow v1; NEVER (= 0) is omitted.
    template, c = custom("tf_all_roles")
    assert (template.type, template.task_type_version) == ("tensorflow", 1)
    assert set(c) == {"chiefReplicas", "psReplicas", "workerReplicas", "evaluatorReplicas", "runPolicy"}
    assert "restartPolicy" not in c["workerReplicas"]
    assert c["runPolicy"] == {"cleanPodPolicy": "CLEANPOD_POLICY_RUNNING", "activeDeadlineSeconds": 100}
    # §E.3: MPIJob / HorovodJob → type mpi v1, slots sent (and ignored by the v1 backend, §G.1).
    template, c = custom("mpi")
    assert (template.type, template.task_type_version) == ("mpi", 1)
    assert c == {"launcherReplicas": {"replicas": 1, "resources": {}}, "workerReplicas": {"replicas": 2, "resources": {}}, "slots": 2}
    assert list(template.container.args[:2]) == ["mpirun", "--allow-run-as-root"]
    assert list(template.container.args[18:22]) == ["-np", "4", "python", "/opt/venv/bin/entrypoint.py"]
    template, c = custom("horovod")
    assert c["workerReplicas"]["command"] == ["/usr/sbin/sshd", "-De", "-f", "/home/jobuser/.sshd_config"]
    assert list(template.container.args[:3]) == ["horovodrun", "-np", "4"]
    assert c["runPolicy"] == {"backoffLimit": 5, "activeDeadlineSeconds": 100, "ttlSecondsAfterFinished": 100}


def _json(struct):
    from google.protobuf.json_format import MessageToDict

    def ints(value):  # Struct numbers are floats
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: ints(v) for k, v in value.items()}
        if isinstance(value, list):
            return [ints(v) for v in value]
        return value

    return ints(MessageToDict(struct))


# ---------------------------------------------------------------------------
# PyTorchJob


def test_a_plain_pytorch_task(rendered):
    job, template = rendered("pytorch_plain")
    assert_job_metadata(job, "PyTorchJob", "pytorch_plain")
    spec = job["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    # §A.3.4: Master always (forced to 1), Worker when it has replicas.
    assert set(replicas) == {"Master", "Worker"}
    assert replicas["Master"]["replicas"] == 1
    assert replicas["Worker"]["replicas"] == 2
    # §A.3.2 step 6: restart policy unset (0) → Never.
    assert replicas["Master"]["restartPolicy"] == "Never"
    assert replicas["Worker"]["restartPolicy"] == "Never"
    # §A.3.3: no run policy in the task → an empty one; no elastic policy.
    assert spec.get("runPolicy", {}) == {}
    assert "elasticPolicy" not in spec
    for role, replica in replicas.items():
        # §A.3.1 step 2 / §E.1: flytekit's k8s_pod primary `primary` renamed `pytorch`.
        names = [c["name"] for c in replica["template"]["spec"]["containers"]]
        assert names == ["pytorch"], (role, names)
        container = the_container(replica, "pytorch")
        assert container["image"] == IMAGE
        # The task's resources (in its pod spec) reach every replica, exactly.
        assert resources(container) == expect({"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "2Gi"}), role
        assert_pyflyte_args(container["args"], "pytorch_plain")
        assert not container.get("command")
        assert_shm_from_pod_template(replica, container)
        assert_flyte_env(container)
        assert_template_metadata(replica)
        # §0.3.7 step 3: pod restartPolicy defaults to Never.
        assert replica["template"]["spec"]["restartPolicy"] == "Never"
    # §A.3.4 / §G.6: `_F_WN` (the worker's pod name) on the Worker's first
    # container only; no `_F_DES` without error aggregation.
    worker_env = env(replicas["Worker"]["template"]["spec"]["containers"][0])
    assert worker_env["_F_WN"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "_F_DES" not in worker_env
    master_env = env(replicas["Master"]["template"]["spec"]["containers"][0])
    assert "_F_WN" not in master_env and "_F_DES" not in master_env


def test_per_replica_overrides_run_policy_and_a_gpu_accelerator(rendered):
    job, _ = rendered("pytorch_overrides", config=GPU_CONFIG)
    assert_job_metadata(job, "PyTorchJob", "pytorch_overrides")
    spec = job["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    master, worker = replicas["Master"], replicas["Worker"]
    assert (master["replicas"], worker["replicas"]) == (1, 4)
    # §A.3.2 step 6: ALWAYS → Always, ON_FAILURE (flytekit FAILURE) → OnFailure.
    assert master["restartPolicy"] == "Always"
    assert worker["restartPolicy"] == "OnFailure"
    # §A.3.3: an explicit run policy, every field mapped.
    assert spec["runPolicy"] == {
        "cleanPodPolicy": "All", "backoffLimit": 3, "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60
    }
    m, w = the_container(master, "pytorch"), the_container(worker, "pytorch")
    # §A.3.2 step 5 / §A.3.7: each replica's image replaces the task's.
    assert m["image"] == "ghcr.io/example/torch-master:2.4"
    assert w["image"] == "ghcr.io/example/torch-worker:2.4"
    # §A.3.2 step 2 / §A.5 PyTorch 11: exactly each replica's own resources;
    # flytekit's GPU becomes nvidia.com/gpu (§0.3.7).
    assert resources(m) == expect({"cpu": "250m", "memory": "250Mi"}, {"cpu": "500m", "memory": "500Mi"})
    assert resources(w) == expect(
        {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}, {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    )
    for replica, container in ((master, m), (worker, w)):
        assert_pyflyte_args(container["args"], "pytorch_overrides")
        assert_shm_from_pod_template(replica, container)
        assert_template_metadata(replica)
    # §0.3.7 step 5 / §A.5 PyTorch 4a: the T4 accelerator → a required node
    # affinity `In` on the configured device label and an Equal/NoSchedule
    # toleration; §0.3.7 step 7: `nvidia.com/gpu` Exists/NoSchedule; §A.5
    # PyTorch 14: resource-tolerations for nvidia.com/gpu. All on the GPU
    # worker only: Flyte's ApplyGPUNodeSelectors skips a pod whose containers
    # have no GPU limit, and resource tolerations follow each replica's own
    # resources (§A.3.7).
    wspec, mspec = worker["template"]["spec"], master["template"]["spec"]
    assert {"key": "gpu-node-label", "operator": "In", "values": ["nvidia-tesla-t4"]} in match_expressions(wspec)
    assert not [e for e in match_expressions(wspec) if e["key"] == "gpu-partition-size"]
    worker_tolerations = tolerations(wspec)
    assert {"key": "gpu-node-label", "operator": "Equal", "value": "nvidia-tesla-t4", "effect": "NoSchedule"} in worker_tolerations
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in worker_tolerations
    # An Equal toleration for the key does not tolerate every taint of it: the Exists one is added too.
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker_tolerations
    assert not [e for e in match_expressions(mspec) if e["key"] == "gpu-node-label"]
    assert not [t for t in tolerations(mspec) if t["key"] in ("gpu-node-label", "nvidia.com/gpu")]
    # §A.5 PyTorch 11: with enable-distributed-error-aggregation the Worker's
    # first container ends with `_F_WN` (fieldRef) then `_F_DES=Earliest`;
    # the Master gets neither (§G.6).
    last_two = (w.get("env") or [])[-2:]
    assert last_two == [
        {"name": "_F_WN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "_F_DES", "value": "Earliest"},
    ], w.get("env")
    assert not {"_F_WN", "_F_DES"} & set(env(m))


def test_a_partitioned_gpu_reaches_every_replica_that_inherits_the_task_gpu(rendered):
    job, _ = rendered("pytorch_mig", config=GPU_CONFIG)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 1)
    for role, replica in replicas.items():
        container = the_container(replica, "pytorch")
        # The task's `gpu` (k8s_pod resources) → nvidia.com/gpu; cpu/memory from the platform defaults (§0.3.7 step 2).
        res = resources(container)
        assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == 1, (role, res)
        assert "gpu" not in res["requests"] and "gpu" not in res["limits"], (role, res)
        # §A.5 PyTorch 4b: device and partition terms, both Equal/NoSchedule tolerations, the GPU Exists one.
        pod = replica["template"]["spec"]
        expressions = match_expressions(pod)
        assert {"key": "gpu-node-label", "operator": "In", "values": ["nvidia-tesla-a100"]} in expressions, role
        assert {"key": "gpu-partition-size", "operator": "In", "values": ["1g.5gb"]} in expressions, role
        found = tolerations(pod)
        for toleration in (
            {"key": "gpu-node-label", "operator": "Equal", "value": "nvidia-tesla-a100", "effect": "NoSchedule"},
            {"key": "gpu-partition-size", "operator": "Equal", "value": "1g.5gb", "effect": "NoSchedule"},
        ):
            assert toleration in found, (role, found)


def test_the_default_gpu_labels(rendered):
    # Without configuration: Flyte's default node labels (§0.3.7 step 5).
    job, _ = rendered("pytorch_mig")
    pod = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    expressions = match_expressions(pod)
    assert {"key": "k8s.amazonaws.com/accelerator", "operator": "In", "values": ["nvidia-tesla-a100"]} in expressions
    assert {"key": "k8s.amazonaws.com/gpu-partition-size", "operator": "In", "values": ["1g.5gb"]} in expressions


def test_an_elastic_task_is_worker_only_with_an_elastic_policy(rendered):
    job, _ = rendered("elastic")
    assert_job_metadata(job, "PyTorchJob", "elastic")
    spec = job["spec"]
    # §A.3.4: an elastic config removes the Master; Worker replicas = max nodes (§E.1).
    assert list(spec["pytorchReplicaSpecs"]) == ["Worker"]
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4
    assert worker["restartPolicy"] == "Never"
    # Every field set, maxRestarts 0 included (pointers even when zero).
    assert spec["elasticPolicy"] == {
        "minReplicas": 2, "maxReplicas": 4, "rdzvBackend": "c10d", "nProcPerNode": 2, "maxRestarts": 0
    }
    container = the_container(worker, "pytorch")
    assert_pyflyte_args(container["args"], "elastic")
    assert_shm_from_pod_template(worker, container)
    assert env(worker["template"]["spec"]["containers"][0])["_F_WN"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }


def test_an_elastic_task_with_restarts_keeps_its_max_restarts(rendered):
    job, _ = rendered("elastic_restarts")
    spec = job["spec"]
    assert list(spec["pytorchReplicaSpecs"]) == ["Worker"]
    assert spec["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    # §A.3.4: maxRestarts is the elastic config's max_restarts.
    assert spec["elasticPolicy"] == {
        "minReplicas": 2, "maxReplicas": 2, "rdzvBackend": "c10d", "nProcPerNode": 1, "maxRestarts": 3
    }


def test_shared_memory_from_the_task_and_platform_default_resources(rendered):
    job, _ = rendered("pytorch_shared_memory", config={"k8s": {"default-cpus": "500m", "default-memory": "512Mi"}})
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    for role, replica in replicas.items():
        # A container target: the generated-name container renamed `pytorch` (§A.3.1 step 2).
        names = [c["name"] for c in replica["template"]["spec"]["containers"]]
        assert names == ["pytorch"], (role, names)
        container = the_container(replica, "pytorch")
        assert container["image"] == IMAGE
        # §0.3.7 step 5: a memory-backed emptyDir named by mount_name at mount_path.
        volumes = {v["name"]: v for v in replica["template"]["spec"].get("volumes") or []}
        assert volumes["flyte-shared-memory"]["emptyDir"] == {"medium": "Memory"}, (role, volumes)
        assert "shm" not in volumes
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        assert mounts["/dev/shm"] == "flyte-shared-memory", (role, mounts)
        # §0.3.7 step 2: nothing asked → request = platform default, limit = request.
        assert resources(container) == expect({"cpu": "500m", "memory": "512Mi"}, {"cpu": "500m", "memory": "512Mi"})
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert_pyflyte_args(container["args"], "pytorch_shared_memory")


def test_a_task_spec_file_renders_the_same(tasks, tmp_path, render, kubeflow_plugins):
    pb, spec_pb, _ = serialize(tasks.pytorch_plain, tmp_path, "plain")
    assert render(spec_pb)["spec"] == render(pb)["spec"]


# ---------------------------------------------------------------------------
# TFJob


def test_a_tfjob_with_all_four_roles(rendered):
    job, _ = rendered("tf_all_roles", config=GPU_CONFIG)
    assert_job_metadata(job, "TFJob", "tf_all_roles")
    spec = job["spec"]
    replicas = spec["tfReplicaSpecs"]
    # §A.3.5: replica type keys Chief, PS, Worker, Evaluator; counts as asked.
    assert set(replicas) == {"Chief", "PS", "Worker", "Evaluator"}
    assert {k: r["replicas"] for k, r in replicas.items()} == {"Chief": 1, "PS": 2, "Worker": 3, "Evaluator": 1}
    assert {k: r["restartPolicy"] for k, r in replicas.items()} == {
        "Chief": "Always", "PS": "OnFailure", "Worker": "Never", "Evaluator": "Always"
    }
    # §A.3.3: RUNNING → Running; only the non-zero fields.
    assert spec["runPolicy"] == {"cleanPodPolicy": "Running", "activeDeadlineSeconds": 100}
    images = {
        "Chief": "ghcr.io/example/tf-chief:2.16", "PS": "ghcr.io/example/tf-ps:2.16",
        "Worker": "ghcr.io/example/tf-worker:2.16", "Evaluator": "ghcr.io/example/tf-evaluator:2.16",
    }
    small = expect({"cpu": "250m", "memory": "1Gi"}, {"cpu": "500m", "memory": "2Gi"})
    gpu = expect({"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}, {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"})
    for role, replica in replicas.items():
        # §A.3.5 / §F.1: the operator's container `tensorflow`.
        names = [c["name"] for c in replica["template"]["spec"]["containers"]]
        assert names == ["tensorflow"], (role, names)
        container = the_container(replica, "tensorflow")
        assert container["image"] == images[role]
        # §A.5 TensorFlow 3: each role exactly its own resources.
        assert resources(container) == (gpu if role == "Worker" else small), role
        assert_pyflyte_args(container["args"], "tf_all_roles")
        assert_flyte_env(container)
        assert_template_metadata(replica)
        # §A.3.5: no env vars added for TensorFlow.
        assert "_F_WN" not in env(container) and "_F_DES" not in env(container), role
        # §A.5 TensorFlow 5: only the GPU role gets the GPU resource toleration.
        keys = [t["key"] for t in tolerations(replica["template"]["spec"])]
        assert ("nvidia.com/gpu" in keys) == (role == "Worker"), (role, keys)


def test_a_tfjob_with_only_workers(rendered):
    job, _ = rendered("tf_workers_only")
    replicas = job["spec"]["tfReplicaSpecs"]
    # §A.3.5 v1: roles with 0 replicas are left out.
    assert list(replicas) == ["Worker"]
    assert replicas["Worker"]["replicas"] == 2
    container = the_container(replicas["Worker"], "tensorflow")
    assert container["image"] == IMAGE
    # Flyte's default platform resources (§0.3.7: default-cpus 1000m, default-memory 1024Mi).
    assert resources(container) == expect({"cpu": "1000m", "memory": "1024Mi"}, {"cpu": "1000m", "memory": "1024Mi"})
    assert job["spec"].get("runPolicy", {}) == {}


# ---------------------------------------------------------------------------
# MPIJob


def test_an_mpijob(rendered):
    job, template = rendered("mpi")
    assert_job_metadata(job, "MPIJob", "mpi")
    spec = job["spec"]
    replicas = spec["mpiReplicaSpecs"]
    assert set(replicas) == {"Launcher", "Worker"}
    assert replicas["Launcher"]["replicas"] == 1
    assert replicas["Worker"]["replicas"] == 2
    assert spec.get("runPolicy", {}) == {}
    assert "cleanPodPolicy" not in spec and "mainContainer" not in spec
    for role, replica in replicas.items():
        names = [c["name"] for c in replica["template"]["spec"]["containers"]]
        assert names == ["mpi"], (role, names)
        container = the_container(replica, "mpi")
        assert container["image"] == IMAGE
        # The task's requests; the limits follow them (§0.3.7 step 2).
        assert resources(container) == expect({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}), role
        # §A.3.6: no replica command → the task's args: the mpirun line
        # (§E.3) followed by the rendered pyflyte-execute command.
        args = container["args"]
        start = assert_pyflyte_args(args, "mpi")
        assert args[:start] == list(template.container.args[:start]), role
        assert args[:2] == ["mpirun", "--allow-run-as-root"] and args[start - 4:start] == ["-np", "4", "python", "/opt/venv/bin/entrypoint.py"]
        assert not container.get("command"), role
        assert_template_metadata(replica)
        assert replica["restartPolicy"] == "Never"
    # §G.1 fixed deliberately (plugin/mpi): Flyte's v1 path writes 1 whatever
    # `slots` says; ours writes the task's 2, which its `mpirun -np 4` needs.
    assert spec["slotsPerWorker"] == 2


def test_a_horovod_job(rendered):
    job, template = rendered("horovod")
    assert_job_metadata(job, "MPIJob", "horovod")
    spec = job["spec"]
    replicas = spec["mpiReplicaSpecs"]
    assert (replicas["Launcher"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    launcher, worker = the_container(replicas["Launcher"], "mpi"), the_container(replicas["Worker"], "mpi")
    # Launcher: the horovodrun line and pyflyte-execute (§E.3), its own resources.
    start = assert_pyflyte_args(launcher["args"], "horovod")
    assert launcher["args"][:start] == list(template.container.args[:start])
    assert launcher["args"][:3] == ["horovodrun", "-np", "4"]
    # (§A.3.2 step 2: the replica's resources with the platform's
    # assign-if-unset: memory, not asked, = default-memory 1024Mi.)
    assert resources(launcher) == expect({"cpu": "1", "memory": "1024Mi"}, {"cpu": "2", "memory": "1024Mi"})
    # §A.3.2 step 5 / §A.5 MPI 4: a replica `command` becomes that replica's args (not command).
    assert worker["args"] == ["/usr/sbin/sshd", "-De", "-f", "/home/jobuser/.sshd_config"]
    assert not worker.get("command")
    assert spec["slotsPerWorker"] == 2  # §G.1 fixed deliberately: the task's slots (Flyte's v1 writes 1)
    # §G.8: the omitted NONE is still written, as Flyte's plugin writes it.
    assert spec["runPolicy"] == {
        "cleanPodPolicy": "None", "backoffLimit": 5, "activeDeadlineSeconds": 100, "ttlSecondsAfterFinished": 100
    }


# ---------------------------------------------------------------------------
# task_type_version 0: the legacy customs (§A.1, §A.2.6), which flytekit
# 1.16 no longer writes but Flyte's plugins still take. Built from the
# flytekit templates above with the custom replaced.


def legacy(tasks, tmp_path, name, custom):
    from google.protobuf.struct_pb2 import Struct

    _, _, template = serialize(getattr(tasks, name), tmp_path, name)
    template.task_type_version = 0
    template.custom.Clear()
    template.custom.update(custom)
    assert isinstance(template.custom, Struct)
    path = tmp_path / f"{name}-v0.pb"
    path.write_bytes(template.SerializeToString())
    return path, template


def test_legacy_pytorch_tensorflow_and_mpi(tasks, tmp_path, render, kubeflow_plugins):
    # §A.3.4 v0 / §A.5 PyTorch 2: Master (1) + Worker (workers), one shared
    # pod spec, restartPolicy Never, no env vars, empty run policy.
    path, _ = legacy(tasks, tmp_path, "pytorch_plain", {"workers": 3})
    job = render(path)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert {k: r["replicas"] for k, r in replicas.items()} == {"Master": 1, "Worker": 3}
    assert {r["restartPolicy"] for r in replicas.values()} == {"Never"}
    for replica in replicas.values():
        container = the_container(replica, "pytorch")
        assert resources(container) == expect({"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "2Gi"})
        assert "_F_WN" not in env(container)
    assert job["spec"].get("runPolicy", {}) == {}
    # §A.5 PyTorch 1: v0 elastic → Worker only, elasticPolicy.
    path, _ = legacy(tasks, tmp_path, "pytorch_plain", {
        "workers": 2, "elasticConfig": {"minReplicas": 1, "maxReplicas": 2, "nprocPerNode": 4, "rdzvBackend": "c10d"},
    })
    job = render(path)
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Worker"]
    assert job["spec"]["elasticPolicy"] == {
        "minReplicas": 1, "maxReplicas": 2, "nProcPerNode": 4, "rdzvBackend": "c10d", "maxRestarts": 0
    }
    # §A.3.5 v0: a role only when its count > 0.
    path, _ = legacy(tasks, tmp_path, "tf_workers_only", {"workers": 2, "psReplicas": 1, "chiefReplicas": 1})
    replicas = render(path)["spec"]["tfReplicaSpecs"]
    assert {k: r["replicas"] for k, r in replicas.items()} == {"Chief": 1, "PS": 1, "Worker": 2}
    assert all(the_container(r, "tensorflow") for r in replicas.values())
    # §A.3.6 v0: Launcher raised to 1, slots passed through, worker args and
    # command emptied (no `worker_spec_command` in the task config).
    path, template = legacy(tasks, tmp_path, "mpi", {"numWorkers": 2, "slots": 3})
    job = render(path)
    replicas = job["spec"]["mpiReplicaSpecs"]
    assert {k: r["replicas"] for k, r in replicas.items()} == {"Launcher": 1, "Worker": 2}
    assert job["spec"]["slotsPerWorker"] == 3
    launcher, worker = the_container(replicas["Launcher"], "mpi"), the_container(replicas["Worker"], "mpi")
    assert launcher["args"][:2] == ["mpirun", "--allow-run-as-root"]
    assert_pyflyte_args(launcher["args"], "mpi")
    assert not worker.get("args") and not worker.get("command"), worker
