"""Spark tasks written with the upstream flytekitplugins-spark, serialized by
real flytekit during the test run, rendered by `flytewasm render` with the
Spark plugin component: the SparkApplication carries what the task asked."""

import base64
import pathlib

import pytest

from conftest import load_module, serialize

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tasks():
    return load_module(HERE / "spark_user_tasks.py")


def by_name(items):
    return {item["name"]: item.get("value") for item in items}


def test_a_minimal_spark_task(tasks, tmp_path, render):
    pb, _, template = serialize(tasks.minimal, tmp_path, "minimal")
    assert template.type == "spark"
    app = render(pb)
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    assert app["kind"] == "SparkApplication"
    assert app["metadata"]["name"] == "exec1-n0-0"
    assert app["metadata"]["namespace"] == "flytesnacks-development"
    assert app["metadata"]["labels"]["task-name"] == "spark_user_tasks.minimal"
    spec = app["spec"]
    assert spec["type"] == "Python"
    assert spec["mode"] == "cluster"
    assert spec["image"] == "ghcr.io/example/spark:3.5"
    # flytekit points at its entrypoint next to the interpreter it was given.
    assert spec["mainApplicationFile"].startswith("local://") and spec["mainApplicationFile"].endswith("entrypoint.py")
    assert "mainClass" not in spec
    assert spec["arguments"][:3] == ["pyflyte-execute", "--inputs", "s3://flyte-data/metadata/flytesnacks-development-exec1/n0/data/inputs.pb"]
    assert spec["arguments"][-4:] == ["task-module", "spark_user_tasks", "task-name", "minimal"]
    assert spec["sparkConf"]["spark.driver.memory"] == "1g"
    assert spec["sparkConf"]["spark.executor.instances"] == "4"
    assert spec["sparkConf"]["spark.kubernetes.executor.podNamePrefix"] == "exec1-n0-0"
    assert spec["sparkConf"]["spark.kubernetes.driverEnv.FLYTE_START_TIME"].isdigit()
    assert spec["executor"]["instances"] == 4
    assert spec["driver"]["memory"] == "1g"
    assert spec["driver"]["serviceAccount"] == "spark"
    assert spec["restartPolicy"] == {"type": "OnFailure", "onSubmissionFailureRetries": 14}
    env = by_name(spec["driver"]["env"])
    assert env["FLYTE_INTERNAL_EXECUTION_ID"] == "exec1"
    assert env["FLYTE_INTERNAL_TASK_NAME"] == "spark_user_tasks.minimal"
    assert env["FLYTE_MAX_ATTEMPTS"] == "1"


def test_conf_features_interpreter_hadoop_env_and_secrets(tasks, tmp_path, render):
    pb, _, _ = serialize(tasks.configured, tmp_path, "configured")
    config = {
        "plugins": {
            "spark": {
                "spark-config-default": {"spark.ui.enabled": "false", "spark.driver.memory": "512m"},
                "features": [{"name": "feature1", "spark-config": {"spark.hadoop.feature1": "on"}}],
            }
        }
    }
    app = render(pb, "--service-account", "spark-runner", config=config)
    spec = app["spec"]
    conf = spec["sparkConf"]
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.hadoop.feature1"] == "on"
    assert "spark.flyte.feature1.enabled" not in conf
    assert conf["spark.pyspark.python"] == conf["spark.pyspark.driver.python"] == "/usr/bin/python3"
    assert conf["spark.kubernetes.driver.limit.cores"] == "2"
    assert conf["spark.kubernetes.executor.limit.cores"] == "3"
    assert spec["batchScheduler"] == "volcano"
    assert spec["hadoopConf"] == {"fs.s3a.path.style.access": "true"}
    assert spec["mainApplicationFile"] == "local:///opt/app/main.py"
    assert (spec["driver"]["cores"], spec["executor"]["cores"], spec["executor"]["memory"]) == (2, 3, "4g")
    assert spec["driver"]["serviceAccount"] == spec["executor"]["serviceAccount"] == "spark-runner"
    assert by_name(spec["executor"]["env"])["MODE"] == "prod"
    meta = app["metadata"]
    assert meta["labels"]["inject-flyte-secrets"] == "true"
    secret = base64.b32decode(meta["annotations"]["flyte.secrets/s0"] + "=" * (-len(meta["annotations"]["flyte.secrets/s0"]) % 8))
    assert b'group:"spark"' in secret and b'key:"token"' in secret


def test_driver_and_executor_pod_templates(tasks, tmp_path, render):
    pb, spec_pb, _ = serialize(tasks.with_pod_templates, tmp_path, "pods")
    for task_file in (pb, spec_pb):
        app = render(task_file, "--interruptible", config={"k8s": {
            "interruptible-tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            "interruptible-node-selector": {"lifecycle": "spot"},
        }})
        driver, executor = app["spec"]["driver"], app["spec"]["executor"]
        assert driver["nodeSelector"] == {"pool": "drivers"}
        assert [t["value"] for t in driver["tolerations"]] == ["spark-driver"]
        assert driver["labels"]["role"] == "driver"
        assert driver["priorityClassName"] == "high"
        # Executors follow the task onto interruptible nodes; the driver never does.
        assert executor["nodeSelector"] == {"pool": "spot", "lifecycle": "spot"}
        assert [t["key"] for t in executor["tolerations"]] == ["spot"]
        assert executor["annotations"]["role"] == "executor"
        assert app["metadata"]["labels"]["interruptible"] == "true"


def test_the_example_tasks_render(tmp_path, render):
    examples = load_module(HERE.parent / "examples" / "spark_tasks.py")
    for name in ("spark_pi", "spark_with_pods"):
        pb, _, _ = serialize(getattr(examples, name), tmp_path, name)
        app = render(pb)
        assert app["kind"] == "SparkApplication"
