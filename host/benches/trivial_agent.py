"""The baseline for `just bench`'s GetTask benchmark: flytekit's own agent
server (`pyflyte serve agent --modules trivial_agent`) with the cheapest
possible async agent for the `spark` task type. Every GetTask answers
RUNNING at once: no cluster, no plugin, only the protocol."""

from dataclasses import dataclass

from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import (
    AsyncConnectorBase,
    ConnectorRegistry,
    Resource,
    ResourceMeta,
)


@dataclass
class TrivialMeta(ResourceMeta):
    name: str


class TrivialAgent(AsyncConnectorBase):
    name = "Trivial Agent"

    def __init__(self):
        super().__init__(task_type_name="spark", metadata_type=TrivialMeta)

    async def create(self, task_template, output_prefix=None, inputs=None, task_execution_metadata=None, **kwargs):
        execution = task_execution_metadata.task_execution_id.node_execution_id.execution_id.name
        return TrivialMeta(name=execution)

    async def get(self, resource_meta: TrivialMeta, **kwargs) -> Resource:
        return Resource(phase=TaskExecution.RUNNING, message=f"{resource_meta.name} running")

    async def delete(self, resource_meta: TrivialMeta, **kwargs):
        return None


# flytekitplugins-spark registers a Databricks connector for `spark`; ours replaces it.
ConnectorRegistry.register(TrivialAgent(), override=True)
