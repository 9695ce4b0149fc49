"""Tests for stylelib.adain_original: the paper's own weight files, read from their legacy
pickles without ever running one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bait import armed_bait

from stylelib.adain import Decoder, OriginalEncoder, load_decoder, stylize
from stylelib.adain_original import load_original
from stylelib.errors import StylelibError


def test_pickled_weight_files_are_refused_and_never_run(tmp_path: Path) -> None:
    payload, marker = armed_bait(tmp_path)
    bait = tmp_path / "decoder.pth"
    torch.save({"1.weight": payload}, bait)
    with pytest.raises(StylelibError, match="never unpickles"):
        load_decoder(bait)
    with pytest.raises(StylelibError, match="weights_only=True"):
        load_original(bait, bait)
    assert not marker.exists()
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(StylelibError, match="not a readable safetensors file"):
        load_decoder(tmp_path / "garbage.safetensors")


def test_the_papers_weight_files_load_with_their_own_layout(tmp_path: Path) -> None:
    """State dicts laid out like the release's (full VGG-19 and nn.Sequential decoder)."""
    torch.manual_seed(0)
    vgg = OriginalEncoder().body.state_dict()
    vgg["31.weight"] = torch.zeros(512, 512, 3, 3)  # relu4_2's conv: beyond relu4_1, ignored
    decoder = Decoder()
    torch.save(vgg, tmp_path / "vgg_normalised.pth")
    torch.save(decoder.body.state_dict(), tmp_path / "decoder.pth")
    original = load_original(tmp_path / "vgg_normalised.pth", tmp_path / "decoder.pth")
    assert original.encoder.backbone == "vgg19-normalised"
    torch.testing.assert_close(original.decoder.body[1].weight, decoder.body[1].weight)
    assert stylize(original, torch.rand(1, 3, 20, 28), torch.rand(1, 3, 16, 16)).shape == (
        1, 3, 20, 28)
    with pytest.raises(StylelibError, match=r"is not decoder\.pth of pytorch-AdaIN"):
        load_original(tmp_path / "vgg_normalised.pth", tmp_path / "vgg_normalised.pth")
    with pytest.raises(StylelibError, match="No file at"):
        load_original(tmp_path / "missing.pth", tmp_path / "decoder.pth")
