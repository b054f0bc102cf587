"""Ray, Dask and pod tasks as Flyte users write them: with the upstream
flytekitplugins-ray and flytekitplugins-dask, flytekit's own
`pod_template`, flytekitplugins-pod's `Pod`, and a plain `@task` (which the
platform-sidecar plugin serves). The expected objects are in
tests/test_render_operators.py."""

import warnings

from flytekit import PodTemplate, Resources, task
from flytekitplugins.dask import Dask, Scheduler, WorkerGroup
from flytekitplugins.ray import AutoscalerOptionsConfig, HeadNodeConfig, RayJobConfig, WorkerNodeConfig
from kubernetes.client import V1Container, V1EnvVar, V1PodSpec, V1ResourceRequirements, V1Toleration, V1VolumeMount

with warnings.catch_warnings():
    # flytekitplugins-pod warns on import that pod_template does the same; its
    # `sidecar` tasks (task_type_version 2) are still what existing code runs.
    warnings.simplefilter("ignore", FutureWarning)
    from flytekitplugins.pod import Pod

SCHEDULER_IMAGE = "ghcr.io/example/dask-scheduler:2024.1"
DASK_WORKER_IMAGE = "ghcr.io/example/dask-worker:2024.1"
SIDECAR_IMAGE = "ghcr.io/example/log-shipper:1.2"

# --- Ray ---------------------------------------------------------------------


@task(
    task_config=RayJobConfig(
        head_node_config=HeadNodeConfig(
            ray_start_params={"num-cpus": "1"},
            requests=Resources(cpu="1", mem="2Gi"),
            limits=Resources(cpu="2", mem="4Gi"),
        ),
        worker_node_config=[
            WorkerNodeConfig(group_name="cpu-workers", replicas=2, min_replicas=1, max_replicas=4),
            WorkerNodeConfig(
                group_name="big-workers",
                replicas=1,
                requests=Resources(cpu="4", mem="8Gi"),
                limits=Resources(cpu="4", mem="8Gi"),
            ),
        ],
        runtime_env={"pip": ["numpy==1.26.4"], "env_vars": {"STAGE": "test"}},
        shutdown_after_job_finishes=True,
        ttl_seconds_after_finished=120,
    ),
    requests=Resources(cpu="1", mem="1Gi"),
    limits=Resources(cpu="2", mem="2Gi"),
)
def ray_groups(n: int) -> int:
    return n


@task(
    task_config=RayJobConfig(
        worker_node_config=[WorkerNodeConfig(group_name="workers", replicas=1, max_replicas=8)],
        enable_autoscaling=True,
        autoscaler_options=AutoscalerOptionsConfig(
            upscaling_mode=AutoscalerOptionsConfig.UpscalingMode.CONSERVATIVE,
            idle_timeout_seconds=120,
            env={"AUTOSCALER_LOG": "debug"},
        ),
    ),
)
def ray_autoscaling(n: int) -> int:
    return n


# --- Dask --------------------------------------------------------------------


@task(task_config=Dask(), requests=Resources(cpu="1", mem="2Gi"), limits=Resources(cpu="2", mem="2Gi"))
def dask_default(n: int) -> int:
    return n


@task(
    task_config=Dask(
        scheduler=Scheduler(image=SCHEDULER_IMAGE, requests=Resources(cpu="1"), limits=Resources(cpu="2", mem="4Gi")),
        workers=WorkerGroup(
            number_of_workers=3,
            image=DASK_WORKER_IMAGE,
            requests=Resources(cpu="2", mem="8Gi"),
            limits=Resources(cpu="3", mem="8Gi"),
        ),
    ),
    requests=Resources(cpu="500m", mem="1Gi"),
    limits=Resources(cpu="1", mem="1Gi"),
)
def dask_groups(n: int) -> int:
    return n


# --- Pods --------------------------------------------------------------------


def _sidecar():
    return V1Container(
        name="log-shipper",
        image=SIDECAR_IMAGE,
        args=["--follow", "/logs"],
        volume_mounts=[V1VolumeMount(name="logs", mount_path="/logs")],
        resources=V1ResourceRequirements(requests={"cpu": "100m", "memory": "64Mi"}, limits={"cpu": "200m", "memory": "128Mi"}),
    )


@task(
    pod_template=PodTemplate(
        primary_container_name="primary",
        labels={"team": "ml"},
        annotations={"example.com/owner": "ml-platform"},
        pod_spec=V1PodSpec(
            containers=[
                V1Container(name="primary", env=[V1EnvVar(name="LOG_DIR", value="/logs")],
                            volume_mounts=[V1VolumeMount(name="logs", mount_path="/logs")]),
                _sidecar(),
            ],
            volumes=[{"name": "logs", "emptyDir": {}}],
            tolerations=[V1Toleration(key="dedicated", operator="Equal", value="ml", effect="NoSchedule")],
        ),
    ),
    requests=Resources(cpu="1", mem="1Gi"),
    limits=Resources(cpu="2", mem="2Gi"),
)
def pod_template_sidecar(n: int) -> int:
    return n


@task(
    task_config=Pod(
        pod_spec=V1PodSpec(
            containers=[V1Container(name="main"), _sidecar()],
            volumes=[{"name": "logs", "emptyDir": {}}],
        ),
        primary_container_name="main",
        labels={"team": "ml"},
    ),
    requests=Resources(cpu="1", mem="1Gi"),
)
def pod_plugin_sidecar(n: int) -> int:
    return n


# A K8sPod task whose sidecar takes the task's inputs in its args: Flyte's
# pod builder renders `{{.Inputs.x}}` there (propeller does not, for a pod).
@task(
    pod_template=PodTemplate(
        primary_container_name="primary",
        pod_spec=V1PodSpec(
            containers=[
                V1Container(name="primary"),
                V1Container(name="watcher", image=SIDECAR_IMAGE,
                            args=["--every", "{{.Inputs.n}}", "--tag={{ .inputs.tag }}", "{{.Inputs.scale}}"]),
            ],
        ),
    ),
)
def pod_input_args(n: int, tag: str, scale: float) -> int:
    return n


@task(requests=Resources(cpu="500m", mem="512Mi"))
def plain(n: int) -> int:
    return n
