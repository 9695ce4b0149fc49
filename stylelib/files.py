"""Writing files safely: a crash, a full disk or a second process never leaves a half-written
file, and an existing file is replaced only by a complete new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

StateDict = dict[str, torch.Tensor]


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Run ``write(temporary)`` on a new, uniquely named file beside ``path``, then rename it
    onto ``path`` in one step.

    The name is unique per call (``tempfile``), so two processes saving to one path never
    share a temporary file: the last complete file wins. On any error, or Ctrl-C, the temporary
    file is removed and ``path`` keeps its earlier contents.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                                    dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same path, a symlink to it, or a hard link."""
    first, second = Path(a).expanduser(), Path(b).expanduser()
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def save_safetensors(state: StateDict, path: Path, metadata: dict[str, str]) -> None:
    """Write safetensors atomically (:func:`write_atomically`)."""
    write_atomically(path, lambda temporary: save_file(state, str(temporary), metadata=metadata))
