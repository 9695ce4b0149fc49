"""Tests for stylelib.colour: YIQ conversion, luminance, and luminance-only recombination."""

from __future__ import annotations

import pytest
import torch

from stylelib.colour import (
    luminance_only,
    match_luminance,
    mean_hue,
    rgb_to_yiq,
    rotate_hue,
    to_luminance,
    yiq_to_rgb,
)


def seeded(*shape: int, seed: int = 0, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    values = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
    return low + (high - low) * values


def test_round_trip() -> None:
    image = seeded(2, 3, 8, 8)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(image)), image, atol=1e-5)
    yiq = rgb_to_yiq(image)
    assert torch.allclose(rgb_to_yiq(yiq_to_rgb(yiq)), yiq, atol=1e-5)


def test_known_colours() -> None:
    grey = torch.full((1, 3, 1, 1), 0.4)
    # Y weights sum to 1 and the I and Q rows sum to 0: a grey has no chrominance.
    assert rgb_to_yiq(grey).flatten().tolist() == pytest.approx([0.4, 0.0, 0.0], abs=1e-6)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert rgb_to_yiq(red).flatten().tolist() == pytest.approx([0.299, 0.596, 0.211], abs=1e-6)


def test_to_luminance_has_three_equal_channels() -> None:
    image = seeded(1, 3, 6, 9)
    luminance = to_luminance(image)
    assert luminance.shape == image.shape
    assert torch.equal(luminance[:, 0], luminance[:, 1])
    assert torch.equal(luminance[:, 1], luminance[:, 2])
    expected = 0.299 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]
    assert torch.allclose(luminance[:, 0], expected, atol=1e-6)
    assert luminance.is_contiguous()


def test_luminance_only_keeps_the_contents_colours() -> None:
    """Y from the stylised image, I and Q from the content (in-gamut values, so no clamping)."""
    content = seeded(1, 3, 16, 16, seed=1, low=0.35, high=0.65)
    stylised = to_luminance(seeded(1, 3, 16, 16, seed=2, low=0.3, high=0.7))
    result = luminance_only(stylised, content)
    assert result.shape == content.shape
    assert result.min() > 0.0 and result.max() < 1.0  # nothing was clamped
    out, photo, style = rgb_to_yiq(result), rgb_to_yiq(content), rgb_to_yiq(stylised)
    assert torch.allclose(out[:, 1:], photo[:, 1:], atol=1e-5)  # chrominance of the photo
    assert torch.allclose(out[:, :1], style[:, :1], atol=1e-5)  # luminance of the stylisation
    assert not torch.allclose(out[:, :1], photo[:, :1], atol=1e-2)


def test_luminance_only_clamps_to_the_valid_range() -> None:
    content = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    bright = torch.ones(1, 3, 4, 4)
    result = luminance_only(bright, content)  # white luminance with red chrominance
    assert result.min() >= 0.0 and result.max() <= 1.0


def test_match_luminance_takes_the_contents_statistics() -> None:
    style = to_luminance(seeded(1, 3, 16, 16, seed=3, low=0.0, high=0.2))
    content = seeded(1, 3, 16, 16, seed=4, low=0.3, high=0.7)
    matched = match_luminance(style, content)
    target = rgb_to_yiq(content)[:, 0]
    assert matched.min() > 0.0 and matched.max() < 1.0
    assert matched.mean().item() == pytest.approx(target.mean().item(), abs=1e-5)
    assert matched.std().item() == pytest.approx(target.std().item(), rel=1e-3)
    assert torch.equal(matched[:, 0], matched[:, 2])  # still a grey image


def test_rotate_hue_cycles_the_primaries_and_keeps_greys() -> None:
    """A third of a turn maps red to green to blue; greys lie on the axis and stay put."""
    red, green, blue = (torch.eye(3)[i].view(1, 3, 1, 1) for i in range(3))
    assert torch.allclose(rotate_hue(red, 120), green, atol=1e-6)
    assert torch.allclose(rotate_hue(green, 120), blue, atol=1e-6)
    grey = torch.full((1, 3, 4, 4), 0.37)
    assert torch.allclose(rotate_hue(grey, 77.0), grey, atol=1e-6)


def test_rotate_hue_changes_colours_but_keeps_each_pixels_channel_mean() -> None:
    """A turned image has other colours (chrominance) but every pixel keeps the mean of its
    three channels (its position along the grey axis), and a full turn gives the image back."""
    image = seeded(1, 3, 16, 16, low=0.25, high=0.75)  # away from the clamp
    turned = rotate_hue(image, 150)
    assert (rgb_to_yiq(turned)[:, 1:] - rgb_to_yiq(image)[:, 1:]).abs().mean() > 0.05
    assert torch.allclose(turned.mean(1), image.mean(1), atol=1e-6)
    assert torch.allclose(rotate_hue(image, 360), image, atol=1e-6)
    assert rotate_hue(image[0], 30).shape == (3, 16, 16)


def test_mean_hue_places_colours_on_the_wheel_and_follows_a_turn() -> None:
    """Red, green and blue sit at 0, 120 and 240 degrees; a grey has saturation 0; turning a
    reddish image by 120 degrees around the grey axis moves its mean hue to green."""
    for colour, degrees in (((0.8, 0.1, 0.1), 0.0), ((0.1, 0.8, 0.1), 120.0),
                            ((0.1, 0.1, 0.8), 240.0)):
        image = torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, 4, 5)
        hue, saturation = mean_hue(image)
        assert abs(hue - degrees) < 1e-4 and abs(saturation - 7 / 8) < 1e-6
    assert mean_hue(torch.full((3, 4, 4), 0.4))[1] == 0.0
    reddish = seeded(3, 8, 8, low=0.0, high=0.2) + torch.tensor([0.6, 0.2, 0.1]).view(3, 1, 1)
    hue, _ = mean_hue(reddish)
    turned, _ = mean_hue(rotate_hue(reddish, 120))
    assert hue < 30 and 90 < turned < 150
