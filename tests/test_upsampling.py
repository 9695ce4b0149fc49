"""Tests for stylelib.upsampling: the working size a print is painted at, and the enlargement
that keeps the painted marks and adds the photo's fine detail."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from stylelib.errors import StylelibError
from stylelib.images import resize
from stylelib.metrics import psnr
from stylelib.upsampling import WORKING, guided_upsample, painting_size, working_size


def test_the_working_size_follows_style_scale_and_never_exceeds_the_print() -> None:
    assert working_size(4 * WORKING, 1) == WORKING
    assert working_size(WORKING // 2, 1) == WORKING // 2
    assert working_size(4 * WORKING, 0.25) == 4 * WORKING
    assert working_size(4 * WORKING, 2) == WORKING // 2
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(StylelibError, match="--style-scale must be a positive number"):
            working_size(1024, bad)
    # style_scale times the working size: a print's painting keeps the 1024 px one's pixels
    assert painting_size(working_size(4 * WORKING, 0.25), 0.25) == WORKING
    assert painting_size(working_size(4 * WORKING, 2), 2) == WORKING
    assert painting_size(working_size(WORKING // 2, 1), 1) == WORKING // 2


def test_the_photos_fine_detail_comes_back_where_the_painting_follows_it() -> None:
    """'Painting' the photo as itself at half size: the enlargement with the photo's detail
    is much closer to the photo than the plain bicubic enlargement."""
    generator = torch.Generator().manual_seed(0)
    photo = F.interpolate(torch.rand(1, 3, 32, 32, generator=generator), size=(128, 128),
                          mode="nearest")  # sharp edges a half-size copy loses
    small = resize(photo, 64)
    upsampled = guided_upsample(small, photo)
    bicubic = F.interpolate(small, size=(128, 128), mode="bicubic",
                            align_corners=False).clamp(0, 1)
    assert upsampled.shape == photo.shape
    assert float(upsampled.min()) >= 0 and float(upsampled.max()) <= 1
    assert psnr(upsampled, photo) > psnr(bicubic, photo) + 2


def test_marks_on_a_flat_part_of_the_photo_stay_as_painted() -> None:
    """Where the photo is flat there is no detail to add: the marks are enlarged unchanged."""
    marks = torch.rand(1, 3, 40, 60, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
    flat = torch.full((1, 3, 80, 120), 0.4)
    expected = F.interpolate(marks, size=(80, 120), mode="bicubic",
                             align_corners=False).clamp(0, 1)
    assert torch.allclose(guided_upsample(marks, flat), expected, atol=1e-5)
