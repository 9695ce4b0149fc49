"""Tests for stylelib.tiles: the layout covers the image, the blend leaves no trace of the
tiles, and statistics gathered tile by tile are the whole image's (property tests with
hypothesis over sizes, tiles and overlaps). The networks' tiled painting is tested beside each
network (test_fast.py, test_adain.py, test_magenta.py)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from hypothesis import given, settings
from hypothesis import strategies as st

from stylelib.errors import StylelibError
from stylelib.losses import mean_std
from stylelib.metrics import psnr, seam_ratio
from stylelib.tiles import Statistics, Tile, blend, fitted, layout, starts

BOUNDED = settings(max_examples=80, deadline=None, database=None)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    """An image size, tile, overlap and multiple that :func:`layout` accepts."""
    multiple = draw(st.sampled_from([1, 4, 8]))
    overlap = draw(st.integers(0, 40))
    smallest = -(-(2 * overlap + multiple) // multiple)  # tiles are whole multiples
    tile = draw(st.integers(smallest, smallest + 80 // multiple)) * multiple
    height = draw(st.integers(1, 200 // multiple)) * multiple
    width = draw(st.integers(1, 200 // multiple)) * multiple
    return height, width, tile, overlap, multiple


def _ownership(parts: list[Tile], height: int, width: int) -> torch.Tensor:
    """How many tiles own each pixel."""
    owners = torch.zeros(height, width)
    for part in parts:
        top, left, bottom, right = part.owned
        owners[part.top + top:part.top + bottom, part.left + left:part.left + right] += 1
    return owners


@BOUNDED
@given(layouts())
def test_every_pixel_is_painted_and_owned_once(case: tuple[int, int, int, int, int]) -> None:
    height, width, tile, overlap, multiple = case
    parts = layout(height, width, tile, overlap, multiple)
    assert torch.equal(_ownership(parts, height, width), torch.ones(height, width))
    for part in parts:
        assert part.top % multiple == 0 and part.left % multiple == 0
        assert all(edge % multiple == 0 or edge in (part.height, part.width)
                   for edge in part.owned)
        assert part.top + part.height <= height and part.left + part.width <= width
    for axis_starts, length in ((sorted({p.top for p in parts}), height),
                                (sorted({p.left for p in parts}), width)):
        size = min(tile, length)
        assert all(second - first <= size - overlap
                   for first, second in itertools.pairwise(axis_starts))


@BOUNDED
@given(layouts(), st.floats(0, 1))
def test_blending_keeps_the_size_and_a_constant_stays_constant(
        case: tuple[int, int, int, int, int], level: float) -> None:
    height, width, tile, overlap, multiple = case
    parts = layout(height, width, tile, overlap, multiple)
    image = torch.full((1, 3, height, width), level)
    result = blend(lambda window: 0.5 * window + 0.25, image, parts)
    assert result.shape == image.shape
    assert torch.allclose(result, torch.full_like(image, 0.5 * level + 0.25), atol=1e-6)


@BOUNDED
@given(layouts(), st.integers(0, 2**16))
def test_blending_what_each_tile_was_given_back_is_the_image(
        case: tuple[int, int, int, int, int], seed: int) -> None:
    height, width, tile, overlap, multiple = case
    image = torch.rand(1, 2, height, width, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(blend(lambda window: window, image,
                                layout(height, width, tile, overlap, multiple)), image,
                          atol=1e-6)


@BOUNDED
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**16))
def test_statistics_gathered_by_tiles_are_the_whole_images(rows: int, columns: int,
                                                           seed: int) -> None:
    """Features at a quarter of the size (a stride-4 network) summed over owned parts."""
    image = torch.randn(1, 3, 4 * rows, 4 * columns,
                        generator=torch.Generator().manual_seed(seed)) * 3 + 1
    gathered = Statistics()
    for part in layout(4 * rows, 4 * columns, 40, 12, 4):
        gathered.add(F.avg_pool2d(part.window(image), 4), part)
    mean, std = gathered.mean_std()
    whole_mean, whole_std = mean_std(F.avg_pool2d(image, 4))
    assert torch.allclose(mean, whole_mean, atol=1e-5)
    assert torch.allclose(std, whole_std, atol=1e-5)


@BOUNDED
@given(layouts())
def test_a_fitted_tile_needs_no_more_windows_and_overlaps_as_asked(
        case: tuple[int, int, int, int, int]) -> None:
    """:func:`fitted` shrinks the tile to the fewest windows' need: never larger, on the
    grid, the same number of windows, still overlapping by ``overlap`` with room for it, and
    one grid step smaller would need more windows (no overlap wasted)."""
    _, length, tile, overlap, multiple = case
    size = fitted(length, tile, overlap, multiple)
    assert size <= min(tile, length) and (size % multiple == 0 or size == length)
    windows = starts(length, size, overlap, multiple)
    assert len(windows) == len(starts(length, tile, overlap, multiple))
    assert all(second - first <= size - overlap
               for first, second in itertools.pairwise(windows))
    assert len(windows) == 1 or 2 * overlap + multiple <= size  # layout accepts it
    smaller = size - multiple
    if len(windows) > 1 and smaller >= 2 * overlap + multiple:
        assert len(starts(length, smaller, overlap, multiple)) > len(windows)


def test_tiles_start_evenly_and_end_at_the_edge() -> None:
    assert starts(100, 100, 10) == [0]
    assert starts(1000, 400, 90, 8) == [0, 296, 600]
    assert starts(1000, 400, 100) == [0, 300, 600]
    assert starts(90, 400, 100) == [0]


@pytest.mark.parametrize(("arguments", "message"), [
    ((64, 64, 32, 20, 1), "cannot overlap by 20"),
    ((64, 64, 32, -1, 1), "cannot overlap by -1"),
    ((63, 64, 32, 4, 4), "multiples of 4"),
    ((64, 64, 30, 4, 4), "multiples of 4"),
])
def test_impossible_layouts_are_refused(arguments: tuple[int, int, int, int, int],
                                        message: str) -> None:
    with pytest.raises(StylelibError, match=message):
        layout(*arguments)


def test_the_seam_measure_sees_a_seam_and_not_a_smooth_join() -> None:
    """A tiled copy of a smooth ramp has no seam (ratio 1); a step where tiles meet has one."""
    parts = layout(64, 128, 72, 16)
    ramp = torch.linspace(0, 1, 128).expand(1, 3, 64, 128).clone()
    joined = blend(lambda window: window, ramp, parts)
    assert seam_ratio(joined, parts) == pytest.approx(1, abs=0.02)
    stepped = blend(lambda window: window + 0.2 * (window[..., :1] > 0.3).float(), ramp, parts)
    assert seam_ratio(stepped, parts) > 1.5
    with pytest.raises(StylelibError, match="one tile"):
        seam_ratio(ramp, layout(64, 128, 128, 16))


def test_psnr_is_infinite_for_equal_images_and_falls_with_the_error() -> None:
    image = torch.rand(1, 3, 16, 16)
    assert psnr(image, image) == float("inf")
    assert psnr(image, image + 0.01) == pytest.approx(40, abs=0.01)
    assert psnr(image, image + 0.1) == pytest.approx(20, abs=0.01)
