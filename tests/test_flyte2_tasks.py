"""Spark tasks written with Flyte 2's SDK (`flyte` + flyteplugins-spark),
serialized offline during the run by the SDK (`flyte.extras.serialize`),
rendered by the Spark plugin, compared with the same tasks written with
flytekit, and run through Flyte 2's connector protocol on the sandbox.

Where the two SDKs express the same config the SparkApplication is the
same. What differs is what each SDK serializes (docs/operations.md,
"Flyte 2"): the entrypoint arguments (`a0 ... --resolver
flyte._internal.resolvers.default.DefaultTaskResolver mod M instance T`
against `pyflyte-execute ...`), the default main application file
(`<python dir>/runtime.py` against `entrypoint.py`), the default executor
Python (`python` against `python3`), the task's name (environment.function
against module.function) and each SDK's default image."""

import json

import pytest
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub
from flyteidl2.core import tasks_pb2

import agent_support
import connector_support
from conftest import ROOT, load_module

FLYTEKIT_TASK_NAMES = {"spark_pi": "spark_tasks.spark_pi", "spark_with_pods": "spark_tasks.spark_with_pods"}


@pytest.fixture(scope="module")
def flyte2_tasks(tmp_path_factory):
    """Each Flyte 2 task's TaskTemplate file, serialized by the SDK now."""
    tasks = load_module(ROOT / "tests/flyte2_user_tasks.py")
    example = load_module(ROOT / "examples/flyte2_spark_tasks.py")
    out = tmp_path_factory.mktemp("flyte2")
    files = {}
    for name, task in {"spark_pi": example.spark_pi, **tasks.TASKS}.items():
        files[name] = out / f"{name}.pb"
        files[name].write_bytes(tasks.serialize(task))
    return files


@pytest.fixture(scope="module")
def flytekit_tasks(tmp_path_factory):
    from conftest import serialize

    tasks = load_module(ROOT / "examples/spark_tasks.py")
    out = tmp_path_factory.mktemp("flytekit")
    return {name: serialize(getattr(tasks, name), out, name)[0] for name in FLYTEKIT_TASK_NAMES}


def json_of(fields):
    from google.protobuf.json_format import MessageToDict

    return {k: MessageToDict(v) if hasattr(v, "DESCRIPTOR") else v for k, v in fields.items()}


def template_of(path):
    return tasks_pb2.TaskTemplate.FromString(path.read_bytes())


def without_sdk_differences(app, task_name, default_python):
    """The application with what each SDK writes its own way taken out
    (the executor Python only where the task leaves it to the SDK)."""
    app = json.loads(json.dumps(app).replace(f'"{task_name}"', '"TASK"'))
    spec = app["spec"]
    del app["metadata"]["annotations"]["flytewasm.io/task-context"]  # the task itself, compressed
    for part in (spec, spec["driver"], spec["executor"]):
        part.pop("image")
    spec.pop("arguments")
    spec.pop("mainApplicationFile")
    spec["sparkConf"].pop("spark.kubernetes.driverEnv.FLYTE_START_TIME")
    if default_python:
        for key in ("spark.pyspark.python", "spark.pyspark.driver.python"):
            spec["sparkConf"].pop(key)
    return app


def test_the_sdk_serializes_the_spark_config_as_flytekit_does(flyte2_tasks, flytekit_tasks):
    """The same config, the same `custom` (read as Flyte 1's TaskTemplate,
    as the plugin reads it); flytekit adds an empty databricksConf."""
    from flyteidl.core import tasks_pb2 as v1_tasks

    flyte2 = v1_tasks.TaskTemplate.FromString(flyte2_tasks["spark_with_pods"].read_bytes())
    flytekit = v1_tasks.TaskTemplate.FromString(flytekit_tasks["spark_with_pods"].read_bytes())
    assert (flyte2.type, flyte2.task_type_version) == (flytekit.type, flytekit.task_type_version) == ("spark", 0)
    ours, theirs = dict(flyte2.custom), dict(flytekit.custom)
    theirs.pop("databricksConf")
    for key in ("mainApplicationFile",):  # each SDK's own default
        ours.pop(key), theirs.pop(key)
    assert json_of(ours) == json_of(theirs)
    assert flyte2.container.args[0] == "a0"


@pytest.mark.parametrize("name", sorted(FLYTEKIT_TASK_NAMES))
def test_both_sdks_build_the_same_spark_application(render, flyte2_tasks, flytekit_tasks, name):
    flyte2 = render(flyte2_tasks[name])
    flytekit = render(flytekit_tasks[name])
    flyte2_name = template_of(flyte2_tasks[name]).id.name
    default_python = name == "spark_pi"
    assert without_sdk_differences(flyte2, flyte2_name, default_python) == without_sdk_differences(
        flytekit, FLYTEKIT_TASK_NAMES[name], default_python
    )
    # The differences are the SDKs' own, as documented.
    assert flyte2["spec"]["mainApplicationFile"].endswith("/runtime.py")
    assert flytekit["spec"]["mainApplicationFile"].endswith("/entrypoint.py")
    assert flyte2["spec"]["arguments"][0] == "a0" and flytekit["spec"]["arguments"][0] == "pyflyte-execute"
    assert flyte2["spec"]["driver"]["image"] == template_of(flyte2_tasks[name]).container.image


def test_what_flyte2_sets_reaches_the_application(render, flyte2_tasks):
    app = render(flyte2_tasks["spark_app_file"])
    assert app["spec"]["mainApplicationFile"] == "local:///opt/app/main.py"
    assert app["spec"]["sparkConf"]["spark.pyspark.python"] == "/usr/bin/python3"
    pods = render(flyte2_tasks["spark_with_pods"])
    assert pods["spec"]["driver"]["nodeSelector"] == {"pool": "drivers"}
    assert pods["spec"]["driver"]["labels"]["role"] == "driver"
    assert pods["spec"]["executor"]["annotations"]["role"] == "executor"
    assert pods["spec"]["hadoopConf"] == {"fs.s3a.fast.upload": "true"}


def test_a_flyte2_spark_task_runs_through_the_connector_protocol(flytewasm_bin, plugins_dir, flyte2_tasks):
    server = agent_support.serve(flytewasm_bin, plugins_dir, "--sandbox", "--sandbox-step-ms", "100")
    try:
        connector = AsyncConnectorServiceStub(agent_support.channel(server.found[agent_support.GRPC]))
        template = template_of(flyte2_tasks["spark_pi"])
        meta = connector.CreateTask(connector_support.create_request(template, "flyte2-pi"), timeout=30).resource_meta
        app = agent_support.sandbox_object(server, meta)
        assert app["spec"]["sparkConf"]["spark.executor.instances"] == "2"
        resource, seen = connector_support.get_until_done(connector, template, meta)
        assert resource.phase == connector_support.Phase.SUCCEEDED, seen
    finally:
        server.stop()
