"""A stand-in for `torch`, just enough for flytekitplugins-kfpytorch to
construct (and flytekit to serialize) `Elastic` tasks: see ../README.md.
Not PyTorch; nothing here trains anything."""
