"""Spark tasks as Flyte 2 users write them (`flyte` SDK + flyteplugins-spark),
and `serialize(task)` turning one into flyteidl2.core.TaskTemplate bytes
offline (scripts/serialize_tasks.py), so the Spark plugin can be fed Flyte 2 tasks in tests.

The tasks mirror examples/spark_tasks.py (flytekit): `spark_pi` the same
Spark config and memory limit, `spark_with_pods` the same conf, hadoop conf,
executor path, driver/executor pod templates and environment;
`spark_app_file` sets the main application file flytekit's examples leave.
"""

import pathlib

import flyte
from flyteplugins.spark import Spark
from kubernetes.client import V1Container, V1PodSpec, V1Toleration

# A plain image URI: flyte.Image.from_base() carries no build layers, so the
# SDK uses the URI as is and never asks an image builder or registry.
IMAGE = flyte.Image.from_base("ghcr.io/flyteorg/flyte:py3.11-v2.12.1")

pi_env = flyte.TaskEnvironment(
    name="spark_pi_env",
    image=IMAGE,
    plugin_config=Spark(
        spark_conf={
            "spark.driver.memory": "1000M",
            "spark.driver.cores": "1",
            "spark.executor.memory": "1000M",
            "spark.executor.cores": "1",
            "spark.executor.instances": "2",
        },
    ),
    # flytekit had limits=Resources(mem="2000M"). Flyte 2 has no limit-only
    # form (a scalar is a request alone), so give (request, limit) both.
    resources=flyte.Resources(memory=("2000M", "2000M")),
)


@pi_env.task
def spark_pi(partitions: int = 4) -> float:
    """Estimate pi with Spark (the body never runs here: only serialized)."""
    import random
    from operator import add

    n = 100_000 * partitions
    sess = flyte.ctx().data["spark_session"]

    def inside(_: int) -> int:
        x, y = random.random() * 2 - 1, random.random() * 2 - 1
        return 1 if x * x + y * y <= 1 else 0

    return 4.0 * sess.sparkContext.parallelize(range(1, n + 1), partitions).map(inside).reduce(add) / n


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


TASKS = {"spark_pi": spark_pi, "spark_with_pods": spark_with_pods, "spark_app_file": spark_app_file}


def serialize(task) -> bytes:
    """The task's flyteidl2.core.TaskTemplate, serialized by the SDK offline
    (scripts/serialize_tasks.py, as `just examples` does)."""
    import tempfile

    from serialize_tasks import serialize_flyte2

    with tempfile.TemporaryDirectory() as out:
        path, _ = serialize_flyte2(task, out, "task")
        return pathlib.Path(path).read_bytes()
