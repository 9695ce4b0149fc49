"""Tests for stylelib.gatys: the optimiser loop, stylize's options and texture synthesis.

Images are 32 px on the long side and runs take a handful of steps: enough for the loss to
fall measurably, little enough for the whole module to run in seconds on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from stylelib import gatys
from stylelib.colour import rgb_to_yiq
from stylelib.errors import ImageError, StylelibError
from stylelib.gatys import GatysResult, default_scales, optimize, stylize, synthesize_texture
from stylelib.images import load_image
from stylelib.losses import LossTerms, PerceptualLoss
from stylelib.metrics import psnr

HED = "vgg16-hed"
STEPS = 5


@pytest.fixture(scope="module")
def stylised(photo: torch.Tensor, painting: torch.Tensor) -> GatysResult:
    """One default (L-BFGS, content-initialised) run shared by the checks on its output."""
    return stylize(photo, painting, steps=STEPS, backbone=HED, progress=False)


def chrominance(image: torch.Tensor) -> torch.Tensor:
    return rgb_to_yiq(image)[:, 1:]


# --------------------------------------------------------------------------- optimize


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimize_reduces_the_loss(
    perceptual: PerceptualLoss, photo: torch.Tensor, optimizer: str
) -> None:
    """Starting at the photo the content term is 0 and the style term is large, so a few
    gradient steps on the pixels must cut the total by a clear margin (here: a fifth)."""
    steps_seen: list[int] = []
    image, history = optimize(
        photo, perceptual, steps=STEPS, optimizer=optimizer,  # type: ignore[arg-type]
        progress=False, callback=lambda step, x: steps_seen.append(step),
    )
    assert len(history) == STEPS
    assert history[0]["content"] == 0.0
    assert history[-1]["total"] < 0.8 * history[0]["total"]
    assert steps_seen == list(range(STEPS))
    assert image.shape == photo.shape
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert not image.requires_grad
    assert (image - photo).abs().max() > 0.01, "the pixels did not change"
    assert perceptual(image).total.item() < history[0]["total"]


def test_optimize_takes_an_image_laid_out_in_any_order(perceptual: PerceptualLoss,
                                                      photo: torch.Tensor) -> None:
    """An image that is a permuted view (channels last in memory, as a decoded video frame or
    an array from OpenCV is before it is copied): L-BFGS must still run on it."""
    channels_last = photo.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not channels_last.is_contiguous()
    image, history = optimize(channels_last, perceptual, steps=2, progress=False)
    assert len(history) == 2 and image.shape == photo.shape


def test_optimize_leaves_its_input_alone(perceptual: PerceptualLoss, photo: torch.Tensor) -> None:
    before = photo.clone()
    optimize(photo, perceptual, steps=1, optimizer="adam", progress=False)
    assert torch.equal(photo, before)


def test_optimize_reports_divergence() -> None:
    class Exploding(nn.Module):
        def forward(self, image: torch.Tensor) -> LossTerms:
            total = image.sum() * float("nan")
            zero = image.new_zeros(())
            return LossTerms(total, zero, zero, zero)

    with pytest.raises(StylelibError, match=r"The loss diverged \(NaN/inf\)"):
        optimize(torch.rand(1, 3, 16, 16), Exploding(), steps=2, optimizer="adam",  # type: ignore[arg-type]
                 progress=False)


def test_an_lbfgs_overshoot_sends_the_image_back_to_the_best_one() -> None:
    class SpikeAtThirdEvaluation(nn.Module):
        """A smooth bowl whose third evaluation reports a loss 10^6 too high."""

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[torch.Tensor] = []

        def forward(self, image: torch.Tensor) -> LossTerms:
            self.seen.append(image.detach().clone())
            total = (image - 0.3).pow(2).sum() + (1e6 if len(self.seen) == 3 else 0.0)
            zero = image.new_zeros(())
            return LossTerms(total, zero, zero, zero)

    loss = SpikeAtThirdEvaluation()
    optimize(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), loss,  # type: ignore[arg-type]
             steps=5, progress=False)
    best = min(loss.seen[:2], key=lambda image: float((image - 0.3).pow(2).sum()))
    assert not torch.equal(loss.seen[2], best)
    assert torch.equal(loss.seen[3], best)  # after the spike: back to the best image seen


def test_gram_matching_that_keeps_overshooting_still_converges(mirror: Path) -> None:
    """Matching relu1_1 and relu2_1 from noise on VGG-19 overshoots again and again (L-BFGS has
    no line search). Without the restart it ended at 0.86 of its first loss on 2 threads (where
    it ends depends on rounding, so the deterministic test above pins the mechanism)."""
    texture = synthesize_texture(load_image("starry_night", 128), size=64, steps=60,
                                 style_layers=["relu1_1", "relu2_1"], backbone="vgg19-caffe",
                                 progress=False)
    assert texture.history[-1]["total"] < 0.01 * texture.history[0]["total"]
    assert max(h["total"] for h in texture.history) > 5 * texture.history[0]["total"]


@pytest.mark.parametrize("steps", [0, -1, True, 2.5])
def test_optimize_bad_steps(perceptual: PerceptualLoss, photo: torch.Tensor, steps: object) -> None:
    with pytest.raises(StylelibError, match=r"steps must be a positive integer, got"):
        optimize(photo, perceptual, steps=steps, progress=False)  # type: ignore[arg-type]


def test_optimize_bad_optimizer(perceptual: PerceptualLoss, photo: torch.Tensor) -> None:
    with pytest.raises(StylelibError, match="optimizer must be 'lbfgs' or 'adam', got 'sgd'"):
        optimize(photo, perceptual, steps=1, optimizer="sgd", progress=False)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- stylize


def test_stylize_result(stylised: GatysResult, photo: torch.Tensor) -> None:
    assert stylised.image.shape == photo.shape
    assert stylised.image.min() >= 0.0 and stylised.image.max() <= 1.0
    assert len(stylised.history) == STEPS
    assert all(entry["scale"] == 0 for entry in stylised.history)
    assert stylised.history[-1]["total"] < stylised.history[0]["total"]
    assert stylised.seconds > 0


def test_stylize_with_adam_reduces_the_loss(photo: torch.Tensor, painting: torch.Tensor) -> None:
    result = stylize(photo, painting, steps=STEPS, optimizer="adam", backbone=HED, progress=False)
    assert len(result.history) == STEPS
    assert result.history[-1]["total"] < 0.9 * result.history[0]["total"]


def test_stylize_coarse_to_fine(mirror_dir: Path) -> None:
    content = load_image(mirror_dir / "content" / "tubingen.jpg", size=48)  # 48 x 36
    style = load_image(mirror_dir / "style" / "starry_night.jpg", size=48)
    seen: list[tuple[int, ...]] = []
    result = stylize(
        content, style, steps=3, scales=2, backbone=HED, progress=False,
        callback=lambda step, x: seen.append(tuple(x.shape[-2:])),
    )
    assert result.image.shape == content.shape
    assert [entry["scale"] for entry in result.history] == [0, 0, 0, 1, 1, 1]
    # The first level works at half the size (24 x 18), the second at full size.
    assert seen == [(18, 24)] * 3 + [(36, 48)] * 3


def test_levels_above_the_tile_are_optimised_in_tiles_to_the_same_picture(
    monkeypatch: pytest.MonkeyPatch, mirror_dir: Path
) -> None:
    """At 640 px in two levels with 320 px tiles, the 320 px level is solved whole and the
    640 px one in tiles, with the same steps as without tiles and nearly the same picture."""
    content = load_image(mirror_dir / "content" / "tubingen.jpg", size=640)
    style = load_image(mirror_dir / "style" / "starry_night.jpg", size=320)
    tiled_sides: list[int] = []
    real = gatys.TiledLoss

    def spied(loss: PerceptualLoss, tile: int) -> gatys.TiledLoss:
        made = real(loss, tile)
        original = made.set_content

        def set_content(image: torch.Tensor) -> None:
            tiled_sides.append(max(image.shape[-2:]))
            original(image)

        made.set_content = set_content  # type: ignore[method-assign]
        return made

    monkeypatch.setattr(gatys, "TiledLoss", spied)
    options = {"steps": 2, "scales": 2, "backbone": HED, "bf16": False, "progress": False}
    tiled = stylize(content, style, tile=320, **options)  # type: ignore[arg-type]
    assert tiled_sides == [640]
    whole = stylize(content, style, **options)  # type: ignore[arg-type]
    assert tiled_sides == [640]
    assert tiled.image.shape == content.shape
    assert [entry["scale"] for entry in tiled.history] == [0, 0, 1, 1]
    assert [entry["scale"] for entry in whole.history] == [0, 0, 1, 1]
    assert psnr(tiled.image, whole.image) > 40
    with pytest.raises(StylelibError, match="tile must be a positive integer"):
        stylize(content, style, tile=0, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("steps", "side", "taken"), [(100, 512, 100), (100, 1024, 100),
                                                       (100, 2048, 25), (100, 4096, 6),
                                                       (3, 4096, 1)])
def test_levels_above_1024_px_take_fewer_steps(steps: int, side: int, taken: int) -> None:
    assert gatys.level_steps(steps, side) == taken


@pytest.mark.parametrize(("side", "levels"), [(32, 1), (256, 1), (257, 2), (384, 2), (511, 2),
                                             (512, 3), (1024, 4), (2048, 5)])
def test_default_pyramid_starts_between_128_and_255_px_above_the_books_size(
    side: int, levels: int
) -> None:
    assert default_scales(side) == levels
    if levels > 1:
        assert 128 <= side // 2 ** (levels - 1) < 256


def test_large_outputs_are_solved_coarse_to_fine_by_default(
    monkeypatch: pytest.MonkeyPatch, mirror_dir: Path, photo: torch.Tensor,
    painting: torch.Tensor,
) -> None:
    """Without ``scales``, ``stylize`` asks :func:`default_scales` for the output's side (a
    stand-in rule keeps the test small); an explicit ``scales`` wins; and an image too narrow
    for the rule's coarsest level gets fewer levels instead of a stretched one."""
    asked: list[int] = []

    def two_levels(side: int) -> int:
        asked.append(side)
        return 2

    monkeypatch.setattr(gatys, "default_scales", two_levels)
    wide = load_image(mirror_dir / "content" / "tubingen.jpg", size=48)  # 48 x 36
    by_default = stylize(wide, painting, steps=1, backbone=HED, progress=False)
    assert asked == [48]
    assert [entry["scale"] for entry in by_default.history] == [0, 1]
    told = stylize(wide, painting, steps=1, scales=1, backbone=HED, progress=False)
    assert [entry["scale"] for entry in told.history] == [0] and asked == [48]
    narrow = stylize(photo, painting, steps=1, backbone=HED, progress=False)  # 32 x 24: 12 px
    assert [entry["scale"] for entry in narrow.history] == [0]


