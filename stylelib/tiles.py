"""Painting a picture too large for memory in overlapping tiles that leave no seam.

A one-pass network is applied to windows of the photo; neighbouring windows overlap, and in
each overlap one tile's result fades linearly into the next, so no border shows. Pixels near a
window's edge see reflection padding instead of their real neighbours, so the fade skips the
outer quarter of every overlap. What a network normalises by the whole image's statistics
(instance norm, AdaIN's content mean and deviation) would change from tile to tile;
:class:`Statistics` gathers such statistics over the whole image, each pixel counted once by
the one tile that *owns* it, so a tiled result matches the untiled one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from stylelib.errors import StylelibError
from stylelib.images import pad_to_multiple

Box = tuple[int, int, int, int]
"""``(top, left, bottom, right)`` in pixels, bottom and right exclusive."""


@dataclass(frozen=True)
class Tile:
    """One window of the image: where it is, which of its pixels it owns, how it is blended."""

    top: int
    left: int
    height: int
    width: int
    owned: Box
    """The part of the window whose statistics this tile contributes, in window pixels; the
    tiles' owned parts cover the image exactly once."""
    weight: torch.Tensor
    """``[height, width]`` blending weights: 1 inside, fading to 0 across an overlap."""

    def window(self, image: torch.Tensor) -> torch.Tensor:
        """The window's pixels of ``[B, C, H, W]`` ``image``."""
        return image[..., self.top:self.top + self.height, self.left:self.left + self.width]

    def owned_part(self, features: torch.Tensor, stride: int) -> torch.Tensor:
        """The owned positions of ``[..., h, w]`` features of the window computed ``stride``
        times smaller than the image (a window cut at the image's edge is cut here too)."""
        top, left, bottom, right = (edge // stride for edge in self.owned)
        return features[..., top:bottom, left:right]


def starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Where windows of ``tile`` pixels start to cover ``length`` (a multiple of ``multiple``),
    spread evenly, neighbours overlapping by at least ``overlap``, each start a multiple of
    ``multiple`` (a network that halves the size k times needs ``2**k``)."""
    if length <= tile:
        return [0]
    reach = tile - overlap - (multiple - 1)  # rounding a start down moves it < multiple
    count = math.ceil((length - tile) / reach) + 1
    spread = (length - tile) / (count - 1)
    return [int(i * spread) // multiple * multiple for i in range(count - 1)] + [length - tile]


def _ramp(length: int, rise: tuple[int, int] | None, fall: tuple[int, int] | None
          ) -> torch.Tensor:
    """1 along ``length`` pixels, rising from 0 over the window-relative span ``rise`` and
    falling to 0 over ``fall``; the outer quarter of each span stays 0."""
    position = torch.arange(length, dtype=torch.float64) + 0.5
    weight = torch.ones(length, dtype=torch.float64)
    if rise is not None:
        begin, end = rise
        skip = (end - begin) / 4
        weight = weight.minimum(((position - begin - skip) / (end - begin - 2 * skip)).clamp(0, 1))
    if fall is not None:
        begin, end = fall
        skip = (end - begin) / 4
        weight = weight.minimum(((end - skip - position) / (end - begin - 2 * skip)).clamp(0, 1))
    return weight


def _axis(length: int, tile: int, overlap: int, multiple: int
          ) -> list[tuple[int, int, tuple[int, int], torch.Tensor]]:
    """Per window along one axis: start, size, owned span and blending ramp."""
    firsts = starts(length, tile, overlap, multiple)
    size = min(tile, length)
    ends = [first + size for first in firsts]
    # Each pair of neighbours splits its overlap at the middle (on the multiple's grid).
    borders = [0] + [(firsts[i + 1] + ends[i]) // 2 // multiple * multiple
                     for i in range(len(firsts) - 1)] + [length]
    windows = []
    for i, first in enumerate(firsts):
        rise = (0, ends[i - 1] - first) if i > 0 else None
        fall = (firsts[i + 1] - first, size) if i + 1 < len(firsts) else None
        windows.append((first, size, (borders[i] - first, borders[i + 1] - first),
                        _ramp(size, rise, fall)))
    return windows


def layout(height: int, width: int, tile: int | tuple[int, int], overlap: int,
           multiple: int = 1) -> list[Tile]:
    """The tiles covering a ``height`` x ``width`` image, row by row (see :func:`starts`);
    ``tile`` is a square's side or a ``(height, width)``."""
    tall, wide = (tile, tile) if isinstance(tile, int) else tile
    # an axis that one window covers has no overlap to fit
    tight = min([side for side, length in ((tall, height), (wide, width)) if length > side],
                default=None)
    if overlap < 0 or (tight is not None and 2 * overlap + multiple > tight):
        raise StylelibError(
            f"Tiles of {tall}x{wide} px cannot overlap by {overlap} px: use an overlap from 0 to "
            f"{max(((tight or 0) - multiple) // 2, 0)} px, or larger tiles.")
    if height % multiple or width % multiple or tall % multiple or wide % multiple:
        raise StylelibError(
            f"The image ({height}x{width}) and the tile ({tall}x{wide} px) must be multiples of "
            f"{multiple} px: pad the image first (stylelib.images.pad_to_multiple).")
    return [Tile(top, left, tile_height, tile_width,
                 (rows[0], columns[0], rows[1], columns[1]),
                 (row_ramp[:, None] * column_ramp[None, :]).float())
            for top, tile_height, rows, row_ramp in _axis(height, tall, overlap, multiple)
            for left, tile_width, columns, column_ramp in _axis(width, wide, overlap, multiple)]


def fitted(length: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The smallest window (a multiple of ``multiple``, with room for an overlap each side as
    :func:`layout` asks) that covers ``length`` in as few windows as ``tile`` does
    (:func:`starts`): little more overlap than asked for, so little work is wasted."""
    count = len(starts(length, tile, overlap, multiple))
    if count == 1:
        return min(tile, length)
    reach = overlap + multiple - 1
    size = max(math.ceil((length + (count - 1) * reach) / count), 2 * overlap + multiple)
    return min(tile, size + -size % multiple)


def blend(paint: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
          tiles: Iterable[Tile]) -> torch.Tensor:
    """``paint`` each tile's window of ``[1, C, H, W]`` ``image`` and blend the results with the
    tiles' weights into one float32 ``[1, C', H, W]`` image on the CPU."""
    total: torch.Tensor | None = None
    weights = torch.zeros(image.shape[-2:])
    for tile in tiles:
        painted = paint(tile.window(image)).float().cpu()
        if total is None:
            total = torch.zeros(*painted.shape[:2], *image.shape[-2:])
        tile.window(total).add_(painted * tile.weight)
        tile.window(weights).add_(tile.weight)
    if total is None:
        raise StylelibError("No tiles to paint: pass stylelib.tiles.layout(...) for the image.")
    return total.div_(weights)


def padded_layout(image: torch.Tensor, tile: int, overlap: int, multiple: int
                  ) -> tuple[torch.Tensor, list[Tile]]:
    """``image`` reflection-padded to a multiple of ``multiple`` on the bottom and right (as a
    network pads a whole image), and the tiles covering it (:func:`layout`)."""
    padded = pad_to_multiple(image, multiple)
    return padded, layout(padded.shape[-2], padded.shape[-1], tile, overlap, multiple)


def paint(run: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile: int,
          overlap: int, multiple: int, *, progress: bool = False) -> torch.Tensor:
    """:func:`blend` of ``run`` over the tiles of ``image`` padded as in
    :func:`padded_layout`, cropped back to ``image``'s size (float32, on the CPU)."""
    height, width = image.shape[-2:]
    padded, parts = padded_layout(image, tile, overlap, multiple)
    painted = blend(run, padded, tqdm(parts, desc="tiles", unit="tile", disable=not progress,
                                      leave=False))
    return painted[..., :height, :width].contiguous()


class Statistics:
    """Per-channel mean and deviation of one feature map over the whole image, gathered tile by
    tile from the pixels each tile owns (float64 sums, so thousands of tiles lose nothing)."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None

    def add(self, features: torch.Tensor, tile: Tile) -> None:
        """Count the owned part of a tile's ``[1, C, h, w]`` features (``h`` divides the tile's
        height: the owned box is scaled by the network's stride at this depth)."""
        stride = tile.height // features.shape[-2]
        if stride * features.shape[-2] != tile.height or stride * features.shape[-1] != tile.width:
            raise StylelibError(
                f"Features {list(features.shape)} do not divide the {tile.height}x{tile.width} "
                "tile evenly: lay the tiles out on a multiple of the network's stride.")
        owned = tile.owned_part(features[0], stride).double().flatten(1)
        if self.sum is None or self.squares is None:
            self.sum, self.squares = owned.sum(1), owned.square().sum(1)
        else:
            self.sum += owned.sum(1)
            self.squares += owned.square().sum(1)
        self.count += owned.shape[1]

    def mean(self) -> torch.Tensor:
        """The ``[1, C, 1, 1]`` float32 mean, as a global average pool of the whole map gives."""
        return self._moments()[0].float().reshape(1, -1, 1, 1)

    def mean_std(self, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
        """``[1, C, 1, 1]`` float32 mean and ``sqrt(var + eps)``, as
        :func:`stylelib.losses.mean_std` gives for the whole feature map."""
        mean, variance = self._moments()
        shape = (1, -1, 1, 1)
        return (mean.float().reshape(shape),
                (variance + eps).sqrt().float().reshape(shape))

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 per-channel mean and variance of everything added."""
        if self.sum is None or self.squares is None:
            raise StylelibError("No features gathered yet: add() every tile first.")
        mean = self.sum / self.count
        return mean, (self.squares / self.count - mean.square()).clamp(min=0)


Features = Callable[[int, torch.Tensor, list[Statistics]], torch.Tensor]
"""``features(k, window, gathered)``: the ``[1, C, h, w]`` features whose whole-image
statistics are the k-th to gather, computed for one window given the ``k`` gathered before."""


def paint_gathered(features: Features, count: int,
                   run: Callable[[torch.Tensor, list[Statistics]], torch.Tensor],
                   image: torch.Tensor, tile: int, overlap: int, multiple: int, *,
                   progress: bool = False) -> torch.Tensor:
    """:func:`paint` with ``run(window, gathered)`` for a network that normalises by whole-image
    statistics: ``count`` of them, each gathered in its own pass over the tiles (it may depend
    on those before it), from the pixels each tile owns, then one painting pass."""
    height, width = image.shape[-2:]
    padded, parts = padded_layout(image, tile, overlap, multiple)
    gathered: list[Statistics] = []
    bar = tqdm(total=(count + 1) * len(parts), desc="tiles", unit="tile",
               disable=not progress, leave=False)
    with bar:
        for index in range(count):
            statistics = Statistics()
            for part in parts:
                statistics.add(features(index, part.window(padded), gathered), part)
                bar.update()
            gathered.append(statistics)

        def painted(window: torch.Tensor) -> torch.Tensor:
            result = run(window, gathered)
            bar.update()
            return result

        return blend(painted, padded, parts)[..., :height, :width].contiguous()


class _UnknownStatisticsError(Exception):
    """Raised by the first norm whose statistics are not yet known, carrying its input: the
    pass stops there, as deeper layers are not needed."""

    def __init__(self, norm: _WholeImageNorm, features: torch.Tensor) -> None:
        super().__init__()
        self.norm, self.features = norm, features


class _WholeImageNorm(nn.Module):
    """An instance norm that normalises by statistics gathered over the whole image."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.norm = norm
        self.fixed: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stop the pass with ``x`` while the whole image's statistics are unknown; once they
        are, normalise by them."""
        if self.fixed is None:
            raise _UnknownStatisticsError(self, x)
        mean, std = (stat.to(x.device) for stat in self.fixed)
        normalised = (x.float() - mean) / std
        if self.norm.affine:
            normalised = (normalised * self.norm.weight.view(1, -1, 1, 1)
                          + self.norm.bias.view(1, -1, 1, 1))
        return normalised.to(x.dtype)


def _whole_image_norms(net: nn.Module) -> tuple[nn.Module, list[_WholeImageNorm]]:
    """A copy of ``net`` whose instance norms are :class:`_WholeImageNorm` s."""
    copied = copy.deepcopy(net)
    norms = []
    for name, module in list(copied.named_modules()):
        if isinstance(module, nn.InstanceNorm2d):
            parent, _, attribute = name.rpartition(".")
            norm = _WholeImageNorm(module)
            setattr(copied.get_submodule(parent), attribute, norm)
            norms.append(norm)
    return copied, norms


def paint_normalised(run: Callable[[nn.Module, torch.Tensor], torch.Tensor], net: nn.Module,
                     image: torch.Tensor, tile: int, overlap: int, multiple: int, *,
                     progress: bool = False) -> torch.Tensor:
    """:func:`paint_gathered` with ``run(net, window)``, every instance norm in ``net``
    normalising by the whole image's statistics, as the untiled network does.

    A norm's statistics depend on every norm before it, so each norm gets a pass over the
    tiles that stops there, before the painting pass: about 8 untiled passes' work for a fast
    network. Estimating them all in fewer passes does not work: with each tile's own statistics
    upstream, the fast networks' results drift to about 13 dB from the untiled one.
    """
    copied, norms = _whole_image_norms(net)
    reached: list[_WholeImageNorm] = []  # in the order a pass reaches them, not as defined

    def fix(gathered: list[Statistics]) -> None:
        # during pass k, norm k is reached but its statistics are not yet gathered
        for norm, statistics in zip(reached[:len(gathered)], gathered, strict=True):
            if norm.fixed is None:
                norm.fixed = statistics.mean_std(norm.norm.eps)

    def features(index: int, window: torch.Tensor, gathered: list[Statistics]) -> torch.Tensor:
        fix(gathered)
        try:
            run(copied, window)
        except _UnknownStatisticsError as stop:
            if len(reached) == index:
                reached.append(stop.norm)
            return stop.features
        raise StylelibError(f"The network has {len(norms)} instance norms but a pass reached "
                            f"only {index}: remove the norms its forward() does not use.")

    def painted(window: torch.Tensor, gathered: list[Statistics]) -> torch.Tensor:
        fix(gathered)
        return run(copied, window)

    return paint_gathered(features, len(norms), painted, image, tile, overlap, multiple,
                          progress=progress)
