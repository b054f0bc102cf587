"""Write the flyteidl and flyteidl2 FileDescriptorSet that `proto/build.rs` compiles.

Neither wheel on PyPI (flyteidl for Flyte 1, flyteidl2 for Flyte 2) ships .proto files, but every generated
`*_pb2.py` module registers its serialized FileDescriptorProto in protobuf's
descriptor pool. Importing the modules we need and walking their imports gives
the exact, versioned definitions without copying any .proto file into our repo.

Usage: python scripts/flyteidl_descriptors.py OUT.fds.bin
"""

import importlib
import sys

from google.protobuf import descriptor_pb2

# The roots the project uses; their imports are followed transitively.
ROOTS = [
    "flyteidl.core.tasks_pb2",
    "flyteidl.plugins.spark_pb2",
    # Kubeflow training operator: task_type_version 0 (flyteidl.plugins) and 1 (flyteidl.plugins.kubeflow).
    "flyteidl.plugins.pytorch_pb2",
    "flyteidl.plugins.tensorflow_pb2",
    "flyteidl.plugins.mpi_pb2",
    "flyteidl.plugins.kubeflow.pytorch_pb2",
    "flyteidl.plugins.kubeflow.tensorflow_pb2",
    "flyteidl.plugins.kubeflow.mpi_pb2",
    "flyteidl.plugins.ray_pb2",
    "flyteidl.plugins.dask_pb2",
    "flyteidl.admin.task_pb2",
    "flyteidl.admin.agent_pb2",
    "flyteidl.service.agent_pb2",
    # Flyte 2's connector protocol (the host's gRPC feature only).
    "flyteidl2.connector.service_pb2",
]

# protovalidate's rules: flyteidl2 uses them only as field options, which
# code generation ignores, and their messages name descriptor.proto types
# prost's well-known types lack. Dropped, with the imports of them.
DROPPED = {"buf/validate/validate.proto"}


def closure(files):
    """Every file reachable from `files`, dependencies before dependents."""
    ordered, seen = [], set()

    def visit(fd):
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            visit(dep)
        ordered.append(fd)

    for fd in files:
        visit(fd)
    return ordered


def main(out_path):
    roots = [importlib.import_module(name).DESCRIPTOR for name in ROOTS]
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in closure(roots):
        if fd.name in DROPPED:
            continue
        proto = fds.file.add()
        fd.CopyToProto(proto)
        kept = [dep for dep in proto.dependency if dep not in DROPPED]
        del proto.dependency[:]
        proto.dependency.extend(kept)
    with open(out_path, "wb") as out:
        out.write(fds.SerializeToString())
    print(f"wrote {len(fds.file)} descriptors to {out_path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: flyteidl_descriptors.py OUT.fds.bin")
    main(sys.argv[1])
