"""Tests for stylelib.fast: the network's shapes and upsampling, training, its weight files and
ONNX export (checkpoints and resuming: tests/test_training.py; weight-file errors:
tests/test_weight_files.py).

Training runs a dozen steps on 32 px crops of four photos from the training collection: enough
for the loss to fall, in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stylelib import fast
from stylelib.errors import ImageError, StylelibError
from stylelib.fast import (
    OVERLAP,
    ResizeConv,
    TransformerNet,
    export_onnx,
    load_weights,
    save_weights,
    stylize,
    train,
)
from stylelib.images import load_image, resize
from stylelib.losses import LossTerms, PerceptualLoss
from stylelib.metrics import psnr, seam_ratio
from stylelib.tiles import layout

HED = "vgg16-hed"


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    """Seeded random weights: shapes, upsampling and file formats need no training."""
    torch.manual_seed(0)
    return TransformerNet().eval()


@pytest.fixture(scope="module")
def photos(mirror_dir: Path) -> list[Path]:
    """Four photographs of the training collection."""
    return sorted((mirror_dir / "training" / "photos").glob("*.jpg"))[:4]


def checkerboard_share(image: torch.Tensor) -> float:
    """Share of the image's (non-constant) power at the Nyquist row and column of its spectrum:
    where a pattern that alternates every pixel, a checkerboard, puts its energy."""
    centred = image - image.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred).abs().pow(2)
    height, width = image.shape[-2:]
    nyquist = power[..., height // 2, :].sum() + power[..., :, width // 2].sum()
    return float(nyquist / power.sum())


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (17, 90)])
def test_output_has_the_input_size_and_is_an_image(net: TransformerNet, size: tuple[int, int]
                                                   ) -> None:
    """Odd sizes are padded to a multiple of 4 inside and cropped back."""
    with torch.no_grad():
        output = net(torch.rand(2, 3, *size))
    assert output.shape == (2, 3, *size)
    assert output.min() >= 0 and output.max() <= 1


@pytest.mark.parametrize("size", [(5, 7), (6, 6), (1, 3)])
def test_resize_convolution_equals_upsampling_then_convolving(size: tuple[int, int]) -> None:
    """The phase-wise computation gives what nearest upsampling + reflection padding + the 3x3
    convolution give, on odd and even sizes."""
    torch.manual_seed(0)
    layer = ResizeConv(4, 5)
    x = torch.rand(2, 4, *size)
    enlarged = F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1),
                     mode="reflect")
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.conv(enlarged), rtol=0, atol=1e-5)


def test_no_checkerboard_artefacts(net: TransformerNet, mirror_dir: Path) -> None:
    """Even untrained, the network puts almost none of its output's energy at the checkerboard
    frequency; the same network with stride-2 transposed convolutions puts a large share there
    (measured on this photo over 10 seeds: at most 0.003 against at least 0.11)."""
    photo = load_image(mirror_dir / "content" / "tubingen.jpg", size=64)
    transposed = TransformerNet().eval()
    transposed.load_state_dict(net.state_dict())
    for index, channels in ((0, 64), (3, 32)):
        in_channels = transposed.decoder[index].conv.in_channels
        transposed.decoder[index] = nn.ConvTranspose2d(in_channels, channels, 3, 2, padding=1,
                                                       output_padding=1, bias=False)
    with torch.no_grad():
        assert checkerboard_share(net(photo)) < 0.02
        assert checkerboard_share(transposed(photo)) > 0.05


# --------------------------------------------------------------------------- training


def test_training_reduces_the_loss(photos: list[Path], painting: torch.Tensor) -> None:
    steps: list[int] = []
    preview = torch.rand(1, 3, 20, 28)
    result = train(painting, photos, steps=12, size=32, backbone=HED, progress=False,
                   callback=lambda step, losses, net: steps.append(step), preview=preview,
                   preview_every=5)
    totals = [h["total"] for h in result.history]
    assert result.steps_done == len(totals) == 12
    assert steps == list(range(1, 13))
    assert np.mean(totals[-2:]) < 0.95 * np.mean(totals[:2])
    assert not result.net.training
    assert sorted(result.previews) == [5, 10, 12]
    assert torch.equal(result.previews[12], stylize(result.net, preview))
    assert not torch.equal(result.previews[5], result.previews[12])


def test_multi_scale_training_at_one_scale_is_single_scale_training(
        photos: list[Path], painting: torch.Tensor) -> None:
    """``scales=[s]`` is exactly ``scale=s`` with the painting at long side ``s``."""
    large = F.interpolate(painting, scale_factor=2, mode="bilinear")
    multi = train(large, photos, steps=3, size=16, scales=[40], backbone=HED, progress=False)
    single = train(resize(large, 40), photos, steps=3, size=16, scale=40, backbone=HED,
                   progress=False)
    assert multi.history == single.history
    assert all(torch.equal(a, b) for a, b in zip(multi.net.state_dict().values(),
                                                  single.net.state_dict().values(), strict=True))


def test_multi_scale_training_scores_each_batch_against_the_painting_at_its_size(
        photos: list[Path], painting: torch.Tensor) -> None:
    large = F.interpolate(painting, scale_factor=2, mode="bilinear")
    seen: list[torch.Tensor] = []

    class Recording(PerceptualLoss):
        def forward(self, image: torch.Tensor) -> LossTerms:
            seen.append(self.style_targets["relu1_1"].clone())
            return super().forward(image)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("stylelib.fast.PerceptualLoss", Recording)
        train(large, photos, steps=4, size=16, scales=[24, 48], backbone=HED, progress=False)
    expected = {}
    for side in (24, 48):
        loss = PerceptualLoss(backbone=HED)
        loss.set_style(resize(large, side))
        expected[side] = loss.style_targets["relu1_1"]
    assert not torch.allclose(expected[24], expected[48])
    assert [min(expected, key=lambda s: float((g - expected[s]).abs().max())) for g in seen] == [
        24, 48, 24, 48]
    with pytest.raises(StylelibError, match=r"scales \(several\), not both"):
        train(large, photos, steps=1, size=16, scale=24, scales=[24], progress=False)


def test_bf16_training_follows_float32(photos: list[Path], painting: torch.Tensor) -> None:
    """Autocast changes the numbers a little (it ran), not the loss the network learns from."""
    runs = [train(painting, photos, steps=2, size=32, backbone=HED, progress=False, bf16=bf16)
            for bf16 in (False, True)]
    full, half = (run.history[0]["total"] for run in runs)
    assert full != half
    assert half == pytest.approx(full, rel=0.02)
    assert all(p.dtype == torch.float32 for p in runs[1].net.parameters())


def test_training_can_start_from_saved_weights(net: TransformerNet, photos: list[Path],
                                               painting: torch.Tensor, tmp_path: Path) -> None:
    """A run starting from saved weights begins with those weights."""
    saved = save_weights(net, tmp_path / "first.safetensors", {"note": "random"})
    second = train(painting, photos, steps=1, batch_size=2, size=32, backbone=HED, seed=1,
                   progress=False, start_from=saved, lr=1e-12, warmup=0)
    first_weights = load_weights(saved).state_dict()
    for name, tensor in second.net.state_dict().items():
        assert torch.allclose(tensor, first_weights[name], atol=1e-6), name
    with pytest.raises(StylelibError, match="No weights file at"):
        train(painting, photos, steps=1, size=32, backbone=HED, start_from=tmp_path / "none")


@pytest.mark.parametrize(
    ("argument", "value"),
    [("steps", 0), ("batch_size", 0), ("checkpoint_every", 1.5), ("warmup", -1),
     ("cooldown", -1), ("lr", 0.0),
     ("lr", float("nan")), ("seed", -1), ("size", 8)],
)
def test_train_validates_its_arguments(photos: list[Path], painting: torch.Tensor,
                                       argument: str, value: object) -> None:
    settings: dict[str, object] = {"steps": 1, argument: value}
    with pytest.raises(StylelibError, match=argument):
        train(painting, photos, **settings)


# --------------------------------------------------------------------------- inference


def test_stylize_returns_an_ordinary_tensor(net: TransformerNet, photo: torch.Tensor) -> None:
    """Inference mode inside, but callers may modify the result or use it in autograd."""
    result = stylize(net, photo)
    assert result.shape == photo.shape
    assert not result.is_inference()
    result.clamp_(0, 1)
    with pytest.raises(ImageError, match="one RGB image"):
        stylize(net, torch.rand(2, 3, 32, 32))


def test_tiles_with_whole_image_norms_paint_the_untiled_picture(
        net: TransformerNet, mirror_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 270x340 photo in two 272 px tiles (overlapping by 204 px): every instance
    norm uses the whole photo's statistics, so the result is the untiled one, seam-free; with
    each tile's own statistics (one tile's network alone) it would not be."""
    monkeypatch.setenv("STYLELIB_BF16", "0")
    photo = load_image(mirror_dir / "content" / "tubingen.jpg", 340)[..., :270, :]
    whole = stylize(net, photo)
    tiled = stylize(net, photo, 272)
    assert tiled.shape == photo.shape and not tiled.is_inference()
    assert psnr(tiled, whole) > 60
    parts = layout(272, 340, 272, OVERLAP, 4)
    assert seam_ratio(tiled, parts) == pytest.approx(seam_ratio(whole, parts), rel=0.01)
    own_statistics = torch.cat([stylize(net, photo[..., :, :172]),
                                stylize(net, photo[..., :, 172:])], -1)
    assert psnr(own_statistics, whole) < psnr(tiled, whole) - 20


