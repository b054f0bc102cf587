"""`just new-plugin NAME`: a new operator plugin from plugin/template — the
custom-config schema, the Rust plugin with its tests in the wasm runtime,
and the Python SDK module with its test. Everything else finds them on its
own (the workspace's `plugin/*`, `scripts/build_plugins.py`, the schema
discovery in proto/build.rs and sdk-python/setup.py), so `just test` passes
at once and the TODOs show what to fill in."""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "plugin/template"


def names(raw):
    if not re.fullmatch(r"[a-z][a-z0-9]*([_-][a-z0-9]+)*", raw):
        sys.exit(f"new-plugin: `{raw}` is not a plugin name: use lower-case words joined by - or _ (e.g. ray-job)")
    words = re.split(r"[_-]", raw)
    snake = "_".join(words)
    flat = "".join(words)
    return {
        "id": "-".join(words),
        "task_type": snake,
        "snake": snake,
        "flat": flat,
        "Message": "".join(w.capitalize() for w in words),
        "plural": flat + "s",
        "package": f"flytewasm.{flat}.v1",
        "proto_path": f"flytewasm/{flat}/v1/{snake}.proto",
    }


def render(text, values):
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: just new-plugin NAME")
    values = names(sys.argv[1])
    files = {
        TEMPLATE / "Cargo.toml": ROOT / "plugin" / values["id"] / "Cargo.toml",
        TEMPLATE / "src/lib.rs": ROOT / "plugin" / values["id"] / "src/lib.rs",
        TEMPLATE / "tests/plugin.rs": ROOT / "plugin" / values["id"] / "tests/plugin.rs",
        TEMPLATE / "proto/schema.proto": ROOT / "proto" / values["proto_path"],
        TEMPLATE / "python/module.py": ROOT / "sdk-python/src/flytekitplugins/flytewasm" / f"{values['snake']}.py",
        TEMPLATE / "python/test_module.py": ROOT / "sdk-python/tests" / f"test_{values['snake']}.py",
    }
    taken = [str(out.relative_to(ROOT)) for out in files.values() if out.exists()]
    if taken:
        sys.exit(f"new-plugin: {', '.join(taken)} already exist")
    for source, out in files.items():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(source.read_text(), values))
        print(f"created {out.relative_to(ROOT)}")
    print(
        f"\nNext: fill in the TODOs in plugin/{values['id']}/src/lib.rs, proto/{values['proto_path']} and "
        f"sdk-python/src/flytekitplugins/flytewasm/{values['snake']}.py, then `just test` "
        "(docs/writing-a-plugin.md walks through it)."
    )


if __name__ == "__main__":
    main()
