"""Ray, Dask and pod tasks written with the upstream flytekitplugins-ray,
flytekitplugins-dask, flytekit's `pod_template` and flytekitplugins-pod
(tests/operator_user_tasks.py), serialized by real flytekit during the test
run and rendered by `flytewasm render` with the ray, dask, pod and
platform-sidecar plugin components: the RayJob / DaskJob / Pod carries what
Flyte's Go plugins build (flyte v1.16.8, `flyteplugins/go/tasks/plugins/k8s/
{ray,dask,pod}`).

§ numbers refer to the project's reference notes on Flyte's operator
plugins (flyte-operators.md)."""

import base64
import json
import pathlib

import pytest
import yaml
from google.protobuf.json_format import MessageToDict

from conftest import ROOT, load_module, serialize
from object_checks import INPUTS, JOB_NAME, OUTPUT_PREFIX, env, expect, resources, tolerations

HERE = pathlib.Path(__file__).resolve().parent
IMAGE = "ghcr.io/example/spark:3.5"  # conftest.TEST_IMAGE: the task's own image
EXAMPLES = ROOT / "target/example-plugins"


@pytest.fixture(scope="module")
def tasks():
    return load_module(HERE / "operator_user_tasks.py")


@pytest.fixture(scope="module")
def operator_plugins():
    missing = [n for n in ("ray", "dask", "pod") if not (ROOT / f"target/plugins/{n}.wasm").exists()]
    if missing:
        pytest.fail(f"target/plugins/{{{','.join(missing)}}}.wasm missing: run `just build-plugins`")


@pytest.fixture
def rendered(tasks, tmp_path, render, operator_plugins):
    """Serialize the named task and render it: (object, TaskTemplate)."""

    def run(name, *args, config=None):
        pb, _, template = serialize(getattr(tasks, name), tmp_path, name)
        return render(pb, *args, config=config), template

    return run


def custom(template):
    return MessageToDict(template.custom)


def named(containers, name):
    found = [c for c in containers if c["name"] == name]
    assert len(found) == 1, [c["name"] for c in containers]
    return found[0]


def assert_rendered_pyflyte_args(args, task_name):
    """The task's pyflyte-execute line with Flyte's templates rendered."""
    assert args[:3] == ["pyflyte-execute", "--inputs", INPUTS], args
    assert args[args.index("--output-prefix") + 1] == OUTPUT_PREFIX, args
    assert args[-4:] == ["task-module", "operator_user_tasks", "task-name", task_name], args
    assert not [a for a in args if "{{" in a], args


# ---------------------------------------------------------------------------
# What flytekit 1.16.31 sends (§E.4, §E.5, §D.6), checked before any plugin sees it.


