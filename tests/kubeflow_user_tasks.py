"""Kubeflow training-operator tasks (PyTorchJob, TFJob, MPIJob) as Flyte
users write them with flytekitplugins-kfpytorch, -kftensorflow and -kfmpi.
The expected objects are in tests/test_render_kubeflow.py."""

import contextlib
import importlib.util
import pathlib
import sys

from flytekit import Resources, task
from flytekit.extras.accelerators import A100, T4
from flytekitplugins.kfmpi import CleanPodPolicy as MPICleanPodPolicy
from flytekitplugins.kfmpi import HorovodJob, Launcher, MPIJob
from flytekitplugins.kfmpi import RunPolicy as MPIRunPolicy
from flytekitplugins.kfmpi import Worker as MPIWorker
from flytekitplugins.kfpytorch import CleanPodPolicy, Elastic, Master, PyTorch, RestartPolicy, RunPolicy
from flytekitplugins.kfpytorch import Worker as PyTorchWorker
from flytekitplugins.kftensorflow import PS, Chief, Evaluator, TfJob
from flytekitplugins.kftensorflow import CleanPodPolicy as TfCleanPodPolicy
from flytekitplugins.kftensorflow import RestartPolicy as TfRestartPolicy
from flytekitplugins.kftensorflow import RunPolicy as TfRunPolicy
from flytekitplugins.kftensorflow import Worker as TfWorker

MASTER_IMAGE = "ghcr.io/example/torch-master:2.4"
WORKER_IMAGE = "ghcr.io/example/torch-worker:2.4"
CHIEF_IMAGE = "ghcr.io/example/tf-chief:2.16"
PS_IMAGE = "ghcr.io/example/tf-ps:2.16"
TF_WORKER_IMAGE = "ghcr.io/example/tf-worker:2.16"
EVALUATOR_IMAGE = "ghcr.io/example/tf-evaluator:2.16"


@contextlib.contextmanager
def torch_stand_in():
    """`Elastic` tasks import `torch.distributed.run` when they are
    constructed, to parse `nnodes`. torch is multi-GB of CUDA wheels and is
    not installed for the tests, so while an Elastic task is built, our own
    stand-in (tests/stubs/torch, just that one function; see
    tests/stubs/README.md) is importable. It is taken away again at once:
    flytekit's type engine loads its torch type transformers whenever a
    module named `torch` has been imported, and the stand-in has none of
    what they need."""
    if importlib.util.find_spec("torch") is not None:
        yield  # the real one
        return
    stubs = str(pathlib.Path(__file__).resolve().parent / "stubs")
    sys.path.insert(0, stubs)
    try:
        yield
    finally:
        sys.path.remove(stubs)
        for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
            del sys.modules[name]


# --- PyTorch -----------------------------------------------------------------


@task(task_config=PyTorch(num_workers=2), requests=Resources(cpu="1", mem="1Gi"), limits=Resources(cpu="2", mem="2Gi"))
def pytorch_plain(epochs: int) -> int:
    return epochs


@task(
    task_config=PyTorch(
        master=Master(
            image=MASTER_IMAGE,
            requests=Resources(cpu="250m", mem="250Mi"),
            limits=Resources(cpu="500m", mem="500Mi"),
            restart_policy=RestartPolicy.ALWAYS,
        ),
        worker=PyTorchWorker(
            replicas=4,
            image=WORKER_IMAGE,
            requests=Resources(cpu="1", mem="2Gi", gpu="1"),
            limits=Resources(cpu="2", mem="4Gi", gpu="1"),
            restart_policy=RestartPolicy.FAILURE,
        ),
        run_policy=RunPolicy(
            clean_pod_policy=CleanPodPolicy.ALL,
            backoff_limit=3,
            active_deadline_seconds=600,
            ttl_seconds_after_finished=60,
        ),
    ),
    accelerator=T4,
)
def pytorch_overrides(epochs: int) -> int:
    return epochs


