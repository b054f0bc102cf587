"""Spark tasks as Flyte users write them with flytekitplugins-spark."""

import flytekit
from flytekit import PodTemplate, Resources, Secret, task
from flytekitplugins.spark import Spark
from kubernetes.client import V1Container, V1PodSpec, V1Toleration


@task(task_config=Spark(spark_conf={"spark.driver.memory": "1g", "spark.executor.instances": "4"}))
def minimal(n: int) -> int:
    return flytekit.current_context().spark_session.range(n).count()


@task(
    task_config=Spark(
        spark_conf={
            "spark.driver.cores": "2",
            "spark.executor.cores": "3",
            "spark.executor.memory": "4g",
            "spark.flyte.feature1.enabled": "true",
            "spark.batchScheduler": "volcano",
        },
        hadoop_conf={"fs.s3a.path.style.access": "true"},
        executor_path="/usr/bin/python3",
        applications_path="local:///opt/app/main.py",
    ),
    requests=Resources(cpu="1", mem="1Gi"),
    limits=Resources(cpu="2", mem="2Gi"),
    environment={"MODE": "prod"},
    secret_requests=[Secret(group="spark", key="token")],
)
def configured(n: int) -> int:
    return n


@task(
    task_config=Spark(
        spark_conf={"spark.executor.instances": "2"},
        driver_pod=PodTemplate(
            pod_spec=V1PodSpec(
                containers=[V1Container(name="primary")],
                tolerations=[V1Toleration(key="dedicated", value="spark-driver", effect="NoSchedule", operator="Equal")],
                node_selector={"pool": "drivers"},
                priority_class_name="high",
            ),
            labels={"role": "driver"},
        ),
        executor_pod=PodTemplate(
            pod_spec=V1PodSpec(containers=[V1Container(name="primary")], node_selector={"pool": "spot"}),
            annotations={"role": "executor"},
        ),
    ),
)
def with_pod_templates(n: int) -> int:
    return n
