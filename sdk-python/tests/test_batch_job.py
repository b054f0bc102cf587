"""`@task(task_config=BatchJob(...))` → TaskTemplate (real flytekit) → the
Job the Rust plugin builds from it."""

import pytest
from flytekit import task
from flytekitplugins.flytewasm import BatchJob, BatchJobTask, CompletionMode, Kueue
from render_support import render_job, run_render, serialize


@task(
    task_config=BatchJob(
        parallelism=4,
        completions=8,
        completion_mode=CompletionMode.INDEXED,
        backoff_limit=2,
        active_deadline_seconds=3600,
        ttl_seconds_after_finished=60,
        kueue=Kueue(queue_name="team-a", priority_class="high"),
        pod_template={"metadata": {"labels": {"team": "a"}}, "spec": {"nodeSelector": {"pool": "batch"}}},
    )
)
def crunch(shard: int) -> int:
    return shard * 2


@task(task_config=BatchJob())
def plain(n: int) -> int:
    return n


def test_the_config_becomes_the_shared_schemas_json(tmp_path):
    _, _, template = serialize(crunch, tmp_path, "crunch")
    assert isinstance(crunch, BatchJobTask)
    assert template.type == "batch_job"
    custom = dict(template.custom)
    assert custom["parallelism"] == 4
    assert custom["completionMode"] == "INDEXED"
    # int64 travels as a string in protobuf's JSON mapping.
    assert custom["activeDeadlineSeconds"] == "3600"
    assert dict(custom["kueue"]) == {"queueName": "team-a", "priorityClass": "high"}


def test_the_plugin_builds_the_job_the_python_config_describes(tmp_path):
    pb, _, _ = serialize(crunch, tmp_path, "crunch")
    job = render_job(pb)
    spec = job["spec"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert (spec["parallelism"], spec["completions"], spec["completionMode"]) == (4, 8, "Indexed")
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (2, 3600, 60)
    assert spec["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"
    pod = spec["template"]
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["spec"]["nodeSelector"]["pool"] == "batch"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert container["args"][0] == "pyflyte-execute"
    assert "crunch" in " ".join(container["args"])


def test_an_empty_config_is_a_plain_job(tmp_path):
    pb, _, template = serialize(plain, tmp_path, "plain")
    assert template.type == "batch_job"
    spec = render_job(pb)["spec"]
    assert "suspend" not in spec and "parallelism" not in spec


def test_bad_values_are_refused_by_the_plugin_naming_the_field(tmp_path):
    @task(task_config=BatchJob(parallelism=0))
    def broken(n: int) -> int:
        return n

    pb, _, _ = serialize(broken, tmp_path, "broken")
    result = run_render(pb)
    assert result.returncode == 1
    assert "TaskTemplate.custom.parallelism" in result.stderr


@pytest.mark.parametrize("mode", list(CompletionMode))
def test_every_completion_mode_is_a_schema_value(mode):
    assert BatchJob(completion_mode=mode).to_proto().completion_mode != 0