@task(
    task_config=PyTorch(worker=PyTorchWorker(replicas=1)),
    requests=Resources(gpu="1"),
    limits=Resources(gpu="1"),
    accelerator=A100.partition_1g_5gb,
)
def pytorch_mig(epochs: int) -> int:
    return epochs


with torch_stand_in():

    @task(task_config=Elastic(nnodes="2:4", nproc_per_node=2))
    def elastic(epochs: int) -> int:
        return epochs


# A stand-in of its own: flytekit builds the interface before the Elastic
# task imports torch, and would find the earlier task's stand-in loaded.
with torch_stand_in():

    # torchrun may restart the workers 3 times (the operator's elastic policy).
    @task(task_config=Elastic(nnodes=2, nproc_per_node=1, max_restarts=3))
    def elastic_restarts(epochs: int) -> int:
        return epochs


# `@task(shared_memory=...)` (flytekit >= 1.14) replaces the plugin's own
# /dev/shm pod template: the backend mounts an emptyDir (§0.3.7 step 5).
@task(task_config=PyTorch(worker=PyTorchWorker(replicas=2)), shared_memory=True)
def pytorch_shared_memory(epochs: int) -> int:
    return epochs


# --- TensorFlow --------------------------------------------------------------


@task(
    task_config=TfJob(
        chief=Chief(
            replicas=1,
            image=CHIEF_IMAGE,
            requests=Resources(cpu="250m", mem="1Gi"),
            limits=Resources(cpu="500m", mem="2Gi"),
            restart_policy=TfRestartPolicy.ALWAYS,
        ),
        ps=PS(
            replicas=2,
            image=PS_IMAGE,
            requests=Resources(cpu="250m", mem="1Gi"),
            limits=Resources(cpu="500m", mem="2Gi"),
            restart_policy=TfRestartPolicy.FAILURE,
        ),
        worker=TfWorker(
            replicas=3,
            image=TF_WORKER_IMAGE,
            requests=Resources(cpu="1", mem="2Gi", gpu="1"),
            limits=Resources(cpu="2", mem="4Gi", gpu="1"),
            restart_policy=TfRestartPolicy.NEVER,
        ),
        evaluator=Evaluator(
            replicas=1,
            image=EVALUATOR_IMAGE,
            requests=Resources(cpu="250m", mem="1Gi"),
            limits=Resources(cpu="500m", mem="2Gi"),
            restart_policy=TfRestartPolicy.ALWAYS,
        ),
        run_policy=TfRunPolicy(clean_pod_policy=TfCleanPodPolicy.RUNNING, active_deadline_seconds=100),
    ),
)
def tf_all_roles(steps: int) -> int:
    return steps


@task(task_config=TfJob(worker=TfWorker(replicas=2), chief=Chief(replicas=0), ps=PS(replicas=0)))
def tf_workers_only(steps: int) -> int:
    return steps


# --- MPI ---------------------------------------------------------------------


@task(
    task_config=MPIJob(launcher=Launcher(replicas=1), worker=MPIWorker(replicas=2), slots=2),
    requests=Resources(cpu="1", mem="1Gi"),
)
def mpi(n: int) -> int:
    return n


@task(
    task_config=HorovodJob(
        launcher=Launcher(replicas=1, requests=Resources(cpu="1"), limits=Resources(cpu="2")),
        worker=MPIWorker(replicas=2, command=["/usr/sbin/sshd", "-De", "-f", "/home/jobuser/.sshd_config"]),
        slots=2,
        elastic_timeout=200,
        # §E.3 vector 4: NONE is the proto default, so flytekit omits it.
        run_policy=MPIRunPolicy(clean_pod_policy=MPICleanPodPolicy.NONE, backoff_limit=5,
                                active_deadline_seconds=100, ttl_seconds_after_finished=100),
    ),
)
def horovod(n: int) -> int:
    return n
