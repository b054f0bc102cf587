"""Serialize every task of a Python module to TaskTemplate files, offline.

Usage: python scripts/serialize_tasks.py MODULE_FILE OUT_DIR [--image IMAGE]

Writes, per task: <name>.pb (flyteidl.core.TaskTemplate), <name>.json (the
same in protobuf JSON) and <name>.taskspec.pb (flyteidl.admin.TaskSpec, what
`pyflyte serialize` writes).
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
    print(f"serialized {len(tasks)} tasks from {args.module} to {out}")


if __name__ == "__main__":
    main()
