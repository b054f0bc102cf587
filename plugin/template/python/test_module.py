"""`@task(task_config={{Message}}(...))` → TaskTemplate → the `{{id}}` plugin's object."""

from flytekit import task
from flytekitplugins.flytewasm.{{snake}} import {{Message}}
from render_support import render_job, serialize


@task(task_config={{Message}}(replicas=3))
def work(n: int) -> int:
    return n


def test_the_config_reaches_the_object(tmp_path):
    pb, _, template = serialize(work, tmp_path, "work")
    assert template.type == "{{task_type}}"
    assert dict(template.custom) == {"replicas": 3}
    obj = render_job(pb)
    assert obj["kind"] == "{{Message}}"
    assert obj["spec"]["replicas"] == 3
