"""The reduced precision the networks run in where the hardware makes it faster: bfloat16.

A CPU with AVX-512 BF16 (``avx512_bf16`` in ``/proc/cpuinfo``, as torch reports it) runs the
VGG's convolutions about twice as fast in bfloat16, and a CUDA GPU from Ampere on does so too.
Callers keep what needs float32 (the optimised image, Gram matrices, loss sums) in float32 and
run only the network passes under :func:`autocast`. ``$STYLELIB_BF16=0`` turns it off, ``1``
turns it on wherever torch can run it.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import torch

from stylelib.errors import StylelibError

ENV = "STYLELIB_BF16"


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16); torch's check is private,
    so its absence from another torch release means no."""
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check()) if check is not None else False


def _hardware_has_bf16(device: torch.device) -> bool:
    if device.type == "cpu":
        return _cpu_has_bf16()
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return False


def reduced(device: str | torch.device) -> torch.dtype | None:
    """``torch.bfloat16`` where the networks on ``device`` should run in it, else ``None``:
    ``$STYLELIB_BF16`` when set to 0 or 1, else whether the hardware has native bfloat16."""
    dev = torch.device(device)
    chosen = os.environ.get(ENV, "").strip()
    if chosen not in ("", "0", "1"):
        raise StylelibError(f"${ENV} must be 0 (float32) or 1 (bfloat16), got {chosen!r}.")
    if chosen:
        return torch.bfloat16 if chosen == "1" else None
    return torch.bfloat16 if _hardware_has_bf16(dev) else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[object]:
    """``torch.autocast`` to ``dtype`` on ``device``'s kind, or nothing for ``None``."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def describe(dtype: torch.dtype | None) -> str:
    """A few words for tables and logs: "bfloat16 autocast" or "float32"."""
    return "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
