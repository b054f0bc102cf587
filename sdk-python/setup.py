"""Generates the Python classes of flytewasm's custom-config schemas from
`../proto` while building the package, so Python and the Rust plugins read
one definition."""

import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent / "proto"
# Every schema under proto/flytewasm/ (`just new-plugin` adds one).
SCHEMAS = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "flytewasm").rglob("*.proto"))


class BuildWithSchemas(build_py):
    def run(self):
        generate(pathlib.Path(self.build_lib) / "flytekitplugins" / "flytewasm" / "_schemas")
        super().run()


def generate(out):
    import grpc_tools
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO}", f"-I{well_known}", f"--python_out={out}", *SCHEMAS]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {SCHEMAS}")
    # Packages for the generated modules (flytewasm/batchjob/v1).
    for directory in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildWithSchemas})