def test_flytekit_serializes_ray_dask_and_pod_tasks_as_the_notes_say(tasks, tmp_path):
    def template(name):
        return serialize(getattr(tasks, name), tmp_path, name)[2]

    # §E.4: type ray, version 0, a container target; the head's and a
    # group's requests/limits become a `ray-head` / `ray-worker` container.
    ray = template("ray_groups")
    assert (ray.type, ray.task_type_version, ray.WhichOneof("target")) == ("ray", 0, "container")
    c = custom(ray)
    head = c["rayCluster"]["headGroupSpec"]
    assert head["rayStartParams"] == {"num-cpus": "1"}
    assert [x["name"] for x in head["k8sPod"]["podSpec"]["containers"]] == ["ray-head"]
    groups = {g["groupName"]: g for g in c["rayCluster"]["workerGroupSpec"]}
    assert "k8sPod" not in groups["cpu-workers"]
    assert [x["name"] for x in groups["big-workers"]["k8sPod"]["podSpec"]["containers"]] == ["ray-worker"]
    # Both runtime-env forms: base64 JSON (deprecated) and YAML.
    runtime_env = {"pip": ["numpy==1.26.4"], "env_vars": {"STAGE": "test"}}
    assert json.loads(base64.b64decode(c["runtimeEnv"])) == runtime_env
    assert yaml.safe_load(c["runtimeEnvYaml"]) == runtime_env
    assert (c["shutdownAfterJobFinishes"], c["ttlSecondsAfterFinished"]) == (True, 120)

    # §E.5: type dask, version 0; resources as flyteidl entries.
    dask = template("dask_groups")
    assert (dask.type, dask.task_type_version) == ("dask", 0)
    c = custom(dask)
    assert c["workers"]["numberOfWorkers"] == 3 and c["workers"]["image"].endswith("dask-worker:2024.1")
    assert c["scheduler"]["resources"]["limits"] == [{"name": "CPU", "value": "2"}, {"name": "MEMORY", "value": "4Gi"}]

    # §D.6: pod_template → python-task v0 with a k8s_pod target and the
    # primary's name in config; flytekitplugins-pod → sidecar v2.
    pod = template("pod_template_sidecar")
    assert (pod.type, pod.task_type_version, pod.WhichOneof("target")) == ("python-task", 0, "k8s_pod")
    assert dict(pod.config) == {"primary_container_name": "primary"}
    sidecar = template("pod_plugin_sidecar")
    assert (sidecar.type, sidecar.task_type_version, sidecar.WhichOneof("target")) == ("sidecar", 2, "k8s_pod")
    assert dict(sidecar.config) == {"primary_container_name": "main"}


# ---------------------------------------------------------------------------
# Ray (§B.4)


