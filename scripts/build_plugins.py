"""Build every plugin crate under plugin/ to a wasm component.

A crate is a plugin when its Cargo.toml has a `[package.metadata.flytewasm]`
table: `component` names the file (`target/plugins/<component>.wasm`, or
`target/test-plugins/` with `test-only = true`, or `target/example-plugins/`
with `example = true`: a worked example that serves task types a served
plugin serves too, so the two cannot share one plugin directory), and
`variants` lists extra builds with features (test-only, e.g. the same
plugin reporting another version). `just new-plugin` makes crates that are picked up here with no
other wiring.

Usage: build_plugins.py [PACKAGE ...]   (default: every plugin crate and its
variants; named packages are built without their test-only variants)"""

import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Where cargo writes (a shared target dir is fine); components are installed under ROOT/target.
CARGO_TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
TARGET = "wasm32-wasip2"
PROFILE = "plugin"


def plugins():
    for manifest in sorted(ROOT.glob("plugin/*/Cargo.toml")):
        if manifest.parent.name == "template":
            continue  # what `just new-plugin` copies, not a crate
        package = tomllib.loads(manifest.read_text()).get("package", {})
        meta = package.get("metadata", {}).get("flytewasm")
        if meta:
            yield package["name"], meta


def cargo_build(packages, features=()):
    cmd = ["cargo", "build", "--target", TARGET, "--profile", PROFILE]
    for package in packages:
        cmd += ["-p", package]
    if features:
        cmd += ["--features", ",".join(features)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def install(package, component, folder):
    built = CARGO_TARGET / TARGET / PROFILE / f"{package.replace('-', '_')}.wasm"
    out = ROOT / "target" / folder
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, out / f"{component}.wasm")
    print(f"  {out.relative_to(ROOT)}/{component}.wasm", flush=True)


def folder(meta):
    """Where a crate's own component goes, under target/."""
    if meta.get("test-only", False):
        return "test-plugins"
    if meta.get("example", False):
        return "example-plugins"
    return "plugins"


def main():
    found = list(plugins())
    wanted = set(sys.argv[1:])
    unknown = wanted - {name for name, _ in found}
    if unknown:
        sys.exit(f"build_plugins: not plugin crates: {', '.join(sorted(unknown))}")
    if wanted:
        found = [(name, {**meta, "variants": []}) for name, meta in found if name in wanted]
    if not found:
        sys.exit("build_plugins: no plugin crates under plugin/")
    cargo_build([name for name, _ in found])
    for name, meta in found:
        install(name, meta["component"], folder(meta))
    # Variants rebuild the same crate with features, after the plain builds are copied.
    for name, meta in found:
        for variant in meta.get("variants", []):
            cargo_build([name], [f"{name}/{f}" for f in variant["features"]])
            install(name, variant["component"], "test-plugins")


if __name__ == "__main__":
    main()
