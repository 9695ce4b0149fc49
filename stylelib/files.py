"""Writing weight files safely: a crash or a full disk never leaves a half-written file."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

StateDict = dict[str, torch.Tensor]


def save_safetensors(state: StateDict, path: Path, metadata: dict[str, str]) -> None:
    """Write safetensors to a temporary name beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        save_file(state, str(partial), metadata=metadata)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
