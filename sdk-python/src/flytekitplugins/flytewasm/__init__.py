"""flytekit tasks for flytewasm's operator plugins.

.. code-block:: python

    from flytekit import task
    from flytekitplugins.flytewasm import BatchJob, Kueue

    @task(task_config=BatchJob(parallelism=4, completions=8, kueue=Kueue(queue_name="team-a")))
    def crunch(shard: int) -> int:
        ...

The task runs as a Kubernetes Job (``batch_job`` task type), served by the
``batch-job`` plugin of a flytewasm host.
"""

from .batch_job import BatchJob, BatchJobTask, CompletionMode, Kueue

__all__ = ["BatchJob", "BatchJobTask", "CompletionMode", "Kueue"]
