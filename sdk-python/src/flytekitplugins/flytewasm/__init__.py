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

import importlib
import pkgutil

from .batch_job import BatchJob, BatchJobTask, CompletionMode, Kueue

# Every task module registers its config with flytekit when imported
# (`just new-plugin` adds modules here).
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BatchJob", "BatchJobTask", "CompletionMode", "Kueue"]
