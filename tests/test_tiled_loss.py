"""Tests for stylelib.tiled_loss: a perceptual loss evaluated in tiles is the whole image's.

The images are a few hundred pixels (the smallest tiles keep a 64 px margin) on the default
backbone, the command line's, in float32 and in bfloat16; the module runs in about 30 s on two
CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylelib.errors import StylelibError
from stylelib.images import load_image
from stylelib.losses import LossTerms, PerceptualLoss
from stylelib.tiled_loss import MARGIN, TiledLoss


@pytest.fixture(scope="module")
def loss(mirror_dir: Path) -> PerceptualLoss:
    """Content, style and total variation, the style set to a real painting."""
    perceptual = PerceptualLoss(style_weight=10.0, tv_weight=1.0)
    perceptual.set_style(load_image(mirror_dir / "style" / "starry_night.jpg", size=192))
    return perceptual


def _picture(mirror_dir: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo at ``size`` px and a noisy version of it to evaluate the loss on."""
    photo = load_image(mirror_dir / "content" / "tubingen.jpg", size=size)
    noise = torch.rand(photo.shape, generator=torch.Generator().manual_seed(0))
    return photo, (photo + 0.2 * (noise - 0.5)).clamp(0, 1)


def _evaluated(evaluate: object, image: torch.Tensor) -> tuple[LossTerms, torch.Tensor]:
    """A loss's terms on ``image`` and the gradient of their total."""
    pixels = image.clone().requires_grad_(True)
    assert callable(evaluate)
    terms: LossTerms = evaluate(pixels)
    terms.total.backward()
    assert pixels.grad is not None
    return terms, pixels.grad


def _compare(loss: PerceptualLoss, photo: torch.Tensor, image: torch.Tensor, tile: int,
             margin: int = MARGIN) -> tuple[dict[str, float], float, int]:
    """Each term's relative difference between whole and tiled, the gradient's relative
    error, and the number of tiles."""
    loss.set_content(photo)
    whole, whole_gradient = _evaluated(loss, image)
    tiled_loss = TiledLoss(loss, tile, margin)
    tiled_loss.set_content(photo)
    tiled, tiled_gradient = _evaluated(tiled_loss, image)
    terms = {}
    for k in ("total", "content", "style", "tv"):
        tiled_value, whole_value = (float(getattr(tiled, k).detach()),
                                     float(getattr(whole, k).detach()))
        terms[k] = abs(tiled_value - whole_value) / (abs(whole_value) or 1.0)
    error = float((tiled_gradient - whole_gradient).norm() / whole_gradient.norm())
    return terms, error, len(tiled_loss.tiles)


def test_one_tile_is_the_whole_image_loss(loss: PerceptualLoss, mirror_dir: Path) -> None:
    terms, error, tiles = _compare(loss, *_picture(mirror_dir, 150), tile=272)
    assert tiles == 1
    assert max(terms.values()) < 1e-5
    assert error < 1e-5


def test_tiles_add_up_to_the_whole_image_loss(loss: PerceptualLoss, mirror_dir: Path) -> None:
    """Four tiles of a 400 x 300 picture (its sides not on the 16 px grid): the Gram matrices
    summed over owned positions give the same terms, and the tiles' gradients the whole one's
    up to what the margins leave out of the deepest layers' view (measured: terms within
    1e-6, gradient within 0.02 % with 64 px margins, 4.2 % with 32 px)."""
    photo, image = _picture(mirror_dir, 400)
    terms, error, tiles = _compare(loss, photo, image, tile=272)
    assert tiles == 4
    assert max(terms.values()) < 1e-4
    assert error < 0.005
    assert _compare(loss, photo, image, tile=272, margin=32)[1] > 2 * error


def test_in_bfloat16_the_tiles_still_add_up(mirror_dir: Path) -> None:
    """The command line's precision where the CPU has it: the network in bfloat16, the Gram
    matrices and sums in float32; rounding differs from the whole image's passes a little
    (measured: terms within 1e-6, gradient within 0.3 %)."""
    bf16 = PerceptualLoss(style_weight=10.0, precision=torch.bfloat16)
    bf16.set_style(load_image(mirror_dir / "style" / "starry_night.jpg", size=192))
    terms, error, _ = _compare(bf16, *_picture(mirror_dir, 400), tile=272)
    assert max(terms.values()) < 1e-4
    assert error < 0.02


def test_a_loss_with_no_network_term_needs_no_pass(mirror_dir: Path) -> None:
    """Total variation alone (no content layer, style weight 0): no tile is evaluated, and the
    gradient is the whole image's."""
    smooth = PerceptualLoss(content_layers=(), content_weight=0.0, style_weight=0.0, tv_weight=1.0)
    terms, error, _ = _compare(smooth, *_picture(mirror_dir, 400), tile=272)
    assert terms["tv"] < 1e-6 and error < 1e-6


def test_the_loss_needs_its_content_and_its_size(loss: PerceptualLoss,
                                                 mirror_dir: Path) -> None:
    photo, image = _picture(mirror_dir, 200)
    tiled = TiledLoss(loss, 272)
    with pytest.raises(StylelibError, match="set_content"):
        tiled(image)
    tiled.set_content(photo)
    with pytest.raises(StylelibError, match=r"set for \(150, 200\) images"):
        tiled(image[..., :100, :])


def test_tiles_too_small_for_their_margin_are_refused(loss: PerceptualLoss) -> None:
    with pytest.raises(StylelibError, match="at least 272 px"):
        TiledLoss(loss, 271)