def test_a_ray_job_with_head_and_worker_groups(rendered):
    job, _ = rendered("ray_groups")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")  # §B.1
    assert job["metadata"]["name"] == JOB_NAME
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]

    # Step 9: the task's shutdown and TTL.
    assert (spec["shutdownAfterJobFinishes"], spec["ttlSecondsAfterFinished"]) == (True, 120)
    # Step 11: the YAML form as flytekit wrote it.
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == {"pip": ["numpy==1.26.4"], "env_vars": {"STAGE": "test"}}
    # Step 10 and 12: the submitter keeps the task's container; the
    # entrypoint is its rendered args, empty ones quoted as ''.
    submitter = spec["submitterPodTemplate"]["spec"]["containers"]
    assert len(submitter) == 1
    args = submitter[0]["args"]
    assert_rendered_pyflyte_args(args, "ray_groups")
    assert spec["entrypoint"] == " ".join(a if a else "''" for a in args)

    # Steps 3, 5, 6: the head: `ray-head`, no args, its ports and MY_POD_IP,
    # the start params with Flyte's defaults, the head's own resources.
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"] == {
        "num-cpus": "1", "dashboard-host": "0.0.0.0", "disable-usage-stats": "true",
        "include-dashboard": "true", "node-ip-address": "$MY_POD_IP",
    }
    assert (head["serviceType"], head["enableIngress"]) == ("NodePort", False)
    head_container = named(head["template"]["spec"]["containers"], "ray-head")
    assert "args" not in head_container or not head_container["args"]
    assert head_container["image"] == IMAGE
    assert [(p["name"], p["containerPort"]) for p in head_container["ports"]] == [
        ("redis", 6379), ("head", 10001), ("dashboard", 8265)]
    assert env(head_container)["MY_POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert resources(head_container) == expect({"cpu": "1", "memory": "2Gi"}, {"cpu": "2", "memory": "4Gi"})
    assert head["template"]["metadata"]["labels"]["execution-id"] == "exec1"

    # Step 8: a worker group per config, `ray-worker`, Flyte's env (with the
    # MEMORY_* → cpu quirk, §G.11), the preStop hook, the head's ports (§G.12).
    assert cluster["enableInTreeAutoscaling"] is False
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert list(groups) == ["cpu-workers", "big-workers"]
    cpu = groups["cpu-workers"]
    assert (cpu["replicas"], cpu["minReplicas"], cpu["maxReplicas"]) == (2, 1, 4)
    assert cpu["rayStartParams"] == {"disable-usage-stats": "true", "node-ip-address": "$MY_POD_IP"}
    worker = named(cpu["template"]["spec"]["containers"], "ray-worker")
    variables = env(worker)
    assert variables["TYPE"]["value"] == "worker"
    assert variables["MEMORY_REQUESTS"]["valueFrom"]["resourceFieldRef"] == {
        "containerName": "ray-worker", "resource": "requests.cpu"}
    assert worker["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sh", "-c", "ray stop"]
    assert [p["containerPort"] for p in worker["ports"]] == [6379, 10001, 8265]
    # The task's resources; a group's own win (flytekit's `ray-worker` container).
    assert resources(worker) == expect({"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "2Gi"})
    big = named(groups["big-workers"]["template"]["spec"]["containers"], "ray-worker")
    assert resources(big) == expect({"cpu": "4", "memory": "8Gi"}, {"cpu": "4", "memory": "8Gi"})


def test_ray_autoscaling_and_the_plugin_config(rendered):
    config = {"plugins": {"ray": {
        "serviceType": "ClusterIP", "enableIngress": True, "serviceAccount": "ray-runner",
        "enableUsageStats": True, "includeDashboard": False,
        "defaults": {"headNode": {"startParameters": {"num-gpus": "0"}, "ipAddress": "$MY_POD_IP"}},
        "logsSidecar": {"name": "logs", "image": "ghcr.io/example/ray-logs:1"},
    }}}
    job, _ = rendered("ray_autoscaling", config=config)
    cluster = job["spec"]["rayClusterSpec"]
    # Step 7: autoscaling and its options.
    assert cluster["enableInTreeAutoscaling"] is True
    options = cluster["autoscalerOptions"]
    assert (options["upscalingMode"], options["idleTimeoutSeconds"]) == ("Conservative", 120)
    assert options["env"] == [{"name": "AUTOSCALER_LOG", "value": "debug"}]
    # §B.3: the config's service type, ingress, service account (§G.21)
    # and start params: the head's defaults (the task gives none, step 3),
    # with usage stats on: no disable-usage-stats.
    head = cluster["headGroupSpec"]
    assert (head["serviceType"], head["enableIngress"]) == ("ClusterIP", True)
    assert head["rayStartParams"] == {
        "num-gpus": "0", "dashboard-host": "0.0.0.0", "include-dashboard": "false", "node-ip-address": "$MY_POD_IP"}
    for template in [head["template"], *(g["template"] for g in cluster["workerGroupSpecs"]),
                     job["spec"]["submitterPodTemplate"]]:
        assert template["spec"]["serviceAccountName"] == "ray-runner"
    # Step 5: the logs sidecar shares /tmp/ray with the head, read-only.
    head_spec = head["template"]["spec"]
    assert [v["name"] for v in head_spec["volumes"]] == ["system-ray-state"]
    sidecar = named(head_spec["containers"], "logs")
    assert sidecar["volumeMounts"] == [{"name": "system-ray-state", "mountPath": "/tmp/ray", "readOnly": True}]
    group = cluster["workerGroupSpecs"][0]
    # flytekit's default min is the replica count (§B.4 step 8: min ≤ replicas ≤ max).
    assert (group["groupName"], group["replicas"], group["maxReplicas"]) == ("workers", 1, 8)
    # Step 9: flytekit's default (no shutdown) leaves the config's.
    assert (job["spec"]["shutdownAfterJobFinishes"], job["spec"]["ttlSecondsAfterFinished"]) == (True, 3600)


def test_a_remote_ray_cluster_is_refused_with_a_reason(tasks, tmp_path, flytewasm_bin, plugins_dir, operator_plugins):
    import subprocess

    pb, _, _ = serialize(tasks.ray_autoscaling, tmp_path, "ray_autoscaling")
    config = tmp_path / "remote.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"ray": {"remoteClusterConfig": {"enabled": True, "endpoint": "https://ray"}}}}))
    result = subprocess.run(
        [str(flytewasm_bin), "render", "--plugins", str(plugins_dir), "--config", str(config), str(pb)],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "remoteClusterConfig" in result.stderr, result.stderr


# ---------------------------------------------------------------------------
# Dask (§C.3)


def test_a_dask_job_with_scheduler_and_worker_groups(rendered):
    job, _ = rendered("dask_groups")
    assert (job["apiVersion"], job["kind"]) == ("kubernetes.dask.org/v1", "DaskJob")  # §C.1
    spec = job["spec"]
    # Step 6: the job runner is the task's pod, never restarted.
    runner_spec = spec["job"]["spec"]
    assert runner_spec["restartPolicy"] == "Never"
    runner = named(runner_spec["containers"], "job-runner")
    assert runner["image"] == IMAGE
    assert_rendered_pyflyte_args(runner["args"], "dask_groups")
    assert resources(runner) == expect({"cpu": "500m", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})
    # Step 5: the scheduler, its image, resources (requests default to limits), ports and service.
    scheduler_spec = spec["cluster"]["spec"]["scheduler"]
    scheduler = named(scheduler_spec["spec"]["containers"], "scheduler")
    assert (scheduler["image"], scheduler["args"]) == ("ghcr.io/example/dask-scheduler:2024.1", ["dask-scheduler"])
    assert resources(scheduler) == expect({"cpu": "1", "memory": "4Gi"}, {"cpu": "2", "memory": "4Gi"})
    assert [(p["name"], p["containerPort"]) for p in scheduler["ports"]] == [("tcp-comm", 8786), ("dashboard", 8787)]
    assert scheduler_spec["spec"]["restartPolicy"] == "Always"
    service = scheduler_spec["service"]
    assert service["type"] == "NodePort"
    assert service["selector"] == {"dask.org/cluster-name": JOB_NAME, "dask.org/component": "scheduler"}
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["ports"]] == [
        ("tcp-comm", 8786, "tcp-comm"), ("dashboard", 8787, "dashboard")]
    # Step 4: the workers, their image and resources; threads from the CPU
    # limit (rounded up), the memory limit as Kubernetes prints it.
    workers = spec["cluster"]["spec"]["worker"]
    assert workers["replicas"] == 3
    worker = named(workers["spec"]["containers"], "dask-worker")
    assert worker["image"] == "ghcr.io/example/dask-worker:2024.1"
    assert worker["args"] == ["dask-worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads", "3", "--memory-limit", "8Gi"]
    assert resources(worker) == expect({"cpu": "2", "memory": "8Gi"}, {"cpu": "3", "memory": "8Gi"})
    assert workers["spec"]["restartPolicy"] == "Always"
    # Step 3: execution labels on the job and the cluster.
    assert job["metadata"]["labels"]["execution-id"] == "exec1"
    assert spec["cluster"]["metadata"]["labels"]["execution-id"] == "exec1"


def test_a_default_dask_task_shares_the_task_resources(rendered):
    job, _ = rendered("dask_default")
    worker = named(job["spec"]["cluster"]["spec"]["worker"]["spec"]["containers"], "dask-worker")
    # Dask(): one worker with the task's resources and image.
    assert job["spec"]["cluster"]["spec"]["worker"]["replicas"] == 1
    assert worker["image"] == IMAGE
    assert resources(worker) == expect({"cpu": "1", "memory": "2Gi"}, {"cpu": "2", "memory": "2Gi"})
    assert worker["args"][-4:] == ["--nthreads", "2", "--memory-limit", "2Gi"]


def test_interruptible_dask_workers_only(rendered):
    # §C.3 step 2, §G.18: the runner and scheduler are never interruptible.
    config = {"k8s": {
        "interruptible-tolerations": [{"key": "x/flyte", "value": "interruptible", "operator": "Equal", "effect": "NoSchedule"}],
        "interruptible-node-selector": {"x/interruptible": "true"},
    }}
    job, _ = rendered("dask_default", "--interruptible", config=config)
    spec = job["spec"]
    assert tolerations(spec["cluster"]["spec"]["worker"]["spec"]) == [
        {"key": "x/flyte", "operator": "Equal", "value": "interruptible", "effect": "NoSchedule"}]
    assert spec["cluster"]["spec"]["worker"]["spec"]["nodeSelector"] == {"x/interruptible": "true"}
    for pod in (spec["job"]["spec"], spec["cluster"]["spec"]["scheduler"]["spec"]):
        assert not pod.get("tolerations") and not pod.get("nodeSelector"), pod


# ---------------------------------------------------------------------------
# Pods (§D.2, §D.3)


def test_a_pod_template_task_keeps_its_sidecar(rendered):
    pod, _ = rendered("pod_template_sidecar")
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    meta = pod["metadata"]
    assert meta["labels"]["team"] == "ml" and meta["annotations"]["example.com/owner"] == "ml-platform"
    # §D.3: two containers in a python-task: no primary_container_name annotation.
    assert "primary_container_name" not in meta["annotations"], meta["annotations"]
    spec = pod["spec"]
    assert [c["name"] for c in spec["containers"]] == ["primary", "log-shipper"]
    primary = named(spec["containers"], "primary")
    assert_rendered_pyflyte_args(primary["args"], "pod_template_sidecar")
    assert resources(primary) == expect({"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "2Gi"})
    assert env(primary)["LOG_DIR"]["value"] == "/logs"
    assert env(primary)["FLYTE_INTERNAL_EXECUTION_ID"]["value"] == "exec1"
    shipper = named(spec["containers"], "log-shipper")
    assert shipper["image"] == "ghcr.io/example/log-shipper:1.2"
    assert resources(shipper) == expect({"cpu": "100m", "memory": "64Mi"}, {"cpu": "200m", "memory": "128Mi"})
    assert spec["restartPolicy"] == "Never"
    assert tolerations(spec) == [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    assert [v["name"] for v in spec["volumes"]] == ["logs"]


def test_a_sidecar_task_names_its_primary(rendered):
    pod, template = rendered("pod_plugin_sidecar")
    assert template.type == "sidecar" and template.task_type_version == 2
    # §D.3: a sidecar task always carries the annotation the phase follows (§D.4).
    assert pod["metadata"]["annotations"]["primary_container_name"] == "main"
    assert pod["metadata"]["labels"]["team"] == "ml"
    main = named(pod["spec"]["containers"], "main")
    assert_rendered_pyflyte_args(main["args"], "pod_plugin_sidecar")
    # flytekit wrote an empty limits map: the limit defaults to the request (§0.3.7 step 2).
    assert resources(main) == expect({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})


def test_the_platform_sidecar_joins_a_plain_task(tasks, tmp_path, render):
    plugin = EXAMPLES / "platform-sidecar.wasm"
    if not plugin.exists():
        pytest.fail(f"{plugin} does not exist: run `just build-plugins`")
    pb, _, _ = serialize(tasks.plain, tmp_path, "plain")
    config = {"plugins": {"platform-sidecar": {"sidecar": {
        "name": "platform-agent", "image": "ghcr.io/example/agent:9", "args": ["--ship", "stdout"],
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }}}}
    pod = render(pb, config=config, plugins=EXAMPLES)
    [primary] = pod["spec"]["containers"]
    assert pod["metadata"]["annotations"]["primary_container_name"] == primary["name"]
    assert_rendered_pyflyte_args(primary["args"], "plain")
    # A native sidecar: the kubelet stops it when the task's container ends.
    [agent] = pod["spec"]["initContainers"]
    assert (agent["name"], agent["restartPolicy"]) == ("platform-agent", "Always")
    assert (agent["image"], agent["args"]) == ("ghcr.io/example/agent:9", ["--ship", "stdout"])
    assert resources(agent) == expect({"cpu": "50m", "memory": "32Mi"}, {"cpu": "100m", "memory": "64Mi"})
