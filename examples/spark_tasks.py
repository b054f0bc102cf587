"""Spark tasks written for Flyte's own Spark plugin (flytekitplugins-spark).

flytewasm runs them unchanged: `just examples` serializes them to
TaskTemplates beside this file (examples/spark_pi.pb...), which
`flytewasm render` and `flytewasm run` take.
"""

import random
from operator import add

import flytekit
from flytekit import PodTemplate, Resources, task
from flytekitplugins.spark import Spark
from kubernetes.client import V1Container, V1PodSpec, V1Toleration


@task(
    task_config=Spark(
        spark_conf={
            "spark.driver.memory": "1000M",
            "spark.driver.cores": "1",
            "spark.executor.memory": "1000M",
            "spark.executor.cores": "1",
            "spark.executor.instances": "2",
        },
    ),
    limits=Resources(mem="2000M"),
)
def spark_pi(partitions: int = 4) -> float:
    """Estimate pi with Spark."""
    n = 100_000 * partitions
    sess = flytekit.current_context().spark_session

    def inside(_: int) -> int:
        x, y = random.random() * 2 - 1, random.random() * 2 - 1
        return 1 if x * x + y * y <= 1 else 0

    count = sess.sparkContext.parallelize(range(1, n + 1), partitions).map(inside).reduce(add)
    return 4.0 * count / n


@task(
    task_config=Spark(
        spark_conf={"spark.executor.instances": "3", "spark.flyte.feature1.enabled": "true"},
        hadoop_conf={"fs.s3a.fast.upload": "true"},
        executor_path="/opt/venv/bin/python3",
        driver_pod=PodTemplate(
            pod_spec=V1PodSpec(
                containers=[V1Container(name="primary")],
                tolerations=[V1Toleration(key="spark", value="driver", effect="NoSchedule", operator="Equal")],
                node_selector={"pool": "drivers"},
            ),
            labels={"role": "driver"},
        ),
        executor_pod=PodTemplate(
            pod_spec=V1PodSpec(containers=[V1Container(name="primary")], node_selector={"pool": "executors"}),
            annotations={"role": "executor"},
        ),
    ),
    environment={"STAGE": "test"},
)
def spark_with_pods(rows: int = 10) -> int:
    """Count rows, with driver and executor pod templates."""
    sess = flytekit.current_context().spark_session
    return sess.range(rows).count()
