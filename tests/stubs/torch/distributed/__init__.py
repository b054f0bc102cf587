"""Stand-in `torch.distributed` package (see ../../README.md)."""
