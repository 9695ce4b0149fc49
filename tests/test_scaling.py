"""Chapter 7's large prints: the same region of prints of different sizes, how costs grow, and
what painting in tiles changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylelib import scaling
from stylelib.errors import StylelibError
from stylelib.images import resize_to, save_image


def _scene(height: int, width: int) -> torch.Tensor:
    """A smooth picture: the same at every size, up to sampling."""
    y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    return torch.stack([x, y, (x * 3).sin().abs()])[None]


def test_same_region_shows_the_largest_pixel_for_pixel_and_the_smaller_enlarged(
        tmp_path: Path) -> None:
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    save_image(_scene(48, 64), small)
    save_image(_scene(192, 256), large)
    crops = scaling.same_region([small, large], centre=(0.5, 0.5), share=0.25)
    assert [tuple(c.shape) for c in crops] == [(1, 3, 64, 64)] * 2
    assert torch.allclose(crops[1], _scene(192, 256)[..., 64:128, 96:160], atol=1 / 255)
    assert (crops[0] - crops[1]).abs().mean() < 0.02
    elsewhere = scaling.same_region([large], centre=(0.1, 0.2), share=0.25)[0]
    assert (elsewhere - crops[1]).abs().mean() > 0.1
    corner = scaling.same_region([large], centre=(1.0, 1.0), share=0.25)[0]
    assert torch.allclose(corner, resize_to(_scene(192, 256)[..., -64:, -64:], (64, 64)),
                          atol=1 / 255)


def test_growth_compares_each_method_s_largest_picture_with_its_smallest() -> None:
    costs = [scaling.Cost("fast", 4096, 8.0, 1.5), scaling.Cost("fast", 512, 2.0, 0.75),
             scaling.Cost("magenta", 512, 3.0, 1.0), scaling.Cost("magenta", 1024, 3.0, 1.2)]
    rows = [line.split(" | ") for line in scaling.growth(costs).splitlines()[2:]]
    assert rows == [["| fast", "512 to 4096", "64x", "4.0x", "2.0x |"],
                    ["| magenta", "512 to 1024", "4x", "1.0x", "1.2x |"]]


def test_the_fast_network_paints_the_same_picture_in_tiles(mirror: Path, tmp_path: Path
                                                            ) -> None:
    """Through ``stylize``, as chapter 7 runs it: whole-image norms make the tiles exact up to
    the 8-bit file, and both pictures are kept for the chapter to show."""
    assert scaling.tiled_against_whole("fast", tmp_path / "whole.png") > 40
    assert {p.name for p in tmp_path.iterdir()} == {"whole.png", "whole-tiled.png"}


def test_a_print_that_fails_names_the_method_and_size(mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(StylelibError, match="fast at 8 px failed"):
        scaling.measure("fast", 8, out=tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()