def test_stylize_starts_from_the_content_or_from_noise(
    photo: torch.Tensor, painting: torch.Tensor
) -> None:
    from_noise = stylize(photo, painting, steps=1, init="noise", backbone=HED, progress=False)
    assert from_noise.history[0]["content"] > 0.1
    start = torch.full_like(photo, 0.5)
    from_tensor = stylize(photo, painting, steps=1, init=start, backbone=HED, progress=False)
    assert from_tensor.history[0]["content"] > 0.1
    assert from_tensor.history[0]["content"] != from_noise.history[0]["content"]


def test_noise_init_is_seeded(photo: torch.Tensor, painting: torch.Tensor) -> None:
    def run(seed: int) -> GatysResult:
        return stylize(photo, painting, steps=1, init="noise", seed=seed, backbone=HED,
                       progress=False)

    first, again, other = run(1), run(1), run(2)
    assert torch.equal(first.image, again.image)
    assert first.history == again.history
    assert (first.image - other.image).abs().mean() > 0.1  # independent uniform noise: ~1/3


def test_preserve_color_keeps_the_photos_chrominance(
    stylised: GatysResult, photo: torch.Tensor, painting: torch.Tensor
) -> None:
    kept = stylize(photo, painting, steps=STEPS, preserve_color=True, backbone=HED, progress=False)
    assert kept.image.shape == photo.shape
    kept_error = (chrominance(kept.image) - chrominance(photo)).abs().mean().item()
    plain_error = (chrominance(stylised.image) - chrominance(photo)).abs().mean().item()
    # Only pixels clamped back into [0, 1] may move the chrominance.
    assert kept_error < 2e-3
    assert kept_error < plain_error / 2, "preserve_color kept no more colour than a plain run"
    luminance_change = (rgb_to_yiq(kept.image)[:, 0] - rgb_to_yiq(photo)[:, 0]).abs().mean()
    assert luminance_change > 0.005, "the luminance was not stylised"


