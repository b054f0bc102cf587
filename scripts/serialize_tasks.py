"""Serialize every task of a Python module to TaskTemplate files, offline.

Usage: python scripts/serialize_tasks.py MODULE_FILE OUT_DIR [--image IMAGE]

Writes, per flytekit (Flyte 1) task: <name>.pb (flyteidl.core.TaskTemplate),
<name>.json (the same in protobuf JSON) and <name>.taskspec.pb
(flyteidl.admin.TaskSpec, what `pyflyte serialize` writes). Per Flyte 2 SDK
task (`flyte`): <name>.pb (flyteidl2.core.TaskTemplate, the same field
numbers) and <name>.json, with the image the task's environment names.
"""

import argparse
import importlib.util
import pathlib
import sys
from collections import OrderedDict

from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.core.base_task import PythonTask
from flytekit.tools.translator import get_serializable
from google.protobuf.json_format import MessageToJson

DEFAULT_IMAGE = "ghcr.io/flyteorg/flytekit:py3.11-1.16.31"


def load_module(path):
    path = pathlib.Path(path).resolve()
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def settings_for(image):
    return SerializationSettings(
        project="flytesnacks",
        domain="development",
        version="v1",
        image_config=ImageConfig.from_images(image),
    )


def serialize(task, out_dir, name, image=DEFAULT_IMAGE):
    """Write <name>.pb (TaskTemplate), <name>.json and <name>.taskspec.pb
    (TaskSpec) for one task; returns (template path, spec path, template)."""
    out = pathlib.Path(out_dir)
    spec = get_serializable(OrderedDict(), settings_for(image), task)
    template = spec.template.to_flyte_idl()
    (out / f"{name}.pb").write_bytes(template.SerializeToString())
    (out / f"{name}.json").write_text(MessageToJson(template))
    (out / f"{name}.taskspec.pb").write_bytes(spec.to_flyte_idl().SerializeToString())
    return out / f"{name}.pb", out / f"{name}.taskspec.pb", template


def serialize_flyte2(task, out_dir, name, version="v1"):
    """Write <name>.pb (flyteidl2.core.TaskTemplate) and <name>.json for a
    Flyte 2 SDK task. `flyte.extras.serialize` is the SDK's offline path: no
    flyte.init (no config or endpoint read), no image build, no code bundle
    upload; root_dir is what the module path in the task's args is relative to."""
    from flyte.extras import serialize as serialize_spec
    from flyte.models import SerializationContext

    context = SerializationContext(
        project="flytesnacks",
        domain="development",
        version=version,
        root_dir=pathlib.Path(sys.modules[task.func.__module__].__file__).resolve().parent,
    )
    template = serialize_spec(task, context).task_template
    out = pathlib.Path(out_dir)
    (out / f"{name}.pb").write_bytes(template.SerializeToString())
    (out / f"{name}.json").write_text(MessageToJson(template))
    return out / f"{name}.pb", template


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module")
    parser.add_argument("out_dir")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    args = parser.parse_args()

    module = load_module(args.module)
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {name: entity for name, entity in vars(module).items() if isinstance(entity, PythonTask)}
    for name, task in tasks.items():
        serialize(task, out, name, args.image)
    if "flyte" in sys.modules:  # the module uses Flyte 2's SDK
        from flyte import TaskTemplate as Flyte2Task

        flyte2 = {name: entity for name, entity in vars(module).items() if isinstance(entity, Flyte2Task)}
        for name, task in flyte2.items():
            serialize_flyte2(task, out, name)
        tasks.update(flyte2)
    print(f"serialized {len(tasks)} tasks from {args.module} to {out}")


if __name__ == "__main__":
    main()
