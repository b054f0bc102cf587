"""Flyte 2's connector protocol as Flyte 2's executor speaks it, with the
official `flyteidl2` Python stubs: requests built from flyteidl2's own
messages (the task's TaskTemplate is Flyte 2's type)."""

from flyteidl2.connector import connector_pb2
from flyteidl2.core import execution_pb2, identifier_pb2, literals_pb2, security_pb2, tasks_pb2
from flyteidl2.task import common_pb2

import agent_support

Phase = execution_pb2.TaskExecution


def v2_template(template):
    """A TaskTemplate as Flyte 2's type: flytekit's (Flyte 1) bytes read by
    flyteidl2, which shares their field numbers."""
    return tasks_pb2.TaskTemplate.FromString(template.SerializeToString())


NAMESPACE = "flyte"


def create_request(template, execution, annotations=None, connection=None):
    """What Flyte 2's executor sends: ids; its own namespace (Flyte 2 keeps
    every task action in one, `flyte`); labels; the run's environment; no
    `k8s_service_account`, `max_attempts` or `interruptible` (it never fills
    them); the task's `run_as` as `identity` (here a service account, as if
    the task asked for one); the inputs as named literals and, for
    connectors that call outside services, a connection."""
    if not isinstance(template, tasks_pb2.TaskTemplate):
        template = v2_template(template)
    return connector_pb2.CreateTaskRequest(
        template=template,
        inputs=common_pb2.Inputs(
            literals=[
                common_pb2.NamedLiteral(
                    name="partitions",
                    value=literals_pb2.Literal(
                        scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(integer=4))
                    ),
                )
            ]
        ),
        output_prefix=f"s3://flyte-data/v2/{execution}/a0/0",
        task_execution_metadata=connector_pb2.TaskExecutionMetadata(
            task_execution_id=identifier_pb2.TaskExecutionIdentifier(
                task_id=identifier_pb2.Identifier(name=template.id.name),
                node_execution_id=identifier_pb2.NodeExecutionIdentifier(
                    node_id="a0",
                    execution_id=identifier_pb2.WorkflowExecutionIdentifier(
                        project="flytesnacks", domain="development", name=execution
                    ),
                ),
                retry_attempt=0,
            ),
            namespace=NAMESPACE,
            labels={"execution-id": execution, "project": "flytesnacks", "domain": "development"},
            annotations=annotations or {},
            environment_variables={"RUN_NAME": execution, "ACTION_NAME": "a0"},
            identity=security_pb2.Identity(k8s_service_account="spark"),
        ),
        connection=connection,
    )


def category(template):
    return agent_support.category(template, connector_pb2)


def connection():
    return security_pb2.Connection(task_type="spark", secrets={"token": "not-used"}, configs={"region": "x"})


def get_until_done(connector, template, meta, timeout=30):
    return agent_support.get_until_done(connector, template, meta, timeout, messages=connector_pb2)