def test_onnx_export_matches_pytorch(net: TransformerNet, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported graph has dynamic height and width: sizes other than the traced one agree
    (with PyTorch in float32: tests/test_precision.py measures bfloat16)."""
    import onnxruntime

    monkeypatch.setenv("STYLELIB_BF16", "0")

    path = export_onnx(net, tmp_path / "net.onnx", size=32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in ((33, 47), (17, 90)):
        image = torch.rand(1, 3, *size)
        (output,) = session.run(None, {"image": image.numpy()})
        assert output.shape == (1, 3, *size)
        assert np.abs(output - stylize(net, image).numpy()).max() < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


# --------------------------------------------------------------------------- weight files


def test_weights_round_trip_in_fp16(net: TransformerNet, photo: torch.Tensor, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLELIB_BF16", "0")  # the weights' rounding alone
    card = {"style": "The Starry Night", "steps": "12"}
    path = save_weights(net, tmp_path / "net.safetensors", card)
    assert path.stat().st_size < 3_500_000  # 1.68 M parameters at 2 bytes each
    loaded = load_weights(path)
    assert loaded.card == card
    assert not loaded.training
    for name, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, net.state_dict()[name], rtol=1e-3, atol=1e-6)
    assert (stylize(loaded, photo) - stylize(net, photo)).abs().max() < 1e-2


# --------------------------------------------------------------------------- the temporal term


class _Echo(torch.nn.Module):
    """A network that paints every picture as itself: it follows any motion exactly."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image


class _Flicker(torch.nn.Module):
    """A network that adds fresh noise to every picture: it follows no motion."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image + 0.2 * torch.randn_like(image)


def test_temporal_term_is_the_grain_for_a_network_that_follows_motion(photo: torch.Tensor
                                                                      ) -> None:
    batch = torch.cat([photo, photo.flip(-1)])
    echo, flicker = _Echo(), _Flicker()
    still = fast.temporal_term(echo, batch, echo(batch), seed=3)  # type: ignore[arg-type]
    assert still == pytest.approx(fast.GRAIN ** 2, rel=0.5)
    shaking = fast.temporal_term(flicker, batch, flicker(batch), seed=3)  # type: ignore[arg-type]
    assert shaking > 100 * still
    again = fast.temporal_term(echo, batch, echo(batch), seed=3)  # type: ignore[arg-type]
    assert torch.equal(still, again)


def test_training_with_the_temporal_term_logs_it_and_resumes_exactly(
        photos: list[Path], painting: torch.Tensor, tmp_path: Path) -> None:
    """Each step's motion comes from the step's own seed, so a stopped run resumed from its
    checkpoint ends with the uninterrupted run's weights, bit for bit."""
    settings = {"size": 32, "backbone": HED, "progress": False, "temporal_weight": 50.0,
                "checkpoint_every": 1, "seed": 1}
    whole = train(painting, photos, steps=4, checkpoint=tmp_path / "whole.safetensors",
                  **settings)  # type: ignore[arg-type]
    assert all(h["temporal"] > 0 for h in whole.history)
    train(painting, photos, steps=2, checkpoint=tmp_path / "cut.safetensors",
          **settings)  # type: ignore[arg-type]
    resumed = train(painting, photos, steps=4, checkpoint=tmp_path / "cut.safetensors",
                    **settings)  # type: ignore[arg-type]
    assert [h["temporal"] for h in resumed.history] == pytest.approx(
        [h["temporal"] for h in whole.history], rel=1e-5)
    for name, value in whole.net.state_dict().items():
        torch.testing.assert_close(resumed.net.state_dict()[name], value, rtol=0, atol=0)
