"""Spark tasks as Flyte 2 users write them (`flyte` SDK + flyteplugins-spark),
and `serialize(task)` turning one into flyteidl2.core.TaskTemplate bytes
offline (scripts/serialize_tasks.py), so the Spark plugin can be fed Flyte 2 tasks in tests.

The tasks mirror examples/spark_tasks.py (flytekit), beside the example's
own Flyte 2 `spark_pi` (examples/flyte2_spark_tasks.py): `spark_with_pods`
the same conf, hadoop conf, executor path, driver/executor pod templates and
environment; `spark_app_file` sets the main application file flytekit's
examples leave.
"""

import pathlib

import flyte
from flyteplugins.spark import Spark
from kubernetes.client import V1Container, V1PodSpec, V1Toleration

# A plain image URI: flyte.Image.from_base() carries no build layers, so the
# SDK uses the URI as is and never asks an image builder or registry.
IMAGE = flyte.Image.from_base("ghcr.io/flyteorg/flyte:py3.11-v2.12.1")

pods_env = flyte.TaskEnvironment(
    name="spark_pods_env",
    image=IMAGE,
    plugin_config=Spark(
        spark_conf={"spark.executor.instances": "3", "spark.flyte.feature1.enabled": "true"},
        hadoop_conf={"fs.s3a.fast.upload": "true"},
        executor_path="/opt/venv/bin/python3",
        driver_pod=flyte.PodTemplate(
            pod_spec=V1PodSpec(
                containers=[V1Container(name="primary")],
                tolerations=[V1Toleration(key="spark", value="driver", effect="NoSchedule", operator="Equal")],
                node_selector={"pool": "drivers"},
            ),
            labels={"role": "driver"},
        ),
        executor_pod=flyte.PodTemplate(
            pod_spec=V1PodSpec(containers=[V1Container(name="primary")], node_selector={"pool": "executors"}),
            annotations={"role": "executor"},
        ),
    ),
    env_vars={"STAGE": "test"},
)


@pods_env.task
def spark_with_pods(rows: int = 10) -> int:
    """Count rows, with driver and executor pod templates."""
    return flyte.ctx().data["spark_session"].range(rows).count()


# The fields flytekit's examples leave to their defaults, set: a main
# application file of our own (else "local://<dir of interpreter>/runtime.py").
app_env = flyte.TaskEnvironment(
    name="spark_app_env",
    image=IMAGE,
    plugin_config=Spark(
        spark_conf={"spark.executor.instances": "1"},
        executor_path="/usr/bin/python3",
        applications_path="local:///opt/app/main.py",
    ),
)


@app_env.task
def spark_app_file(n: int) -> int:
    return n


TASKS = {"spark_with_pods": spark_with_pods, "spark_app_file": spark_app_file}


def serialize(task) -> bytes:
    """The task's flyteidl2.core.TaskTemplate, serialized by the SDK offline
    (scripts/serialize_tasks.py, as `just examples` does)."""
    import tempfile

    from serialize_tasks import serialize_flyte2

    with tempfile.TemporaryDirectory() as out:
        path, _ = serialize_flyte2(task, out, "task")
        return pathlib.Path(path).read_bytes()
