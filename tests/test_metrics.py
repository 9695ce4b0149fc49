"""Tests for stylelib.metrics: perceptual errors, SSIM and Markdown tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylelib.backbones import FeatureExtractor
from stylelib.images import load_image
from stylelib.losses import PerceptualLoss
from stylelib.metrics import (
    content_error,
    markdown_table,
    perceptual_errors,
    ssim,
    style_separation,
)


def test_perceptual_errors_are_zero_at_their_own_targets(
    photo: torch.Tensor, painting: torch.Tensor, extractor: FeatureExtractor
) -> None:
    loss = PerceptualLoss(extractor=extractor)
    at_photo = perceptual_errors(photo, photo, painting, loss)
    assert at_photo["content"] == pytest.approx(0, abs=1e-6)
    assert at_photo["style"] > 0.1
    square = painting[..., :20, :20]
    assert perceptual_errors(square, photo[..., :20, :20], square, loss)["style"] < 1e-6


def test_ssim_is_one_for_the_same_image_and_low_for_noise(photo: torch.Tensor) -> None:
    assert ssim(photo, photo) == pytest.approx(1.0)
    noise = torch.rand_like(photo, generator=torch.Generator().manual_seed(0))
    assert ssim(photo, noise) < 0.3


def test_ssim_of_different_sizes_is_refused(photo: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="SSIM needs images of one size"):
        ssim(photo, photo[..., :16, :16])


def test_markdown_table_formats_numbers() -> None:
    table = markdown_table(["net", "ratio"], [["wave", 1.23456], ["scream", 2]])
    assert table.splitlines() == ["| net | ratio |", "| --- | --- |", "| wave | 1.23 |",
                                  "| scream | 2 |"]


def recoloured(photo: torch.Tensor, painting: torch.Tensor) -> torch.Tensor:
    """The photo with each channel's mean and spread taken from the painting (a crude method
    that keeps the photo and follows the painting's palette)."""
    mean, std = photo.mean((2, 3), keepdim=True), photo.std((2, 3), keepdim=True)
    target_mean = painting.mean((2, 3), keepdim=True)
    target_std = painting.std((2, 3), keepdim=True)
    return ((photo - mean) / std * target_std + target_mean).clamp(0, 1)


def test_shallow_content_error_flags_a_result_that_ignores_the_photo(
    photo: torch.Tensor, painting: torch.Tensor
) -> None:
    shallow = FeatureExtractor(["relu2_2"], "vgg16-hed")
    painted_over = torch.nn.functional.interpolate(painting, size=photo.shape[-2:])
    keeps = content_error(recoloured(photo, painting), photo, shallow)
    ignores = content_error(painted_over, photo, shallow)
    assert content_error(photo, photo, shallow) == pytest.approx(0, abs=1e-6)
    assert ignores > 0.5 and keeps < 0.5 * ignores


def test_style_separation_flags_a_method_that_paints_every_painting_alike(
    mirror: Path, photo: torch.Tensor
) -> None:
    paintings = [torch.nn.functional.interpolate(load_image(name, 32), size=photo.shape[-2:])
                 for name in ("starry_night", "the_scream", "candy")]
    statistics = FeatureExtractor(["relu1_1", "relu2_1", "relu3_1"], "vgg16-hed")
    follows = style_separation([recoloured(photo, p) for p in paintings], statistics)
    alike = style_separation([recoloured(photo, paintings[0])] * 3, statistics)
    assert alike == pytest.approx(0, abs=1e-6)
    assert follows > 0.1
    with pytest.raises(ValueError, match="at least 2 paintings"):
        style_separation([photo], statistics)
