"""Tests for stylelib.weight_files: fp16 safetensors with a model card, and one clear error for
each way a weight file can be unusable (a pickle among them, which is never run). The network is
a seeded random :class:`~stylelib.fast.TransformerNet`: file formats need no training.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from bait import armed_bait
from safetensors.torch import save_file

from stylelib.errors import StylelibError
from stylelib.fast import KIND, TransformerNet
from stylelib.weight_files import load_weights, save_weights


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    """Seeded random weights."""
    torch.manual_seed(0)
    return TransformerNet().eval()


def load(path: Path) -> TransformerNet:
    """A :class:`TransformerNet` from the weights file at ``path``."""
    return load_weights(TransformerNet(), path, KIND)[0]


def test_save_weights_refuses_what_fp16_safetensors_cannot_hold(net: TransformerNet,
                                                                tmp_path: Path) -> None:
    with pytest.raises(StylelibError, match="must be strings"):
        save_weights(net, tmp_path / "net.safetensors", {"steps": 12})  # type: ignore[dict-item]
    huge = TransformerNet()
    with torch.no_grad():
        huge.to_rgb.bias.fill_(1e5)
    with pytest.raises(StylelibError, match="too large for fp16"):
        save_weights(huge, tmp_path / "net.safetensors", {})
    assert not any(tmp_path.iterdir())


def _damage(kind: str, path: Path, net: TransformerNet) -> None:
    """Write one kind of unusable weight file at ``path``."""
    if kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        save_weights(net, path, {})
        path.write_bytes(path.read_bytes()[:100_000])
    elif kind == "wrong shape":
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        state["to_rgb.weight"] = torch.zeros(3, 32, 5, 5)
        save_file(state, str(path))
    elif kind == "another network":
        save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(path))
    elif kind == "NaN":
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        state["to_rgb.bias"][0] = float("nan")
        save_file(state, str(path))


@pytest.mark.parametrize(
    ("kind", "message"),
    [("random bytes", "not a readable safetensors file"), ("empty", "not a readable"),
     ("truncated", "not a readable"), ("wrong shape", "does not hold TransformerNet weights"),
     ("another network", "does not hold TransformerNet weights"), ("NaN", "NaN or infinite")],
)
def test_unusable_weight_files_give_one_clear_error(
    net: TransformerNet, tmp_path: Path, kind: str, message: str
) -> None:
    path = tmp_path / "net.safetensors"
    _damage(kind, path, net)
    with pytest.raises(StylelibError, match=message) as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_missing_weight_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(StylelibError, match=re.escape(str(tmp_path / "none.safetensors"))):
        load(tmp_path / "none.safetensors")


def test_a_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    payload, marker = armed_bait(tmp_path)
    path = tmp_path / "net.safetensors"
    torch.save({"to_rgb.weight": payload}, path)
    with pytest.raises(StylelibError, match="never unpickles"):
        load(path)
    assert not marker.exists()
