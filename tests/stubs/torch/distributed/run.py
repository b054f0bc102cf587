"""Stand-in for `torch.distributed.run`: only `parse_min_max_nnodes`, which
flytekitplugins-kfpytorch's `PytorchElasticFunctionTask.__init__` calls with
`str(Elastic.nnodes)`. Same contract as torchrun's `--nnodes`: "N" means
exactly N nodes, "MIN:MAX" a range (see ../../README.md for why this exists)."""


def parse_min_max_nnodes(nnodes: str) -> tuple[int, int]:
    parts = nnodes.split(":")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) == 2:
        return int(parts[0]), int(parts[1])
    raise RuntimeError(f"nnodes={nnodes} is not a valid format")
