"""Tests for stylelib.metrics: perceptual errors, SSIM and Markdown tables."""

from __future__ import annotations

import pytest
import torch

from stylelib.backbones import FeatureExtractor
from stylelib.losses import PerceptualLoss
from stylelib.metrics import markdown_table, perceptual_errors, ssim


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
