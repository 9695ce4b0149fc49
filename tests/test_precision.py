"""bfloat16 where it is safe: the switch, and that only the network's passes change precision."""

from __future__ import annotations

import pytest
import torch

from stylelib import precision
from stylelib.errors import StylelibError
from stylelib.fast import TransformerNet
from stylelib.fast import stylize as stylize_fast
from stylelib.gatys import stylize
from stylelib.losses import PerceptualLoss

HED = "vgg16-hed"


def test_the_setting_overrides_the_hardware_and_bad_values_are_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: True)
    monkeypatch.delenv(precision.ENV, raising=False)
    assert precision.reduced("cpu") is torch.bfloat16
    monkeypatch.setenv(precision.ENV, "0")
    assert precision.reduced("cpu") is None
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: False)
    monkeypatch.delenv(precision.ENV)
    assert precision.reduced("cpu") is None
    assert precision.reduced("meta") is None
    monkeypatch.setenv(precision.ENV, "1")
    assert precision.reduced("cpu") is torch.bfloat16
    monkeypatch.setenv(precision.ENV, "yes")
    with pytest.raises(StylelibError, match=r"STYLELIB_BF16 must be 0 .* or 1 .*got 'yes'"):
        precision.reduced("cpu")
    assert precision.describe(None) == "float32"
    assert precision.describe(torch.bfloat16) == "bfloat16 autocast"


def test_a_bf16_loss_is_close_to_float32_and_keeps_float32_outside_the_network(
        photo: torch.Tensor, painting: torch.Tensor) -> None:
    values, grads = {}, {}
    for dtype in (None, torch.bfloat16):
        loss = PerceptualLoss(backbone=HED, style_weight=10.0, precision=dtype)
        loss.set_content(photo)
        loss.set_style(painting)
        assert all(t.dtype == torch.float32 for t in loss.style_targets.values())
        image = (photo * 0.8 + 0.1).requires_grad_(True)
        terms = loss(image)
        terms.total.backward()
        assert terms.total.dtype == torch.float32 and image.grad is not None
        assert image.grad.dtype == torch.float32
        values[dtype], grads[dtype] = float(terms.total.detach()), image.grad
    assert values[torch.bfloat16] == pytest.approx(values[None], rel=0.03)
    assert values[torch.bfloat16] != values[None]  # it did run in another precision
    cosine = torch.nn.functional.cosine_similarity(grads[None].flatten(),
                                                   grads[torch.bfloat16].flatten(), dim=0)
    assert float(cosine) > 0.95


def test_gatys_in_bf16_ends_near_float32(photo: torch.Tensor, painting: torch.Tensor) -> None:
    runs = {bf16: stylize(photo, painting, steps=20, backbone=HED, bf16=bf16, progress=False)
            for bf16 in (False, True)}
    assert runs[True].image.dtype == torch.float32
    final = {bf16: run.history[-1]["total"] for bf16, run in runs.items()}
    start = runs[False].history[0]["total"]
    assert final[True] < 0.5 * start and final[True] == pytest.approx(final[False], rel=0.1)
    moved = float((runs[False].image - photo).abs().mean())
    apart = float((runs[True].image - runs[False].image).abs().mean())
    assert apart < 0.6 * moved  # (at 32 px, 20 steps: 0.026 apart, 0.067 from the photo)


def test_a_fast_net_in_bf16_paints_nearly_the_float32_picture(
        photo: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    net = TransformerNet().eval()
    pictures = {}
    for flag in ("0", "1"):
        monkeypatch.setenv(precision.ENV, flag)
        pictures[flag] = stylize_fast(net, photo)
    assert pictures["1"].dtype == torch.float32 and pictures["1"].shape == photo.shape
    difference = (pictures["1"] - pictures["0"]).abs()
    # bfloat16 keeps 8 bits of mantissa: about 1/256 near 1, one 8-bit grey level
    assert 0 < float(difference.mean()) < 4 / 255
