"""`@task(task_config=BatchJob(...))`: a task that runs as a Kubernetes Job.

The config becomes `TaskTemplate.custom` as the JSON of the shared schema
`flytewasm.batchjob.v1.BatchJob` (`proto/flytewasm/batchjob/v1/`), built
with the classes generated from it, so the Rust plugin reads exactly what
is written here."""

import enum
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from flytekit import PythonFunctionTask
from flytekit.configuration import SerializationSettings
from flytekit.extend import TaskPlugins
from google.protobuf.json_format import MessageToDict, ParseDict

from ._schemas.flytewasm.batchjob.v1 import batch_job_pb2

TASK_TYPE = "batch_job"


class CompletionMode(enum.Enum):
    NON_INDEXED = "NON_INDEXED"
    INDEXED = "INDEXED"


@dataclass
class Kueue:
    """Queue the Job with Kueue: it waits, suspended, until admitted."""

    queue_name: str
    priority_class: str = ""


@dataclass
class BatchJob:
    """How the task's Job runs. Unset fields keep Kubernetes' defaults."""

    parallelism: Optional[int] = None
    completions: Optional[int] = None
    completion_mode: Optional[CompletionMode] = None
    backoff_limit: Optional[int] = None
    active_deadline_seconds: Optional[int] = None
    ttl_seconds_after_finished: Optional[int] = None
    kueue: Optional[Kueue] = None
    # A PodTemplateSpec fragment ({"metadata": ..., "spec": ...}) merged over
    # the pod built from the task's container.
    pod_template: Optional[Dict[str, Any]] = None

    def to_proto(self) -> batch_job_pb2.BatchJob:
        message = batch_job_pb2.BatchJob()
        for field in (
            "parallelism",
            "completions",
            "backoff_limit",
            "active_deadline_seconds",
            "ttl_seconds_after_finished",
        ):
            value = getattr(self, field)
            if value is not None:
                setattr(message, field, value)
        if self.completion_mode is not None:
            message.completion_mode = batch_job_pb2.CompletionMode.Value(self.completion_mode.value)
        if self.kueue is not None:
            message.kueue.queue_name = self.kueue.queue_name
            message.kueue.priority_class = self.kueue.priority_class
        if self.pod_template is not None:
            ParseDict(self.pod_template, message.pod_template)
        return message


class BatchJobTask(PythonFunctionTask[BatchJob]):
    """A Python function run as the pods of a Kubernetes Job."""

    def __init__(self, task_config: BatchJob, task_function: Callable, **kwargs):
        super().__init__(task_config=task_config, task_function=task_function, task_type=TASK_TYPE, **kwargs)

    def get_custom(self, settings: SerializationSettings) -> Dict[str, Any]:
        return MessageToDict(self.task_config.to_proto())


TaskPlugins.register_pythontask_plugin(BatchJob, BatchJobTask)
