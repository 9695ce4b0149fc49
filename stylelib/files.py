"""Writing files safely: a crash, a full disk or a second process never leaves a half-written
file, and an existing file is replaced only by a complete new one."""

from __future__ import annotations

import hashlib
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
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                                    dir=path.parent)
    temporary = Path(name)
    try:
        os.close(handle)
        write(temporary)
        os.chmod(temporary, mode)  # mkstemp makes 0600; keep the old file's or the umask's
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it; put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha256_of(path: Path) -> str:
    """The sha256 of the file's bytes, in hex, read in 1 MiB blocks (a wheel or weights file
    need not fit in memory twice)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same path, a symlink to it, or a hard link."""
    first, second = Path(a).expanduser(), Path(b).expanduser()
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def save_safetensors(state: StateDict, path: Path, metadata: dict[str, str]) -> None:
    """Write safetensors atomically (:func:`write_atomically`)."""
    write_atomically(path, lambda temporary: save_file(state, str(temporary), metadata=metadata))