def test_stylize_bad_options(photo: torch.Tensor, painting: torch.Tensor) -> None:
    with pytest.raises(StylelibError, match="optimizer must be 'lbfgs' or 'adam', got 'sgd'"):
        stylize(photo, painting, steps=1, optimizer="sgd", backbone=HED,  # type: ignore[arg-type]
                progress=False)
    with pytest.raises(StylelibError, match="init must be 'content', 'noise' or a tensor, got 'x'"):
        stylize(photo, painting, steps=1, init="x", backbone=HED, progress=False)  # type: ignore[arg-type]
    with pytest.raises(StylelibError, match="steps must be a positive integer, got 0"):
        stylize(photo, painting, steps=0, backbone=HED, progress=False)
    with pytest.raises(StylelibError, match="scales must be a positive integer, got 0"):
        stylize(photo, painting, steps=1, scales=0, backbone=HED, progress=False)


def test_stylize_coarsest_scale_too_small(photo: torch.Tensor, painting: torch.Tensor) -> None:
    # 32 px in three scales: 8, 16, 32; the backbone needs at least 16 px.
    message = "scales=3 makes the coarsest scale 8 px, below the backbone's 16 px"
    with pytest.raises(ImageError, match=message):
        stylize(photo, painting, steps=1, scales=3, backbone=HED, progress=False)


