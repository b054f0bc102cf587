"""`@task(task_config={{Message}}(...))`: a task run by the `{{id}}` plugin.

The config becomes `TaskTemplate.custom` as the JSON of the shared schema
`{{package}}.{{Message}}` (`proto/{{proto_path}}`)."""

from dataclasses import dataclass
from typing import Any, Callable, Dict

from flytekit import PythonFunctionTask
from flytekit.configuration import SerializationSettings
from flytekit.extend import TaskPlugins
from google.protobuf.json_format import MessageToDict

from ._schemas.flytewasm.{{flat}}.v1 import {{snake}}_pb2

TASK_TYPE = "{{task_type}}"


@dataclass
class {{Message}}:
    """TODO: the settings users write in `@task(task_config=...)`."""

    replicas: int = 1

    def to_proto(self) -> {{snake}}_pb2.{{Message}}:
        return {{snake}}_pb2.{{Message}}(replicas=self.replicas)


class {{Message}}Task(PythonFunctionTask[{{Message}}]):
    def __init__(self, task_config: {{Message}}, task_function: Callable, **kwargs):
        super().__init__(task_config=task_config, task_function=task_function, task_type=TASK_TYPE, **kwargs)

    def get_custom(self, settings: SerializationSettings) -> Dict[str, Any]:
        return MessageToDict(self.task_config.to_proto())


TaskPlugins.register_pythontask_plugin({{Message}}, {{Message}}Task)
