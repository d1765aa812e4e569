"""Crash-safe file writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from safetensors.torch import save_file
from torch import Tensor


def atomic_save(tensors: Mapping[str, Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    """save_file to a temporary name, flush to disk, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    cpu_tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
    save_file(cpu_tensors, str(temporary), metadata=dict(metadata))
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
