"""Finished weight files of any network the library trains or ships: fp16 safetensors with the
model card as metadata, read back with one clear error per way a file can be unusable; nothing
is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from stylelib.errors import StylelibError
from stylelib.files import StateDict, save_safetensors

Net = TypeVar("Net", bound=nn.Module)


@dataclass(frozen=True)
class WeightKind:
    """What a network is called and which functions write and read its files (for messages)."""

    network: str
    save: str
    load: str
    train: str


def cpu_state(net: nn.Module, dtype: torch.dtype) -> StateDict:
    """The network's tensors on the CPU, contiguous, in ``dtype`` (what safetensors stores)."""
    return {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}


def read_safetensors(path: Path, kind: WeightKind, fix: str | None = None
                     ) -> tuple[StateDict, dict[str, str]]:
    """Tensors and metadata of a safetensors file; anything else is refused, never unpickled.
    ``fix`` replaces the advice for a damaged file (a checkpoint is not downloaded again)."""
    if not path.is_file():
        raise StylelibError(f"No weights file at {path}: check the path.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        advice = fix or (f"download the file again, or save it with {kind.save}")
        raise StylelibError(
            f"{path} is not a readable safetensors file ({error}). stylelib reads weights only "
            f"from safetensors and never unpickles .pt/.pth files, which can run code: {advice}."
        ) from None
    return state, metadata


def load_state(net: nn.Module, state: StateDict, path: Path, kind: WeightKind) -> None:
    """Copy ``state`` into ``net``, with one clear error when it is not this network's."""
    if not all(torch.isfinite(tensor).all() for tensor in state.values()):
        raise StylelibError(
            f"{path} contains NaN or infinite weights: the file is damaged or the training "
            "diverged; use another file."
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip()[:200]
        raise StylelibError(
            f"{path} does not hold {kind.network} weights ({detail}): use a file written by "
            f"{kind.save} or {kind.train}."
        ) from None


def save_weights(net: nn.Module, path: str | Path, card: Mapping[str, str]) -> Path:
    """Save ``net`` as fp16 safetensors (half the size) with the model card as metadata."""
    target = Path(path).expanduser()
    not_text = [k for k, v in card.items() if not (isinstance(k, str) and isinstance(v, str))]
    if not_text:
        raise StylelibError(
            f"Model card fields must be strings; {not_text} are not: format them with str()."
        )
    state = cpu_state(net, torch.float16)
    if not all(torch.isfinite(tensor).all() for tensor in state.values()):
        raise StylelibError(
            "Some weights are NaN or too large for fp16 (|w| > 65504): the training diverged; "
            "retrain with a lower lr or lower loss weights."
        )
    save_safetensors(state, target, dict(card))
    return target


def load_weights(net: Net, path: str | Path, kind: WeightKind) -> tuple[Net, dict[str, str]]:
    """Fill ``net`` (float32, eval mode) from a safetensors file; also return its model card."""
    source = Path(path).expanduser()
    state, card = read_safetensors(source, kind)
    load_state(net, state, source, kind)
    return net.eval(), card