def test_stylize_bad_images(photo: torch.Tensor, painting: torch.Tensor) -> None:
    broken = photo.clone()
    broken[0, 0, 0, 0] = float("nan")
    with pytest.raises(ImageError, match="content contains NaN"):
        stylize(broken, painting, steps=1, backbone=HED, progress=False)
    with pytest.raises(ImageError, match=r"style must have shape \[1, 3, H, W\]"):
        stylize(photo, painting[:, :1], steps=1, backbone=HED, progress=False)


# --------------------------------------------------------------------------- textures


def test_synthesize_texture(painting: torch.Tensor) -> None:
    result = synthesize_texture(painting, size=32, steps=8, backbone=HED, progress=False)
    assert result.image.shape == (1, 3, 32, 32)
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert len(result.history) == 8
    assert all(entry["content"] == 0.0 for entry in result.history)
    assert result.history[-1]["style"] < 0.8 * result.history[0]["style"]


def test_synthesize_texture_bad_size(painting: torch.Tensor) -> None:
    with pytest.raises(ImageError, match=r"size \(pixels\) must be an integer >= 16, got 8"):
        synthesize_texture(painting, size=8, steps=1, backbone=HED, progress=False)


def test_synthesize_texture_pooling_changes_the_result(painting: torch.Tensor) -> None:
    """Average pooling is a different network from max pooling: same seed, different texture."""
    kwargs = {"size": 32, "steps": 10, "backbone": HED, "progress": False, "seed": 1}
    max_pooled = synthesize_texture(painting, **kwargs)
    avg_pooled = synthesize_texture(painting, pooling="avg", **kwargs)
    assert avg_pooled.history[-1]["style"] < avg_pooled.history[0]["style"]
    assert (max_pooled.image - avg_pooled.image).abs().max() > 1e-3
    with pytest.raises(StylelibError, match="pooling must be 'max' or 'avg'"):
        synthesize_texture(painting, pooling="min", **kwargs)
