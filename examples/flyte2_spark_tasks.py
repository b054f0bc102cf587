"""The Spark task of examples/spark_tasks.py written with Flyte 2's SDK
(`flyte` + flyteplugins-spark). `just examples` serializes it to
examples/flyte2/spark_pi.pb (a flyteidl2.core.TaskTemplate); `just demo`
runs it through Flyte 2's connector protocol on the Spark plugin."""

import random
from operator import add

import flyte
from flyteplugins.spark import Spark

env = flyte.TaskEnvironment(
    name="spark_pi_env",
    image=flyte.Image.from_base("ghcr.io/flyteorg/flyte:py3.11-v2.12.1"),
    plugin_config=Spark(
        spark_conf={
            "spark.driver.memory": "1000M",
            "spark.driver.cores": "1",
            "spark.executor.memory": "1000M",
            "spark.executor.cores": "1",
            "spark.executor.instances": "2",
        },
    ),
    resources=flyte.Resources(memory=("2000M", "2000M")),
)


@env.task
def spark_pi(partitions: int = 4) -> float:
    """Estimate pi with Spark."""
    n = 100_000 * partitions
    sess = flyte.ctx().data["spark_session"]

    def inside(_: int) -> int:
        x, y = random.random() * 2 - 1, random.random() * 2 - 1
        return 1 if x * x + y * y <= 1 else 0

    count = sess.sparkContext.parallelize(range(1, n + 1), partitions).map(inside).reduce(add)
    return 4.0 * count / n
